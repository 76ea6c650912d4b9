"""A run folder is never silently reused: refused unless --resume or --overwrite says what to do."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from azero.config import ConfigError, parse_config
from azero.tracking import claim_run_folder, run_contents

ROOT = Path(__file__).resolve().parents[1]


def fake_run(folder: Path) -> Path:
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "trainer_state.pt").write_bytes(b"x")
    (folder / "checkpoint.old").mkdir()
    (folder / "metrics.jsonl").write_text('{"iteration": 0}\n')
    (folder / "config.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")  # not the run's: survives --overwrite
    return folder


def test_a_folder_holding_a_run_is_refused_with_what_to_do(tmp_path):
    run = fake_run(tmp_path / "run")
    with pytest.raises(ConfigError, match=rf"{run} already holds a run \(checkpoint, checkpoint.old, config.json, "
                                          rf"metrics.jsonl\): continue it with --resume {run}, replace it with "
                                          "--overwrite"):
        claim_run_folder(run, resume_dir=None, overwrite=False)
    assert run_contents(run) == ["checkpoint", "checkpoint.old", "config.json", "metrics.jsonl"]


def test_overwrite_deletes_the_run_files_only(tmp_path):
    run = fake_run(tmp_path / "run")
    claim_run_folder(run, resume_dir=None, overwrite=True, main_process=False)  # other ranks never delete
    assert run_contents(run)
    claim_run_folder(run, resume_dir=None, overwrite=True)
    assert run_contents(run) == [] and (run / "notes.txt").read_text() == "mine"


def test_new_empty_or_unrelated_folders_and_the_resumed_run_are_accepted(tmp_path):
    claim_run_folder(tmp_path / "absent", resume_dir=None, overwrite=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("1")
    claim_run_folder(tmp_path / "other", resume_dir=None, overwrite=False)
    run = fake_run(tmp_path / "run")
    claim_run_folder(str(run) + "/", resume_dir=str(run), overwrite=False)
    # resuming into ANOTHER folder that holds a run is refused like a new run
    with pytest.raises(ConfigError, match="replace it with --overwrite"):
        claim_run_folder(run, resume_dir=str(tmp_path / "elsewhere"), overwrite=False)


def test_overwrite_deletes_nothing_when_another_check_refuses_the_run(tmp_path, monkeypatch):
    """A typo beside --overwrite (here a missing eval file) is one config error and the old run is still there:
    the run files are deleted only after every check has passed, and never before the model could load."""
    import azero.models
    import train

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the config was checked")

    monkeypatch.setattr(azero.models, "load_policy", no_model)
    monkeypatch.setattr(azero.models, "load_tokenizer", no_model)
    run = fake_run(tmp_path / "run")
    before = run_contents(run)
    with pytest.raises(ConfigError, match="cannot read --eval-data"):
        train.main(["--preset", "tiny", "--output-dir", str(run), "--overwrite",
                    "--eval-data", str(tmp_path / "missing.jsonl")])
    assert run_contents(run) == before and (run / "metrics.jsonl").read_text() == '{"iteration": 0}\n'


@pytest.mark.slow  # runs train.py
def test_resume_and_overwrite_of_the_same_folder_contradict(tmp_path):
    out = tmp_path / "run"
    subprocess.run([sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--iterations", "0",
                    "--eval-data", "none", "--output-dir", str(out)], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    with pytest.raises(ConfigError, match="continues that run and --overwrite deletes it"):
        parse_config(["--resume", str(out), "--overwrite"])
    cfg, _ = parse_config(["--resume", str(out)])
    assert cfg.overwrite is False


@pytest.mark.slow  # runs train.py twice
def test_cli_refuses_a_second_run_into_the_same_folder_and_keeps_the_first(tmp_path):
    """Issue 11 item 5: a second run into a run folder used to append iterations [0,1,2,0,1,2] to its metrics."""
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--iterations", "1", "--eval-data", "none",
           "--output-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env=env, timeout=300)
    before = (out / "metrics.jsonl").read_bytes()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"config error: {out} already holds a run (checkpoint, config.json, final, metrics.jsonl, samples.jsonl): "
        f"continue it with --resume {out}, replace it with --overwrite, or pass another --output-dir"]
    assert (out / "metrics.jsonl").read_bytes() == before
    subprocess.run(cmd + ["--overwrite"], cwd=ROOT, check=True, capture_output=True, env=env, timeout=300)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]

"""The real entry point on the tiny preset: smoke run, resume, two processes, NaN skip, wandb offline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # end-to-end runs of train.py: `pytest -m "not slow"` skips them
SIX = [f"trr/{role}_{kind}/reward_mean" for kind in ("deduction", "abduction", "induction") for role in ("propose", "solve")]


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def iteration_rows(run_dir: Path) -> dict[int, dict]:
    """metrics.jsonl may hold several lines per iteration (e.g. the dist check); merge them."""
    out: dict[int, dict] = {}
    for r in read_rows(run_dir):
        out.setdefault(r["iteration"], {}).update(r)
    return out


def run_train(*args: str, env: dict | None = None, launcher: list[str] | None = None, timeout: int = 300):
    cmd = (launcher or [sys.executable]) + [str(ROOT / "train.py"), *args]
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_tiny_smoke_run(tmp_path):
    """`python train.py --preset tiny --iterations 2` writes all six baselines and eval accuracy per
    iteration, and the weights move."""
    out = tmp_path / "run"
    run_train("--preset", "tiny", "--iterations", "2", "--output-dir", str(out))
    rows = iteration_rows(out)
    assert set(rows) == {0, 1, 2}
    assert "eval/arithmetic_eval/overall" in rows[0]  # before training
    for it in (1, 2):
        for key in SIX:
            assert rows[it][key] is not None, key
        for kind in ("deduction", "abduction", "induction"):
            assert 0 <= rows[it][f"tasks/solve_{kind}/accuracy"] <= 1
            assert rows[it][f"trr/solve_{kind}/count"] == 4 and rows[it][f"trr/propose_{kind}/count"] == 4
        assert 0 <= rows[it]["eval/arithmetic_eval/overall"] <= 1
        assert {"very_easy", "easy", "medium", "hard", "very_hard"} <= {k.rsplit("/", 1)[-1] for k in rows[it]}
        assert rows[it]["optim/skipped_nonfinite"] == 0
        assert rows[it]["loss/kl"] >= 0
    assert rows[1]["loss/kl"] < 1e-6  # policy == reference before the first step
    assert_readme_metric_table_is_true(rows)
    samples = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert {(s["role"], s["task"]) for s in samples} == {(r, k) for r in ("propose", "solve")
                                                           for k in ("deduction", "abduction", "induction")}

    from azero.tracking import plot_run

    png = plot_run(out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    from transformers import AutoModelForCausalLM

    from azero.models import load_policy, tiny_tokenizer

    init = load_policy("tiny", tokenizer=tiny_tokenizer(), seed=0)
    trained = AutoModelForCausalLM.from_pretrained(out / "final")  # the run's plain Hugging Face export
    moved = max((a - b).abs().max().item() for a, b in zip(init.parameters(), trained.parameters()))
    assert moved > 1e-5


def readme_metric_patterns() -> list[str]:
    """The keys of the README's metric table, one regex each, placeholders expanded."""
    import re

    from azero.curriculum import OPERATOR_NAMES
    from azero.evaluation import TIERS

    section = (ROOT / "README.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    fills = {"{role}": "(propose|solve)", "{task}": "(deduction|abduction|induction)",
             "{tier}": "(" + "|".join(("overall", *TIERS)) + ")", "{reason}": "[a-z0-9_]+", "{bin}": r"(1|2|3|4\+)",
             "{op}": "(" + "|".join(OPERATOR_NAMES.values()) + ")"}
    patterns = []
    for line in section.splitlines():
        if line.startswith("| `"):
            for key in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
                regex = re.escape(key)
                for name, fill in fills.items():
                    regex = regex.replace(re.escape(name), fill)
                patterns.append(regex)
    return patterns


def assert_readme_metric_table_is_true(rows: dict[int, dict]) -> None:
    """Every key a tiny run logs is in the README's metric table, and every key there is logged (the
    multi-process `dist/` keys by test_two_processes_stay_identical)."""
    import re

    logged = {k for r in rows.values() for k in r if k != "iteration"}
    patterns = readme_metric_patterns()
    undocumented = sorted(k for k in logged if not any(re.fullmatch(p, k) for p in patterns))
    assert not undocumented, f"logged but not in the README's metric table: {undocumented}"
    unlogged = [p for p in patterns if not p.startswith("dist/") and not any(re.fullmatch(p, k) for k in logged)]
    assert not unlogged, f"in the README's metric table but never logged: {unlogged}"


def wandb_records(path: Path):
    """Records of a wandb run file: a LevelDB-style log (7-byte header, 32 KiB blocks, chunked records
    of crc32/length/type) of protobuf ``Record`` messages. Read here so the test needs no wandb internals."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block never starts a record header in its last 6 bytes
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def _in_process(argv: list[str]) -> dict:
    import train

    return train.main(argv)


def test_resume_matches_straight_run(tmp_path):
    """2 iterations + --resume for 2 more == 4 straight iterations: same buffers, iteration and metrics (optim/lr
    among them: the decaying lr continues its curve)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--preset", "tiny", "--eval-every", "0", "--lr-decay", "linear", "--lr-decay-iterations", "3"]
    _in_process(common + ["--iterations", "4", "--output-dir", str(straight)])
    _in_process(common + ["--iterations", "2", "--output-dir", str(split)])
    _in_process(["--resume", str(split), "--iterations", "4"])

    from azero.checkpoint import load_trainer_state

    a, b = load_trainer_state(straight), load_trainer_state(split)
    assert a["iteration"] == b["iteration"] == 4
    assert a["buffers"] == b["buffers"]
    assert a["task_rng"] == b["task_rng"]
    ra, rb = iteration_rows(straight), iteration_rows(split)
    assert set(ra) == set(rb) == {0, 1, 2, 3, 4}
    for it in (3, 4):
        for key, va in ra[it].items():
            if key.startswith(("time/", "perf/", "mem/")) or va is None:
                continue
            assert rb[it][key] == pytest.approx(va, rel=1e-4, abs=1e-6), (it, key)
    assert [ra[it]["optim/lr"] for it in (1, 2, 3, 4)] == pytest.approx([1e-3, 0.7e-3, 0.4e-3, 0.1e-3])


def test_nan_loss_skips_step_and_training_continues(tmp_path, monkeypatch):
    import azero.selfplay as sp

    real = sp.policy_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, mets = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # the first micro-batch of iteration 1
            loss = loss * float("nan")
        return loss, mets

    monkeypatch.setattr(sp, "policy_loss", poisoned)
    out = tmp_path / "nan"
    _in_process(["--preset", "tiny", "--iterations", "3", "--eval-every", "0", "--output-dir", str(out)])
    rows = iteration_rows(out)
    assert rows[1]["optim/skipped_nonfinite"] == 1
    assert rows[2]["optim/skipped_nonfinite"] == 0 and rows[3]["optim/skipped_nonfinite"] == 0
    assert rows[3]["optim/grad_norm"] == pytest.approx(rows[3]["optim/grad_norm"])  # finite again


def test_two_processes_stay_identical(tmp_path):
    """Two ranks on CPU/gloo: world size 2, identical parameters and buffers (checked by the trainer's
    fingerprint at every checkpoint) and both ranks' RNG states saved."""
    out = tmp_path / "ddp"
    with socket.socket() as sock:  # a free port: other test runs on this machine may hold a fixed one
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    run_train("--preset", "tiny", "--iterations", "2", "--checkpoint-every", "1", "--output-dir", str(out),
              launcher=launcher)
    rows = [r for r in read_rows(out) if "dist/world_size" in r]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(r["dist/world_size"] == 2 and r["dist/ranks_identical"] == 1.0 for r in rows)
    assert (out / "checkpoint" / "random_states_0.pkl").exists() and (out / "checkpoint" / "random_states_1.pkl").exists()
    it = iteration_rows(out)
    assert it[2]["trr/solve_deduction/count"] == 4  # the global batch, gathered over both ranks


def test_wandb_offline_run_files(tmp_path):
    """The real wandb library in offline mode writes a local run with the per-baseline metrics and the
    sample table."""
    pytest.importorskip("wandb")
    out = tmp_path / "wb"
    run_train("--preset", "tiny", "--iterations", "2", "--eval-every", "0", "--wandb", "--output-dir", str(out),
              env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = list(wandb_records(next(runs[0].glob("*.wandb"))))
    history_keys = {item.key or "/".join(item.nested_key)
                    for rec in records if rec.WhichOneof("record_type") == "history" for item in rec.history.item}
    assert set(SIX) <= history_keys
    assert any(k.startswith("samples/") for k in history_keys)  # the incremental sample table
    tables = list(runs[0].glob("files/media/table/**/*.table.json")) or list(runs[0].glob("files/media/table/*.json"))
    assert tables, "no sample table written"
    rows = sum(len(json.loads(t.read_text())["data"]) for t in tables)
    assert rows >= 6  # at least one proposer and one solver sample per task type


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_writes_a_checkpoint_exits_128_plus_signal_and_resume_continues(tmp_path, sig):
    """SIGTERM / Ctrl-C mid-run: the current iteration finishes, a checkpoint is written, the process exits
    128 + the signal's number (143 / 130, not 0 like a finished run: a scheduler can requeue it), and --resume
    picks up from that iteration."""
    import signal
    import time

    out = tmp_path / "term"
    cmd = [sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--iterations", "500", "--eval-every", "0",
           "--output-dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(r.get("iteration", 0) >= 2 for r in _rows_if_any(out)):
        time.sleep(0.2)
    proc.send_signal(getattr(signal, sig))
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig).value, log[-3000:]
    assert f"{sig} received" in log

    from azero.checkpoint import load_trainer_state

    stopped = load_trainer_state(out)["iteration"]
    assert 2 <= stopped < 500
    _in_process(["--resume", str(out), "--iterations", str(stopped + 1)])
    assert load_trainer_state(out)["iteration"] == stopped + 1
    assert max(iteration_rows(out)) == stopped + 1


def _rows_if_any(run_dir: Path) -> list[dict]:
    try:
        return read_rows(run_dir)
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_kl_in_reward_mode_trains(tmp_path):
    """--kl-in-reward: k1 folded into per-token returns (one shaping pass, no second reference forward)."""
    out = tmp_path / "klr"
    _in_process(["--preset", "tiny", "--iterations", "3", "--eval-every", "0", "--kl-in-reward", "--output-dir", str(out)])
    rows = iteration_rows(out)
    assert rows[1]["loss/kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the first step
    # the policy moved away from the reference (k1 of sampled tokens is no longer 0), with finite steps
    assert rows[3]["loss/kl"] != 0.0 and rows[3]["optim/skipped_nonfinite"] == 0

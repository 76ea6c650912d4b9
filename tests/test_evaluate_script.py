"""bench/evaluate.py scores a run's final/ exactly as the run's own last evaluation did."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.bench import load_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_final_folder_scores_like_the_runs_last_eval(tmp_path):
    out = tmp_path / "run"
    subprocess.run([sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--iterations", "2", "--lr", "0.01",
                    "--output-dir", str(out)], check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = {k.rsplit("/", 1)[1]: v for r in rows if r["iteration"] == 2 for k, v in r.items()
              if k.startswith("eval/arithmetic_eval/") and "/n/" not in k}
    script = load_bench("evaluate")
    assert script.resolve(str(out)) == str(out / "final")
    res = script.main([str(out), "--eval-data", "builtin", "--mixed-precision", "no", "--max-new-tokens", "4",
                       "--batch-size", "200", "--json-out", str(tmp_path / "r.json"),
                       "--items-out", str(tmp_path / "items.jsonl")])[str(out)]
    assert {t: res[t] for t in logged} == logged and res["n/overall"] == 200
    assert json.loads((tmp_path / "r.json").read_text())["results"][str(out)]["overall"] == logged["overall"]
    # The per-item file holds the same verdicts: its tier means are the scores, each verdict is its parsed answer's.
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert len(items) == 200 and [r["index"] for r in items] == list(range(200))
    assert all(r["model"] == str(out) and r["correct"] == (r["parsed"] == r["answer"]) for r in items)
    for tier in logged:
        rows = [r for r in items if tier == "overall" or r["tier"] == tier]
        assert sum(r["correct"] for r in rows) / len(rows) == pytest.approx(logged[tier])


@pytest.mark.slow
def test_snapshots_are_kept_loadable_and_score_like_the_runs_evals(tmp_path):
    """--snapshot-every 1 keeps the policy of every iteration as a plain Hugging Face folder; the last one holds
    final/'s weights, and bench/evaluate.py --snapshots scores each exactly as the run's eval at that iteration."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    subprocess.run([sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--iterations", "2", "--lr", "0.01",
                    "--snapshot-every", "1", "--output-dir", str(out)], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["iteration-0001", "iteration-0002"]  # no .tmp left behind
    weights = {name: load_file(out / "snapshots" / name / "model.safetensors") for name in snaps}
    final = load_file(out / "final" / "model.safetensors")
    assert weights["iteration-0002"].keys() == final.keys()
    assert all((weights["iteration-0002"][k] == final[k]).all() for k in final)
    assert any(not (weights["iteration-0001"][k] == final[k]).all() for k in final)  # the second step moved them

    script = load_bench("evaluate")
    models = script.expand([str(out)], snapshots=True)
    assert models == [str(out / "snapshots" / "iteration-0001"), str(out / "snapshots" / "iteration-0002"), str(out)]
    assert [script.taken_at(m) for m in models] == [1, 2, 2] and script.taken_at("tiny") is None
    res = script.main([str(out), "--snapshots", "--eval-data", "builtin", "--mixed-precision", "no",
                       "--max-new-tokens", "4", "--batch-size", "200", "--plot", str(tmp_path / "curve.png")])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = {r["iteration"]: r["eval/arithmetic_eval/overall"] for r in rows if "eval/arithmetic_eval/overall" in r}
    assert [res[m]["overall"] for m in models] == [logged[1], logged[2], logged[2]]
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a snapshot folder is part of the run: a new run into the folder is refused, as for final/
    from azero.tracking import run_contents

    assert "snapshots" in run_contents(out)

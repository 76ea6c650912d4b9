"""A run SIGKILLed at any instant of a checkpoint write or a log append resumes to exactly the state of a run that
was never stopped: the same weights, optimizer, buffers, RNG streams and metrics (timings aside).

tests/fault_driver.py does the killing: it wraps the file-system primitives (not the trainer), numbers every event
inside the run folder, and SIGKILLs a forked ``train.py`` at the chosen one -- before a call, half-way through it
(a torn file or log line, a half-deleted folder) or after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "fault_driver.py"
# Two iterations, a checkpoint after each (the second one swaps out the first), an eval and samples every iteration.
ARGS = ["--preset", "tiny", "--iterations", "2", "--checkpoint-every", "1", "--eval-every", "1"]
TIMING = ("time/", "perf/", "mem/")


def driver(*args: str, timeout: int) -> list[dict]:
    proc = subprocess.run([sys.executable, str(DRIVER), *args, "--", *ARGS], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def final_state(run: Path) -> dict:
    """Everything the run leaves behind that must not depend on whether it was killed: every file of its newest
    checkpoint, loaded (weights, optimizer, scheduler, buffers, task RNG, every rank's RNG states, whatever the
    checkpoint format holds), and the logs."""
    from safetensors.torch import load_file

    from azero import checkpoint

    folder = Path(checkpoint.load_trainer_state(run).get("checkpoint_dir", run / "checkpoint"))
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".safetensors":
            content = load_file(path)
        elif path.suffix == ".json":
            content = json.loads(path.read_text())
        else:
            content = torch.load(path, map_location="cpu", weights_only=False)
        files[str(path.relative_to(folder))] = _without(content, WHERE_AND_WHEN)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "checkpoint": files,
        "metrics": [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows],
        "samples": (run / "samples.jsonl").read_text(),
    }


# Where and how the run was started, and when and how big a file was written (a checkpoint marker's "files":
# sizes of pickles that hold the output folder's path): not part of the run's state. The files themselves are.
WHERE_AND_WHEN = {"output_dir", "overwrite", "time", "files"}


def _without(obj, keys: set):
    if isinstance(obj, dict):
        return {k: _without(v, keys) for k, v in obj.items() if k not in keys}
    return obj


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, "shape") and hasattr(a, "dtype"):  # numpy arrays in the RNG states
        return bool((a == b).all()) and a.dtype == b.dtype
    return a == b


def differences(a: dict, b: dict) -> list[str]:
    out = [k for k in ("metrics", "samples") if not same(a[k], b[k])]
    if "metrics" in out:
        out.append(f"metrics iterations {[r['iteration'] for r in a['metrics']]} vs {[r['iteration'] for r in b['metrics']]}")
    ca, cb = a["checkpoint"], b["checkpoint"]
    if ca.keys() != cb.keys():
        out.append(f"checkpoint files {sorted(ca)} vs {sorted(cb)}")
    out += [f"checkpoint/{name}" for name in ca if name in cb and not same(ca[name], cb[name])]
    return out


def pick(indices: list[int], n: int) -> list[int]:
    """n indices spread evenly over a list (all of them if it is shorter)."""
    if len(indices) <= n:
        return indices
    return [indices[round(i * (len(indices) - 1) / (n - 1))] for i in range(n)]


@pytest.mark.slow
def test_sigkill_anywhere_in_checkpoints_and_log_appends_resumes_exactly(tmp_path):
    trace = driver("trace", str(tmp_path / "ref"), timeout=600)
    assert trace == [{"exit": 0}]
    events = [line.split("\t") for line in (tmp_path / "ref" / "events").read_text().splitlines()]
    reference = final_state(tmp_path / "ref" / "run")
    assert [r["iteration"] for r in reference["metrics"]] == [0, 1, 2]

    # After this event the first checkpoint is complete: every kill later must resume. A kill earlier may find no
    # checkpoint to resume (the run must then start over with --overwrite, to the same end).
    first_saved = next(int(n) for n, name, _ in events if name == "checkpoint.save returned")
    ckpt = [int(n) for n, name, _ in events if "checkpoint" in name and int(n) > first_saved]
    logs = [int(n) for n, name, _ in events if ".jsonl" in name and int(n) > first_saved]
    early = [int(n) for n, name, _ in events if int(n) < first_saved and name != "mkdir ."]
    cases = [[k, None] for k in sorted(set(pick(ckpt, 14) + pick(logs, 8) + pick(early, 4)))]
    # Kill the run after its first checkpoint, then kill the resume too: in its log repair, and in its own save
    # (a torn model file in the new checkpoint folder). The second resume must still end where the reference did.
    torn_log = next(int(n) for n, name, phase in events if ".jsonl" in name and phase == "torn" and int(n) > first_saved)
    cases += [[torn_log, "replace metrics.jsonl.tmp -> metrics.jsonl\tbefore"],
              [ckpt[len(ckpt) // 2], ".safetensors\ttorn"]]
    assert len([c for c in cases if c[0] > first_saved]) >= 20

    results = driver("cases", str(tmp_path / "faults"), json.dumps(cases), timeout=1800)
    assert len(results) == len(cases)
    failures = []
    for i, ((kill_at, _), res) in enumerate(zip(cases, results)):
        name = res["last_event"]
        if res["killed"] != -9 or res.get("resume_killed", -9) != -9:
            failures.append(f"{name}: the kill did not happen: {res}")
            continue
        if res["resumed"] != 0 and (kill_at > first_saved or res.get("overwritten") != 0):
            failures.append(f"{name}: could not continue: {res}")
            continue
        diff = differences(reference, final_state(tmp_path / "faults" / f"case{i}" / "run"))
        if diff:
            failures.append(f"{name}: resumed run differs from the uninterrupted one in {diff}")
    assert not failures, f"{len(failures)} of {len(cases)} kill instants failed:\n" + "\n".join(failures)

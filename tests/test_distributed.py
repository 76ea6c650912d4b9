"""The shipped engine configs on 2 CPU processes (gloo), through ``accelerate launch --config_file
configs/accelerate/NAME.yaml``: FSDP2 and DeepSpeed ZeRO-2/3 really shard here (azero/distributed.py sets the state
Accelerate sets on GPUs). Checked: one optimizer step per iteration (the engine's own count), the same numbers under
every engine, generation and eval on sharded weights, ranks identical, exact resume from sharded checkpoints,
final/ gathered, loadable and generating; launches the loop cannot honour are refused. LoRA in one process."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"
PORTS = itertools.count(29650)
TINY = ["--preset", "tiny", "--checkpoint-every", "1", "--eval-every", "0"]  # eval before training and at the end
VOLATILE = ("time/", "perf/", "mem/")


def launch(config: str | None, *args: str, processes: int = 2, env: dict | None = None, ok: bool = True,
           launcher_args: tuple = ()):
    """train.py under ``accelerate launch`` with a shipped config (or torchrun when config is None)."""
    if config is None:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(next(PORTS))]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{config}.yaml"),
               "--num_processes", str(processes), "--main_process_port", str(next(PORTS)), *launcher_args]
    cmd += [str(ROOT / "train.py"), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def rows(run_dir: Path) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out.setdefault(r["iteration"], {}).update(r)
    return out


def comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(VOLATILE) and v is not None}


def final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "final" / "model.safetensors")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """The reference: plain DDP (ddp.yaml) on the same 2 processes, 2 iterations."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    launch("ddp", *TINY, "--iterations", "2", "--output-dir", str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fsdp2", "zero3"])
def test_sharded_engine_trains_resumes_exactly_and_exports(engine, ddp_run, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    launch(engine, *TINY, "--iterations", "2", "--output-dir", str(straight))
    launch(engine, *TINY, "--iterations", "1", "--output-dir", str(split))
    launch(engine, "--resume", str(split), "--iterations", "2")

    a, b, ref = rows(straight), rows(split), rows(ddp_run)
    meta = json.loads((straight / "checkpoint" / "COMPLETE.json").read_text())
    assert meta["engine"] == engine and meta["num_processes"] == 2
    for it in (1, 2):
        assert a[it]["optim/steps"] == it  # one optimizer step per iteration, counted by the engine itself
        assert a[it]["dist/ranks_identical"] == 1.0 and a[it]["dist/world_size"] == 2
        shared = comparable(a[it]).keys() & comparable(b[it]).keys()  # the split run also evaluated at its end (1)
        assert len(shared) > 50
        assert {k: a[it][k] for k in shared} == pytest.approx({k: b[it][k] for k in shared}, rel=1e-5, abs=1e-7), it
        # the same update as DDP: one step over the global token-mean, clipped at the same norm
        for key in ("optim/grad_norm", "loss/kl", "loss/pg", "trr/solve_deduction/reward_mean"):
            assert a[it][key] == pytest.approx(ref[it][key], rel=1e-3, abs=1e-6), (it, key)
    for run in (a, ref):  # eval with sharded weights (gathered per phase) before training and at the end
        assert "eval/arithmetic_eval/overall" in run[0] and "eval/arithmetic_eval/overall" in run[2]
    assert a[2]["eval/arithmetic_eval/overall"] == ref[2]["eval/arithmetic_eval/overall"]

    wa, wb, wr = final_weights(straight), final_weights(split), final_weights(ddp_run)
    assert wa.keys() == wb.keys() == wr.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # gathered, whole
    assert all(torch.allclose(wa[k], wr[k], atol=1e-5) for k in wa)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(straight / "final"), AutoTokenizer.from_pretrained(straight / "final")
    ids = tok(["Calculate: 1 + 2 = "], return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


@pytest.mark.slow
def test_zero2_one_step_per_iteration_and_ddp_numbers(ddp_run, tmp_path):
    out = tmp_path / "z2"
    launch("zero2", *TINY, "--iterations", "2", "--output-dir", str(out))
    a, ref = rows(out), rows(ddp_run)
    for it in (1, 2):
        assert a[it]["optim/steps"] == it and a[it]["dist/ranks_identical"] == 1.0
        for key in ("optim/grad_norm", "loss/kl", "loss/pg"):
            assert a[it][key] == pytest.approx(ref[it][key], rel=1e-3, abs=1e-6), (it, key)
    wa, wr = final_weights(out), final_weights(ddp_run)
    assert all(torch.allclose(wa[k], wr[k], atol=1e-5) for k in wr)


@pytest.mark.slow
def test_launches_the_loop_cannot_honour_are_refused(ddp_run, tmp_path):
    """Gradient accumulation from the launcher, and a checkpoint resumed with another process count (both ways)."""
    proc = launch("zero2", *TINY, "--iterations", "1", "--output-dir", str(tmp_path / "gas"), ok=False,
                  launcher_args=("--gradient_accumulation_steps", "4"))  # exported as ACCELERATE_GRADIENT_...
    assert proc.returncode != 0 and "gradient accumulation is set to 4" in proc.stderr
    assert f"{ROOT}/azero" not in proc.stderr  # one line from us, no traceback through our code (torchrun adds its own)

    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(ddp_run), "--iterations", "3"],
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "written by 2 process(es) under ddp, this launch has 1 under single" in proc.stderr

    import train

    one = tmp_path / "one"
    train.main([*TINY, "--iterations", "1", "--eval-data", "none", "--output-dir", str(one)])  # in-process: quicker
    proc = launch(None, "--resume", str(one), "--iterations", "2", ok=False)
    assert proc.returncode != 0 and "written by 1 process(es) under single, this launch has 2 under ddp" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["zero2", "zero3"])
def test_deepspeed_steps_once_per_iteration_and_skips_nonfinite_steps(engine):
    """DeepSpeed through our hooks alone (tests/ds_step_driver.py): Accelerate's backward would step the engine at
    every micro-batch; micro_batch makes three micro-batches one step, and a NaN loss in any of them makes
    DeepSpeed skip that step (reported by deepspeed_skipped), weights untouched."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{engine}.yaml"),
           "--num_processes", "2", "--main_process_port", str(next(PORTS)), str(ROOT / "tests" / "ds_step_driver.py")]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert result["engine"] == "DEEPSPEED"
    assert result["clean_steps"] == [0, 0, 1] and result["clean_skipped"] is False
    assert result["nan_steps"] == [1, 1, 1] and result["nan_skipped"] is True and result["unchanged"] is True
    assert result["compared"] > 1000  # this rank's weights (its ZeRO-3 partition), not empty placeholders

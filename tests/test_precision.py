"""--mixed-precision auto: bf16 autocast only where the hardware computes bf16, fp32 elsewhere; what it picks is what
the run records. On a CPU without native bf16 (AVX512 but no AVX512-BF16 / AMX), emulated bf16 made a cpu-preset
iteration 3.6x slower than fp32 (docs/RESULTS.md section 27)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.bench import load_bench

from azero.config import PRESETS, Config
from azero.distributed import cpu_has_native_bf16, resolve_precision

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("machine, chosen", [
    (dict(cuda=False, cpu_bf16=True), "bf16"),
    (dict(cuda=False, cpu_bf16=False), "no"),
    (dict(cuda=True, cuda_bf16=True, cpu_bf16=False), "bf16"),  # the GPU decides, not the host CPU
    (dict(cuda=True, cuda_bf16=False, cpu_bf16=True), "no"),
])
def test_auto_is_bf16_only_where_the_hardware_computes_it(machine, chosen):
    mode, note = resolve_precision("auto", **machine)
    assert mode == chosen
    assert note.startswith(f"precision: --mixed-precision auto -> {chosen} (this ")
    assert ("CUDA device" in note) == machine["cuda"]


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("requested", ["no", "bf16", "fp16"])
def test_an_explicit_mode_is_kept_and_emulated_bf16_is_named(requested, native):
    mode, note = resolve_precision(requested, cuda=False, cpu_bf16=native)
    assert mode == requested
    assert ("emulated" in note) == (requested == "bf16" and not native)


def test_auto_is_the_default_and_the_presets_leave_it():
    assert Config().mixed_precision == "auto"
    assert "mixed_precision" not in PRESETS["cpu"]  # the cpu preset: bf16 on AMX, fp32 on CPUs without bf16
    assert PRESETS["tiny"]["mixed_precision"] == "no"  # tests: fp32 everywhere, the same numbers on every CPU


def test_native_bf16_agrees_with_the_kernels_cpu_flags():
    """The probe (torch's own x86 checks, else the kernel's flags) says what /proc/cpuinfo says on this machine."""
    text = Path("/proc/cpuinfo").read_text()
    flags = set()
    for line in text.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags.update(line.split(":", 1)[1].split())
    assert flags, "no CPU flags in /proc/cpuinfo"
    assert cpu_has_native_bf16() == bool(flags & {"amx_bf16", "avx512_bf16", "bf16"})
    if not torch.cuda.is_available():
        assert resolve_precision("auto")[0] == ("bf16" if cpu_has_native_bf16() else "no")


@pytest.mark.slow
def test_train_records_the_mode_auto_picked(tmp_path):
    """config.json holds the resolved mode, so --resume and bench/sweep.py's report rescoring use what ran."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--mixed-precision", "auto",
                           "--iterations", "1", "--eval-data", "none", "--output-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected, note = resolve_precision("auto")
    assert json.loads((out / "config.json").read_text())["mixed_precision"] == expected
    assert note in proc.stdout + proc.stderr


@pytest.mark.slow
def test_precision_bench_times_both_modes(tmp_path):
    out = tmp_path / "precision.json"
    bench = load_bench("precision")
    result = bench.main(["--quick", "--json-out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["mode"] for r in result["train"]] == ["bf16", "no"]
    for r in result["train"]:
        assert r["iterations"] == 1 and r["iteration_s"] > 0 and r["update_s"] > 0 and r["seeding_s"] > 0
    assert set(result["matmul"]) == {"bf16", "no"} and min(result["matmul"].values()) > 0
    assert result["auto"] == ("bf16" if cpu_has_native_bf16() else "no")
    assert result["bf16_over_fp32_iteration"] > 0

"""bf16 autocast against fp32 on this machine's CPU: what `--mixed-precision auto` picks here, and what it buys.

    python bench/precision.py                           # cpu preset, 1 iteration per mode: ~4 min with native
                                                        # bf16 (AMX / AVX512-BF16), ~10 min without
    python bench/precision.py --iterations 2 --json-out precision.json
    python bench/precision.py --quick                   # tiny random model: a smoke check, seconds

Two parts, each mode in turn (bf16 autocast, then fp32):
  1. a matmul loop at the shape of SmolLM2-135M's MLP up-projection on a 64-token batch ([64x576] @ [576x1536]),
     GFLOP/s over a few seconds: what the hardware does with each dtype;
  2. the real trainer, ``train.py --preset cpu --mixed-precision MODE --iterations N --eval-data none`` in a fresh
     process, with seconds per phase read from its metrics.jsonl (seeding, propose, solve, update, iteration).
Without native bf16, oneDNN emulates bf16 through fp32 and autocast is slower than fp32, not faster; `auto`
(the default) then trains in fp32. Run it alone on the machine: a second CPU-bound job changes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azero.distributed import cpu_has_native_bf16, resolve_precision  # noqa: E402

PHASES = ("propose", "solve", "update", "iteration")


def matmul_gflops(dtype: torch.dtype, shape: tuple[int, int, int], seconds: float) -> float:
    """GFLOP/s of ``a @ b`` in ``dtype`` (best of a warm loop; the first calls pick oneDNN kernels)."""
    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(5):
        a @ b
    calls, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for _ in range(20):
            a @ b
        calls += 20
    return 2 * m * k * n * calls / elapsed / 1e9


def train_seconds(mode: str, preset: str, iterations: int, work: Path) -> dict:
    """One fresh ``train.py`` run in ``mode``: seconds of seeding and of each phase per iteration (mean)."""
    out = work / f"run-{mode}"
    cmd = [sys.executable, str(ROOT / "train.py"), "--preset", preset, "--mixed-precision", mode,
           "--iterations", str(iterations), "--eval-data", "none", "--checkpoint-every", "0", "--output-dir", str(out)]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "time/iteration" in r]
    seeding = next((r["time/seeding"] for r in rows if "time/seeding" in r), None)
    result = {"mode": mode, "seeding_s": seeding, "wall_s": time.time() - t0, "iterations": len(steps),
              "threads": sorted({r.get("perf/threads") for r in steps if r.get("perf/threads") is not None})}
    for phase in PHASES:
        result[f"{phase}_s"] = sum(r[f"time/{phase}"] for r in steps) / len(steps)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=1, help="self-play iterations per mode (after seeding)")
    p.add_argument("--modes", default="bf16,no", help="--mixed-precision modes to time, in order")
    p.add_argument("--matmul-seconds", type=float, default=5.0)
    p.add_argument("--quick", action="store_true", help="tiny random model and a short matmul: a smoke check")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args(argv)
    preset = "tiny" if args.quick else "cpu"
    shape = (8, 64, 128) if args.quick else (64, 576, 1536)
    seconds = 0.2 if args.quick else args.matmul_seconds
    modes = args.modes.split(",")
    dtypes = {"bf16": torch.bfloat16, "no": torch.float32, "fp16": torch.float16}

    auto, why = resolve_precision("auto", cuda=False)  # this bench times the CPU, whatever else the machine has
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}")
    print(f"# {why}")
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "auto": auto, "native_bf16": cpu_has_native_bf16(),
              "capability": torch.backends.cpu.get_cpu_capability(), "preset": preset, "matmul": {}, "train": []}
    for mode in modes:
        gflops = matmul_gflops(dtypes[mode], shape, seconds)
        result["matmul"][mode] = gflops
        print(f"matmul {shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]} {mode:>4}: {gflops:8.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            print(f"train.py --preset {preset} --mixed-precision {mode} --iterations {args.iterations} ...", flush=True)
            result["train"].append(train_seconds(mode, preset, args.iterations, Path(tmp)))
    print("\n| mode | seeding s | " + " | ".join(f"{ph} s" for ph in PHASES) + " | threads |")
    print("|---|---|" + "---|" * len(PHASES) + "---|")
    for r in result["train"]:
        print(f"| {r['mode']} | {r['seeding_s']:.1f} | " + " | ".join(f"{r[f'{ph}_s']:.1f}" for ph in PHASES)
              + f" | {','.join(str(t) for t in r['threads'])} |")
    by_mode = {r["mode"]: r for r in result["train"]}
    if "bf16" in by_mode and "no" in by_mode:
        ratio = by_mode["bf16"]["iteration_s"] / by_mode["no"]["iteration_s"]
        result["bf16_over_fp32_iteration"] = ratio
        print(f"\nbf16 autocast / fp32, seconds per iteration: {ratio:.2f}; auto picks {auto} here")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

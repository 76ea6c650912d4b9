"""CPU contention: how much slower a run gets beside another CPU-bound process, before and after the fix.

A *workload* runs alone and beside a *competitor*, with the trainer's thread handling off (``before``: torch's
defaults, AZERO_THREADS=off) or on (``after``: azero.cpu's short OpenMP spin + thread governor):

    python bench/contention.py --workload matmul                 # ~2 min: the bf16 [64x576]@[576x1536] loop
    python bench/contention.py --workload train --iterations 2   # the cpu preset, s/iteration; ~30+ min
    python bench/contention.py --workload train --train-args "--preset tiny --iterations 20" --competitors none,spin

Competitors: ``none``; ``spin``: one pure-Python busy loop (one core, like a compiler or a test run);
``matmul``: the same matmul loop as a separate process with torch's default threads (another torch job,
which itself busy-waits). The competitor starts first and runs until the workload ends; its rate while the
workload ran is reported too (a fix must not just take the CPU from the other process).
Run it alone on the machine (``flock /work/heavy.lock python bench/contention.py ...``): the point is to
control what else runs. It prints the load average and the busiest other processes at the start of each case.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The matmul loop: the shape of SmolLM2-135M's MLP up-projection on a 64-token batch, in bf16 like the
# cpu preset. ``--governed`` makes it behave like the trainer (azero.cpu), polling between chunks of work.
MATMUL = r"""
import os, sys, time
governed = sys.argv[1] == "governed"
if governed:
    from azero.cpu import prepare_openmp
    prepare_openmp()
import torch
from azero.cpu import ThreadGovernor
gov = ThreadGovernor(say=lambda m: print(m, file=sys.stderr, flush=True)) if governed else None
a, b = torch.randn(64, 576, dtype=torch.bfloat16), torch.randn(576, 1536, dtype=torch.bfloat16)
seconds, out = float(sys.argv[2]), sys.argv[3]
t0 = last = time.perf_counter(); n = 0
with open(out, "w") as f:
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            a @ b
        n += 50
        if gov is not None:
            gov.poll()
        now = time.perf_counter()
        if now - last >= 0.5:
            f.write(f"{time.time()} {n}\n"); f.flush(); last = now
"""

SPIN = "import time\nt = time.time() + float(__import__('sys').argv[1])\nwhile time.time() < t: pass\n"


def env_for(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
                        "AZERO_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    if mode == "before":
        env["AZERO_THREADS"] = "off"
    return env


def start_competitor(kind: str, log: Path):
    if kind == "none":
        return None
    if kind == "spin":
        cmd = [sys.executable, "-c", SPIN, "100000"]
    else:  # another torch job with torch's defaults (it busy-waits too)
        cmd = [sys.executable, "-c", MATMUL, "plain", "100000", str(log)]
    proc = subprocess.Popen(cmd, env=env_for("before"), cwd=ROOT)
    time.sleep(3)  # let it reach its steady state
    return proc


def rate(log: Path, t0: float, t1: float) -> float | None:
    """Iterations per second of a matmul loop between wall times t0 and t1, from its progress file."""
    try:
        pts = [tuple(map(float, line.split())) for line in log.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return None
    inside = [p for p in pts if t0 <= p[0] <= t1]
    if len(inside) < 2:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def snapshot() -> str:
    load = os.getloadavg()
    ps = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout.splitlines()
    top = [line.strip()[:110] for line in ps[1:5]]
    return f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; top: " + " | ".join(top)


def run_case(args, mode: str, competitor: str, work: Path) -> dict:
    tag = f"{mode}-{competitor}"
    comp_log = work / f"{tag}.competitor"
    print(f"\n## {tag}: {snapshot()}", flush=True)
    comp = start_competitor(competitor, comp_log)
    t0 = time.time()
    try:
        if args.workload == "matmul":
            log = work / f"{tag}.matmul"
            subprocess.run([sys.executable, "-c", MATMUL, "governed" if mode == "after" else "plain",
                            str(args.seconds), str(log)], env=env_for(mode), cwd=ROOT, check=True)
            t1 = time.time()
            result = {"it/s": rate(log, t0 + 1, t1)}  # the first second: thread start-up and governor's first window
        else:
            out = work / tag
            cmd = [sys.executable, str(ROOT / "train.py"), *shlex.split(args.train_args), "--output-dir", str(out)]
            if args.iterations:
                cmd += ["--iterations", str(args.iterations)]
            proc = subprocess.run(cmd, env=env_for(mode), cwd=ROOT, capture_output=True, text=True)
            t1 = time.time()
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            its = [r["time/iteration"] for r in rows if "time/iteration" in r]
            seeding = [r["time/seeding"] for r in rows if "time/seeding" in r]
            threads = [r.get("perf/threads") for r in rows if "time/iteration" in r]
            result = {"s/iteration": its, "mean s/it": sum(its) / len(its), "seeding s": seeding[0] if seeding else None,
                      "threads": threads, "wall s": t1 - t0}
            print("".join(line + "\n" for line in (proc.stdout + proc.stderr).splitlines()
                          if line.startswith(("cpu:", "WARNING: cpu"))),
                  end="")
    finally:
        if comp is not None:
            comp.terminate()
            comp.wait()
    if competitor == "matmul":
        result["competitor it/s"] = rate(comp_log, t0 + 1, t1)
    print(f"{tag}: {result}", flush=True)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=("matmul", "train"), default="matmul")
    p.add_argument("--train-args", default="--preset cpu --eval-data none --seed-rounds 0 --checkpoint-every 0 --no-plot",
                   help="train.py flags of the train workload (--output-dir is added)")
    p.add_argument("--iterations", type=int, default=0, help="override --iterations of the train workload")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each matmul run")
    p.add_argument("--modes", default="before,after")
    p.add_argument("--competitors", default="none,spin,matmul")
    p.add_argument("--competitor-alone", action="store_true", help="also time the matmul competitor alone")
    p.add_argument("--repeats", type=int, default=1, help="rounds; the mode order alternates (ABAB), medians reported")
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, affinity {sorted(os.sched_getaffinity(0))}; {time.strftime('%Y-%m-%d %H:%M')}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
        work = Path(tmp)
        if args.competitor_alone:
            log = work / "alone.matmul"
            t0 = time.time()
            subprocess.run([sys.executable, "-c", MATMUL, "plain", str(args.seconds), str(log)], env=env_for("before"),
                           cwd=ROOT, check=True)
            results["competitor alone"] = [{"it/s": rate(log, t0 + 1, time.time())}]
            print(f"competitor alone: {results['competitor alone'][0]}")
        modes = args.modes.split(",")
        for round_ in range(args.repeats):
            for competitor in args.competitors.split(","):
                for mode in modes if round_ % 2 == 0 else modes[::-1]:
                    results.setdefault(f"{mode}-{competitor}", []).append(run_case(args, mode, competitor, work))
    key = "it/s" if args.workload == "matmul" else "mean s/it"
    print(f"\n| case | {'it/s' if args.workload == 'matmul' else 's/iteration'} (median [min-max] of {args.repeats})"
          " | competitor it/s (median) |")
    print("|---|---|---|")
    for tag, runs in results.items():
        print(f"| {tag} | {_summary([r.get(key) for r in runs])} | {_summary([r.get('competitor it/s') for r in runs])} |")


def _summary(values: list) -> str:
    values = sorted(v for v in values if v is not None)
    if not values:
        return ""
    mid = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    return f"{mid:.1f}" + (f" [{values[0]:.1f}-{values[-1]:.1f}]" if len(values) > 1 else "")


if __name__ == "__main__":
    main()

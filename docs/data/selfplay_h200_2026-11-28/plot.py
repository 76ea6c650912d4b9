"""Draw section 28: the default batch on an H200, every role at temperature 1.0 (t10) and the pull toward longer
answers (dig, `--output-digits-coef 1.0`), 2 seeds each, against the paper's settings on an H100 (the 2026-11-26
evidence's two seeds and section 17's base run). Panels: (a) the real arithmetic_eval copy every 5 iterations;
(b) digits of the largest |output| of the valid deduction proposals; (c) the solver's accuracy on its own
two-digit deduction tasks; (b) and (c) as 3-iteration moving means. The 2026-11-26 runs predate the curriculum
metrics, so they appear in (a) only. Run from the repo root: python docs/data/selfplay_h200_2026-11-28/plot.py"""
import gzip
import json
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

D = Path(__file__).parent
EVIDENCE = D.parents[2].parent / "shared" / "evidence" / "2026-11-26-h100-smollm2"  # beside the checkout, if there
EVAL = "eval/arithmetic_eval/overall"
PANELS = [("curriculum/propose_deduction/result_digits", "(b) deduction proposals: result digits"),
          ("curriculum/propose_deduction/solve_rate_by_digits/2", "(c) solver on its own two-digit deduction tasks")]
RUNS = {  # label: (metrics file, line style)
    **{f"dig seed {s}": (D / f"dig_seed{s}.metrics.jsonl.gz", dict(color="tab:green", lw=2, alpha=(1, .5)[s]))
       for s in (0, 1)},
    **{f"t10 seed {s}": (D / f"t10_seed{s}.metrics.jsonl.gz", dict(color="tab:red", lw=2, alpha=(1, .5)[s]))
       for s in (0, 1)},
    "base seed 0, s. 17 (H100)": (D.parent / "selfplay_h100_nov_2026-11-27" / "base_seed0.metrics.jsonl.gz",
                                  dict(color="tab:blue", ls="--")),
    **{f"base seed {s}, 2026-11-26 (H100)": (EVIDENCE / f"main_s{s}.metrics.jsonl",
                                             dict(color="tab:blue", ls=":", alpha=(1, .6)[s])) for s in (0, 1)},
}


def rows(path: Path) -> list[dict]:
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def moving(records: list[dict], key: str, k: int = 3) -> tuple[list[int], list[float]]:
    pts = [(r["iteration"], r[key]) for r in records if r.get(key) is not None and r[key] == r[key]]
    return [x for x, _ in pts[k - 1:]], [sum(y for _, y in pts[i - k + 1:i + 1]) / k for i in range(k - 1, len(pts))]


fig, ax = plt.subplots(1, 3, figsize=(16, 4.4))
for label, (path, style) in RUNS.items():
    if not path.exists():  # the 2026-11-26 evidence lies outside the repo
        print(f"skipped {label}: no {path}")
        continue
    records = rows(path)
    evals = {r["iteration"]: r[EVAL] for r in records if EVAL in r}  # one point per iteration
    ax[0].plot(list(evals), list(evals.values()), marker="o", ms=3, label=label, **style)
    for a, (metric, _) in zip(ax[1:], PANELS):
        a.plot(*moving(records, metric), label=label, **style)
ax[0].axhline(0.495, color="grey", lw=0.8)
ax[0].set_title("(a) real copy, overall (untrained 0.495)")
for a, (_, title) in zip(ax[1:], PANELS):
    a.set_title(title)
for a in ax:
    a.set_xlabel("iteration")
    a.grid(alpha=0.3)
ax[0].legend(fontsize=7)
fig.suptitle("Default batch, SmolLM2-135M: dig and t10 on an H200 (4 runs on the card), the paper's settings on an H100")
fig.tight_layout()
fig.savefig(D / "curves.png", dpi=110)
print(f"wrote {D / 'curves.png'}")

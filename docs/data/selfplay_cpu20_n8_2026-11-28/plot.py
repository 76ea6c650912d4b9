"""Draw section 23: eight learnability rollouts per proposal (n8, 2 seeds, 20 iterations) against the cpu preset's
four. Panels: (a) the proposer's expected reward as a function of a task's true solve rate q, for n = 4 and n = 8
(worked out, not measured: the reward is 1 - p when 0 < p < 1 and 0 at p = 0 or 1, with p the share of n sampled
answers that are right, so E = (1 - q) - (1 - q)^n); (b) the built-in eval (tuning set) every 10 iterations; (c) the
solver's accuracy on its deduction tasks in the solve pass (B tasks, new proposals first, topped up from the
buffer; one answer per task: the same measurement for every arm, unlike the learnable share, which n itself
moves; 5-iteration mean). Run from the repo root:
python docs/data/selfplay_cpu20_n8_2026-11-28/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

D = Path(__file__).parent
DATA = D.parent
S9, S21 = DATA / "selfplay_cpu60_2026-11-26", DATA / "selfplay_cpu30_digits_2026-11-28"
EVAL, ACC = "eval/arithmetic_eval/overall", "tasks/solve_deduction/accuracy"
RUNS = {
    "n8 seed 0": (D / "n8_seed0.metrics.jsonl.gz", dict(color="tab:green", lw=2)),
    "n8 seed 1": (D / "n8_seed1.metrics.jsonl.gz", dict(color="tab:olive", lw=2)),
    "preset seed 0 (s. 9)": (S9 / "nov_seed0.metrics.jsonl.gz", dict(color="tab:blue", ls="--")),
    "preset seed 1 (s. 9)": (S9 / "nov_seed1.metrics.jsonl.gz", dict(color="tab:cyan", ls="--")),
    **{f"digits seed {s} (s. 21)": (S21 / f"dig_seed{s}.metrics.jsonl.gz", dict(color="tab:red", alpha=.35))
       for s in range(3)},
}
LAST = 20  # iterations compared

fig, ax = plt.subplots(1, 3, figsize=(16, 4.2))
q = np.linspace(0, 1, 201)
for n, style in ((4, dict(color="tab:blue", ls="--")), (8, dict(color="tab:green", lw=2))):
    e = (1 - q) - (1 - q) ** n
    ax[0].plot(q, e, label=f"n = {n}: peak at q = {q[e.argmax()]:.2f}", **style)
ax[0].set(xlabel="true solve rate q of a proposed task", ylabel="expected learnability reward",
          title="(a) what the proposer is paid for (worked out)")
for label, (path, style) in RUNS.items():
    rows = [json.loads(l) for l in gzip.open(path, "rt") if json.loads(l)["iteration"] <= LAST]
    ev = [(r["iteration"], r[EVAL]) for r in rows if EVAL in r]
    ax[1].plot(*zip(*ev), marker="o", ms=3, label=label, **style)
    acc = [(r["iteration"], r[ACC]) for r in rows if ACC in r and r[ACC] == r[ACC]]
    k = 5  # moving average: one iteration has only 8 deduction tasks
    ax[2].plot([x for x, _ in acc[k - 1:]], [np.mean([y for _, y in acc[i - k + 1:i + 1]]) for i in range(k - 1, len(acc))],
               label=label, **style)
ax[1].set(xlabel="iteration", ylabel="accuracy", title="(b) built-in eval (tuning set)")
ax[2].set(xlabel="iteration", ylabel="accuracy", title="(c) solver on its own deduction tasks (5-it mean)")
for a in ax:
    a.grid(alpha=.3)
    a.legend(fontsize=7)
fig.tight_layout()
fig.savefig(D / "curves.png", dpi=110)
print("wrote", D / "curves.png")

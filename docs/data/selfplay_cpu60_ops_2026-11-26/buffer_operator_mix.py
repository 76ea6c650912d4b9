"""Operator mix of the tasks in each run's deduction buffer (its last checkpoint), by the iteration they were added
in (buffer order is time order; `buffer/deduction/size` in metrics.jsonl maps a position to its iteration). For
runs made before `curriculum/propose_{task}/uses_{op}` was logged.

    python buffer_operator_mix.py /work/runs/cpu60/base/seed0 /work/runs/cpu60/nov/seed0 ... [--json-out F]

--json-out writes {run: {iteration: {"n": tasks added, op: share using it}}} for plotting.
"""
import bisect, json, sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from azero.tasks import parse_program  # noqa: E402
OPS = ("+", "-", "*", "//", "/", "%")
def ops(program):
    return set(parse_program(program).operator_set.split())  # binary operators only (not a literal's minus sign)
args = sys.argv[1:]
json_out = args.pop(args.index("--json-out") + 1) if "--json-out" in args else None
args = [a for a in args if a != "--json-out"]
per_iteration = {}
for run in args:
    st = torch.load(f"{run}/checkpoint/trainer_state.pt", weights_only=False)
    tasks = st["buffers"]["deduction"]["tasks"]
    rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
    size = {r["iteration"]: r["buffer/deduction/size"] for r in rows if "buffer/deduction/size" in r}
    its = sorted(size); ends = [size[i] for i in its]
    def it_of(pos):
        k = bisect.bisect_right(ends, pos); return its[k] if k < len(its) else its[-1] + 1
    print(run, "tasks", len(tasks), "last it", st["iteration"])
    wins = [(0, 0), (1, 10), (11, 20), (21, 30), (31, 40), (41, 50), (51, 60), (61, 99)]
    print(f"  {'iters':>7} {'n':>4} " + " ".join(f"{o:>5}" for o in OPS) + "  (share of tasks using the operator)")
    for lo, hi in wins:
        w = [t for p, t in enumerate(tasks) if lo <= it_of(p) <= hi]
        if not w: continue
        print(f"  {lo:>3}-{hi:<3} {len(w):>4} " + " ".join(f"{sum(o in ops(t['program']) for t in w)/len(w):>5.2f}" for o in OPS))
    by_it = {}
    for pos, t in enumerate(tasks):
        by_it.setdefault(it_of(pos), []).append(ops(t["program"]))
    per_iteration[run] = {it: {"n": len(u), **{o: sum(o in x for x in u) / len(u) for o in OPS}} for it, u in sorted(by_it.items())}
if json_out:
    Path(json_out).write_text(json.dumps(per_iteration))

"""Windowed means of self-play metrics for sections 11-14: python windows.py [--last-from N] METRICS.jsonl[.gz] ...
The last window is iterations N (default 56) to the end; sections 13-14 (51-59-iteration runs) use --last-from 46."""
import gzip, json, sys
KEYS = {"result digits": "curriculum/propose_deduction/result_digits", "operators": "curriculum/propose_deduction/operators",
        "p mid": "curriculum/propose_deduction/p_mid", "KL": "loss/kl", "entropy": "loss/entropy",
        "solver seqs": None, "ded solve acc": "tasks/solve_deduction/accuracy", "s/it": "time/iteration",
        "update s": "time/update", "uses +": "curriculum/propose_deduction/uses_add", "uses *": "curriculum/propose_deduction/uses_mul"}
SOLVE = [f"trr/solve_{k}/count" for k in ("deduction", "abduction", "induction")]
args = sys.argv[1:]
last_from = 56
if args[:1] == ["--last-from"]:
    last_from, args = int(args[1]), args[2:]
for path in args:
    op = gzip.open if path.endswith(".gz") else open
    last = {}
    for l in op(path, "rt"):
        r = json.loads(l); last.setdefault(r["iteration"], {}).update(r)
    rows = [last[i] for i in sorted(last) if i > 0 and "loss/kl" in last[i]]
    end = rows[-1]["iteration"]
    wins = [(1, 5), (16, 20), (36, 40), (last_from, end)]
    print(path, "end", end)
    for name, k in KEYS.items():
        out = []
        for a, b in wins:
            vals = [sum(r.get(s, 0) for s in SOLVE) if k is None else r.get(k) for r in rows if a <= r["iteration"] <= b]
            vals = [v for v in vals if v is not None]
            out.append(f"{sum(vals)/len(vals):.3g}" if vals else "-")
        print(f"  {name:14s}", " / ".join(out))

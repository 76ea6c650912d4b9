"""Accuracy by the eval prompt's operator (reporting only: nothing here feeds training), per model in a
`bench/evaluate.py --items-out` file, and items gained / lost against the file's first model.

    python accuracy_by_operator.py items_cpu60_bf16.jsonl.gz
"""
import collections, gzip, json, re, sys
rows = [json.loads(l) for l in (gzip.open if sys.argv[1].endswith(".gz") else open)(sys.argv[1], "rt")]
by = collections.defaultdict(dict)
for r in rows: by[r["model"]][r["index"]] = r
models = list(by); ref = by[models[0]]
def op(p):
    m = re.search(r"\d\s*([+\-*/])\s*\d", p); return m.group(1) if m else "?"
ops = sorted({op(r["prompt"]) for r in ref.values()})
n = {o: sum(op(r["prompt"]) == o for r in ref.values()) for o in ops}
print(f"{'model':<45} " + " ".join(f"{o+' ('+str(n[o])+')':>9}" for o in ops) + "   gained/lost vs " + models[0])
for m in models:
    acc = {o: sum(r["correct"] for r in by[m].values() if op(r["prompt"]) == o) / n[o] for o in ops}
    g = sum(by[m][i]["correct"] and not ref[i]["correct"] for i in ref); l = sum(ref[i]["correct"] and not by[m][i]["correct"] for i in ref)
    print(f"{m[-45:]:<45} " + " ".join(f"{acc[o]:>9.3f}" for o in ops) + f"   +{g} -{l}")

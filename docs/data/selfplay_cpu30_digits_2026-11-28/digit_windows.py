"""Mean proposal result digits and p_mid per 10-iteration window, per run (metrics.jsonl or .gz)."""
import gzip, json, sys, math
def rows(path):
    op = gzip.open if path.endswith('.gz') else open
    return [json.loads(l) for l in op(path, 'rt')]
for path in sys.argv[1:]:
    ms = [m for m in rows(path) if m.get('iteration', 0) >= 1 and 'curriculum/propose_deduction/result_digits' in m]
    out = []
    for lo in (1, 11, 21):
        w = [m for m in ms if lo <= m['iteration'] < lo + 10]
        def mean(k):
            v = [m[k] for m in w if k in m and m[k] == m[k]]
            return sum(v) / len(v) if v else float('nan')
        out.append(f"it{lo}-{lo+9}: ded digits {mean('curriculum/propose_deduction/result_digits'):.2f} "
                   f"abd {mean('curriculum/propose_abduction/result_digits'):.2f} p_mid {mean('curriculum/propose_deduction/p_mid'):.2f}")
    print(path.split('/')[-2] if 'metrics.jsonl' == path.split('/')[-1] else path.split('/')[-1], ' | '.join(out))

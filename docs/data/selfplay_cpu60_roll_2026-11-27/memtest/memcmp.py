import json
def load(p):
    d = {}
    for l in open(p):
        r = json.loads(l); d.setdefault(r["iteration"], {}).update(r)
    return d
a = load("/work/runs/cpu60roll/roll/seed0/metrics.jsonl"); b = load("/work/runs/memtest/run/metrics.jsonl")
print("it  kl(roll) kl(mmap)  peakGB roll / mmap   s/it roll / mmap")
for it in sorted(b):
    if it == 0 or "loss/kl" not in b[it]: continue
    print(it, f"{a[it]['loss/kl']:.5f} {b[it]['loss/kl']:.5f}  {a[it]['mem/peak_gb']:.2f} / {b[it]['mem/peak_gb']:.2f}   {a[it]['time/iteration']:.1f} / {b[it]['time/iteration']:.1f}")

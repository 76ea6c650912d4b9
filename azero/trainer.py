"""The plumbing around train.py's loop: Accelerate and seeding, models and optimizer (restored on resume),
evaluation, checkpoints, signals. The algorithm is elsewhere (selfplay.py, rl/loss.py, rl/advantages.py);
only this module and train.py touch the ``Accelerator``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import resource
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import numpy as np
import torch

from azero import checkpoint, evaluation
from azero.buffers import TaskBuffer
from azero.config import Config, LrDecay
from azero.distributed import generation_model
from azero.selfplay import Context
from azero.tasks import TASK_KINDS


def make_accelerator(cfg: Config):
    """Accelerate for this launch (engine from ``accelerate launch --config_file``), refused at start if the loop
    cannot keep its semantics under it (azero/engine.py)."""
    from azero.distributed import make_accelerator as accelerator_for

    return accelerator_for(cfg.mixed_precision, cfg.grad_clip)


def printer(accelerator) -> Callable[[object], None]:
    """Print on the main process only, above the progress bar."""
    from tqdm.auto import tqdm

    return (lambda msg: tqdm.write(str(msg))) if accelerator.is_main_process else (lambda msg: None)


def describe(cfg: Config, resume_dir: str | None, world: int) -> str:
    """The resolved config and the batch arithmetic, printed at start (and asserted: a wrong split is silent)."""
    per_rank = cfg.batch_size // world
    n_seq = 6 * per_rank
    assert per_rank * world == cfg.batch_size and n_seq * world == 6 * cfg.batch_size
    return (f"config ({'resumed from ' + resume_dir if resume_dir else 'new run'}):\n"
            + json.dumps(dataclasses.asdict(cfg), indent=1) + "\n"
            f"batch arithmetic: {world} process(es) x [3 task types x {per_rank} proposals + up to "
            f"{3 * per_rank * cfg.learnability_rollouts} learnability rollouts + 3 x {per_rank} solver tasks]"
            f" -> {n_seq} trained sequences per rank ({6 * cfg.batch_size} in all) in "
            f"micro-batches of <= {cfg.micro_batch_size} sequences and <= {cfg.micro_batch_tokens or 'any'} padded "
            f"tokens (at least {math.ceil(n_seq / cfg.micro_batch_size)}); one optimizer step")


def build_context(cfg: Config, accelerator, resume_dir: str | None, say) -> tuple[Context, int]:
    """Seeds, tokenizer, policy, frozen reference, optimizer, scheduler and buffers, restored from ``resume_dir``
    when given. Returns the context and the iteration to continue after (0 for a new run)."""
    from azero.distributed import engine_name, prepare_reference
    from azero.models import AdaptersOff, add_lora, frozen_copy, load_policy, load_tokenizer
    from azero.rl.sampling import make_engine

    if resume_dir:  # before the model loads: same process count and engine as the run that wrote it
        checkpoint.check_resumable(resume_dir, accelerator)
    # torch/numpy/python differ per rank (ranks sample different completions); the task RNG is shared so
    # every rank builds the same prompts and solver batches from its identical buffers.
    rank = accelerator.process_index
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    torch.manual_seed(cfg.seed + rank)
    task_rng = random.Random(cfg.seed)

    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    policy = load_policy(cfg.model, tokenizer=tokenizer, seed=cfg.seed)
    # the reference holds the initial weights, also on resume: a frozen copy, or with LoRA the base itself
    ref_model = frozen_copy(policy) if cfg.kl_coef > 0 and not cfg.lora_r else None
    if cfg.lora_r:
        policy = add_lora(policy, cfg.lora_r, cfg.lora_alpha, cfg.lora_targets)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = make_optimizer(cfg, policy)
    decay_its = cfg.lr_decay_iterations or max(cfg.iterations - cfg.warmup_iterations, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, cfg.warmup_iterations, cfg.lr_decay, decay_its, cfg.lr_min_ratio))
    model, optimizer = accelerator.prepare(policy, optimizer)
    # saved and restored by Accelerate's state API, but stepped by the loop itself: prepare() would wrap it in an
    # AcceleratedScheduler that steps num_processes times per call
    accelerator.register_for_checkpointing(scheduler)
    if ref_model is not None:
        ref_model = prepare_reference(accelerator, ref_model)
    elif cfg.lora_r and cfg.kl_coef > 0:
        ref_model = AdaptersOff(accelerator.unwrap_model(model))
    say(f"engine: {engine_name(accelerator)} x {accelerator.num_processes} process(es)"
        + (f", LoRA r={cfg.lora_r} alpha={cfg.lora_alpha:g} on {cfg.lora_targets}: "
           f"{sum(p.numel() for p in policy.parameters() if p.requires_grad):,} trainable parameters" if cfg.lora_r else ""))
    buffers = {k: TaskBuffer(k, cfg.buffer_capacity, cfg.frontier_size) for k in TASK_KINDS}

    start = 0
    if resume_dir:
        state = checkpoint.restore(accelerator, resume_dir, model)  # weights, optimizer, scheduler, every rank's RNG
        for k in TASK_KINDS:
            buffers[k].load_state_dict(state["buffers"][k])
        task_rng.setstate(state["task_rng"])
        start = state["iteration"]
        say(f"RESUMED from {state['checkpoint_dir']} at iteration {start} (buffers: "
            + ", ".join(f"{k} {len(buffers[k])}" for k in TASK_KINDS) + ")")
    engine = make_engine(cfg.rollout_engine, policy, tokenizer, synced_gpus=cfg.synced_gpus,
                         memory_gb=cfg.rollout_memory_gb, cuda_graphs=cfg.cuda_graphs)
    return Context(cfg, accelerator, model, ref_model, tokenizer, optimizer, scheduler, buffers, task_rng,
                   engine=engine), start


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW, fused: one multi-tensor kernel. The default for-loop implementation costs 0.7-0.9 s a step for
    SmolLM2-135M on one CPU core, fused 0.25 s (bench/throughput.py)."""
    params = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def lr_factor(step: int, warmup: int, decay: LrDecay, decay_iterations: int, min_ratio: float) -> float:
    """The lr of the iteration after ``step`` optimizer steps, as a fraction of --lr: a linear warmup over
    ``warmup`` iterations, then constant (``none``) or a linear or cosine fall to ``min_ratio`` over
    ``decay_iterations``, where it stays. A pure function of the step, so a resumed run continues the same curve."""
    if step < warmup:
        return (step + 1) / warmup
    if decay == "none":
        return 1.0
    t = min((step - warmup) / decay_iterations, 1.0)  # 0 at the first iteration after warmup, 1 at the floor
    shape = 1.0 - t if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
    return min_ratio + (1.0 - min_ratio) * shape


def make_tracker(cfg: Config, accelerator, resume_iteration: int | None):
    from azero.tracking import Tracker

    tracker = Tracker(cfg.output_dir, dataclasses.asdict(cfg), enabled=accelerator.is_main_process,
                      use_wandb=cfg.wandb, wandb_project=cfg.wandb_project, run_name=Path(cfg.output_dir).name,
                      resume_iteration=resume_iteration)
    if accelerator.is_main_process:
        path = Path(cfg.output_dir) / "config.json"  # via a temp file: a crash never leaves half a config
        path.with_name("config.json.tmp").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        path.with_name("config.json.tmp").replace(path)
    return tracker


def evaluate(ctx: Context, items: list, iteration: int, say) -> dict:
    """Greedy accuracy on the eval set, overall and per tier, as ``eval/arithmetic_eval/...`` metrics."""
    if not items:
        return {}
    t = time.perf_counter()
    with ctx.accelerator.autocast(), generation_model(ctx.accelerator, ctx.model) as policy:  # gathered if sharded
        res = evaluation.evaluate_policy(policy, ctx.tokenizer, items, accelerator=ctx.accelerator,
                                         batch_size=ctx.cfg.eval_batch_size, max_new_tokens=ctx.cfg.eval_max_tokens,
                                         progress=ctx.accelerator.is_main_process)
    res = {f"eval/arithmetic_eval/{k}": v for k, v in res.items()}
    res["time/eval"] = time.perf_counter() - t
    say(f"eval @ {iteration}: " + ", ".join(f"{k.rsplit('/', 1)[1]} {v:.3f}" for k, v in res.items()
                                            if "/n/" not in k and not k.startswith("time")))
    return res


def save(ctx: Context, tracker, iteration: int, say) -> None:
    """A checkpoint of everything resume needs. Collective: every rank must call it."""
    from accelerate.utils import gather_object

    acc = ctx.accelerator
    if acc.num_processes > 1:  # ranks must hold identical weights and buffers; say so loudly if they ever diverge
        prints = gather_object([checkpoint.fingerprint(acc, ctx.model, ctx.buffers)])
        same = all(p == prints[0] for p in prints)
        tracker.log({"dist/world_size": acc.num_processes, "dist/ranks_identical": float(same)}, iteration)
        if not same:
            say(f"WARNING: ranks diverged at iteration {iteration}: {prints}")
    state = {"iteration": iteration, "config": dataclasses.asdict(ctx.cfg), "task_rng": ctx.task_rng.getstate(),
             "buffers": {k: ctx.buffers[k].state_dict() for k in TASK_KINDS}}
    checkpoint.save(acc, ctx.cfg.output_dir, model=ctx.model, trainer_state=state)
    say(f"checkpoint saved at iteration {iteration} -> {ctx.cfg.output_dir}/checkpoint")


def export(ctx: Context, say) -> None:
    """``OUTPUT_DIR/final/``: the policy as a plain Hugging Face folder (gathered, LoRA merged); optionally pushed.
    Collective: every rank must call it."""
    from azero.export import export_final, push_to_hub

    folder = export_final(ctx.accelerator, ctx.model, ctx.tokenizer, ctx.cfg.output_dir)
    say(f"final model -> {folder} (AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained)")
    if ctx.cfg.push_to_hub and ctx.accelerator.is_main_process:
        say(f"pushed to the hub: {push_to_hub(folder, ctx.cfg.push_to_hub)}")
    ctx.accelerator.wait_for_everyone()


def snapshot(ctx: Context, iteration: int, say) -> None:
    """``OUTPUT_DIR/snapshots/iteration-NNNN/``: the policy at this iteration as a plain Hugging Face folder, kept
    for good. Collective: every rank must call it."""
    from azero.export import export_final, snapshot_name

    folder = export_final(ctx.accelerator, ctx.model, ctx.tokenizer, ctx.cfg.output_dir, snapshot_name(iteration))
    say(f"snapshot at iteration {iteration} -> {folder}")


def any_rank(accelerator, *flags: bool) -> list[bool]:
    """Each flag true on every rank if it is true on any: ranks must take the same branch (saving is collective)."""
    from accelerate.utils import reduce

    summed = reduce(torch.tensor([float(f) for f in flags], device=accelerator.device), "sum")
    return (summed > 0).tolist()


@contextmanager
def stop_on_signal(say) -> Iterator[SimpleNamespace]:
    """SIGTERM / Ctrl-C set ``.signal`` (the loop checkpoints after the current iteration and stops); a second one
    aborts. The previous handlers come back on exit, as main() may be called from other code (tests, notebooks)."""
    stop = SimpleNamespace(signal=None)

    def on_signal(sig, frame):
        if stop.signal is not None:
            raise KeyboardInterrupt
        stop.signal = signal.Signals(sig).name
        say(f"{stop.signal} received: checkpointing after this iteration")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def signal_number(accelerator, name: str | None) -> int:
    """The number of the signal that stopped the run, agreed across ranks (one rank may have caught none)."""
    from accelerate.utils import reduce

    own = signal.Signals[name].value if name else 0
    agreed = int(reduce(torch.tensor([float(own)], device=accelerator.device), "max").item())
    return agreed or signal.SIGTERM.value


def cpu_governor(accelerator, say):
    """Adapts the CPU thread count to the cores other processes leave free, on CPU runs whose threads the user
    did not pin (azero/cpu.py); on GPU runs a stand-in that does nothing."""
    from azero.cpu import ThreadGovernor

    if accelerator.device.type != "cpu":
        return SimpleNamespace(poll=lambda force=False: None, metrics=lambda: {})
    return ThreadGovernor(say)


def heap_policy(accelerator, mode: str) -> Callable[[], object]:
    """CPU runs (``--cpu-heap``): "keep" makes glibc keep freed memory for reuse (azero/cpu.py
    ``keep_freed_memory``: faster, larger resident size) and returns a no-op; "trim" returns a function that hands
    the memory freed by a phase back to the OS (``heap_trimmer``), called at every phase boundary. Off CPU, or
    where the C library lacks these calls, a no-op."""
    from azero.cpu import heap_trimmer, keep_freed_memory

    if accelerator.device.type != "cpu":
        return lambda: None
    if mode == "keep":
        keep_freed_memory()
        return lambda: None
    return heap_trimmer() or (lambda: None)


def peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB

"""azero: Absolute Zero self-play for arithmetic (arXiv 2505.03335), as a small hand-written RL loop.

One model proposes deduction / abduction / induction tasks over integer arithmetic programs and solves
them; a Python verifier supplies ground truth; one combined REINFORCE++ step per iteration with six
per-(task, role) baselines (TRR++) and a KL penalty against a frozen reference copy.

Launch:
    python train.py --preset cpu --output-dir runs/cpu            # SmolLM2-135M on a laptop CPU, offline
    python train.py --preset tiny --iterations 2 --output-dir /tmp/t   # random tiny model, seconds
    accelerate launch train.py --output-dir runs/qwen               # Qwen2-0.5B-Instruct, 1 GPU
    accelerate launch --multi_gpu --num_processes 8 train.py --output-dir runs/qwen8
    python train.py --resume runs/qwen [--iterations 1000]         # continue a run exactly
    python train.py --config my.yaml --kl-coef 0.05                 # config file, CLI overrides it

Departures from the paper / official AZR code (each is a config field):
  * Programs are integer arithmetic expressions over a and b (no Python code, no executor); `/` is exact.
  * Induction uses 6 inputs (3 shown, 3 hidden), not 10 (5/5).
  * KL penalty against a frozen reference (k3 in the loss, beta 0.1); AZR uses none. --kl-coef 0 drops
    the reference model; --kl-in-reward folds k1 into per-token returns as in the REINFORCE++ paper.
  * Advantages are normalised per (task, role) over sequences (population std); AZR weights by tokens.
  * Solver tasks come from the same iteration's proposals (the paper's algorithm), not the previous
    step's (the code's one-step lag).
  * Buffers drop the oldest entry when full (FIFO); the official code stops adding at the cap.
  * Temperature 0.7 (paper 1.0), lr 5e-6 (paper 1e-6), entropy bonus 0 (paper 0.001).
  * The loss is aggregated by the global token count of the iteration (token-mean) across micro-batches
    and ranks, not a mean of micro-batch means.
  * One on-policy optimizer step per iteration (ratio 1, the clip idle), as the paper; --ppo-epochs N takes
    N PPO-clipped steps over the same rollouts, against the log-probs stored by the first.
"""

from __future__ import annotations

import sys
import time

from azero.cpu import prepare_openmp

prepare_openmp()  # before torch loads OpenMP: idle threads stop busy-waiting soon (azero/cpu.py says why)

from azero.config import PRESETS, Config, ConfigError, check_output_dir, load_eval_items, parse_config  # noqa: E402,F401
from azero.trainer import make_optimizer  # noqa: E402,F401  (bench/throughput.py builds its optimizer with it)


def main(argv: list[str] | None = None) -> dict:
    """Train; returns the last metrics (the final eval included). Bad configuration raises ConfigError; a run
    stopped by a signal raises SystemExit(128 + the signal's number) once its checkpoint is written."""
    from tqdm.auto import tqdm

    from azero.selfplay import run_iteration, seed_buffers
    from azero.distributed import optimizer_steps, resolve_precision
    from azero.trainer import (any_rank, build_context, cpu_governor, describe, evaluate, export, heap_policy,
                               make_accelerator, make_tracker, peak_memory_gb, printer, save, signal_number,
                               snapshot, stop_on_signal)
    from azero.tracking import claim_run_folder, plot_run

    # TRY NOT TO MODIFY: configuration is checked in full before anything heavy starts
    cfg, resume_dir = parse_config(argv, __doc__)
    cfg.mixed_precision, precision_note = resolve_precision(cfg.mixed_precision)  # config.json records the mode used
    accelerator = make_accelerator(cfg)
    cfg.check(accelerator.num_processes)  # batch sizes must split over the ranks
    check_output_dir(cfg)
    eval_items = load_eval_items(cfg)
    # last of the checks: --overwrite deletes the old run only once nothing else can refuse this one
    claim_run_folder(cfg.output_dir, resume_dir=resume_dir, overwrite=cfg.overwrite,
                     main_process=accelerator.is_main_process)
    say = printer(accelerator)
    say(describe(cfg, resume_dir, accelerator.num_processes))
    say(precision_note)
    say(f"eval set: {len(eval_items)} problems from {cfg.eval_data}")
    threads = cpu_governor(accelerator, say)  # CPU threads from the cores other processes leave free
    heap_hook = heap_policy(accelerator, cfg.cpu_heap)  # CPU: reuse freed memory (fast) or trim it (lean), RESULTS 16
    ctx, start = build_context(cfg, accelerator, resume_dir, say)
    threads.poll(force=True)  # the load beside model loading decides the threads of seeding; warns if oversubscribed
    tracker = make_tracker(cfg, accelerator, resume_iteration=start if resume_dir else None)

    final = {}
    with stop_on_signal(say) as stop:
        if start == 0:  # the baseline eval, then the seeding phase fills the buffers (no gradients)
            final = evaluate(ctx, eval_items, 0, say)
            t = time.perf_counter()
            seeding = seed_buffers(ctx, log=say)
            tracker.log({**final, **seeding, "time/seeding": time.perf_counter() - t}, 0)

        bar = tqdm(range(start + 1, cfg.iterations + 1), desc="self-play", disable=not accelerator.is_main_process,
                   initial=start, total=cfg.iterations)
        ctx.on_phase = lambda name: (threads.poll(), heap_hook(), bar.set_postfix_str(name, refresh=True))
        it, t_start, stopping = start, time.perf_counter(), False
        for it in bar:
            # ALGO LOGIC: one iteration (azero/selfplay.py): propose, validate, rollouts, solve, rewards, one step
            metrics, samples = run_iteration(ctx, it)

            over = cfg.time_limit_minutes > 0 and time.perf_counter() - t_start > 60 * cfg.time_limit_minutes
            out_of_time, stopping = any_rank(accelerator, over, stop.signal is not None)
            last = it == cfg.iterations or out_of_time
            if ctx.nonfinite_streak:
                say(f"iteration {it}: non-finite loss or gradient, step skipped ({ctx.nonfinite_streak} in a row)")
            if cfg.eval_every and it % cfg.eval_every == 0 or last:
                metrics.update(evaluate(ctx, eval_items, it, say))
            metrics["mem/peak_gb"] = peak_memory_gb()
            metrics.update(threads.metrics())
            metrics["optim/steps"] = optimizer_steps(accelerator, ctx.model, ctx.optimizer)  # the engine's own count
            tracker.log(metrics, it)
            tracker.log_samples(samples, it)
            say(tracker.summary_line(metrics, it, cfg.iterations))
            final.update(metrics)

            if ctx.nonfinite_streak >= cfg.max_nonfinite_steps:
                save(ctx, tracker, it, say)
                raise SystemExit(f"stopping: {ctx.nonfinite_streak} consecutive non-finite steps (lower --lr, check "
                                 f"the loss); checkpoint at {cfg.output_dir}/checkpoint")
            if stopping or (cfg.checkpoint_every and it % cfg.checkpoint_every == 0) or last:
                save(ctx, tracker, it, say)
            if cfg.snapshot_every and it % cfg.snapshot_every == 0:  # weights to score later; never resumed from
                snapshot(ctx, it, say)
            if accelerator.is_main_process and cfg.plot and ("eval/arithmetic_eval/overall" in metrics or last):
                plot_run(cfg.output_dir)
            if stopping:
                say(f"stopped by a signal at iteration {it}; continue with --resume {cfg.output_dir}")
                break
            if out_of_time:
                say(f"time limit of {cfg.time_limit_minutes} minutes reached after iteration {it}")
                break
        if it == start:  # nothing ran (e.g. --iterations 0 or a finished run resumed): still checkpoint
            save(ctx, tracker, it, say)
        export(ctx, say)  # OUTPUT_DIR/final/, a plain Hugging Face folder, at the end of every run
    tracker.finish()
    accelerator.wait_for_everyone()
    # checkpointed, unfinished: 128 + signal, as a shell reports a signal
    code = 128 + signal_number(accelerator, stop.signal) if stopping and it < cfg.iterations else 0
    accelerator.end_training()  # destroy the process group before exit: no rank tears down a group still in use
    if code:
        raise SystemExit(code)
    return final


if __name__ == "__main__":
    # Exit status: 0 finished (or stopped by --time-limit-minutes, checkpointed); 128 + N stopped by signal N after
    # its checkpoint (143 SIGTERM, 130 SIGINT); 2 bad configuration; 1 any other error, and an interrupt that
    # left no checkpoint of its own (a second Ctrl-C, or one before training started).
    try:
        main()
    except ConfigError as error:  # one line, no traceback: the message says what to do
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted before a checkpoint was written; --resume continues from the last one", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)

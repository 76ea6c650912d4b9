"""One self-play iteration, in the order things happen:

  propose -> validate -> learnability rollouts -> buffers -> solve -> rewards -> TRR++ advantages
  -> loss over micro-batches -> one optimizer step (``--ppo-epochs`` steps over the same rollouts)

plus the seeding phase that fills the buffers before training. Every generation phase is one batched
``generate`` call covering the three task types.

Multi-process: every rank holds identical buffers and an identical ``task_rng``, so all ranks build
the same global list of prompts and tasks and each takes its contiguous slice. New tasks, rewards and
token counts are gathered, so buffers, baselines and the loss normaliser are global.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
from accelerate.utils import gather, gather_object, reduce

from azero import curriculum
from azero.buffers import TaskBuffer, is_learnable, random_task, seed_tasks
from azero.config import Config
from azero.distributed import deepspeed_skipped, generation_model, micro_batch, steps_in_backward
from azero.models import training_attention
from azero.rl import advantages as adv
from azero.rl.batching import micro_batches, plan, unpad
from azero.rl.kl import kl_estimate
from azero.rl.logprobs import completion_logprobs
from azero.rl.loss import policy_loss
from azero.rl.sampling import HFEngine, Rollout
from azero.tasks import INVALID_PROPOSAL_REWARD, SOLVER_REWARD, TASK_KINDS, TASKS, Rejected, Task, Verdict
from azero.tasks.program import parse_program

ROLES = ("propose", "solve")


@dataclass
class Context:
    """Everything an iteration reads or updates. ``model`` is the Accelerate-wrapped policy."""
    cfg: Config
    accelerator: object
    model: torch.nn.Module
    ref_model: torch.nn.Module | None
    tokenizer: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    buffers: dict[str, TaskBuffer]
    task_rng: random.Random                       # identical on every rank
    nonfinite_streak: int = 0
    on_phase: Callable[[str], None] = lambda name: None   # e.g. shows the phase on the progress bar
    engine: object = None                         # rollout engine (rl/sampling.py); None = the embedded HF loop

    def __post_init__(self):
        if self.engine is None:
            self.engine = HFEngine(self.tokenizer, synced_gpus=self.cfg.synced_gpus)

    @property
    def policy(self):  # the bare model, for generation and no-grad passes
        return self.accelerator.unwrap_model(self.model)


@dataclass
class Proposal:
    kind: str
    prompt: str
    target: Task | None = None                    # induction: the program the proposer writes inputs for
    text: str = ""
    task: Task | None = None
    reason: str = ""                              # rejection reason when task is None
    solve_rate: float | None = None               # learnability estimate p
    reference_added: list[int] = field(default_factory=list)  # iteration each shown reference was added at
    reference_p: list[float] = field(default_factory=list)    # solve rate of each shown reference in the frontier


@dataclass
class Metrics:
    values: dict = field(default_factory=dict)
    on_phase: Callable[[str], None] = lambda name: None

    @contextmanager
    def timer(self, name: str):
        self.on_phase(name)
        t = time.perf_counter()
        yield
        self.values[f"time/{name}"] = self.values.get(f"time/{name}", 0.0) + time.perf_counter() - t

    def __setitem__(self, k, v):
        self.values[k] = v


# ----------------------------------------------------------------------------------------------------
# the iteration


def run_iteration(ctx: Context, iteration: int) -> tuple[dict, list[dict]]:
    cfg, m = ctx.cfg, Metrics(on_phase=ctx.on_phase)
    t0 = time.perf_counter()
    with m.timer("propose"):                                  # 1. B proposals per task type
        proposals, prop_rollout = propose(ctx, cfg.batch_size)
    with m.timer("validate"):                                 # 2. the verifier, never the model
        validate(proposals)
    with m.timer("learnability"):                             # 3. n solver rollouts per valid proposal
        learn = estimate_learnability(ctx, proposals)
    new, rates = share_new_tasks(ctx, proposals)              # every valid proposal, from every rank
    skeleton_seen = seen_counts(ctx, proposals, "skeleton")   # before the buffers take this iteration's tasks
    diversity_seen = skeleton_seen if cfg.diversity_key == "skeleton" else seen_counts(ctx, proposals, cfg.diversity_key)
    output_seen = seen_counts(ctx, proposals, "output")
    new_output = [n == 0 for n in output_seen]
    for kind in TASK_KINDS:
        ctx.buffers[kind].add(new[kind], iteration=iteration, solve_rates=rates[kind])
    with m.timer("solve"):                                    # 4. B solver tasks per type, new ones first
        solve_tasks, solve_rollout = solve(ctx, new)
    with m.timer("verify"):                                   # 5. rewards
        verdicts = [TASKS[t.kind].judge(t, text) for t, text in zip(solve_tasks, solve_rollout.texts)]
    prop_rewards = [proposer_reward(cfg, p, div, out) for p, div, out in zip(proposals, diversity_seen, output_seen)]
    solve_rewards = [SOLVER_REWARD[v] for v in verdicts]

    rewards = torch.tensor(prop_rewards + solve_rewards, dtype=torch.float32)
    task_idx = torch.tensor([TASK_KINDS.index(p.kind) for p in proposals] + [TASK_KINDS.index(t.kind) for t in solve_tasks])
    role_idx = torch.tensor([0] * len(proposals) + [1] * len(solve_tasks))
    seqs = unpad(prop_rollout.prompt_ids, prop_rollout.prompt_mask, prop_rollout.completion_ids, prop_rollout.completion_mask) \
        + unpad(solve_rollout.prompt_ids, solve_rollout.prompt_mask, solve_rollout.completion_ids, solve_rollout.completion_mask)
    if cfg.train_rollouts != "none":                          # optionally: learnability rollouts join the solve groups
        extra_seqs, extra_rewards, extra_tasks = trained_rollouts(learn, cfg.train_rollouts)
        seqs += extra_seqs
        rewards = torch.cat([rewards, extra_rewards])
        task_idx = torch.cat([task_idx, extra_tasks])
        role_idx = torch.cat([role_idx, torch.ones_like(extra_tasks)])

    with m.timer("update"):                                   # 6-7. TRR++ advantages, loss, optimizer step(s)
        update_metrics = update(ctx, seqs, rewards, task_idx, role_idx)
    m.values.update(update_metrics)

    counts = count_outcomes(proposals, [n == 0 for n in skeleton_seen], solve_tasks, verdicts, prop_rollout, solve_rollout)
    m.values.update(outcome_metrics(all_reduce_dict(ctx.accelerator, counts)))
    m.values.update({f"buffer/{kind}/size": len(ctx.buffers[kind]) for kind in TASK_KINDS})
    m.values.update(curriculum_metrics(ctx, proposals, new_output, iteration))
    m["time/iteration"] = time.perf_counter() - t0
    m["time/generate"] = m.values["time/propose"] + m.values["time/learnability"] + m.values["time/solve"]
    learn_tokens = learn.rollout.completion_mask.sum() if learn.rollout is not None else 0
    gen_tokens = reduce(torch.tensor(float(prop_rollout.completion_mask.sum() + solve_rollout.completion_mask.sum()
                                           + learn_tokens), device=ctx.accelerator.device), "sum").item()
    m["perf/generated_tokens_per_s"] = gen_tokens / max(m.values["time/generate"], 1e-9)
    m["perf/trained_tokens_per_s"] = m.values["perf/trained_tokens"] / max(m.values["time/update"], 1e-9)
    samples = sample_rows(ctx, proposals, solve_tasks, solve_rollout, verdicts, prop_rewards, solve_rewards)
    return m.values, samples


# ----------------------------------------------------------------------------------------------------
# phases


def my_slice(ctx: Context, items: list) -> list:
    """This rank's contiguous share of a globally built list (gather() concatenates in rank order)."""
    n, r = ctx.accelerator.num_processes, ctx.accelerator.process_index
    per = len(items) // n
    return items[r * per:(r + 1) * per]


def build_proposals(ctx: Context, per_kind: int, kinds=TASK_KINDS) -> list[Proposal]:
    """The global list of proposer prompts (identical on every rank): K references from the task's own
    buffer; induction also gets a target program drawn uniformly from the deduction + abduction buffers."""
    out = []
    for kind in kinds:
        rates = ctx.buffers[kind].frontier_rates()
        for _ in range(per_kind):
            refs, added = ctx.buffers[kind].references(ctx.cfg.references, ctx.task_rng, ctx.cfg.reference_frontier,
                                                       ctx.cfg.frontier_pick)
            target = sample_program_task(ctx) if kind == "induction" else None
            out.append(Proposal(kind, TASKS[kind].proposer_prompt(refs, target), target, reference_added=added,
                                reference_p=[rates[t] for t in refs if t in rates]))
    return out


def sample_program_task(ctx: Context) -> Task:
    """Uniform over the union of the two buffers, skipping variable-free programs (deduction allows
    `20 + 10`, but an induction task needs a program of a and b)."""
    ded, abd = ctx.buffers["deduction"], ctx.buffers["abduction"]
    for _ in range(32):
        pick = ded if ctx.task_rng.random() * (len(ded) + len(abd)) < len(ded) else abd
        task = pick.sample(1, ctx.task_rng)[0]
        if parse_program(task.program).variables:
            return task
    return random_task("deduction", ctx.task_rng, ctx.cfg.seed_inputs)


def propose(ctx: Context, per_kind: int, kinds=TASK_KINDS) -> tuple[list[Proposal], Rollout]:
    proposals = my_slice(ctx, build_proposals(ctx, per_kind, kinds))
    rollout = sample(ctx, [p.prompt for p in proposals], ctx.cfg.propose_max_tokens,
                     stop=union(TASKS[k].PROPOSE_STOP for k in kinds), temperature=role_temperature(ctx.cfg, "propose"))
    for p, text in zip(proposals, rollout.texts):
        p.text = text
    return proposals, rollout


def validate(proposals: list[Proposal]) -> None:
    for p in proposals:
        try:
            p.task = TASKS[p.kind].parse_proposal(p.text, p.target)
        except Rejected as e:
            p.reason = str(e)


@dataclass
class Learnability:
    """The learnability rollouts: row i * n + j is sample j for valid proposal i."""
    rollout: Rollout | None                       # None when nothing on this rank was valid
    proposals: list[Proposal]                     # the valid proposals, one per n rows
    verdicts: list[Verdict]                       # one per row


def estimate_learnability(ctx: Context, proposals: list[Proposal]) -> Learnability:
    """p = fraction of n solver rollouts (current, pre-update policy) that solve each valid proposal.
    In the paper these rollouts only feed the proposer reward; ``--train-rollouts`` also trains on them."""
    valid = [p for p in proposals if p.task is not None]
    n = ctx.cfg.learnability_rollouts
    prompts = [TASKS[p.kind].solver_prompt(p.task) for p in valid]
    if not prompts:  # nothing valid on this rank
        if ctx.cfg.synced_gpus:  # sharded weights: every rank must still step through one generate call
            sample(ctx, ["Calculate: 0 + 0 = "], ctx.cfg.solve_max_tokens, stop=["\n"])
        return Learnability(None, [], [])
    # --learnability-temperature: these rollouts only measure p (unless trained, and then validate keeps it equal)
    rollout = sample(ctx, prompts, ctx.cfg.solve_max_tokens, stop=union(TASKS[k].SOLVE_STOP for k in TASK_KINDS), n=n,
                     temperature=ctx.cfg.learnability_temperature or ctx.cfg.temperature)
    verdicts = [TASKS[valid[i // n].kind].judge(valid[i // n].task, text) for i, text in enumerate(rollout.texts)]
    for i, p in enumerate(valid):
        p.solve_rate = sum(v is Verdict.CORRECT for v in verdicts[i * n:(i + 1) * n]) / n
    return Learnability(rollout, valid, verdicts)


def trained_rollouts(learn: Learnability, which: str) -> tuple[list, torch.Tensor, torch.Tensor]:
    """The learnability rollouts to train as extra solver sequences: (seqs, [M] rewards, [M] task index).
    ``learnable``: those of tasks with 0 < p < 1, whose n answers disagree, so they carry a signal; ``all``: every one.
    They are samples of the same pre-update policy as the solve phase's, so the update stays on-policy."""
    if learn.rollout is None:
        return [], torch.zeros(0), torch.zeros(0, dtype=torch.long)
    n = len(learn.verdicts) // len(learn.proposals)
    rows = [i for i in range(len(learn.verdicts)) if which == "all" or is_learnable(learn.proposals[i // n].solve_rate)]
    ro = learn.rollout
    keep = set(rows)
    seqs = [s for i, s in enumerate(unpad(ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)) if i in keep]
    rewards = torch.tensor([SOLVER_REWARD[learn.verdicts[i]] for i in rows], dtype=torch.float32)
    tasks = torch.tensor([TASK_KINDS.index(learn.proposals[i // n].kind) for i in rows], dtype=torch.long)
    return seqs, rewards, tasks


def share_new_tasks(ctx: Context, proposals: list[Proposal]) -> tuple[dict[str, list[Task]], dict[str, list]]:
    """Valid proposals of all ranks and their solve rates (None before learnability), per task type, in rank
    order, so every rank adds the same tasks to its buffers."""
    local = [(p.task, p.solve_rate) for p in proposals if p.task is not None]
    everyone = gather_object(local) if ctx.accelerator.num_processes > 1 else local
    new, rates = defaultdict(list), defaultdict(list)
    for t, rate in everyone:
        new[t.kind].append(t)
        rates[t.kind].append(rate)
    return new, rates


def solve(ctx: Context, new: dict[str, list[Task]]) -> tuple[list[Task], Rollout]:
    tasks = [t for kind in TASK_KINDS for t in ctx.buffers[kind].solver_batch(new[kind], ctx.cfg.batch_size, ctx.task_rng)]
    tasks = my_slice(ctx, tasks)
    rollout = sample(ctx, [TASKS[t.kind].solver_prompt(t) for t in tasks], ctx.cfg.solve_max_tokens,
                     stop=union(TASKS[k].SOLVE_STOP for k in TASK_KINDS))
    return tasks, rollout


def proposer_reward(cfg: Config, p: Proposal, structure_seen: int | None = None, output_seen: int | None = None) -> float:
    """-1 invalid; valid: 1 - p for 0 < p < 1 (learnable), else ``proposer_extreme_reward`` (paper 0,
    official code -0.5). ``proposer_reward='validity'`` is the ablation: every valid proposal gets +1.

    Two novelty bonuses, each ``coef * novelty_bonus(mode, seen)`` with ``seen`` from ``seen_counts``:
    ``diversity_coef`` by how often the program's structure (``diversity_key``: its operator skeleton, or only the
    set of operators it uses) is already in its buffer, and ``output_novelty_coef`` by how often its output is.
    The output bonus goes to LEARNABLE tasks only, so unsolvable giant numbers earn nothing: what it rewards is
    varied tasks the solver can sometimes do, against the drift to `a + a + a` at a = 1. The structure bonus in
    'count' mode is learnable-only for the same reason (it never reaches zero, so it would otherwise pay a stream
    of rare unsolvable structures); in 'new' mode it keeps its original meaning: any valid proposal whose structure
    is unseen.

    ``output_digits_coef`` pays a learnable task by its answer's size, ``coef * (1 - 1/d)`` for d digits in its
    largest |output|: a generic pull toward longer numbers, since carries over more digits are what make arithmetic
    hard for a language model. Learnable-only, so it pays nothing for a number the solver never gets right, and it
    saturates (below coef), so a 20-digit product earns little more than a 3-digit sum."""
    if p.task is None:
        return INVALID_PROPOSAL_REWARD
    learnable = p.solve_rate is not None and 0.0 < p.solve_rate < 1.0
    if cfg.proposer_reward == "validity":
        r = 1.0
    else:
        r = 1.0 - p.solve_rate if learnable else cfg.proposer_extreme_reward
    structure = novelty_bonus(cfg.diversity, structure_seen) if learnable or cfg.diversity == "new" else 0.0
    output = novelty_bonus(cfg.output_novelty, output_seen) if learnable else 0.0
    digits = output_digits_bonus(p.task) if learnable else 0.0
    return r + cfg.diversity_coef * structure + cfg.output_novelty_coef * output + cfg.output_digits_coef * digits


def output_digits_bonus(task: Task) -> float:
    """1 - 1/d for d digits in the task's largest |output| (the curriculum's result digits): 0, 1/2, 2/3, ... to 1."""
    return 1.0 - 1.0 / curriculum.difficulty(task).result_digits


def novelty_bonus(mode: str, seen: int | None) -> float:
    """'new': 1 for a key not yet seen, else 0. 'count': 1 / sqrt(1 + seen), the count-based exploration bonus,
    which still separates rare from common keys once every small one has been seen (by iteration 20 of a cpu run
    only 3% of outputs were new). None (not counted, e.g. an invalid proposal): 0."""
    if seen is None:
        return 0.0
    return float(seen == 0) if mode == "new" else (1.0 + seen) ** -0.5


# What seen_counts can count: a task's key, and the live count of keys in a buffer.
SEEN_KEYS: dict[str, tuple[Callable[[Task], object], Callable[[TaskBuffer], object]]] = {
    "skeleton": (lambda task: parse_program(task.program).signature, TaskBuffer.signatures),
    "operators": (lambda task: parse_program(task.program).operator_set, TaskBuffer.operator_sets),
    "output": (lambda task: task.outputs, TaskBuffer.outputs),
}


def seen_counts(ctx: Context, proposals: list[Proposal], what: str = "skeleton") -> list[int | None]:
    """Per proposal: None if invalid, else how many times its ``skeleton``, ``operators`` (operator set) or
    ``output`` is already in its buffer plus how many proposals before it this iteration (in rank order, over all
    ranks) share it."""
    key, counts_in = SEEN_KEYS[what]
    local = [(p.kind, key(p.task)) if p.task is not None else None for p in proposals]
    per_rank = gather_object([local]) if ctx.accelerator.num_processes > 1 else [local]
    in_batch: Counter = Counter()
    counts: list[list[int | None]] = []
    for part in per_rank:
        counts.append([])
        for k in part:
            counts[-1].append(None if k is None else in_batch[k] + counts_in(ctx.buffers[k[0]]).get(k[1], 0))
            if k is not None:
                in_batch[k] += 1
    return counts[ctx.accelerator.process_index]


# ----------------------------------------------------------------------------------------------------
# the update


def update(ctx: Context, seqs, rewards, task_idx, role_idx, groups=None) -> dict:
    with training_attention(ctx.policy, ctx.ref_model):  # CPU: eager attention (SDPA's CPU backward is slow)
        return _update(ctx, seqs, rewards, task_idx, role_idx, groups)


def _update(ctx: Context, seqs, rewards, task_idx, role_idx, groups=None) -> dict:
    """TRR++ advantages over the gathered batch, then ``ppo_epochs`` optimizer steps (default 1), each over every
    length-bucketed micro-batch. Every rank runs the same number of passes; a non-finite loss or gradient skips
    the step on all ranks together. ``groups``: baseline group ids that replace ``--grouping`` (bench/throughput.py
    uses one group per prompt, as GRPO does); the per-(task, role) metrics still follow task_idx and role_idx."""
    cfg, acc = ctx.cfg, ctx.accelerator
    if groups is None:
        groups = adv.group_ids(task_idx, role_idx, cfg.grouping)
    six = adv.group_ids(task_idx, role_idx, "task_role")  # the per-group metrics and group-token-mean use these
    lengths = torch.tensor([float(len(c)) for _, c in seqs])
    # every rank's rows in rank order (ranks may hold different counts, e.g. with --train-rollouts)
    (all_rewards, all_groups, six, all_lengths), mine = gather_rows(acc, rewards, groups, six, lengths)

    mbs = plan_micro_batches(ctx, seqs, role_idx)
    global_tokens = float(all_lengths.sum())
    # DDP averages gradients over ranks, so each rank divides by (global count / world size).
    if cfg.aggregation == "group-token-mean":  # a divisor per sequence: its (task, role) group's tokens x groups
        normalizer = adv.group_token_divisors(all_lengths, six)[mine] / acc.num_processes  # [n_local]
    else:
        count = global_tokens if cfg.aggregation == "token-mean" else float(len(all_rewards))
        normalizer = count / acc.num_processes

    # The KL to the frozen reference, decided here and only here: reference log-probs once per micro-batch, then
    # either a loss term (gradient through logp) or k1 folded into per-token rewards before the normalisation
    # (REINFORCE++). kl_coef 0 means no reference model and no KL at all.
    ref_logps = [score(ctx, ctx.ref_model, mb) for mb in mbs] if ctx.ref_model is not None else None
    kl_metrics = {}
    if cfg.kl_in_reward:
        k1 = [kl_estimate(score(ctx, ctx.policy, mb), ref, "k1") for mb, ref in zip(mbs, ref_logps)]
        all_adv, all_seq_adv, kl_sum = kl_shaped_advantages(ctx, mbs, k1, seqs, all_rewards, all_groups)
        kl_metrics["loss/kl"] = reduce(torch.tensor(kl_sum / (global_tokens / acc.num_processes),
                                                    device=acc.device), "mean").item()
        loss_refs = [None] * len(mbs)  # the KL is in the advantages; the loss has no KL term
    else:
        all_adv = all_seq_adv = adv.group_normalize(all_rewards, all_groups, eps=cfg.adv_eps)  # [N_all]
        loss_refs = ref_logps or [None] * len(mbs)
    advantages = all_adv[mine]  # [n_local] or [n_local, width]

    # PPO epochs: the first pass is on-policy (old log-probs = its own, detached: ratio 1, plain REINFORCE) and
    # stores them, so later epochs on the same micro-batches have a real ratio for the clip.
    old_logps: list[torch.Tensor | None] = [None] * len(mbs)
    totals: dict[str, torch.Tensor | float] = defaultdict(float)  # device tensors: no host sync per micro-batch
    norms, skipped = [], False
    lr = ctx.scheduler.get_last_lr()[0]  # this step's lr, read before the schedule moves on to the next
    for epoch in range(cfg.ppo_epochs):
        mets, nonfinite = accumulate_gradients(ctx, mbs, advantages, old_logps, loss_refs, normalizer)
        grad_norm, skipped = optimizer_step(ctx, nonfinite)
        norms.append(grad_norm)
        for k, v in mets.items():
            totals[k] = totals[k] + v
        if skipped:  # later epochs would only repeat the same numbers
            break
    epochs = len(norms)
    if epochs > skipped:  # at least one step taken; the lr schedule counts iterations, not epochs
        ctx.scheduler.step()
        ctx.engine.push_weights(ctx.policy)  # a separate engine (vLLM) samples the next iteration from these weights
    ctx.nonfinite_streak = ctx.nonfinite_streak + 1 if skipped else 0

    # Each rank's sums are over its tokens / (global count / W): the mean over ranks is the global mean.
    names = sorted(totals)
    means = reduce(torch.stack([totals[k] / epochs for k in names]), "mean").tolist() if names else []
    out = dict(zip(names, means))
    out.update(kl_metrics)
    out.update({"optim/grad_norm": sum(norms) / epochs, "optim/lr": lr,
                "optim/skipped_nonfinite": float(skipped), "optim/micro_batches": len(mbs),
                "perf/trained_tokens": global_tokens})
    out.update(trr_metrics(all_rewards, all_groups, all_seq_adv, six,
                           adv.loss_weights(all_lengths, six, cfg.aggregation)))
    return out


def accumulate_gradients(ctx: Context, mbs, advantages, old_logps, ref_logps, normalizer) -> tuple[dict, torch.Tensor]:
    """One pass over the micro-batches, gradients accumulated into one optimizer step under every engine
    (``distributed.micro_batch``: DDP syncs and DeepSpeed steps on the last one only). Fills ``old_logps`` on
    the first pass. Returns the summed loss metrics and the count of non-finite losses (a tensor: no host sync)."""
    cfg, acc = ctx.cfg, ctx.accelerator
    totals: dict[str, torch.Tensor | float] = defaultdict(float)
    nonfinite = torch.zeros((), device=acc.device)
    # every micro-batch's advantages ([M, C] or [M]) on the device before the loop: a host-to-device copy inside it
    # would wait for the GPU; the micro-batches themselves were built on the device
    advs = [(advantages[mb.rows, :mb.completion_len] if advantages.dim() == 2 else advantages[mb.rows]).to(acc.device)
            for mb in mbs]
    divisors = [normalizer[mb.rows].to(acc.device) if torch.is_tensor(normalizer) else normalizer for mb in mbs]
    for i, (mb, a, divisor) in enumerate(zip(mbs, advs, divisors)):
        ids, attn, mask, C = mb.input_ids, mb.attention_mask, mb.completion_mask, mb.completion_len
        with micro_batch(acc, ctx.model, last=i == len(mbs) - 1):
            with acc.autocast():
                logp, entropy = completion_logprobs(ctx.model, ids, attn, C, temperature=mb.temperature,
                                                    with_entropy=True, entropy_grad=cfg.entropy_coef != 0)
            if old_logps[i] is None:
                old_logps[i] = logp.detach()
            loss, mets = policy_loss(logp, old_logps[i], a, mask, ref_logp=ref_logps[i],
                                     kl_coef=cfg.kl_coef, kl_estimator=cfg.kl_estimator, entropy=entropy,
                                     entropy_coef=cfg.entropy_coef, clip_eps=cfg.clip_eps,
                                     aggregation=cfg.aggregation, normalizer=divisor)
            nonfinite += (~torch.isfinite(loss.detach())).float()
            acc.backward(loss)
        for k, v in mets.items():
            totals[k] = totals[k] + v.detach()
    return totals, nonfinite


def optimizer_step(ctx: Context, nonfinite: torch.Tensor) -> tuple[float, bool]:
    """Clip, then step unless a loss or the gradient is non-finite on any rank. Returns (grad norm, skipped)."""
    acc = ctx.accelerator
    grad_norm = acc.clip_grad_norm_(ctx.model.parameters(), ctx.cfg.grad_clip)  # DeepSpeed: that of its own step
    grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
    skipped = reduce(nonfinite, "sum").item() > 0 or not math.isfinite(grad_norm)  # the grad norm is already global
    if steps_in_backward(acc):  # DeepSpeed stepped in the last backward, or skipped a non-finite step itself
        skipped = deepspeed_skipped(ctx.optimizer)
    if not skipped:
        ctx.optimizer.step()  # a no-op under DeepSpeed (Accelerate's wrapper)
    ctx.optimizer.zero_grad(set_to_none=True)
    return grad_norm, skipped


def plan_micro_batches(ctx: Context, seqs, role_idx) -> list:
    """Micro-batches by the token budget, built on the training device, each at the sampling temperature of its
    rows' role (``mb.temperature``). Ranks hold different lengths and so may plan different counts: all take the
    largest, so every rank runs the same number of passes."""
    cfg, acc = ctx.cfg, ctx.accelerator
    temperatures = [role_temperature(cfg, ROLES[r]) for r in role_idx.tolist()]
    count = len(plan(seqs, cfg.micro_batch_size, cfg.micro_batch_tokens, keys=temperatures))
    if acc.num_processes > 1:
        count = int(gather(torch.tensor([count], device=acc.device)).max())
    return micro_batches(seqs, cfg.micro_batch_size, ctx.tokenizer.pad_token_id, max_tokens=cfg.micro_batch_tokens,
                         count=count, temperatures=temperatures, device=acc.device)


def role_temperature(cfg: Config, role: str) -> float:
    """The temperature a role samples at, and so the one its log-probs are taken at in the update."""
    return (cfg.propose_temperature or cfg.temperature) if role == "propose" else cfg.temperature


@torch.no_grad()
def score(ctx: Context, model, mb) -> torch.Tensor:
    """[M, C] log-probs of a micro-batch's completion tokens under ``model``, no grad (the reference, or the
    rollout policy for the KL-in-reward shaping)."""
    acc = ctx.accelerator
    with acc.autocast():
        logp, _ = completion_logprobs(model, mb.input_ids.to(acc.device), mb.attention_mask.to(acc.device),
                                      mb.completion_len, temperature=mb.temperature)
    return logp


def kl_shaped_advantages(ctx, mbs, k1, seqs, all_rewards, all_groups) -> tuple[torch.Tensor, torch.Tensor, float]:
    """REINFORCE++ with the KL in the reward: ``k1`` (per micro-batch, [M, C]) of the rollout policy against the
    reference is folded into per-token returns before the group normalisation. Returns every rank's per-token
    advantages [N_all, width] (0 past each completion), each sequence's mean token advantage [N_all] (for the
    metrics) and this rank's k1 sum."""
    cfg, acc = ctx.cfg, ctx.accelerator
    width = max(cfg.propose_max_tokens, cfg.solve_max_tokens)
    kl, mask = torch.zeros(len(seqs), width), torch.zeros(len(seqs), width)
    for mb, k in zip(mbs, k1):
        C = mb.completion_len
        kl[mb.rows, :C] = (k * mb.completion_mask.to(k.device)).float().cpu()[:, :width]
    for i, (_, c) in enumerate(seqs):
        mask[i, :len(c)] = 1
    (all_kl, all_mask), _ = gather_rows(acc, kl, mask)
    a = adv.kl_in_reward_advantages(all_rewards, all_kl, all_mask, cfg.kl_coef, all_groups, eps=cfg.adv_eps)
    per_seq = (a * all_mask).sum(-1) / all_mask.sum(-1).clamp(min=1)
    return a, per_seq, float(kl.sum())


def trr_metrics(all_rewards, all_groups, all_seq_adv, six, weights=None) -> dict:
    """Per (task, role) group, whatever ``grouping`` the baselines use: reward mean, std and count, the advantage
    mean and std after the normalisation, and (given ``weights``, ``adv.loss_weights``) the group's share of the
    loss weight under ``--aggregation``. Plus TRL's ``frac_reward_zero_std``: the fraction of the
    baseline groups whose rewards were all equal (their advantages are 0, so they teach nothing)."""
    out = {}
    reward_mean, reward_std, count = adv.group_stats(all_rewards, six, num_groups=6)
    adv_mean, adv_std, _ = adv.group_stats(all_seq_adv, six, num_groups=6)
    for t, kind in enumerate(TASK_KINDS):
        for r, role in enumerate(ROLES):
            g, key = 2 * t + r, f"trr/{group_name(role, kind)}"
            for stat, values in (("reward_mean", reward_mean), ("reward_std", reward_std),
                                 ("adv_mean", adv_mean), ("adv_std", adv_std)):
                out[f"{key}/{stat}"] = float(values[g]) if count[g] > 0 else float("nan")
            out[f"{key}/count"] = float(count[g])
            if weights is not None:
                out[f"{key}/loss_share"] = float(weights[six == g].sum())
    _, std, n = adv.group_stats(all_rewards, all_groups)
    out["frac_reward_zero_std"] = float((std[n > 0] == 0).float().mean())
    return out


# ----------------------------------------------------------------------------------------------------
# seeding


def seed_buffers(ctx: Context, log=print) -> dict:
    """Before training: the model proposes (no gradients) from the built-in seed triplets until each
    buffer holds ``seed_buffer_size`` tasks or ``seed_rounds`` rounds have passed; the rest is filled
    with built-in random programs, and the log says how many."""
    cfg = ctx.cfg
    for kind in TASK_KINDS:
        ctx.buffers[kind].add(seed_tasks(kind, ctx.task_rng, cfg.seed_inputs))
    stats = Counter()
    for _ in range(cfg.seed_rounds):
        todo = [k for k in TASK_KINDS if len(ctx.buffers[k]) < cfg.seed_buffer_size]
        if not todo:
            break
        proposals, _ = propose(ctx, cfg.seed_batch_size, kinds=todo)
        validate(proposals)
        new, _ = share_new_tasks(ctx, proposals)
        for kind in todo:
            fresh = dedupe(ctx.buffers[kind], new[kind])[: cfg.seed_buffer_size - len(ctx.buffers[kind])]
            ctx.buffers[kind].add(fresh)
            stats[f"seed/{kind}/proposed"] += len(fresh)
    for kind in TASK_KINDS:
        missing = cfg.seed_buffer_size - len(ctx.buffers[kind])
        if missing > 0:
            ctx.buffers[kind].add(random_task(kind, ctx.task_rng, cfg.seed_inputs) for _ in range(missing))
            stats[f"seed/{kind}/random_fill"] = missing
            log(f"seeding: the model proposed {stats[f'seed/{kind}/proposed']} valid {kind} tasks; "
                f"filled {missing} with built-in random programs")
        stats[f"seed/{kind}/size"] = len(ctx.buffers[kind])
    return dict(stats)


def dedupe(buffer: TaskBuffer, tasks: list[Task]) -> list[Task]:
    seen = set(buffer)
    out = []
    for t in tasks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


# ----------------------------------------------------------------------------------------------------
# helpers


def sample(ctx: Context, prompts: list[str], max_new_tokens: int, stop: list[str], n: int = 1,
           temperature: float | None = None) -> Rollout:
    # sharded engines: full weights gathered for the call (engine.generation_model), unless --synced-gpus
    temperature = ctx.cfg.temperature if temperature is None else temperature
    with ctx.accelerator.autocast(), generation_model(ctx.accelerator, ctx.model, gather=not ctx.cfg.synced_gpus) as m:
        return ctx.engine.generate(m, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                                   top_p=ctx.cfg.top_p, n=n, stop=stop)


def union(lists) -> list[str]:
    return list(dict.fromkeys(s for lst in lists for s in lst))


def group_name(role: str, task: str) -> str:
    """The one naming rule for a (role, task) group in metric keys: ``{namespace}/{role}_{task}/{stat}``."""
    return f"{role}_{task}"


def count_outcomes(proposals, novel, solve_tasks, verdicts, prop_rollout, solve_rollout) -> dict[str, float]:
    """This rank's counters per (role, task) group; ``outcome_metrics`` turns their sums over ranks into rates."""
    c: dict[str, float] = defaultdict(float)
    for p, nov in zip(proposals, novel):
        g = group_name("propose", p.kind)
        c[f"n/{g}"] += 1
        if p.task is None:
            c[f"rejected/{g}/{reason_key(p.reason)}"] += 1
        else:
            c[f"valid/{g}"] += 1
            c[f"solve_rate_sum/{g}"] += p.solve_rate
            c[f"learnable/{g}"] += float(0 < p.solve_rate < 1)
            c[f"novel/{g}"] += float(nov)
    for t, v in zip(solve_tasks, verdicts):
        g = group_name("solve", t.kind)
        c[f"n/{g}"] += 1
        c[f"correct/{g}"] += float(v is Verdict.CORRECT)
        c[f"malformed/{g}"] += float(v is Verdict.MALFORMED)
    for role, rollout, kinds in (("propose", prop_rollout, [p.kind for p in proposals]),
                                 ("solve", solve_rollout, [t.kind for t in solve_tasks])):
        for kind, length, clipped in zip(kinds, rollout.completion_mask.sum(1).tolist(), rollout.truncated.tolist()):
            c[f"length_sum/{group_name(role, kind)}"] += length
            c[f"clipped/{group_name(role, kind)}"] += float(clipped)
    return c


def outcome_metrics(c: dict[str, float]) -> dict[str, float]:
    """Per (role, task) group: the verifier's verdicts (``tasks/``) and completion lengths (``completions/``, TRL's
    names); over all groups: ``completions/mean_length`` and ``completions/clipped_ratio``; over all proposals:
    ``tasks/propose/valid_rate`` and ``tasks/propose/learnability``."""
    c = defaultdict(float, c)
    nan = float("nan")
    out = {}
    for kind in TASK_KINDS:
        p, s = group_name("propose", kind), group_name("solve", kind)
        n, valid = c[f"n/{p}"], c[f"valid/{p}"]
        out[f"tasks/{p}/valid_rate"] = valid / max(n, 1)
        out[f"tasks/{p}/learnability"] = c[f"solve_rate_sum/{p}"] / valid if valid else nan
        out[f"tasks/{p}/learnable_rate"] = c[f"learnable/{p}"] / max(n, 1)
        out[f"tasks/{p}/novel_rate"] = c[f"novel/{p}"] / max(n, 1)
        out[f"tasks/{s}/accuracy"] = c[f"correct/{s}"] / max(c[f"n/{s}"], 1)
        out[f"tasks/{s}/malformed_rate"] = c[f"malformed/{s}"] / max(c[f"n/{s}"], 1)
        for g in (p, s):
            out[f"completions/{g}/mean_length"] = c[f"length_sum/{g}"] / max(c[f"n/{g}"], 1)
            out[f"completions/{g}/clipped_ratio"] = c[f"clipped/{g}"] / max(c[f"n/{g}"], 1)
    props = [group_name("propose", kind) for kind in TASK_KINDS]
    groups = props + [group_name("solve", kind) for kind in TASK_KINDS]
    n_all, valid_all = sum(c[f"n/{g}"] for g in props), sum(c[f"valid/{g}"] for g in props)
    out["tasks/propose/valid_rate"] = valid_all / max(n_all, 1)
    out["tasks/propose/learnability"] = sum(c[f"solve_rate_sum/{g}"] for g in props) / valid_all if valid_all else nan
    n_seq = sum(c[f"n/{g}"] for g in groups)
    out["completions/mean_length"] = sum(c[f"length_sum/{g}"] for g in groups) / max(n_seq, 1)
    out["completions/clipped_ratio"] = sum(c[f"clipped/{g}"] for g in groups) / max(n_seq, 1)
    for key, v in c.items():
        if key.startswith("rejected/"):  # rejected/{group}/{reason} -> tasks/{group}/rejected/{reason}
            _, g, reason = key.split("/", 2)
            out[f"tasks/{g}/rejected/{reason}"] = v
    return out


def curriculum_metrics(ctx: Context, proposals: list[Proposal], new_output: list[bool], iteration: int) -> dict:
    """How hard the valid proposals are, where their solve rates fell, and the age of the references shown
    (azero/curriculum.py), summed over ranks."""
    c: dict[str, float] = defaultdict(float)
    for kind in TASK_KINDS:
        mine = [(p, new) for p, new in zip(proposals, new_output) if p.kind == kind]
        valid = [(p, new) for p, new in mine if p.task is not None]
        counts = curriculum.proposal_counters(kind, [p.task for p, _ in valid], [p.solve_rate for p, _ in valid],
                                              [a for p, _ in mine for a in p.reference_added], iteration,
                                              new_outputs=[new for _, new in valid],
                                              reference_p=[r for p, _ in mine for r in p.reference_p])
        for k, v in counts.items():
            c[k] += v
    c = all_reduce_dict(ctx.accelerator, c)
    out = {}
    for kind in TASK_KINDS:
        out.update(curriculum.finish(kind, c))
        out[f"curriculum/propose_{kind}/frontier_size"] = ctx.buffers[kind].frontier_size()
    return out


def gather_rows(acc, *tensors: torch.Tensor) -> tuple[list[torch.Tensor], slice]:
    """Every rank's rows of each tensor, concatenated in rank order on the CPU, and this rank's slice of them.
    Ranks may hold different numbers of rows (e.g. trained learnability rollouts), so pad, gather, cut."""
    n = len(tensors[0])
    if acc.num_processes == 1:
        return [t.cpu() for t in tensors], slice(0, n)
    counts = gather(torch.tensor([n], device=acc.device)).tolist()
    out = []
    for t in tensors:
        blocks = gather(acc.pad_across_processes(t.to(acc.device), dim=0)).split(max(counts))  # [max count, ...] each
        out.append(torch.cat([b[:c] for b, c in zip(blocks, counts)]).cpu())
    start = sum(counts[:acc.process_index])
    return out, slice(start, start + n)


def all_reduce_dict(acc, d: dict[str, float]) -> dict[str, float]:
    """Sum a dict of counters over ranks (keys may differ per rank: their union is reduced)."""
    if acc.num_processes == 1:
        return defaultdict(float, d)
    keys = sorted(set(k for ks in gather_object([list(d)]) for k in ks))
    vals = reduce(torch.tensor([d.get(k, 0.0) for k in keys], dtype=torch.float64, device=acc.device), "sum")
    return defaultdict(float, zip(keys, vals.tolist()))


def reason_key(reason: str) -> str:
    head = reason.split(":")[0].strip().lower() or "unknown"
    return re.sub(r"[^a-z0-9]+", "_", head)[:40]


def sample_rows(ctx, proposals, solve_tasks, solve_rollout, verdicts, prop_rewards, solve_rewards) -> list[dict]:
    """A few proposer and solver generations per task type with their rewards, for the sample tables."""
    k = ctx.cfg.log_samples
    rows = []
    for kind in TASK_KINDS:
        props = [(p, r) for p, r in zip(proposals, prop_rewards) if p.kind == kind][:k]
        for p, r in props:
            verdict = "invalid: " + p.reason if p.task is None else f"valid, solve rate {p.solve_rate:.2f}"
            rows.append({"task": kind, "role": "propose", "prompt": p.prompt[-300:], "completion": p.text,
                         "reward": r, "verdict": verdict})
        sols = [(t, x, v, r) for t, x, v, r in zip(solve_tasks, solve_rollout.texts, verdicts, solve_rewards) if t.kind == kind][:k]
        for t, x, v, r in sols:
            rows.append({"task": kind, "role": "solve", "prompt": TASKS[kind].solver_prompt(t)[-300:], "completion": x,
                         "reward": r, "verdict": v.name.lower()})
    gathered = gather_object(rows) if ctx.accelerator.num_processes > 1 else rows
    return gathered

"""One self-play iteration, in the order things happen (DESIGN.md section 2):

  propose -> validate -> learnability rollouts -> buffers -> solve -> rewards -> TRR++ advantages
  -> loss over micro-batches -> one optimizer step

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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from accelerate.utils import gather, gather_object, reduce

from azero.buffers import TaskBuffer, random_task, seed_tasks
from azero.config import Config
from azero.models import training_attention
from azero.rl import advantages as adv
from azero.rl.batching import micro_batches, unpad
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
        learn_tokens = estimate_learnability(ctx, proposals)
    new = share_new_tasks(ctx, proposals)                     # every valid proposal, from every rank
    novel = [p.task is not None and is_novel(ctx.buffers, p.task) for p in proposals]
    for kind in TASK_KINDS:
        ctx.buffers[kind].add(new[kind])
    with m.timer("solve"):                                    # 4. B solver tasks per type, new ones first
        solve_tasks, solve_rollout = solve(ctx, new)
    with m.timer("verify"):                                   # 5. rewards
        verdicts = [TASKS[t.kind].judge(t, text) for t, text in zip(solve_tasks, solve_rollout.texts)]
    prop_rewards = [proposer_reward(cfg, p, nov) for p, nov in zip(proposals, novel)]
    solve_rewards = [SOLVER_REWARD[v] for v in verdicts]

    rewards = torch.tensor(prop_rewards + solve_rewards, dtype=torch.float32)
    task_idx = torch.tensor([TASK_KINDS.index(p.kind) for p in proposals] + [TASK_KINDS.index(t.kind) for t in solve_tasks])
    role_idx = torch.tensor([0] * len(proposals) + [1] * len(solve_tasks))
    seqs = unpad(prop_rollout.prompt_ids, prop_rollout.prompt_mask, prop_rollout.completion_ids, prop_rollout.completion_mask) \
        + unpad(solve_rollout.prompt_ids, solve_rollout.prompt_mask, solve_rollout.completion_ids, solve_rollout.completion_mask)

    with m.timer("update"):                                   # 6-7. TRR++ advantages, loss, one step
        update_metrics = update(ctx, seqs, rewards, task_idx, role_idx)
    m.values.update(update_metrics)

    m.values.update(iteration_metrics(ctx, proposals, solve_tasks, verdicts, rewards, task_idx, role_idx,
                                      prop_rollout, solve_rollout, novel))
    m["time/iteration"] = time.perf_counter() - t0
    m["time/generate"] = m.values["time/propose"] + m.values["time/learnability"] + m.values["time/solve"]
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
        for _ in range(per_kind):
            refs = ctx.buffers[kind].sample(ctx.cfg.references, ctx.task_rng)
            target = sample_program_task(ctx) if kind == "induction" else None
            out.append(Proposal(kind, TASKS[kind].proposer_prompt(refs, target), target))
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
    return random_task("deduction", ctx.task_rng)


def propose(ctx: Context, per_kind: int, kinds=TASK_KINDS) -> tuple[list[Proposal], Rollout]:
    proposals = my_slice(ctx, build_proposals(ctx, per_kind, kinds))
    rollout = sample(ctx, [p.prompt for p in proposals], ctx.cfg.propose_max_tokens,
                     stop=union(TASKS[k].PROPOSE_STOP for k in kinds))
    for p, text in zip(proposals, rollout.texts):
        p.text = text
    return proposals, rollout


def validate(proposals: list[Proposal]) -> None:
    for p in proposals:
        try:
            p.task = TASKS[p.kind].parse_proposal(p.text, p.target)
        except Rejected as e:
            p.reason = str(e)


def estimate_learnability(ctx: Context, proposals: list[Proposal]) -> float:
    """p = fraction of n solver rollouts (current, pre-update policy) that solve each valid proposal.
    These rollouts only feed the proposer reward; they are never trained on. Returns tokens generated."""
    valid = [p for p in proposals if p.task is not None]
    n = ctx.cfg.learnability_rollouts
    prompts = [TASKS[p.kind].solver_prompt(p.task) for p in valid]
    if not prompts:  # nothing valid on this rank
        if ctx.cfg.synced_gpus:  # sharded weights: every rank must still step through one generate call
            sample(ctx, ["Calculate: 0 + 0 = "], ctx.cfg.solve_max_tokens, stop=["\n"])
        return 0.0
    rollout = sample(ctx, prompts, ctx.cfg.solve_max_tokens, stop=union(TASKS[k].SOLVE_STOP for k in TASK_KINDS), n=n)
    for i, p in enumerate(valid):
        texts = rollout.texts[i * n:(i + 1) * n]
        p.solve_rate = sum(TASKS[p.kind].judge(p.task, t) is Verdict.CORRECT for t in texts) / n
    return float(rollout.completion_mask.sum())


def share_new_tasks(ctx: Context, proposals: list[Proposal]) -> dict[str, list[Task]]:
    """Valid proposals of all ranks, in rank order, so every rank adds the same tasks to its buffers."""
    local = [p.task for p in proposals if p.task is not None]
    everyone = gather_object(local) if ctx.accelerator.num_processes > 1 else local
    new = defaultdict(list)
    for t in everyone:
        new[t.kind].append(t)
    return new


def solve(ctx: Context, new: dict[str, list[Task]]) -> tuple[list[Task], Rollout]:
    tasks = [t for kind in TASK_KINDS for t in ctx.buffers[kind].solver_batch(new[kind], ctx.cfg.batch_size, ctx.task_rng)]
    tasks = my_slice(ctx, tasks)
    rollout = sample(ctx, [TASKS[t.kind].solver_prompt(t) for t in tasks], ctx.cfg.solve_max_tokens,
                     stop=union(TASKS[k].SOLVE_STOP for k in TASK_KINDS))
    return tasks, rollout


def proposer_reward(cfg: Config, p: Proposal, novel: bool) -> float:
    """-1 invalid; valid: 1 - p for 0 < p < 1 (learnable), else ``proposer_extreme_reward`` (paper 0,
    official code -0.5). ``proposer_reward='validity'`` is the ablation: every valid proposal gets +1."""
    if p.task is None:
        return INVALID_PROPOSAL_REWARD
    if cfg.proposer_reward == "validity":
        r = 1.0
    else:
        r = 1.0 - p.solve_rate if 0.0 < p.solve_rate < 1.0 else cfg.proposer_extreme_reward
    return r + (cfg.diversity_coef if novel else 0.0)


def is_novel(buffers: dict[str, TaskBuffer], task: Task) -> bool:
    """A proposal whose program structure (operator skeleton) the buffer has not seen yet."""
    return parse_program(task.program).signature not in buffers[task.kind].signatures()


# ----------------------------------------------------------------------------------------------------
# the update


def update(ctx: Context, seqs, rewards, task_idx, role_idx) -> dict:
    with training_attention(ctx.policy, ctx.ref_model):  # CPU: eager attention (SDPA's CPU backward is slow)
        return _update(ctx, seqs, rewards, task_idx, role_idx)


def _update(ctx: Context, seqs, rewards, task_idx, role_idx) -> dict:
    """TRR++ advantages over the gathered batch, then one optimizer step over length-bucketed
    micro-batches. Every rank runs the same number of passes; a non-finite loss or gradient skips the
    step on all ranks together."""
    cfg, acc = ctx.cfg, ctx.accelerator
    n_local, rank = len(seqs), acc.process_index
    groups = adv.group_ids(task_idx, role_idx, cfg.grouping)
    all_rewards, all_groups = gather(rewards.to(acc.device)).cpu(), gather(groups.to(acc.device)).cpu()
    mine = slice(rank * n_local, (rank + 1) * n_local)

    mbs = micro_batches(seqs, cfg.micro_batch_size, ctx.tokenizer.pad_token_id)
    tokens = torch.tensor(float(sum(len(c) for _, c in seqs)), device=acc.device)
    global_tokens = reduce(tokens, "sum").item()
    # DDP averages gradients over ranks, so each rank divides by (global count / world size).
    if cfg.aggregation == "token-mean":
        normalizer = global_tokens / acc.num_processes
    else:
        normalizer = float(len(all_rewards)) / acc.num_processes

    totals: dict[str, float] = defaultdict(float)
    if cfg.kl_in_reward:  # the reference was scored in the shaping pass; the loss needs no second reference forward
        token_adv, kl_sum = kl_shaped_advantages(ctx, mbs, seqs, all_rewards, all_groups, mine)  # [n_local, width]
        totals["loss/kl"] = kl_sum / (global_tokens / acc.num_processes)  # k1 per token, averaged over ranks below
    else:
        seq_adv = adv.group_normalize(all_rewards, all_groups, eps=cfg.adv_eps)[mine]
    use_ref = ctx.ref_model is not None and not cfg.kl_in_reward

    nonfinite = torch.zeros((), device=acc.device)
    ctx.optimizer.zero_grad(set_to_none=True)
    for i, mb in enumerate(mbs):
        mb_dev = {k: getattr(mb, k).to(acc.device) for k in ("input_ids", "attention_mask", "completion_mask")}
        C = mb.completion_len
        ref_logp = None
        if use_ref:
            with torch.no_grad(), acc.autocast():
                ref_logp, _ = completion_logprobs(ctx.ref_model, mb_dev["input_ids"], mb_dev["attention_mask"], C,
                                                  temperature=cfg.temperature)
        a = token_adv[mb.rows, :C] if cfg.kl_in_reward else seq_adv[mb.rows]  # [M, C] or [M]
        sync = acc.no_sync(ctx.model) if i < len(mbs) - 1 else nullcontext()
        with sync:
            with acc.autocast():
                logp, entropy = completion_logprobs(ctx.model, mb_dev["input_ids"], mb_dev["attention_mask"], C,
                                                    temperature=cfg.temperature, with_entropy=True,
                                                    entropy_grad=cfg.entropy_coef != 0)
            loss, mets = policy_loss(
                logp, logp.detach(), a.to(acc.device), mb_dev["completion_mask"],
                ref_logp=ref_logp, entropy=entropy, clip_eps=cfg.clip_eps,
                kl_coef=0.0 if cfg.kl_in_reward else cfg.kl_coef, kl_estimator=cfg.kl_estimator,
                entropy_coef=cfg.entropy_coef, aggregation=cfg.aggregation, normalizer=normalizer)
            nonfinite += (~torch.isfinite(loss.detach())).float()
            acc.backward(loss)
        for k, v in mets.items():
            totals[k] += float(v)

    grad_norm = acc.clip_grad_norm_(ctx.model.parameters(), cfg.grad_clip)
    grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
    skipped = reduce(nonfinite, "sum").item() > 0 or not math.isfinite(grad_norm)
    if skipped:  # same decision on every rank: the flag is reduced and the grad norm is already global
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.nonfinite_streak += 1
    else:
        ctx.optimizer.step()
        ctx.scheduler.step()
        ctx.engine.push_weights(ctx.policy)  # a separate engine (vLLM) samples the next iteration from these weights
        ctx.nonfinite_streak = 0
    ctx.optimizer.zero_grad(set_to_none=True)

    # Each rank's sums are over its tokens / (global count / W): the mean over ranks is the global mean.
    out = {k: reduce(torch.tensor(v, device=acc.device), "mean").item() for k, v in totals.items()}
    out.update({"optim/grad_norm": grad_norm, "optim/lr": ctx.scheduler.get_last_lr()[0],
                "optim/skipped_nonfinite": float(skipped), "optim/micro_batches": len(mbs),
                "perf/trained_tokens": global_tokens})
    mean, std, count = adv.group_stats(all_rewards, all_groups)
    out["trr/zero_std_fraction"] = float(((std[count > 0] == 0).float().mean()))
    return out


def kl_shaped_advantages(ctx, mbs, seqs, all_rewards, all_groups, mine) -> tuple[torch.Tensor, float]:
    """REINFORCE++ with the KL in the reward: k1 of the rollout policy against the reference is folded
    into per-token returns before the group normalisation. Needs one extra no-grad policy pass.
    Returns this rank's per-token advantages [n_local, width] (0 past each completion) and its k1 sum."""
    cfg, acc = ctx.cfg, ctx.accelerator
    width = max(cfg.propose_max_tokens, cfg.solve_max_tokens)
    kl = torch.zeros(len(seqs), width)
    for mb in mbs:
        ids, attn, C = mb.input_ids.to(acc.device), mb.attention_mask.to(acc.device), mb.completion_len
        with torch.no_grad(), acc.autocast():
            old, _ = completion_logprobs(ctx.policy, ids, attn, C, temperature=cfg.temperature)
            ref, _ = completion_logprobs(ctx.ref_model, ids, attn, C, temperature=cfg.temperature)
        k1 = (kl_estimate(old, ref, "k1") * mb.completion_mask.to(acc.device)).float().cpu()
        kl[mb.rows, :C] = k1[:, :width]
    mask = torch.zeros(len(seqs), width)
    for i, (_, c) in enumerate(seqs):
        mask[i, :len(c)] = 1
    all_kl, all_mask = gather(kl.to(acc.device)).cpu(), gather(mask.to(acc.device)).cpu()
    a = adv.kl_in_reward_advantages(all_rewards, all_kl, all_mask, cfg.kl_coef, all_groups, eps=cfg.adv_eps)[mine]
    return a, float(kl.sum())


# ----------------------------------------------------------------------------------------------------
# seeding


def seed_buffers(ctx: Context, log=print) -> dict:
    """Before training: the model proposes (no gradients) from the built-in seed triplets until each
    buffer holds ``seed_buffer_size`` tasks or ``seed_rounds`` rounds have passed; the rest is filled
    with built-in random programs, and the log says how many."""
    cfg = ctx.cfg
    for kind in TASK_KINDS:
        ctx.buffers[kind].add(seed_tasks(kind, ctx.task_rng))
    stats = Counter()
    for _ in range(cfg.seed_rounds):
        todo = [k for k in TASK_KINDS if len(ctx.buffers[k]) < cfg.seed_buffer_size]
        if not todo:
            break
        proposals, _ = propose(ctx, cfg.seed_batch_size, kinds=todo)
        validate(proposals)
        new = share_new_tasks(ctx, proposals)
        for kind in todo:
            fresh = dedupe(ctx.buffers[kind], new[kind])[: cfg.seed_buffer_size - len(ctx.buffers[kind])]
            ctx.buffers[kind].add(fresh)
            stats[f"seed/{kind}/proposed"] += len(fresh)
    for kind in TASK_KINDS:
        missing = cfg.seed_buffer_size - len(ctx.buffers[kind])
        if missing > 0:
            ctx.buffers[kind].add(random_task(kind, ctx.task_rng) for _ in range(missing))
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


def sample(ctx: Context, prompts: list[str], max_new_tokens: int, stop: list[str], n: int = 1) -> Rollout:
    with ctx.accelerator.autocast():
        return ctx.engine.generate(ctx.policy, prompts, max_new_tokens=max_new_tokens, temperature=ctx.cfg.temperature,
                                   top_p=ctx.cfg.top_p, n=n, stop=stop)


def union(lists) -> list[str]:
    return list(dict.fromkeys(s for lst in lists for s in lst))


def iteration_metrics(ctx, proposals, solve_tasks, verdicts, rewards, task_idx, role_idx,
                      prop_rollout, solve_rollout, novel) -> dict:
    """Per task type: valid rate, learnability, solver accuracy, lengths, buffer size; the six
    baselines; rejection reasons. Counts are summed over ranks, then divided."""
    acc = ctx.accelerator
    c: dict[str, float] = defaultdict(float)
    for p, nov in zip(proposals, novel):
        c[f"n/propose/{p.kind}"] += 1
        if p.task is None:
            c[f"reject/{p.kind}/{reason_key(p.reason)}"] += 1
        else:
            c[f"n/valid/{p.kind}"] += 1
            c[f"sum/learn/{p.kind}"] += p.solve_rate
            c[f"n/learnable/{p.kind}"] += float(0 < p.solve_rate < 1)
            c[f"n/novel/{p.kind}"] += float(nov)
    for t, v in zip(solve_tasks, verdicts):
        c[f"n/solve/{t.kind}"] += 1
        c[f"n/correct/{t.kind}"] += float(v is Verdict.CORRECT)
        c[f"n/malformed/{t.kind}"] += float(v is Verdict.MALFORMED)
    for role, ro, kinds in (("propose", prop_rollout, [p.kind for p in proposals]),
                            ("solve", solve_rollout, [t.kind for t in solve_tasks])):
        lengths = ro.completion_mask.sum(1).tolist()
        for k, L, tr in zip(kinds, lengths, ro.truncated.tolist()):
            c[f"sum/len/{role}_{k}"] += L
            c[f"sum/trunc/{role}_{k}"] += float(tr)
    c = all_reduce_dict(acc, c)

    out = {}
    for k in TASK_KINDS:
        n_prop, n_valid = c[f"n/propose/{k}"], c[f"n/valid/{k}"]
        out[f"propose/{k}/valid_rate"] = n_valid / max(n_prop, 1)
        out[f"propose/{k}/learnability"] = c[f"sum/learn/{k}"] / n_valid if n_valid else float("nan")
        out[f"propose/{k}/learnable_rate"] = c[f"n/learnable/{k}"] / max(n_prop, 1)
        out[f"propose/{k}/novel_rate"] = c[f"n/novel/{k}"] / max(n_prop, 1)
        out[f"solve/{k}/accuracy"] = c[f"n/correct/{k}"] / max(c[f"n/solve/{k}"], 1)
        out[f"solve/{k}/malformed_rate"] = c[f"n/malformed/{k}"] / max(c[f"n/solve/{k}"], 1)
        out[f"buffer/{k}/size"] = len(ctx.buffers[k])
        for role in ROLES:
            n = c[f"n/propose/{k}"] if role == "propose" else c[f"n/solve/{k}"]
            out[f"length/{role}_{k}/mean"] = c[f"sum/len/{role}_{k}"] / max(n, 1)
            out[f"length/{role}_{k}/truncated"] = c[f"sum/trunc/{role}_{k}"] / max(n, 1)
    n_all = sum(c[f"n/propose/{k}"] for k in TASK_KINDS)
    out["propose/valid_rate"] = sum(c[f"n/valid/{k}"] for k in TASK_KINDS) / max(n_all, 1)
    n_valid = sum(c[f"n/valid/{k}"] for k in TASK_KINDS)
    out["propose/learnability_mean"] = sum(c[f"sum/learn/{k}"] for k in TASK_KINDS) / n_valid if n_valid else float("nan")
    for key, v in c.items():
        if key.startswith("reject/"):
            out[f"propose/{key.split('/')[1]}/rejected/{key.split('/', 2)[2]}"] = v

    # The six per-(task, role) baselines, always reported, whatever grouping the advantages use.
    all_rewards = gather(rewards.to(acc.device)).cpu()
    six = gather(adv.group_ids(task_idx, role_idx, "task_role").to(acc.device)).cpu()
    mean, std, count = adv.group_stats(all_rewards, six, num_groups=6)
    for t, k in enumerate(TASK_KINDS):
        for r, role in enumerate(ROLES):
            g = t * 2 + r
            out[f"trr/{role}_{k}/reward_mean"] = float(mean[g]) if count[g] > 0 else float("nan")
            out[f"trr/{role}_{k}/reward_std"] = float(std[g]) if count[g] > 0 else float("nan")
            out[f"trr/{role}_{k}/count"] = float(count[g])
    return out


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

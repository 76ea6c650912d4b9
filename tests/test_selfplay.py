"""The iteration's pieces without a whole run: the update (PPO epochs, the one KL path), the metrics, novelty and
the proposer reward, on the tiny model or on hand-made inputs with hand-computed numbers."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch

from azero import selfplay
from azero.buffers import TaskBuffer
from azero.config import PRESETS, Config
from azero.models import frozen_copy, load_policy, tiny_tokenizer
from azero.selfplay import (ROLES, Context, Proposal, count_outcomes, group_name, novelty_bonus, outcome_metrics,
                            output_digits_bonus, proposer_reward, seed_buffers, seen_counts, trr_metrics, update)
from azero.tasks import TASK_KINDS, Verdict, make_task, parse_program
from azero.tasks.common import N_INDUCTION_INPUTS
from azero.trainer import make_optimizer

NAN = float("nan")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_ctx(**overrides) -> Context:
    from accelerate import Accelerator

    cfg = Config(**{**PRESETS["tiny"], **overrides})
    accelerator = Accelerator(cpu=True, mixed_precision="no")
    tokenizer = tiny_tokenizer()
    policy = load_policy("tiny", tokenizer=tokenizer, seed=0)
    ref = frozen_copy(policy) if cfg.kl_coef > 0 else None
    optimizer = make_optimizer(cfg, policy)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    model, optimizer = accelerator.prepare(policy, optimizer)
    buffers = {k: TaskBuffer(k) for k in TASK_KINDS}
    return Context(cfg, accelerator, model, ref, tokenizer, optimizer, scheduler, buffers, random.Random(0))


def batch(tokenizer):
    """12 sequences, two per (task, role) group, with rewards that differ inside each group."""
    texts = [("Calculate: 1 + 2 = ", "3"), ("Calculate: 7 * 6 = ", "42 is it"), ("program: a + b\n", "input: a = 1"),
             ("a = ", "5, b = 2"), ("Q:", "x"), ("Q: what", "a * b + 3")] * 2
    seqs = [(torch.tensor(tokenizer(p, add_special_tokens=False).input_ids),
             torch.tensor(tokenizer(c, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]))
            for p, c in texts]
    task = torch.tensor([0, 0, 1, 1, 2, 2] * 2)
    role = torch.tensor([0] * 6 + [1] * 6)
    rewards = torch.tensor([1.0, -1.0, 0.5, -1.0, 0.0, 1.0, 1.0, -0.5, -1.0, 1.0, -0.5, 1.0])
    return seqs, rewards, task, role


def record_losses(monkeypatch) -> list[dict]:
    """Wrap selfplay.policy_loss to record what the trainer passes it."""
    calls, real = [], selfplay.policy_loss

    def recorder(logp, old_logp, advantages, mask, **kw):
        calls.append(dict(logp=logp.detach().clone(), old_logp=old_logp.clone(), advantages=advantages, **kw))
        return real(logp, old_logp, advantages, mask, **kw)

    monkeypatch.setattr(selfplay, "policy_loss", recorder)
    return calls


def adam_steps(ctx) -> int:
    return int(next(iter(ctx.optimizer.optimizer.state.values()))["step"])


def test_one_epoch_is_on_policy_reinforce(monkeypatch):
    ctx = make_ctx()
    calls = record_losses(monkeypatch)
    out = update(ctx, *batch(ctx.tokenizer))
    assert len(calls) == 2  # 12 sequences in micro-batches of 8
    assert all(torch.equal(c["logp"], c["old_logp"]) for c in calls)  # old = logp.detach(): ratio exactly 1
    assert out["loss/ratio"] == 1.0 and out["loss/clip_frac"] == 0.0
    assert adam_steps(ctx) == 1 and ctx.scheduler.last_epoch == 1


def test_logged_lr_is_the_lr_the_step_used():
    """optim/lr is read before the schedule moves on: with a halving schedule, iteration 1 logs --lr, not --lr / 2."""
    ctx = make_ctx(lr=1e-3)
    ctx.scheduler = torch.optim.lr_scheduler.LambdaLR(ctx.optimizer, lambda s: 0.5 ** s)
    logged = [update(ctx, *batch(ctx.tokenizer))["optim/lr"] for _ in range(2)]
    assert logged == pytest.approx([1e-3, 5e-4])
    assert ctx.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)  # what iteration 3 will use


def test_later_epochs_reuse_the_rollout_policy_log_probs(monkeypatch):
    """--ppo-epochs 3: three optimizer steps over the same micro-batches; epochs 2 and 3 compare the moved
    policy with the log-probs of the first (rollout-policy) pass, so the ratio leaves 1 and the clip binds."""
    ctx = make_ctx(ppo_epochs=3, lr=1e-2, clip_eps=0.01)
    calls = record_losses(monkeypatch)
    out = update(ctx, *batch(ctx.tokenizer))
    assert len(calls) == 6
    first, later = calls[:2], calls[2:]
    for i, c in enumerate(later):
        assert torch.equal(c["old_logp"], first[i % 2]["logp"])  # stored, not recomputed
        assert not torch.equal(c["logp"], c["old_logp"])  # the policy moved
    assert out["loss/ratio"] != 1.0 and out["loss/clip_frac"] > 0.0
    assert adam_steps(ctx) == 3
    assert ctx.scheduler.last_epoch == 1  # the lr schedule counts iterations


@pytest.mark.parametrize("kl_in_reward", [False, True])
def test_reference_is_scored_once_per_micro_batch_and_the_mode_is_chosen_once(monkeypatch, kl_in_reward):
    ctx = make_ctx(ppo_epochs=2, kl_in_reward=kl_in_reward)
    ref_calls = []
    ctx.ref_model.register_forward_hook(lambda *args: ref_calls.append(1))
    calls = record_losses(monkeypatch)
    out = update(ctx, *batch(ctx.tokenizer))
    assert len(ref_calls) == 2  # two micro-batches, two epochs: the reference still runs once per micro-batch
    for c in calls:
        assert c["kl_coef"] == ctx.cfg.kl_coef  # never a stand-in 0
        if kl_in_reward:  # the KL is in the per-token advantages; the loss has no KL term
            assert c["ref_logp"] is None and c["advantages"].dim() == 2
        else:
            assert c["ref_logp"] is not None and c["advantages"].dim() == 1
    if kl_in_reward:  # k1 of the rollout policy, scored before any step: policy == reference
        assert out["loss/kl"] == pytest.approx(0.0, abs=1e-6)
    else:  # k3 in the loss, averaged over both epochs: the second sees the moved policy
        assert out["loss/kl"] > 0


def test_no_reference_without_kl(monkeypatch):
    ctx = make_ctx(kl_coef=0.0)
    assert ctx.ref_model is None
    calls = record_losses(monkeypatch)
    out = update(ctx, *batch(ctx.tokenizer))
    assert all(c["ref_logp"] is None for c in calls) and "loss/kl" not in out


def test_trr_metrics_by_hand():
    # propose_deduction (group 0): rewards 1, 0, 0, 1 -> mean 0.5, std 0.5, advantages +-1
    # solve_deduction (group 1): -0.5, -0.5 -> std 0, advantages 0; the other four groups are empty
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, -0.5, -0.5])
    six = torch.tensor([0, 0, 0, 0, 1, 1])
    seq_adv = torch.tensor([1.0, -1.0, -1.0, 1.0, 0.0, 0.0])
    out = trr_metrics(rewards, six, seq_adv, six)
    assert out["trr/propose_deduction/reward_mean"] == 0.5 and out["trr/propose_deduction/reward_std"] == 0.5
    assert out["trr/propose_deduction/adv_mean"] == 0.0 and out["trr/propose_deduction/adv_std"] == 1.0
    assert out["trr/propose_deduction/count"] == 4 and out["trr/solve_deduction/count"] == 2
    assert out["trr/solve_deduction/reward_std"] == 0.0 and out["trr/solve_deduction/adv_std"] == 0.0
    assert math.isnan(out["trr/solve_induction/adv_mean"]) and out["trr/solve_induction/count"] == 0
    assert out["frac_reward_zero_std"] == 0.5  # one of the two non-empty groups
    # one global baseline group: its rewards differ, so no group has zero std
    assert trr_metrics(rewards, torch.zeros(6, dtype=torch.long), seq_adv, six)["frac_reward_zero_std"] == 0.0
    # loss shares: four 30-token proposals and two 5-token answers under token-mean -> 120/130 and 10/130
    weights = torch.tensor([30.0, 30.0, 30.0, 30.0, 5.0, 5.0]) / 130
    out = trr_metrics(rewards, six, seq_adv, six, weights)
    assert out["trr/propose_deduction/loss_share"] == pytest.approx(120 / 130)
    assert out["trr/solve_deduction/loss_share"] == pytest.approx(10 / 130)
    assert out["trr/solve_induction/loss_share"] == 0.0


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean", "group-token-mean"])
def test_update_logs_loss_shares(aggregation):
    """The six trr/*/loss_share values of a real update: they sum to 1, and they are the group's tokens over all
    tokens (token-mean), its sequences over all (seq-mean), or 1/6 each (group-token-mean)."""
    ctx = make_ctx(aggregation=aggregation)
    seqs, rewards, task, role = batch(ctx.tokenizer)
    out = update(ctx, seqs, rewards, task, role)
    lengths = torch.tensor([float(len(c)) for _, c in seqs])
    groups = task * 2 + role
    shares = {g: out[f"trr/{group_name(r, k)}/loss_share"] for g, (k, r) in
              enumerate((k, r) for k in TASK_KINDS for r in ROLES)}
    assert sum(shares.values()) == pytest.approx(1.0)
    for g, share in shares.items():
        expected = {"token-mean": float(lengths[groups == g].sum() / lengths.sum()),
                    "seq-mean": 2 / 12, "group-token-mean": 1 / 6}[aggregation]
        assert share == pytest.approx(expected)


def rollout(lengths, clipped):
    mask = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return SimpleNamespace(completion_mask=mask, truncated=torch.tensor(clipped))


def test_outcome_metrics_by_hand():
    task = make_task("deduction", parse_program("a + b"), [(1, 2)])
    proposals = [Proposal("deduction", "", task=task, solve_rate=0.5), Proposal("deduction", "", task=task,
                 solve_rate=1.0), Proposal("deduction", "", reason="invalid program: x"),
                 Proposal("abduction", "", reason="no input")]
    novel = [True, False, False, False]
    solve_tasks = [task, task, task]
    verdicts = [Verdict.CORRECT, Verdict.WRONG, Verdict.MALFORMED]
    counts = count_outcomes(proposals, novel, solve_tasks, verdicts,
                            rollout([4, 6, 8, 2], [False, False, True, False]), rollout([1, 2, 3], [False, True, True]))
    out = outcome_metrics(counts)
    assert out["tasks/propose_deduction/valid_rate"] == pytest.approx(2 / 3)
    assert out["tasks/propose_deduction/learnability"] == 0.75
    assert out["tasks/propose_deduction/learnable_rate"] == pytest.approx(1 / 3)
    assert out["tasks/propose_deduction/novel_rate"] == pytest.approx(1 / 3)
    assert out["tasks/propose_deduction/rejected/invalid_program"] == 1
    assert out["tasks/propose_abduction/rejected/no_input"] == 1
    assert out["tasks/propose_abduction/valid_rate"] == 0 and math.isnan(out["tasks/propose_abduction/learnability"])
    assert out["tasks/propose/valid_rate"] == 0.5 and out["tasks/propose/learnability"] == 0.75
    assert out["tasks/solve_deduction/accuracy"] == pytest.approx(1 / 3)
    assert out["tasks/solve_deduction/malformed_rate"] == pytest.approx(1 / 3)
    assert out["completions/propose_deduction/mean_length"] == 6 and out["completions/solve_deduction/mean_length"] == 2
    assert out["completions/propose_deduction/clipped_ratio"] == pytest.approx(1 / 3)
    assert out["completions/mean_length"] == pytest.approx(26 / 7)
    assert out["completions/clipped_ratio"] == pytest.approx(3 / 7)


def test_in_batch_repeats_of_a_new_skeleton_are_novel_once():
    buffers = {k: TaskBuffer(k) for k in TASK_KINDS}
    buffers["deduction"].add([make_task("deduction", parse_program("a + b"), [(1, 2)])])
    ctx = SimpleNamespace(buffers=buffers, accelerator=SimpleNamespace(num_processes=1, process_index=0))

    def prop(kind, program, inputs):
        return Proposal(kind, "", task=make_task(kind, parse_program(program), inputs))

    proposals = [prop("deduction", "a * b", [(1, 2)]), prop("deduction", "a * b", [(3, 4)]),  # new, then a repeat
                 prop("deduction", "a + b", [(5, 6)]),  # already in the buffer
                 Proposal("deduction", "", reason="invalid program"),
                 prop("abduction", "a * b", [(1, 2)])]  # new to the abduction buffer
    assert seen_counts(ctx, proposals) == [0, 1, 1, None, 0]  # novel: seen 0 times


def test_output_novelty_is_new_to_the_buffer_and_counts_in_batch_repeats_once():
    buffers = {k: TaskBuffer(k) for k in TASK_KINDS}
    buffers["deduction"].add([make_task("deduction", parse_program("a + b"), [(1, 2)])])  # output 3
    ctx = SimpleNamespace(buffers=buffers, accelerator=SimpleNamespace(num_processes=1, process_index=0))

    def prop(kind, program, inputs):
        return Proposal(kind, "", task=make_task(kind, parse_program(program), inputs))

    proposals = [prop("deduction", "a * b", [(1, 3)]),  # output 3: already in the buffer
                 prop("deduction", "a * b", [(7, 6)]), prop("deduction", "a + b", [(40, 2)]),  # 42 new, then a repeat
                 Proposal("deduction", "", reason="invalid program"),
                 prop("abduction", "a + b", [(1, 2)])]  # 3 is new to the abduction buffer
    assert seen_counts(ctx, proposals, "output") == [1, 0, 1, None, 0]
    buffers["deduction"].add([make_task("deduction", parse_program("a"), [(42, 0)])])
    assert 42 not in buffers["deduction"].outputs() and (42,) in buffers["deduction"].outputs()


@pytest.mark.parametrize("solve_rate, output_seen, expected", [
    (0.5, 0, 0.5 + 0.3),   # learnable and a new output: the bonus
    (0.5, 1, 0.5),
    (0.5, None, 0.5),      # not counted
    (1.0, 0, 0.0),         # p = 1 (or 0): no bonus, whatever the output
    (0.0, 0, 0.0),
])
def test_output_novelty_bonus_only_for_learnable_tasks(solve_rate, output_seen, expected):
    cfg = Config(output_novelty_coef=0.3)
    p = Proposal("deduction", "", task=make_task("deduction", parse_program("a * b"), [(12, 34)]), solve_rate=solve_rate)
    assert proposer_reward(cfg, p, 5, output_seen) == pytest.approx(expected)


@pytest.mark.parametrize("solve_rate, output_seen, expected", [
    (0.75, 0, 0.25 + 0.4),            # never seen: the whole coefficient, as in 'new'
    (0.75, 3, 0.25 + 0.4 / 2),        # seen 3 times: 0.4 / sqrt(4)
    (0.75, 15, 0.25 + 0.4 / 4),       # seen 15 times: 0.4 / sqrt(16)
    (1.0, 0, 0.0),                    # not learnable: nothing
])
def test_count_output_novelty_decays_with_the_square_root_of_repeats(solve_rate, output_seen, expected):
    cfg = Config(output_novelty_coef=0.4, output_novelty="count")
    p = Proposal("deduction", "", task=make_task("deduction", parse_program("a * b"), [(12, 34)]), solve_rate=solve_rate)
    assert proposer_reward(cfg, p, 5, output_seen) == pytest.approx(expected)


@pytest.mark.parametrize("program, inputs, solve_rate, expected", [
    ("a + b", [(1, 2)], 0.75, 0.25),               # output 3: one digit, no bonus
    ("a + b", [(40, 2)], 0.75, 0.25 + 0.6 / 2),     # 42: two digits, coef / 2
    ("a - b", [(2, 900)], 0.5, 0.5 + 0.6 * 2 / 3),  # -898: three digits (the sign does not count)
    ("a * b", [(100, 100)], 0.5, 0.5 + 0.6 * 4 / 5),  # 10000: five digits
    ("a * b", [(100, 100)], 1.0, 0.0),             # p = 1 (or 0): nothing, however long the output
    ("a * b", [(100, 100)], 0.0, 0.0),
])
def test_output_digits_bonus_by_hand(program, inputs, solve_rate, expected):
    cfg = Config(output_digits_coef=0.6)
    p = Proposal("deduction", "", task=make_task("deduction", parse_program(program), inputs), solve_rate=solve_rate)
    assert proposer_reward(cfg, p, 5, 5) == pytest.approx(expected)
    assert proposer_reward(Config(), p, 5, 5) == pytest.approx(expected if solve_rate in (0.0, 1.0) else 1 - solve_rate)


def test_output_digits_bonus_takes_the_largest_output_of_an_induction_task():
    inputs = [(1, 2), (30, 40), (-5, 5)] + [(1, i) for i in range(3, N_INDUCTION_INPUTS)]
    task = make_task("induction", parse_program("a * b"), inputs)  # outputs 2, 1200, -25, 3, 4, ...
    assert task.outputs[:3] == (2, 1200, -25)
    assert output_digits_bonus(task) == pytest.approx(1 - 1 / 4)


@pytest.mark.parametrize("mode, solve_rate, skeleton_seen, expected", [
    ("count", 0.75, 0, 0.25 + 0.2),       # a skeleton never seen: the whole coefficient
    ("count", 0.75, 3, 0.25 + 0.2 / 2),   # seen 3 times: 0.2 / sqrt(4)
    ("count", 0.5, 8, 0.5 + 0.2 / 3),     # seen 8 times: 0.2 / sqrt(9)
    ("count", 1.0, 0, 0.0),               # count mode: not learnable, nothing
    ("count", 0.0, 0, 0.0),
    ("new", 1.0, 0, 0.2),                 # new mode: any valid proposal with an unseen skeleton
    ("new", 0.75, 3, 0.25),
])
def test_skeleton_diversity_bonus_new_and_count(mode, solve_rate, skeleton_seen, expected):
    cfg = Config(diversity_coef=0.2, diversity=mode, output_novelty_coef=0.4)
    p = Proposal("deduction", "", task=make_task("deduction", parse_program("a * b"), [(12, 34)]), solve_rate=solve_rate)
    assert proposer_reward(cfg, p, skeleton_seen, None) == pytest.approx(expected)  # output not counted: no output bonus
    assert proposer_reward(cfg, Proposal("deduction", "", reason="invalid program"), None, None) == -1.0


def test_novelty_bonus_by_hand():
    assert [novelty_bonus("new", s) for s in (None, 0, 1, 7)] == [0.0, 1.0, 0.0, 0.0]
    assert [novelty_bonus("count", s) for s in (None, 0, 3, 99)] == pytest.approx([0.0, 1.0, 0.5, 0.1])


def test_seen_counts_add_the_buffer_and_earlier_proposals_of_the_iteration():
    buffers = {k: TaskBuffer(k) for k in TASK_KINDS}
    buffers["deduction"].add([make_task("deduction", parse_program("a + b"), [(1, 2)])] * 2)  # output 3, twice
    ctx = SimpleNamespace(buffers=buffers, accelerator=SimpleNamespace(num_processes=1, process_index=0))

    def prop(kind, program, inputs):
        return Proposal(kind, "", task=make_task(kind, parse_program(program), inputs))

    proposals = [prop("deduction", "a * b", [(1, 3)]), prop("deduction", "a - b", [(5, 2)]),  # 3: buffer 2, then 3
                 prop("deduction", "a + b", [(40, 2)]),  # 42: new
                 Proposal("deduction", "", reason="invalid program"),
                 prop("abduction", "a + b", [(1, 2)])]  # 3 is new to the abduction buffer
    assert seen_counts(ctx, proposals, "output") == [2, 3, 0, None, 0]
    assert seen_counts(ctx, proposals, "skeleton") == [0, 0, 2, None, 0]
    assert seen_counts(ctx, proposals, "operators") == [0, 0, 2, None, 0]  # "*", "-", "+" (twice in the buffer)
    more = [prop("deduction", "a * 3 + b", [(1, 2)]), prop("deduction", "b + a * 7", [(1, 2)]),  # same set "+ *"
            prop("deduction", "(a + 1) * (b + 2)", [(1, 2)])]  # another skeleton, the same operator set again
    assert seen_counts(ctx, more, "skeleton") == [0, 0, 0] and seen_counts(ctx, more, "operators") == [0, 1, 2]


@pytest.mark.parametrize("solve_rate, valid, novel, mode, expected", [
    (None, False, False, "learnability", -1.0),
    (0.25, True, False, "learnability", 0.75),
    (0.0, True, False, "learnability", -0.5),  # p in {0, 1}: the extreme reward
    (1.0, True, False, "learnability", -0.5),
    (0.5, True, True, "learnability", 0.5 + 0.1),
    (1.0, True, False, "validity", 1.0),
    (None, False, True, "validity", -1.0),  # an invalid proposal never earns the novelty bonus
])
def test_proposer_reward(solve_rate, valid, novel, mode, expected):
    cfg = Config(proposer_reward=mode, proposer_extreme_reward=-0.5, diversity_coef=0.1)
    task = make_task("deduction", parse_program("a + b"), [(1, 2)]) if valid else None
    p = Proposal("deduction", "", task=task, solve_rate=solve_rate)
    assert proposer_reward(cfg, p, 0 if novel else 2) == pytest.approx(expected)  # skeleton seen 0 times: novel


@pytest.mark.parametrize("inputs", ["small", "wide"])
def test_seeding_draws_the_built_in_tasks_on_the_configured_inputs(inputs):
    ctx = make_ctx(seed_rounds=0, seed_buffer_size=30, seed_inputs=inputs)  # no model rounds: all built in
    stats = seed_buffers(ctx, log=lambda line: None)
    values = [x for kind in TASK_KINDS for t in ctx.buffers[kind] for pair in t.inputs for x in pair]
    assert all(stats[f"seed/{kind}/size"] == 30 for kind in TASK_KINDS)
    largest = max(abs(x) for x in values)
    if inputs == "small":
        assert largest <= 10
    else:  # 1-3 digits equally often: of 90 tasks' inputs, many have 3 digits
        assert 100 <= largest <= 999 and sum(abs(x) >= 100 for x in values) > len(values) / 5


def test_learnability_rollouts_use_their_own_temperature():
    """Near-greedy learnability rollouts repeat one answer per task (p is 0 or 1); at --temperature they differ."""
    tasks = [make_task("deduction", parse_program(f"a + {k}"), [(k, 1)]) for k in range(6)]

    def texts(**overrides):
        ctx = make_ctx(learnability_rollouts=4, **overrides)
        proposals = [Proposal("deduction", "", task=t) for t in tasks]
        learn = selfplay.estimate_learnability(ctx, proposals)
        assert all(p.solve_rate in (0.0, 0.25, 0.5, 0.75, 1.0) for p in proposals)
        return [learn.rollout.texts[i * 4:(i + 1) * 4] for i in range(len(tasks))]

    assert all(len(set(group)) == 1 for group in texts(temperature=1.0, learnability_temperature=1e-4))
    assert any(len(set(group)) > 1 for group in texts(temperature=1.0))


def test_proposals_sample_at_the_proposer_temperature_and_solvers_at_theirs():
    ctx = make_ctx(temperature=0.7, propose_temperature=1.3)
    seed_buffers(ctx, log=lambda line: None)
    calls = []
    generate = ctx.engine.generate
    ctx.engine.generate = lambda *a, **k: (calls.append(k["temperature"]), generate(*a, **k))[1]
    selfplay.propose(ctx, 2)
    assert calls == [1.3]
    task = make_task("deduction", parse_program("a + 1"), [(1, 1)])
    selfplay.estimate_learnability(ctx, [Proposal("deduction", "", task=task)])
    selfplay.solve(ctx, {k: list(ctx.buffers[k])[:2] for k in TASK_KINDS})
    assert calls == [1.3, 0.7, 0.7]

"""The update's micro-batch loop: token-budget planning, and invariance of the optimizer step to how the
iteration's sequences are cut into micro-batches."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from azero.rl.batching import micro_batches, plan


def seqs_of(lengths: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(3, 90, (p,), generator=g), torch.randint(3, 90, (c,), generator=g)) for p, c in lengths]


def test_plan_respects_rows_and_token_budget():
    seqs = seqs_of([(30, 5)] * 6 + [(300, 60)] * 3 + [(10, 0)])
    chunks = plan(seqs, size=4, max_tokens=400)
    assert sorted(i for c in chunks for i in c) == list(range(10))
    for c in chunks:
        cost = len(c) * (max(len(seqs[i][0]) for i in c) + max(max(len(seqs[i][1]) for i in c), 1))
        assert len(c) <= 4 and (cost <= 400 or len(c) == 1)  # a row over the budget goes alone
    assert [len(c) for c in chunks] == [4, 3, 1, 1, 1]  # (10, 0) + 3 short: 4 x 35 = 140; then 3; long rows alone


def test_forced_count_splits_the_largest_micro_batches():
    seqs = seqs_of([(20, 4)] * 8 + [(50, 10)] * 2)
    base = plan(seqs, size=16, max_tokens=0)
    assert len(base) == 1
    mbs = micro_batches(seqs, 16, pad_id=0, count=5)
    assert len(mbs) == 5 and sorted(int(i) for mb in mbs for i in mb.rows) == list(range(10))
    with pytest.raises(ValueError):
        micro_batches(seqs, 16, pad_id=0, count=11)


def tiny_context(cfg):
    from accelerate import Accelerator

    from azero import selfplay
    from azero.models import frozen_copy, load_policy, tiny_tokenizer
    from azero.trainer import make_optimizer

    tokenizer = tiny_tokenizer()
    policy = load_policy("tiny", tokenizer=tokenizer, seed=0)
    ref = frozen_copy(policy)
    optimizer = make_optimizer(cfg, policy)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    accelerator = Accelerator(cpu=True, mixed_precision="no")
    model, optimizer = accelerator.prepare(policy, optimizer)
    return selfplay.Context(cfg, accelerator, model, ref, tokenizer, optimizer, scheduler, {}, random.Random(0))


def random_batch(seed: int):
    """12 sequences of mixed lengths with random rewards, over the three task types."""
    g = torch.Generator().manual_seed(seed)
    lengths = [(int(torch.randint(4, 40, (1,), generator=g)), int(torch.randint(1, 12, (1,), generator=g)))
               for _ in range(12)]
    return seqs_of(lengths), torch.randn(12, generator=g), torch.arange(12) % 3


def update_step(batch, role_idx, **flags) -> tuple[dict, list[torch.Tensor]]:
    """One update of a fresh tiny policy (tiny preset, lr 1e-2, ``flags`` on top): its metrics and the accumulated
    gradient of every parameter as the optimizer step saw it."""
    from azero import selfplay
    from azero.config import PRESETS, Config

    seqs, rewards, task_idx = batch
    ctx = tiny_context(dataclasses.replace(Config(**PRESETS["tiny"]), lr=1e-2, **flags))
    grads = []
    step = ctx.optimizer.step
    ctx.optimizer.step = lambda *a, **k: (grads.extend(p.grad.clone() for p in ctx.policy.parameters()), step(*a, **k))
    return selfplay.update(ctx, seqs, rewards, task_idx, role_idx), grads


def assert_same_step(a, b) -> None:
    (ma, ga), (mb, gb) = a, b
    for key in ("loss/pg", "loss/kl", "loss/total", "optim/grad_norm"):
        assert ma[key] == pytest.approx(mb[key], rel=1e-4, abs=1e-6), key
    assert len(ga) == len(gb) > 0
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("kl_in_reward", [False, True])
def test_step_is_invariant_to_micro_batching(kl_in_reward):
    """One update on 12 sequences of mixed lengths: one micro-batch, one row each, and a token budget give the same
    accumulated gradient at the optimizer step and the same loss metrics (token-mean over the global count)."""
    batch, role_idx = random_batch(1), (torch.arange(12) // 3) % 2
    results = [update_step(batch, role_idx, micro_batch_size=size, micro_batch_tokens=tokens, kl_in_reward=kl_in_reward)
               for size, tokens in ((64, 0), (1, 0), (64, 120))]
    counts = [m["optim/micro_batches"] for m, _ in results]
    assert counts[0] == 1 and counts[1] == 12 and 1 < counts[2] < 12
    for other in results[1:]:
        assert_same_step(results[0], other)


def test_rows_of_different_temperatures_never_share_a_micro_batch():
    seqs = seqs_of([(30, 5), (300, 60), (10, 2), (40, 8)] * 4)
    temps = [0.7, 1.3] * 8
    for count in (None, 10):
        mbs = micro_batches(seqs, 4, pad_id=0, max_tokens=400, count=count, temperatures=temps)
        assert sorted(int(i) for mb in mbs for i in mb.rows) == list(range(16))
        for mb in mbs:
            assert {temps[int(i)] for i in mb.rows} == {mb.temperature}
    assert all(mb.temperature is None for mb in micro_batches(seqs, 4, pad_id=0))  # no temperatures given


@pytest.mark.parametrize("kl_in_reward", [False, True])
def test_proposer_temperature_scores_proposer_rows_and_only_them(kl_in_reward):
    """--propose-temperature T: proposer rows score at T in the loss and the KL (an all-proposer batch steps exactly
    as under --temperature T), solver rows keep --temperature (an all-solver batch ignores the flag), and a mixed
    batch still steps the same whatever its micro-batching."""
    batch = random_batch(2)

    def step(role_idx, **flags):
        return update_step(batch, role_idx, kl_in_reward=kl_in_reward, **flags)

    proposers, solvers, mixed = torch.zeros(12, dtype=torch.long), torch.ones(12, dtype=torch.long), torch.arange(12) % 2
    assert_same_step(step(proposers, temperature=0.7, propose_temperature=1.3), step(proposers, temperature=1.3))
    assert_same_step(step(solvers, temperature=0.7, propose_temperature=1.3), step(solvers, temperature=0.7))
    assert_same_step(step(mixed, temperature=0.7, propose_temperature=1.3),
                     step(mixed, micro_batch_size=1, temperature=0.7, propose_temperature=1.3))
    with pytest.raises(AssertionError):  # and the flag does change a batch that has proposer rows
        assert_same_step(step(mixed, temperature=0.7, propose_temperature=1.3), step(mixed, temperature=0.7))

"""TRR++ advantages: rewards normalised within (task, role) groups over this iteration's sequences.

Group ids: ``task_role`` -> 2 * task + role (6 baselines: task 0..2, role 0 propose / 1 solve),
``role`` -> role (2), ``global`` -> 0 (1, plain REINFORCE++ global normalisation).

Statistics are population statistics (divide by n, as OpenRLHF; AZR's veRL whitening divides by n - 1): the
unbiased std is NaN for a group of one and inflates small groups. eps is added to the std (as GRPO). A group
whose values are all equal (a group of one included) gets advantage exactly 0, not (r - mean) / eps noise.

Multi-process: these functions are local and pure. The trainer all-gathers every rank's rewards and group
ids, calls them on the full iteration batch (identically on every rank) and keeps its own rows; computing
them on a rank's shard alone would give each rank different baselines.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

Grouping = Literal["task_role", "role", "global"]
GROUPINGS = get_args(Grouping)


def group_ids(task: Tensor, role: Tensor, grouping: Grouping) -> Tensor:
    """[N] long group id of each sequence under ``grouping`` (see module docstring)."""
    if grouping == "task_role":
        return task.long() * 2 + role.long()
    if grouping == "role":
        return role.long().clone()
    if grouping == "global":
        return torch.zeros_like(task, dtype=torch.long)
    raise ValueError(f"unknown grouping {grouping!r}; choose one of {GROUPINGS}")


def group_stats(values: Tensor, groups: Tensor, num_groups: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group (mean, population std, count), each [G]; G = num_groups or groups.max() + 1. Empty groups: 0, 0, 0.
    Pass num_groups (6 for task_role) when logging, so a group absent this iteration still has its row."""
    if num_groups is None:
        num_groups = int(groups.max()) + 1 if groups.numel() else 0
    count = torch.bincount(groups, minlength=num_groups).to(values.dtype)  # [G]
    total = values.new_zeros(num_groups).index_add_(0, groups, values)
    mean = total / count.clamp(min=1)
    # two-pass variance: E[x^2] - E[x]^2 cancels catastrophically when |mean| >> std
    sq_dev = values.new_zeros(num_groups).index_add_(0, groups, (values - mean[groups]).square())
    return mean, (sq_dev / count.clamp(min=1)).sqrt(), count


def group_normalize(rewards: Tensor, groups: Tensor, eps: float = 1e-6) -> Tensor:
    """[N] advantages A = (r - mean_g) / (std_g + eps); exactly 0 in groups whose rewards are all equal."""
    mean, std, _ = group_stats(rewards, groups)
    num_groups = mean.numel()
    lo = rewards.new_full((num_groups,), float("inf")).scatter_reduce_(0, groups, rewards, "amin")
    hi = rewards.new_full((num_groups,), float("-inf")).scatter_reduce_(0, groups, rewards, "amax")
    constant = (hi == lo)[groups]  # [N]; the float mean of equal values need not equal them exactly
    advantages = (rewards - mean[groups]) / (std[groups] + eps)
    return torch.where(constant, torch.zeros_like(advantages), advantages)


def group_token_divisors(lengths: Tensor, groups: Tensor) -> Tensor:
    """[N] per-sequence loss divisors T_g * G ("group-token-mean" in loss.py; T_g the tokens of the sequence's group,
    G the number of non-empty groups): summing each sequence's token losses divided by its divisor gives the mean
    over groups of each group's token mean, so every (task, role) objective weighs 1 / G whatever its lengths."""
    tokens = lengths.new_zeros(int(groups.max()) + 1).index_add_(0, groups, lengths)  # [G] tokens per group
    present = torch.bincount(groups).gt(0).sum()
    return (tokens[groups] * present).clamp(min=1)


def loss_weights(lengths: Tensor, groups: Tensor, aggregation: str) -> Tensor:
    """[N] the share of the loss's total weight that each sequence's tokens carry under ``aggregation`` (sums to 1
    over the sequences that have tokens): token-mean gives a sequence its share of all tokens, seq-mean 1 / N, and
    group-token-mean 1 / G split over the group by length. Summed per (task, role) group, this shows how much of
    the step a group drives: under token-mean a 4-token answer weighs a tenth of a 40-token proposal."""
    if aggregation == "token-mean":
        w = lengths.clone()
    elif aggregation == "seq-mean":
        w = lengths.gt(0).to(lengths.dtype)  # a sequence with no tokens adds nothing to the loss
    elif aggregation == "group-token-mean":
        w = lengths / group_token_divisors(lengths, groups)
    else:
        raise ValueError(f"unknown aggregation {aggregation!r}")
    return w / w.sum().clamp(min=torch.finfo(w.dtype).tiny)


def kl_in_reward_advantages(
    rewards: Tensor, kl: Tensor, mask: Tensor, beta: float, groups: Tensor, eps: float = 1e-6
) -> Tensor:
    """[N, C] REINFORCE++ advantages with the KL folded into the reward (gamma = 1).

    The sequence reward sits on the last valid token and every token pays -beta * kl_t, so the return of
    token t is G_t = r - beta * sum_{i >= t} kl_i. ``kl`` [N, C] is k1 of the rollout policy against the
    reference (no gradient). Returns are normalised within each group over the group's valid TOKENS
    (token-weighted mean and std, as OpenRLHF/veRL whiten returns), so longer sequences weigh more.
    Padding positions get 0.
    """
    valid = mask.bool()
    kl = torch.where(valid, kl.detach(), torch.zeros_like(kl))  # padding may hold garbage: select, never multiply
    kl_to_go = kl.flip(-1).cumsum(-1).flip(-1)  # [N, C] sum_{i >= t} kl_i
    returns = rewards[:, None] - beta * kl_to_go  # [N, C]
    token_groups = groups[:, None].expand_as(returns)[valid]  # [T] one entry per valid token
    advantages = torch.zeros_like(returns)
    advantages[valid] = group_normalize(returns[valid], token_groups, eps)
    return advantages

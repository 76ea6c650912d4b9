import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from azero.rl.advantages import GROUPINGS, group_ids, group_normalize, group_stats, kl_in_reward_advantages

EPS = 1e-6
# Toy batch: two tasks x two roles (role 0 propose, 1 solve).
TASK = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
ROLE = torch.tensor([0, 0, 1, 1, 1, 0, 0, 1])
REWARDS = torch.tensor([1.0, 0.0, 1.0, 1.0, -0.5, -1.0, -1.0, 0.25], dtype=torch.float64)


def test_group_ids():
    assert group_ids(TASK, ROLE, "task_role").tolist() == [0, 0, 1, 1, 1, 2, 2, 3]  # 2 * task + role
    assert group_ids(TASK, ROLE, "role").tolist() == ROLE.tolist()
    assert group_ids(TASK, ROLE, "global").tolist() == [0] * 8
    assert GROUPINGS == ("task_role", "role", "global")
    with pytest.raises(ValueError):
        group_ids(TASK, ROLE, "task")


def test_six_baselines_by_hand():
    adv = group_normalize(REWARDS, group_ids(TASK, ROLE, "task_role"), eps=EPS)
    # (task 0, propose) [1, 0]: mean 0.5, population std 0.5
    # (task 0, solve) [1, 1, -0.5]: mean 0.5, var (0.25 + 0.25 + 1) / 3 = 0.5
    # (task 1, propose) [-1, -1]: all equal -> 0 ; (task 1, solve) [0.25]: group of one -> 0
    s = math.sqrt(0.5)
    expected = [0.5 / (0.5 + EPS), -0.5 / (0.5 + EPS),
                0.5 / (s + EPS), 0.5 / (s + EPS), -1.0 / (s + EPS),
                0.0, 0.0, 0.0]
    assert torch.allclose(adv, torch.tensor(expected, dtype=torch.float64))
    assert adv[5:].eq(0).all()  # exactly zero


def test_two_baselines_by_hand():
    adv = group_normalize(REWARDS, group_ids(TASK, ROLE, "role"), eps=EPS)
    # propose [1, 0, -1, -1]: mean -0.25, var (1.5625 + 0.0625 + 0.5625 + 0.5625) / 4 = 0.6875
    # solve [1, 1, -0.5, 0.25]: mean 0.4375, var (0.31640625 * 2 + 0.87890625 + 0.03515625) / 4 = 0.38671875
    sp, ss = math.sqrt(0.6875), math.sqrt(0.38671875)
    expected = [1.25 / (sp + EPS), 0.25 / (sp + EPS), 0.5625 / (ss + EPS), 0.5625 / (ss + EPS), -0.9375 / (ss + EPS),
                -0.75 / (sp + EPS), -0.75 / (sp + EPS), -0.1875 / (ss + EPS)]
    assert torch.allclose(adv, torch.tensor(expected, dtype=torch.float64))


def test_one_baseline_by_hand():
    adv = group_normalize(REWARDS, group_ids(TASK, ROLE, "global"), eps=EPS)
    # all 8: mean 0.75 / 8 = 0.09375 ; population variance = mean of squares - mean^2
    mean = 0.09375
    var = (1 + 0 + 1 + 1 + 0.25 + 1 + 1 + 0.0625) / 8 - mean**2
    expected = [(r - mean) / (math.sqrt(var) + EPS) for r in REWARDS.tolist()]
    assert torch.allclose(adv, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("value", [0.1, -0.5, 1 / 3, 1e6 + 0.1])
def test_equal_rewards_give_exactly_zero(value):
    # float sums of equal values need not divide back to the value; the result must still be exactly 0
    rewards = torch.full((7,), value)
    assert group_normalize(rewards, torch.zeros(7, dtype=torch.long)).eq(0).all()


def test_group_of_one_gives_zero():
    adv = group_normalize(torch.tensor([3.0, 1.0, 0.0]), torch.tensor([0, 1, 1]))
    assert adv[0] == 0 and adv[1] > 0 > adv[2]


def test_group_stats_with_empty_groups():
    mean, std, count = group_stats(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([0, 0, 4]), num_groups=6)
    assert mean.tolist() == [2.0, 0, 0, 0, 5.0, 0] and std.tolist() == [1.0, 0, 0, 0, 0, 0]
    assert count.tolist() == [2, 0, 0, 0, 1, 0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0])), min_size=1,
                max_size=40))
def test_matches_a_per_group_loop(rows):
    groups = torch.tensor([g for g, _ in rows])
    rewards = torch.tensor([r for _, r in rows], dtype=torch.float64)
    adv = group_normalize(rewards, groups, eps=EPS)
    for g in groups.unique():
        r = rewards[groups == g]
        expected = torch.zeros_like(r) if r.max() == r.min() else (r - r.mean()) / (r.std(unbiased=False) + EPS)
        assert torch.allclose(adv[groups == g], expected)


def test_kl_in_reward_by_hand():
    rewards = torch.tensor([1.0, 0.0], dtype=torch.float64)
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.4, float("nan")]], dtype=torch.float64)  # nan on padding
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = kl_in_reward_advantages(rewards, kl, mask, beta=0.5, groups=torch.tensor([0, 0]), eps=EPS)
    # G_t = r - 0.5 * sum_{i >= t} kl_i: seq 0 [1 - 0.3, 1 - 0.25, 1 - 0.15], seq 1 [-0.45, -0.2]
    returns = [0.7, 0.75, 0.85, -0.45, -0.2]
    mean = sum(returns) / 5  # 0.33, token-weighted over the group's 5 valid tokens
    std = math.sqrt(sum((g - mean) ** 2 for g in returns) / 5)  # population: sqrt(0.2946)
    a = [(g - mean) / (std + EPS) for g in returns]
    expected = torch.tensor([[a[0], a[1], a[2]], [a[3], a[4], 0.0]], dtype=torch.float64)
    assert torch.allclose(adv, expected)
    assert adv[1, 2] == 0


def test_kl_in_reward_groups_are_separate_and_beta_zero_is_plain_normalisation():
    rewards = torch.tensor([1.0, 0.0, 1.0, -1.0])
    kl, mask, groups = torch.rand(4, 3), torch.ones(4, 3), torch.tensor([0, 0, 1, 1])
    adv = kl_in_reward_advantages(rewards, kl, mask, beta=0.0, groups=groups)
    assert torch.allclose(adv, group_normalize(rewards, groups)[:, None].expand(4, 3))
    shaped = kl_in_reward_advantages(rewards, kl, mask, beta=0.1, groups=groups)
    alone = kl_in_reward_advantages(rewards[2:], kl[2:], mask[2:], beta=0.1, groups=torch.tensor([0, 0]))
    assert torch.allclose(shaped[2:], alone)

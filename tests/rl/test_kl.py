import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from azero.rl.kl import kl_estimate

finite = st.floats(min_value=-40.0, max_value=0.0, allow_nan=False, width=32)


def test_estimators_on_hand_computed_numbers():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    ref = torch.tensor([-2.0, -1.0, -0.5])  # log-ratios 1, -1, 0
    assert torch.allclose(kl_estimate(logp, ref, "k1"), torch.tensor([1.0, -1.0, 0.0]))
    assert torch.allclose(kl_estimate(logp, ref, "k2"), torch.tensor([0.5, 0.5, 0.0]))
    # k3 = exp(-lr) - 1 + lr: lr = 1 -> e^-1 ; lr = -1 -> e - 2 ; lr = 0 -> 0
    expected = torch.tensor([math.exp(-1), math.e - 2, 0.0])
    assert torch.allclose(kl_estimate(logp, ref, "k3"), expected, atol=1e-7)
    assert torch.allclose(kl_estimate(logp, ref), expected, atol=1e-7)  # k3 is the default


def test_k3_gradient_is_one_minus_inverse_ratio():
    logp = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    ref = torch.tensor([-2.0, -1.0, -0.5])
    kl_estimate(logp, ref, "k3").sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([1 - math.exp(-1), 1 - math.e, 0.0]))


def test_k3_keeps_precision_for_tiny_log_ratios():
    # lr = 1e-4: k3 = lr^2 / 2 - lr^3 / 6 + ... ; exp(-lr) - 1 in fp32 would be off by ~100%
    k3 = kl_estimate(torch.tensor([1e-4]), torch.tensor([0.0]), "k3")
    assert k3.item() == pytest.approx(0.5e-8 - 1e-12 / 6, rel=1e-3)


def test_k3_clamps_log_ratio_at_20_with_zero_gradient():
    logp = torch.tensor([-60.0, 50.0], requires_grad=True)
    k3 = kl_estimate(logp, torch.tensor([-10.0, 0.0]), "k3")  # log-ratios -50 and +50
    assert torch.allclose(k3, torch.tensor([math.exp(20) - 21, math.exp(-20) + 19]))
    k3.sum().backward()
    assert torch.equal(logp.grad, torch.zeros(2))  # no gradient pushing the wrong way


@given(finite, finite)
def test_k3_is_non_negative(logp, ref):
    assert kl_estimate(torch.tensor([logp]), torch.tensor([ref]), "k3").item() >= 0.0


@given(finite)
def test_all_estimators_are_exactly_zero_when_policy_equals_reference(logp):
    x = torch.tensor([logp])
    for kind in ("k1", "k2", "k3"):
        assert kl_estimate(x, x.clone(), kind).item() == 0.0


def test_random_k3_non_negative():
    g = torch.Generator().manual_seed(0)
    logp, ref = -torch.rand(10_000, generator=g) * 30, -torch.rand(10_000, generator=g) * 30
    assert (kl_estimate(logp, ref, "k3") >= 0).all()


def test_unknown_estimator_raises():
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k4")

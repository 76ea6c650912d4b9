import math

import pytest
import torch

from azero.rl.logprobs import completion_logprobs
from azero.rl.loss import policy_loss

NAN, INF = float("nan"), float("inf")
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADV = torch.tensor([2.0, -1.0])
# log-ratios to the reference: [[0.5, 0, 0], [-0.5, 0.5, pad]]
LOGP = [[-1.0, -2.0, -0.5], [-1.5, -0.2, 0.0]]
REF = [[-1.5, -2.0, -0.5], [-1.0, -0.7, 0.0]]
ENT = [[1.0, 0.5, 2.0], [0.3, 0.7, 0.0]]
K3_POS, K3_NEG = math.exp(-0.5) - 0.5, math.exp(0.5) - 1.5  # k3 at log-ratio +0.5 and -0.5
G3_POS, G3_NEG = 1 - math.exp(-0.5), 1 - math.exp(0.5)  # d k3 / d logp there


def hand_example(aggregation="token-mean", normalizer=5.0, pad=0.0):
    logp = torch.tensor(LOGP)
    logp[1, 2] = pad
    logp.requires_grad_(True)
    entropy = torch.tensor(ENT)
    entropy[1, 2] = pad
    entropy.requires_grad_(True)
    loss, metrics = policy_loss(
        logp, logp.detach(), ADV, MASK, ref_logp=torch.tensor(REF), entropy=entropy,
        kl_coef=0.1, entropy_coef=0.01, aggregation=aggregation, normalizer=normalizer,
    )
    loss.backward()
    return loss, metrics, logp.grad, entropy.grad


def test_token_mean_value_and_gradient_by_hand():
    loss, metrics, grad, entropy_grad = hand_example()
    # ratio == 1, so pg = -A per token: seq 0 -> -2 (x3), seq 1 -> +1 (x2); sum -4 over 5 valid tokens
    kl_sum = K3_POS + 0 + 0 + K3_NEG + K3_POS
    assert metrics["loss/pg"].item() == pytest.approx(-4 / 5)
    assert metrics["loss/kl"].item() == pytest.approx(kl_sum / 5)
    assert metrics["loss/entropy"].item() == pytest.approx(4.5 / 5)
    assert metrics["loss/ratio"].item() == pytest.approx(1.0)
    assert metrics["loss/clip_frac"].item() == 0.0
    assert loss.item() == pytest.approx((-4 + 0.1 * kl_sum - 0.01 * 4.5) / 5)
    assert metrics["loss/total"].item() == loss.item()
    # d/dlogp: -A (REINFORCE) + 0.1 * (1 - exp(-lr)) (k3), all / 5 ; padding 0
    expected = torch.tensor([[-2 + 0.1 * G3_POS, -2.0, -2.0], [1 + 0.1 * G3_NEG, 1 + 0.1 * G3_POS, 0.0]]) / 5
    assert torch.allclose(grad, expected)
    assert torch.allclose(entropy_grad, -0.01 / 5 * MASK.float())


def test_seq_mean_value_and_gradient_by_hand():
    loss, metrics, grad, _ = hand_example("seq-mean", normalizer=2.0)
    per_token = [
        [-2 + 0.1 * K3_POS - 0.01 * 1.0, -2 - 0.01 * 0.5, -2 - 0.01 * 2.0],
        [1 + 0.1 * K3_NEG - 0.01 * 0.3, 1 + 0.1 * K3_POS - 0.01 * 0.7],
    ]
    assert loss.item() == pytest.approx((sum(per_token[0]) / 3 + sum(per_token[1]) / 2) / 2)
    assert metrics["loss/pg"].item() == pytest.approx((-2 + 1) / 2)
    expected = torch.tensor([
        [(-2 + 0.1 * G3_POS) / 3, -2 / 3, -2 / 3],
        [(1 + 0.1 * G3_NEG) / 2, (1 + 0.1 * G3_POS) / 2, 0.0],
    ]) / 2
    assert torch.allclose(grad, expected)


@pytest.mark.parametrize("pad", [1e4, INF, -INF, NAN])
@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean"])
def test_padding_contributes_nothing(pad, aggregation):
    clean = hand_example(aggregation)
    dirty = hand_example(aggregation, pad=pad)
    assert dirty[0].item() == clean[0].item()
    for name in clean[1]:
        assert dirty[1][name].item() == clean[1][name].item()
    assert torch.equal(dirty[2], clean[2]) and dirty[2][1, 2] == 0  # exact zero grad, no nan
    assert torch.equal(dirty[3], clean[3])


def test_garbage_everywhere_in_padding():
    # every input may hold inf/nan at padded positions, per-token advantages too
    def run(pad):
        def t(x):
            x = torch.tensor(x)
            x[1, 2] = pad
            return x
        logp = t(LOGP).requires_grad_(True)
        loss, _ = policy_loss(logp, t(LOGP), t([[2.0] * 3, [-1.0] * 3]), MASK, ref_logp=t(REF), entropy=t(ENT),
                              entropy_coef=0.01, normalizer=5)
        loss.backward()
        return loss, logp.grad

    (clean_loss, clean_grad), (loss, grad) = run(0.0), run(NAN)
    assert loss.item() == clean_loss.item() and torch.equal(grad, clean_grad)


def test_ppo_clip_selects_clipped_branch_with_zero_gradient():
    old = torch.zeros(1, 3)
    logp = torch.tensor([[0.5, -0.5, -0.5]], requires_grad=True)  # ratios e^0.5 = 1.65, e^-0.5 = 0.61, 0.61
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    loss, metrics = policy_loss(logp, old, adv, torch.ones(1, 3), clip_eps=0.2, normalizer=3)
    loss.backward()
    r = math.exp(-0.5)
    # token 0: A > 0, ratio > 1.2 -> max(-1.65, -1.2) = -1.2 (clipped, grad 0)
    # token 1: A < 0, ratio < 0.8 -> max(0.61, 0.8) = 0.8 (clipped, grad 0)
    # token 2: A > 0, ratio < 0.8 -> max(-0.61, -0.8) = -0.61 (unclipped, grad -A * ratio)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - r) / 3)
    assert torch.allclose(logp.grad, torch.tensor([[0.0, 0.0, -r / 3]]))
    assert metrics["loss/clip_frac"].item() == pytest.approx(2 / 3)
    assert metrics["loss/ratio"].item() == pytest.approx((math.exp(0.5) + 2 * r) / 3)


def test_kl_reported_but_not_optimised_when_kl_coef_is_zero():
    logp = torch.tensor(LOGP, requires_grad=True)
    loss, metrics = policy_loss(logp, logp.detach(), ADV, MASK, ref_logp=torch.tensor(REF), kl_coef=0.0, normalizer=5)
    loss.backward()
    assert metrics["loss/kl"].item() == pytest.approx((2 * K3_POS + K3_NEG) / 5)
    assert torch.allclose(logp.grad, -ADV[:, None] * MASK / 5)
    assert "loss/entropy" not in metrics


def test_per_token_advantages_equal_broadcast_sequence_advantages():
    logp = torch.tensor(LOGP)
    a = policy_loss(logp, logp, ADV, MASK, normalizer=5)[0]
    b = policy_loss(logp, logp, ADV[:, None].expand(2, 3).clone(), MASK, normalizer=5)[0]
    assert a.item() == b.item()


def test_metrics_are_additive_over_micro_batches():
    g = torch.Generator().manual_seed(0)
    logp, old, ref, ent = (-torch.rand(6, 5, generator=g) * 3 for _ in range(4))
    adv, mask = torch.randn(6, generator=g), (torch.rand(6, 5, generator=g) > 0.3).long()
    mask[:, 0] = 1
    for aggregation, normalizer in (("token-mean", mask.sum()), ("seq-mean", 6)):
        kw = dict(ref_logp=ref, entropy=ent, entropy_coef=0.01, aggregation=aggregation, normalizer=normalizer)
        full = policy_loss(logp, old, adv, mask, **kw)[1]
        parts = [policy_loss(logp[s], old[s], adv[s], mask[s], **{**kw, "ref_logp": ref[s], "entropy": ent[s]})[1]
                 for s in (slice(0, 2), slice(2, 6))]
        for name in full:
            assert torch.allclose(full[name], parts[0][name] + parts[1][name])


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean", "group-token-mean"])
def test_gradient_accumulation_equals_full_batch_on_the_tiny_model(model, make_batch, aggregation):
    input_ids, attention_mask, C, mask = make_batch(
        ["Q:", "Calculate: 3 * 4 = ", "ab", "x", "Hello", "7 + 1 = "],
        ["12", "7", "some longer answer", "", "1", "8"],
    )
    adv = torch.tensor([1.0, -0.5, 2.0, 0.3, -1.0, 0.0])
    normalizer = mask.sum() if aggregation == "token-mean" else mask.shape[0]  # GLOBAL count, same for every part
    if aggregation == "group-token-mean":  # per-sequence divisors from global group counts, sliced with the rows
        from azero.rl.advantages import group_token_divisors

        normalizer = group_token_divisors(mask.sum(-1).float(), torch.tensor([0, 1, 0, 2, 1, 1]))

    def grads(parts):
        model.zero_grad()
        for rows in parts:
            logp, entropy = completion_logprobs(model, input_ids[rows], attention_mask[rows], C, temperature=0.7,
                                                with_entropy=True)
            divisor = normalizer[rows] if torch.is_tensor(normalizer) and normalizer.dim() == 1 else normalizer
            loss, _ = policy_loss(logp, logp.detach(), adv[rows], mask[rows], entropy=entropy, entropy_coef=0.01,
                                  aggregation=aggregation, normalizer=divisor)
            loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    full = grads([slice(0, 6)])
    accumulated = grads([slice(0, 1), slice(1, 4), slice(4, 6)])
    assert any(g.abs().sum() > 0 for g in full)
    for a, b in zip(full, accumulated):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_unknown_aggregation_raises():
    with pytest.raises(ValueError, match="token-sum"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1),
                    aggregation="token-sum", normalizer=1)


def test_group_token_mean_value_and_gradient_by_hand():
    # sequence 0 (3 tokens) and sequence 1 (2 tokens) in different groups: G = 2, so the divisors are
    # T_g * G = 6 and 4, and each group's token mean weighs 1/2
    loss, metrics, grad, _ = hand_example("group-token-mean", normalizer=torch.tensor([6.0, 4.0]))
    assert metrics["loss/pg"].item() == pytest.approx((-2 * 3) / 6 + (1 * 2) / 4)
    expected = torch.tensor([
        [(-2 + 0.1 * G3_POS) / 6, -2 / 6, -2 / 6],
        [(1 + 0.1 * G3_NEG) / 4, (1 + 0.1 * G3_POS) / 4, 0.0],
    ])
    assert torch.allclose(grad, expected)
    # both sequences in ONE group: divisor T * G = 5 * 1 for each, i.e. exactly the token mean
    same = hand_example("group-token-mean", normalizer=torch.tensor([5.0, 5.0]))
    token = hand_example("token-mean", normalizer=5.0)
    assert same[0].item() == pytest.approx(token[0].item())
    assert torch.allclose(same[2], token[2])


def test_group_token_divisors_by_hand():
    from azero.rl.advantages import group_token_divisors

    lengths, groups = torch.tensor([2.0, 4.0, 1.0, 3.0]), torch.tensor([0, 0, 3, 3])  # groups 1 and 2 are empty
    # group 0: 6 tokens, group 3: 4 tokens; G = 2 non-empty groups -> divisors 12, 12, 8, 8
    assert group_token_divisors(lengths, groups).tolist() == [12.0, 12.0, 8.0, 8.0]
    # every group's tokens then carry total weight 1 / G
    weights = lengths / group_token_divisors(lengths, groups)
    assert weights[:2].sum().item() == pytest.approx(1 / 2) and weights[2:].sum().item() == pytest.approx(1 / 2)


def test_loss_weights_by_hand():
    from azero.rl.advantages import loss_weights

    # a 40-token proposal, a 36-token proposal, two 4-token answers (groups 0, 0, 1, 1)
    lengths, groups = torch.tensor([40.0, 36.0, 4.0, 4.0]), torch.tensor([0, 0, 1, 1])
    assert loss_weights(lengths, groups, "token-mean").tolist() == pytest.approx([40 / 84, 36 / 84, 4 / 84, 4 / 84])
    assert loss_weights(lengths, groups, "seq-mean").tolist() == pytest.approx([0.25] * 4)
    assert loss_weights(lengths, groups, "group-token-mean").tolist() == pytest.approx([40 / 152, 36 / 152, 0.25, 0.25])
    # an empty completion carries nothing, and the others share all of it
    assert loss_weights(torch.tensor([0.0, 2.0, 6.0]), torch.tensor([0, 1, 1]), "seq-mean").tolist() == [0.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="unknown aggregation"):
        loss_weights(lengths, groups, "sum")


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean", "group-token-mean"])
def test_loss_weights_are_what_the_loss_applies(aggregation):
    """With one per-token value c_i for each sequence, the loss's aggregate is sum_i w_i c_i (w = loss_weights):
    the logged shares describe the loss that is optimised, not a separate formula."""
    from azero.rl.advantages import group_token_divisors, loss_weights

    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 1, 3, 7, 2, 4])
    groups = torch.tensor([0, 1, 0, 2, 1, 1])
    C = int(lengths.max())
    mask = (torch.arange(C)[None, :] < lengths[:, None]).float()
    c = torch.randn(6, generator=g)
    normalizer = {"token-mean": mask.sum(), "seq-mean": 6.0,
                  "group-token-mean": group_token_divisors(lengths.float(), groups)}[aggregation]
    # the pg term with ratio 1 is -A per token: advantages -c give per-token values c
    logp = torch.zeros(6, C)
    loss, _ = policy_loss(logp, logp, -c, mask, aggregation=aggregation, normalizer=normalizer)
    w = loss_weights(lengths.float(), groups, aggregation)
    assert loss.item() == pytest.approx(float((w * c).sum()), abs=1e-6)

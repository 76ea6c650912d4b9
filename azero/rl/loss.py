"""THE loss. A pure function of per-token tensors; edit it here.

Objective: REINFORCE++ with TRR++ group-normalised advantages and the PPO-clip surrogate. Per valid token t:
    ratio_t = exp(logp_t - old_logp_t)                       (log-ratio clamped to [-20, 20])
    pg_t    = max(-A * ratio_t, -A * clip(ratio_t, 1 - eps, 1 + eps))
    loss_t  = pg_t + kl_coef * KL_t - entropy_coef * H_t      (KL_t = k3(logp_t, ref_logp_t) by default)
old_logp are the log-probs of the policy that sampled the rollouts. In the first (or only) epoch the trainer passes
logp.detach(): ratio == 1, the clip never binds and the gradient is exactly REINFORCE, -A * grad logp; later
``--ppo-epochs`` reuse the first epoch's values, so the ratio and the clip act. The KL term exists when ``ref_logp``
is given (gradient through logp). In the REINFORCE++ KL-in-reward mode the KL is already inside the per-token
advantages (``advantages.kl_in_reward_advantages``) and the trainer passes no ``ref_logp``.

Aggregation divides by ``normalizer``, the count for the WHOLE iteration (all micro-batches, all ranks), never
this micro-batch's own count, so summed micro-batch losses equal the full-batch loss:
    "token-mean":       sum of per-token losses / normalizer (= global number of valid completion tokens)
    "seq-mean":         sum over sequences of the sequence's token mean / normalizer (= global number of sequences)
    "group-token-mean": sum over sequences of the sequence's token sum / normalizer[i], a per-sequence divisor
                        T_g * G for sequence i of (task, role) group g (T_g the group's tokens, G the non-empty
                        groups): the mean over groups of each group's token mean, so the six objectives weigh
                        alike and 4-token answers are not outweighed 10 to 1 by 40-token proposals
Metrics use the same aggregation: detached, additive over micro-batches.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from azero.rl.kl import LOG_RATIO_CLAMP, KLEstimator, kl_estimate

Aggregation = Literal["token-mean", "seq-mean", "group-token-mean"]
AGGREGATIONS = get_args(Aggregation)


def policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
    ref_logp: Tensor | None = None, entropy: Tensor | None = None,
    clip_eps: float = 0.2, kl_coef: float = 0.1, kl_estimator: KLEstimator = "k3", entropy_coef: float = 0.0,
    aggregation: Aggregation = "token-mean", normalizer: float | Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """(loss, metrics) for [N, C] log-probs; ``advantages`` is [N] (one per sequence) or [N, C] (per token)."""
    valid = mask.bool()  # [N, C]

    def masked(x: Tensor) -> Tensor:  # padding may hold inf/nan: select (never multiply, nan * 0 = nan)
        return torch.where(valid, x, torch.zeros_like(x))

    def aggregate(x: Tensor) -> Tensor:  # [N, C] -> scalar, 0 from padding
        if aggregation == "token-mean":
            return masked(x).sum() / normalizer
        if aggregation == "seq-mean":
            return (masked(x).sum(-1) / valid.sum(-1).clamp(min=1)).sum() / normalizer
        if aggregation == "group-token-mean":  # normalizer: [N] per-sequence divisors
            return (masked(x).sum(-1) / normalizer).sum()
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")

    logp, old_logp = masked(logp), masked(old_logp.detach())  # old_logp is a constant, even if passed as logp
    adv = masked((advantages[:, None] if advantages.dim() == 1 else advantages).expand_as(logp))  # [N, C]

    ratio = (logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp()  # [N, C]
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1 - clip_eps, 1 + clip_eps)
    pg = torch.maximum(unclipped, clipped)  # pessimistic bound: where the clip binds, the gradient is 0
    per_token = pg
    terms = {"loss/pg": pg, "loss/ratio": ratio, "loss/clip_frac": (clipped > unclipped).float()}
    if ref_logp is not None:  # KL to the frozen reference; gradient through logp
        terms["loss/kl"] = kl = kl_estimate(logp, masked(ref_logp), kl_estimator)
        per_token = per_token + kl_coef * kl
    if entropy is not None:
        terms["loss/entropy"] = entropy = masked(entropy)
        if entropy_coef != 0:
            per_token = per_token - entropy_coef * entropy
    loss = aggregate(per_token)
    metrics = {name: aggregate(x.detach()) for name, x in terms.items()}
    return loss, {**metrics, "loss/total": loss.detach()}

"""Per-token estimators of KL(pi || pi_ref) from the log-probs of the sampled tokens (Schulman's k1/k2/k3).

With ``log_ratio = logp - ref_logp`` for a token sampled from pi:
  k1 = log_ratio                         unbiased value, can be negative; the REINFORCE++ in-reward penalty
  k2 = 0.5 * log_ratio**2                >= 0, biased value; as a loss its expected gradient is grad KL(pi || pi_ref)
  k3 = exp(-log_ratio) - 1 + log_ratio   >= 0, unbiased low-variance value; the default in the loss (as GRPO). As a
                                         loss its expected gradient is that of KL(pi_ref || pi) (verl PR #2953)
All are exactly 0 where the policy equals the reference.

Clamping (k3 only): the log-ratio is clamped to [-20, 20] before ``exp`` (as verl). A token the policy
has made e^20 times less likely than the reference would otherwise put exp(>20) > 5e8 into one token's
loss, and in bf16/fp16 overflow to inf. We clamp the log-ratio itself, not just the exponent: clamping only
the exponent would leave the ``+ log_ratio`` term, whose gradient then pushes the log-ratio further the wrong
way; clamping both makes the gradient exactly 0 on such tokens instead. The result is not clamped: any value
we report is the estimator's true value for log-ratios within [-20, 20].
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS = get_args(KLEstimator)
LOG_RATIO_CLAMP = 20.0


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: KLEstimator = "k3") -> Tensor:
    """Elementwise KL estimate per token, same shape as ``logp``; gradient flows through ``logp``."""
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio.square()
    if kind == "k3":
        log_ratio = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        return torch.expm1(-log_ratio) + log_ratio  # expm1: exp(x) - 1 would cancel to noise for |x| < 1e-4
    raise ValueError(f"unknown KL estimator {kind!r}; choose one of {KL_ESTIMATORS}")

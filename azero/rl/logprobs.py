"""Per-token log-probs (and entropies) of completion tokens under a model, in fp32 at the sampling temperature.

Both the training forward (with grad) and the no-grad passes (reference model, diagnostics) go through
``completion_logprobs``, so old, new and reference log-probs share one code path and one dtype: any
difference between them is a real difference, not numerics (ratio == 1 and KL == 0 at step 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def completion_logprobs(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, completion_len: int, *,
    temperature: float = 1.0, with_entropy: bool = False, entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """([N, C] log-prob of each completion token, [N, C] entropy of the next-token distribution or None).

    ``input_ids`` / ``attention_mask`` are [N, P + C]: left-padded prompts followed by right-padded completions
    (``Rollout.input_ids`` / ``Rollout.attention_mask``); C = ``completion_len``. Scores come from
    log_softmax(logits / temperature) in fp32 even under bf16 autocast, as the sampler drew from
    softmax(logits / T). Gradient flows if grad is enabled. Values at padding positions are arbitrary
    (finite for this model, but callers must mask). The entropy carries gradient only with ``entropy_grad``
    (the entropy bonus); as a metric it is computed without autograd, 64 positions at a time.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (greedy decoding has no sampling distribution; score it at 1.0)")
    if completion_len < 1:
        raise ValueError("completion_len must be >= 1")  # input_ids[:, -0:] would silently be the whole sequence
    # RoPE / absolute positions must count real tokens only, or left padding shifts every position
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
        logits_to_keep=completion_len + 1, use_cache=False,
    )
    # the logit at position t scores token t + 1: of the last C + 1 positions, the first C score the completion.
    # Each [N, C, V] fp32 temporary is ~200 MB at 64 x 16 x 49k (and on CPU a fresh one costs page faults): one
    # copy, divided in place, then one fused log_softmax + gather (cross_entropy; its backward is softmax - onehot).
    logits = out.logits[:, :-1].to(torch.float32, copy=True).div_(temperature)  # [N, C, V] fp32
    targets = input_ids[:, -completion_len:]  # [N, C]
    logp = -F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)
    if not with_entropy:
        return logp, None
    if entropy_grad and torch.is_grad_enabled():  # the entropy bonus
        return logp, _entropy(logits)
    with torch.no_grad():  # a metric: no graph, and 64 positions at a time keep the temporaries small
        return logp, torch.cat([_entropy(rows) for rows in logits.detach().flatten(0, 1).split(64)]).view_as(logp)


def _entropy(logits: Tensor) -> Tensor:
    """H = -sum p log p = logsumexp(l) - sum softmax(l) * l, over the last dim."""
    return logits.logsumexp(-1) - (logits.softmax(-1) * logits).sum(-1)

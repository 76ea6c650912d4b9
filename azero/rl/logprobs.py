"""Per-token log-probs (and entropies) of completion tokens under a model, in fp32 at the sampling temperature.

Both the training forward (with grad) and the no-grad passes (reference model, diagnostics) go through
``completion_logprobs``, so old, new and reference log-probs share one code path and one dtype: any
difference between them is a real difference, not numerics (ratio == 1 and KL == 0 at step 0).

The LM head runs here, not in the model: the model returns the final hidden states of the completion positions
([N, C, H]) and ``_HeadLogprobs`` projects them through the head a chunk of positions at a time, in fp32 from the
(autocast) logits, keeping only [N, C] results. Its backward recomputes each chunk's logits, so [N, C, V] fp32
logits (1.2 GB at 32 x 64 x 151,936) and their gradient never exist at once; the price is one more head matmul in
the backward (about 7% of a 135M model's training FLOPs). Models whose head is not a plain bias-free Linear on the
final hidden state (logit soft-capping or scaling, LoRA on the head, sharded weights) take the plain path:
the model's own logits, [N, C, V] at once.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

# model types whose forward is `logits = lm_head(final hidden states)` and nothing else
PLAIN_HEAD_MODELS = frozenset({"llama", "qwen2", "qwen3", "mistral", "gpt2"})


def head_chunk_rows(vocab: int, device: torch.device) -> int:
    """Positions per head chunk: 64 MiB of fp32 logits on a CPU (fresh big tensors cost page faults there),
    512 MiB on a GPU (fewer, larger matmuls)."""
    budget = (512 if device.type == "cuda" else 64) * 2**20
    return max(1, budget // (4 * vocab))


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
    (the entropy bonus); as a metric it is computed without autograd.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (greedy decoding has no sampling distribution; score it at 1.0)")
    if completion_len < 1:
        raise ValueError("completion_len must be >= 1")  # input_ids[:, -0:] would silently be the whole sequence
    # RoPE / absolute positions must count real tokens only, or left padding shifts every position
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    targets = input_ids[:, -completion_len:]  # [N, C]
    head = plain_head(model)
    with _head_passes_hidden_states(head):
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    logits_to_keep=completion_len + 1, use_cache=False)
    # the output at position t scores token t + 1: of the last C + 1 positions, the first C score the completion
    if head is not None:
        hidden = out.logits[:, :-1]  # [N, C, H]: the head passed the final hidden states through
        grad = entropy_grad and with_entropy and torch.is_grad_enabled()
        logp, entropy = _HeadLogprobs.apply(hidden, head.weight, targets, temperature, with_entropy, grad)
        return logp, entropy if with_entropy else None
    # plain path: one fp32 copy of the [N, C, V] logits, divided in place, then one fused log_softmax + gather
    logits = out.logits[:, :-1].to(torch.float32, copy=True).div_(temperature)  # [N, C, V] fp32
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


def plain_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The model's LM head when the chunked path is exact for it (see the module docstring), else None."""
    core = getattr(model, "module", model)  # DDP
    core = getattr(core, "_orig_mod", core)  # torch.compile
    config = getattr(core, "config", None)
    if config is None or getattr(config, "model_type", None) not in PLAIN_HEAD_MODELS:
        return None
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    head = core.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    weight = head.weight
    if type(weight.data) is not torch.Tensor or hasattr(weight, "ds_id"):  # DTensor (FSDP2) / DeepSpeed ZeRO-3
        return None
    return head


@contextlib.contextmanager
def _head_passes_hidden_states(head: torch.nn.Module | None) -> Iterator[None]:
    """While inside, ``head(x)`` returns x: the model's "logits" are its final hidden states."""
    if head is None:
        yield
        return
    head.forward = lambda x: x
    try:
        yield
    finally:
        del head.forward


class _HeadLogprobs(torch.autograd.Function):
    """(log_softmax(h W^T / T)[target], entropy) per position, ``head_chunk_rows`` positions at a time.

    Forward keeps [M] results and the logsumexp; backward recomputes each chunk's logits and applies
    d logp / d logits = onehot - p and d H / d logits = -p (log p + H), both divided by T. Matmuls run in the
    autocast dtype when autocast is on (as the model's own head would), everything vocabulary-wide in fp32."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float, with_entropy: bool,
                entropy_grad: bool):
        N, C, H = hidden.shape
        h, t = hidden.reshape(-1, H), targets.reshape(-1)  # [M, H], [M]
        device = hidden.device.type
        ctx.compute_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        logp = torch.empty(len(h), device=hidden.device)
        lse = torch.empty(len(h), device=hidden.device)
        entropy = torch.empty(len(h) if with_entropy else 0, device=hidden.device)
        step = head_chunk_rows(weight.shape[0], hidden.device)
        for s in range(0, len(h), step):
            logits = F.linear(h[s:s + step], weight).float().div_(temperature)  # [m, V] fp32 (autocast matmul)
            lse[s:s + step] = z = logits.logsumexp(-1)
            logp[s:s + step] = logits.gather(1, t[s:s + step, None]).squeeze(1) - z
            if with_entropy:  # H = -sum p log p, with log p = logits - logsumexp
                log_p = logits.sub_(z[:, None])
                entropy[s:s + step] = -(log_p.exp() * log_p).sum(-1)
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.temperature, ctx.entropy_grad = temperature, entropy_grad
        entropy_out = entropy.view(N, C) if with_entropy else entropy
        if not entropy_grad:
            ctx.mark_non_differentiable(entropy_out)
        return logp.view(N, C), entropy_out

    @staticmethod
    def backward(ctx, g_logp: Tensor, g_entropy: Tensor | None):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        N, C, H = hidden.shape
        h, t, g = hidden.reshape(-1, H), targets.reshape(-1), g_logp.reshape(-1).float()
        g_ent = g_entropy.reshape(-1).float() if ctx.entropy_grad and g_entropy is not None else None
        cd = ctx.compute_dtype
        w = weight.to(cd)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
        step = head_chunk_rows(weight.shape[0], hidden.device)
        for s in range(0, len(h), step):
            hc = h[s:s + step].to(cd)
            z = lse[s:s + step, None]
            log_p = (hc @ w.T).float().div_(ctx.temperature).sub_(z)  # [m, V] log-probs, recomputed
            p = log_p.exp()
            grad = p.mul(-g[s:s + step, None])  # d logp_target / d logits = onehot - p
            grad.scatter_add_(1, t[s:s + step, None], g[s:s + step, None])
            if g_ent is not None:
                grad.sub_(p * (log_p + entropy[s:s + step, None]) * g_ent[s:s + step, None])
            grad = grad.div_(ctx.temperature).to(cd)
            grad_h[s:s + step] = (grad @ w).to(h.dtype)
            if grad_w is not None:
                grad_w += (grad.T @ hc).float()
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        return grad_h.view(N, C, H), grad_w, None, None, None, None

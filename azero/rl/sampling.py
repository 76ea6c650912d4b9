"""Batched sampling: one ``model.generate`` call per phase; left padding, KV cache, stop strings, n samples per prompt.

Sampling is exactly softmax(logits / temperature) (top_p = 1) or greedy (temperature = 0): every other logits
processor a checkpoint's ``generation_config`` may switch on (top_k, repetition penalty, min_p, ...) is
neutralised, because the loss rescores completions with plain softmax(logits / T) and any hidden processor
would make the ratio and the KL silently wrong. Draws come from torch's global RNG: ``torch.manual_seed``
before a call makes it reproducible.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

# generate() fills every field left unset from the checkpoint's generation_config (Qwen2-Instruct ships top_k=20,
# top_p=0.8, repetition_penalty=1.05), then from global defaults (top_k=50): set each distribution-changing one.
_NEUTRAL = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, min_new_tokens=0, num_beams=1)
_NEUTRAL_SAMPLING = dict(top_k=0, min_p=0.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)


@dataclass
class Rollout:
    """N = len(prompts) * n sampled completions; row i * n + j is sample j of prompt i."""

    prompt_ids: Tensor  # [N, P] left-padded
    prompt_mask: Tensor  # [N, P] 1 on real prompt tokens
    completion_ids: Tensor  # [N, C] right-padded
    completion_mask: Tensor  # [N, C] 1 up to and including the first EOS / the token completing a stop string
    truncated: Tensor  # [N] bool: hit max_new_tokens without EOS or stop string
    texts: list[str]  # completions cut right after the stop string / before EOS, special tokens skipped
    prompt_index: Tensor  # [N] long: the prompt each row came from
    sampling_logprobs: Tensor | None = None  # [N, C] log-prob of each token under the distribution sampled from

    @property
    def input_ids(self) -> Tensor:  # [N, P + C]
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> Tensor:  # [N, P + C]
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)

    def select(self, rows: Tensor | Sequence[int] | slice) -> Rollout:
        """The given rows (indices, bool mask or slice); column counts unchanged."""
        index = _row_index(rows, len(self.texts))  # [N'] long, CPU
        picked = {f: t[index.to(t.device)] for f in _TENSOR_FIELDS if (t := getattr(self, f)) is not None}
        return replace(self, **picked, texts=[self.texts[i] for i in index.tolist()])

    def trimmed(self) -> Rollout:
        """Without the prompt columns that are padding in every row (left) and completion columns likewise (right).

        Use it on a micro-batch to skip padding compute; [N, C] tensors made for the untrimmed rollout
        (per-token advantages, reference log-probs) must then be cut to ``[:, :C']`` (completions start at column 0).
        """
        real_prompt_cols = self.prompt_mask.any(0).nonzero()
        start = int(real_prompt_cols.min()) if len(real_prompt_cols) else self.prompt_mask.shape[1]
        real_completion_cols = self.completion_mask.any(0).nonzero()
        end = int(real_completion_cols.max()) + 1 if len(real_completion_cols) else 0
        sampling_logprobs = None if self.sampling_logprobs is None else self.sampling_logprobs[:, :end]
        return replace(
            self, prompt_ids=self.prompt_ids[:, start:], prompt_mask=self.prompt_mask[:, start:],
            completion_ids=self.completion_ids[:, :end], completion_mask=self.completion_mask[:, :end],
            sampling_logprobs=sampling_logprobs,
        )

    def to(self, device: torch.device | str) -> Rollout:
        return replace(self, **{f: t.to(device) for f in _TENSOR_FIELDS if (t := getattr(self, f)) is not None})


_TENSOR_FIELDS = (
    "prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "truncated", "prompt_index", "sampling_logprobs"
)


def _row_index(rows: Tensor | Sequence[int] | slice, num_rows: int) -> Tensor:
    if isinstance(rows, slice):
        return torch.arange(num_rows)[rows]
    rows = torch.as_tensor(rows).cpu()
    return rows.nonzero().squeeze(-1) if rows.dtype == torch.bool else rows.long().reshape(-1)


@torch.no_grad()
def generate(
    model: torch.nn.Module, tokenizer, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
    top_p: float = 1.0, n: int = 1, stop: Sequence[str] = (), synced_gpus: bool = False,
    return_sampling_logprobs: bool = False,
) -> Rollout:
    """Sample ``n`` completions per prompt in one batched ``generate`` call (temperature 0 = greedy).

    A row ends at its first EOS (any of the model's and the tokenizer's EOS ids) or at the token that completes
    one of the ``stop`` strings. ``synced_gpus`` must be True in multi-process runs so every rank keeps stepping
    until all ranks finish. ``return_sampling_logprobs`` also keeps the scores generate sampled from
    (N x C x V memory) for diagnostics: they must equal ``completion_logprobs`` at the same temperature.
    """
    model = _unwrap(model)
    device = next(model.parameters()).device
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
    prompt_ids = enc["input_ids"].repeat_interleave(n, 0).to(device)  # [N, P], row i * n + j = prompt i
    prompt_mask = enc["attention_mask"].repeat_interleave(n, 0).to(device)
    eos_ids = _eos_ids(model, tokenizer)
    if temperature > 0 and top_p == 1.0 and not return_sampling_logprobs:
        # the same distribution, drawn with one uniform per row instead of multinomial's one exponential per token
        sampling = dict(do_sample=False, temperature=1.0, top_p=1.0,
                        logits_processor=LogitsProcessorList([_InverseCDFSampler(temperature)]))
    elif temperature > 0:
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, **_NEUTRAL_SAMPLING)
    else:
        sampling = dict(do_sample=False, temperature=1.0, top_p=1.0)
    stopping = StoppingCriteriaList([_StopStrings(tokenizer, stop, prompt_ids.shape[1], eos_ids)] if stop else [])
    with _eval_mode(model):
        out = model.generate(
            input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens,
            eos_token_id=eos_ids, pad_token_id=_pad_id(model, tokenizer), stopping_criteria=stopping,
            synced_gpus=synced_gpus, return_dict_in_generate=True, output_scores=return_sampling_logprobs,
            **sampling, **_NEUTRAL,
        )
    completion_ids = out.sequences[:, prompt_ids.shape[1]:]  # [N, C]
    ends, texts, truncated = _completion_ends(completion_ids, tokenizer, eos_ids, stop)
    sampling_logprobs = None
    if return_sampling_logprobs:
        log_probs = torch.stack(out.scores, dim=1).float().log_softmax(-1)  # [N, C, V] after every logits processor
        sampling_logprobs = log_probs.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    positions = torch.arange(completion_ids.shape[1], device=device)
    completion_mask = (positions < ends.to(device)[:, None]).to(prompt_mask.dtype)  # from positions, never token values
    return Rollout(
        prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids, completion_mask=completion_mask,
        truncated=truncated.to(device), texts=texts,
        prompt_index=torch.arange(len(prompts), device=device).repeat_interleave(n),
        sampling_logprobs=sampling_logprobs,
    ).trimmed()  # finished rows were padded; synced_gpus may have stepped past every row's end


def _completion_ends(
    completion_ids: Tensor, tokenizer, eos_ids: list[int], stop: Sequence[str]
) -> tuple[Tensor, list[str], Tensor]:
    """Per row: ([N] number of completion tokens kept, texts, [N] truncated), found from positions: a row keeps
    its tokens up to and including the first EOS, or the first token after which its text contains a stop string."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device)).cpu()  # [N, C]
    width = completion_ids.shape[1]
    first_eos = torch.where(is_eos.any(-1), is_eos.long().argmax(-1), width)  # [N], width = no EOS
    rows = [ids[:e] for ids, e in zip(completion_ids.cpu().tolist(), first_eos.tolist())]  # tokens before the EOS
    texts = _batch_decode(tokenizer, rows)
    cuts = [_stop_end(text, stop) for text in texts]
    stopped = [i for i, cut in enumerate(cuts) if cut is not None]
    ends = (first_eos + 1).clamp(max=width)
    ends[stopped] = torch.tensor(_tokens_until_stop(tokenizer, [rows[i] for i in stopped], stop), dtype=torch.long)
    for i in stopped:
        texts[i] = texts[i][: cuts[i]]
    truncated = (first_eos == width) & torch.tensor([cut is None for cut in cuts], dtype=torch.bool)
    return ends, texts, truncated


def _stop_end(text: str, stop: Sequence[str]) -> int | None:
    """Character index right after the earliest-completed stop string in ``text``, or None."""
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return min(ends) if ends else None


def _tokens_until_stop(tokenizer, rows: list[list[int]], stop: Sequence[str]) -> list[int]:
    """Per row, the smallest k such that row[:k] decodes to text containing a stop string (the whole row does).
    Binary search with all rows in lockstep: one batched decode per halving."""
    lo, hi = [1] * len(rows), [len(row) for row in rows]
    while active := [i for i in range(len(rows)) if lo[i] < hi[i]]:
        mids = [(lo[i] + hi[i]) // 2 for i in active]
        texts = _batch_decode(tokenizer, [rows[i][:mid] for i, mid in zip(active, mids)])
        for i, mid, text in zip(active, mids, texts):
            if _stop_end(text, stop) is None:
                lo[i] = mid + 1
            else:
                hi[i] = mid
    return hi


def _batch_decode(tokenizer, rows: list[list[int]]) -> list[str]:
    """``tokenizer.batch_decode(rows, skip_special_tokens=True)``, straight through the Rust tokenizer when that is
    all it would do (the Python wrapper spends most of its time converting the lists: 1.1 ms vs 0.46 ms, 200 rows)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or tokenizer.clean_up_tokenization_spaces:
        return tokenizer.batch_decode(rows, skip_special_tokens=True)
    return backend.decode_batch(rows, skip_special_tokens=True)


class _InverseCDFSampler(LogitsProcessor):
    """Draws each row's next token from softmax(scores / T) by inverting its fp64 CDF with one uniform, and returns
    scores that are 0 at the drawn token and -inf elsewhere, so greedy decoding emits exactly that token.

    torch.multinomial draws an exponential per vocabulary entry (64 x 49k a step: ~70 ms on one CPU core, vs ~12 ms
    here; see bench/README.md). It runs after generate's own processors, so a token they set to -inf (EOS under
    min_new_tokens) keeps probability 0; the uniform comes from torch's global RNG, as multinomial's draws do.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        cdf = (scores.float() / self.temperature).softmax(-1).cumsum(-1, dtype=torch.float64)  # [N, V]
        u = (1.0 - torch.rand(len(cdf), 1, dtype=torch.float64, device=cdf.device)) * cdf[:, -1:]  # in (0, total]
        token = torch.searchsorted(cdf, u).clamp_(max=cdf.shape[-1] - 1)  # first i with cdf_i >= u: p_i > 0
        return scores.fill_(float("-inf")).scatter_(1, token, 0.0)


class _StopStrings(StoppingCriteria):
    """Early exit: marks a row done once the tail of its completion decodes to text containing a stop string.

    Each step decodes only the last ``len(longest stop) + 2`` tokens of unfinished rows (a token decodes to at
    least one character), so the cost per step is a few microseconds per row. ``_completion_ends`` decides where
    each completion ends from the full text; this only stops generating.
    """

    def __init__(self, tokenizer, stop: Sequence[str], prompt_len: int, eos_ids: list[int]):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, tuple(stop), prompt_len
        self.window = max(len(s) for s in stop) + 2
        self.eos_ids = torch.tensor(eos_ids)
        self.done: Tensor | None = None

    def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs) -> Tensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        tail = input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window):].cpu()  # [N, <= window]: one copy
        self.done |= torch.isin(tail[:, -1], self.eos_ids)  # rows that ended on EOS are padded from now on
        rows = (~self.done).nonzero().squeeze(-1)
        tails = _batch_decode(self.tokenizer, tail[rows].tolist())
        hits = torch.tensor([any(s in t for s in self.stop) for t in tails], dtype=torch.bool)
        self.done[rows[hits]] = True
        return self.done.to(input_ids.device)


def _eos_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    return sorted(set(ids) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()))


def _pad_id(model: torch.nn.Module, tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.generation_config.pad_token_id
    return pad if pad is not None else _eos_ids(model, tokenizer)[0]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for generation (no dropout; gradient checkpointing would also turn the KV cache off), then back."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)

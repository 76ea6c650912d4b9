"""LoRA (--lora-r): peft adapters train, the KL reference is the same weights with adapters off (no copy),
resume is exact, and final/ holds the merged weights as a plain model. One process, the tiny preset."""

from __future__ import annotations

import json

import pytest
import torch

LORA = ["--preset", "tiny", "--lora-r", "4", "--lora-alpha", "8", "--eval-every", "0", "--checkpoint-every", "1"]


def rows(run_dir) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.setdefault(r["iteration"], {}).update(r)
    return out


def train(argv):
    import train

    return train.main(argv)


def context(run_dir):
    """The trainer's own setup, resumed from ``run_dir``: the policy as training holds it."""
    from azero.config import parse_config
    from azero.distributed import make_accelerator
    from azero.trainer import build_context

    cfg, resume = parse_config(["--resume", str(run_dir)])
    acc = make_accelerator(cfg.mixed_precision, cfg.grad_clip)
    ctx, start = build_context(cfg, acc, resume, lambda msg: None)
    return ctx, start


@pytest.mark.slow
def test_lora_trains_adapters_only_with_the_base_as_reference(tmp_path):
    train(LORA + ["--iterations", "2", "--output-dir", str(tmp_path / "run")])
    r = rows(tmp_path / "run")
    assert r[1]["loss/kl"] == pytest.approx(0.0, abs=1e-7)  # B = 0 at step 0: policy == base
    assert r[2]["optim/steps"] == 2 and r[2]["loss/kl"] > 0

    ctx, start = context(tmp_path / "run")
    from azero.models import AdaptersOff, load_policy, tiny_tokenizer

    assert start == 2 and isinstance(ctx.ref_model, AdaptersOff)
    assert list(ctx.ref_model.parameters()) == []  # no second copy of the weights
    trainable = {n for n, p in ctx.policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = load_policy("tiny", tokenizer=tiny_tokenizer(), seed=0).eval()
    ids = torch.arange(3, 20)[None]
    with torch.no_grad():
        assert torch.allclose(ctx.ref_model(input_ids=ids).logits, base(input_ids=ids).logits, atol=1e-6)
        assert not torch.allclose(ctx.policy(input_ids=ids).logits, base(input_ids=ids).logits, atol=1e-6)

        from transformers import AutoModelForCausalLM

        final = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final").eval()  # merged, plain
        assert not any("lora" in k for k in final.state_dict())
        assert torch.allclose(final(input_ids=ids).logits, ctx.policy(input_ids=ids).logits, atol=1e-5)


@pytest.mark.slow
def test_lora_resume_is_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(LORA + ["--iterations", "3", "--output-dir", str(straight)])
    train(LORA + ["--iterations", "2", "--output-dir", str(split)])
    train(["--resume", str(split), "--iterations", "3"])
    a, b = rows(straight), rows(split)
    for key, value in a[3].items():
        if not key.startswith(("time/", "perf/", "mem/")) and value is not None:
            assert b[3][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key

    from safetensors.torch import load_file

    wa, wb = load_file(straight / "final" / "model.safetensors"), load_file(split / "final" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

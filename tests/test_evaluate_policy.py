"""Batched greedy evaluation: same scores as one-by-one decoding, every tier reported."""


from azero.evaluation import TIERS, evaluate_policy, generate_completions, load_eval_set, score
from azero.models import load_policy, tiny_tokenizer
from azero.rl.sampling import generate


def test_batched_greedy_eval_equals_one_by_one():
    tok = tiny_tokenizer()
    model = load_policy("tiny", tokenizer=tok, seed=3)
    items = load_eval_set("builtin")[::10]  # 20 items, all tiers
    batched = evaluate_policy(model, tok, items, batch_size=7, max_new_tokens=4)
    singles = [generate(model, tok, [it.prompt], max_new_tokens=4, temperature=0.0).texts[0] for it in items]
    assert generate_completions(model, tok, items, batch_size=7, max_new_tokens=4) == singles  # item order kept
    assert batched == score(singles, items)
    assert set(TIERS) <= set(batched) and 0 <= batched["overall"] <= 1


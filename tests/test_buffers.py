import json
import random
from collections import Counter

import pytest

from azero.buffers import SEED_PROGRAMS, UNKNOWN_RATE, TaskBuffer, random_task, seed_tasks
from azero.tasks import TASK_KINDS, TASKS, Task, parse_program
from azero.tasks.common import make_task


def task(program: str, a: int = 1, b: int = 2) -> Task:
    return make_task("deduction", parse_program(program), [(a, b)])


def numbered(n: int) -> list[Task]:
    return [task(f"a + {i}") for i in range(n)]


def test_fifo_eviction():
    buffer = TaskBuffer("deduction", capacity=3)
    buffer.add(numbered(5))
    assert len(buffer) == 3
    assert [t.program for t in buffer] == ["a + 2", "a + 3", "a + 4"]
    with pytest.raises(ValueError):
        buffer.add([make_task("abduction", parse_program("a + b"), [(1, 2)])])


def test_sample_is_uniform_without_replacement():
    buffer = TaskBuffer("deduction")
    buffer.add(numbered(10))
    rng = random.Random(0)
    for _ in range(50):
        picked = buffer.sample(6, rng)
        assert len(picked) == len(set(picked)) == 6
    assert sorted(t.program for t in buffer.sample(100, rng)) == sorted(t.program for t in buffer)
    assert TaskBuffer("deduction").sample(6, rng) == []
    counts = {t.program: 0 for t in buffer}
    for _ in range(2000):
        for t in buffer.sample(3, rng):
            counts[t.program] += 1
    assert all(500 < c < 700 for c in counts.values())  # 600 expected each


def test_sampling_is_deterministic_in_the_rng():
    buffer = TaskBuffer("deduction")
    buffer.add(numbered(50))
    assert buffer.sample(6, random.Random(1)) == buffer.sample(6, random.Random(1))
    new = numbered(3)
    assert buffer.solver_batch(new, 10, random.Random(2)) == buffer.solver_batch(new, 10, random.Random(2))


def test_solver_batch_takes_new_tasks_first_then_fills_from_the_buffer():
    rng = random.Random(0)
    old, new = numbered(20), [task("b * 7", a, 0) for a in range(3)]
    buffer = TaskBuffer("deduction")
    buffer.add(old)
    batch = buffer.solver_batch(new, 8, rng)
    assert len(batch) == 8
    assert batch[:3] == new
    assert len(set(batch[3:])) == 5 and set(batch[3:]) <= set(old)  # without replacement

    many = [task("b * 7", a, 0) for a in range(30)]
    batch = buffer.solver_batch(many, 8, rng)
    assert len(set(batch)) == 8 and set(batch) <= set(many)  # a random subset of the new ones


def test_solver_batch_never_draws_this_iterations_tasks_twice():
    """The trainer adds the new tasks to the buffer before solving: the rest of the batch comes from the others."""
    old, new = numbered(6), [task("b * 7", a, 0) for a in range(3)]
    for seed in range(20):
        buffer = TaskBuffer("deduction")
        buffer.add(old + new)
        batch = buffer.solver_batch(new, 9, random.Random(seed))
        assert batch[:3] == new and sorted(batch[3:], key=str) == sorted(old, key=str)  # each task once
    only_new = TaskBuffer("deduction")
    only_new.add(new)
    assert set(only_new.solver_batch(new, 8, random.Random(0))) == set(new)  # nothing else: repeats are unavoidable


def test_solver_batch_with_small_or_empty_buffers():
    rng = random.Random(0)
    small = TaskBuffer("deduction")
    small.add(numbered(2))
    batch = small.solver_batch([], 8, rng)
    assert len(batch) == 8 and set(batch) <= set(small)  # with replacement
    empty = TaskBuffer("deduction")
    new = numbered(3)
    batch = empty.solver_batch(new, 8, rng)
    assert len(batch) == 8 and batch[:3] == new and set(batch) <= set(new)
    assert empty.solver_batch([], 8, rng) == []


def test_signature_counts_follow_evictions():
    buffer = TaskBuffer("deduction", capacity=3)
    buffer.add([task("a + 1"), task("a + 2"), task("a * b")])
    assert dict(buffer.signatures()) == {"a + N": 2, "a * b": 1}
    buffer.add([task("a - 5")])  # evicts a + 1
    assert dict(buffer.signatures()) == {"a + N": 1, "a * b": 1, "a - N": 1}
    assert dict(buffer.operator_sets()) == {"+": 1, "*": 1, "-": 1}
    buffer.add([task("a - 6"), task("a - 7")])  # evicts a + 2 and a * b
    assert dict(buffer.signatures()) == {"a - N": 3}
    assert dict(buffer.operator_sets()) == {"-": 3}
    assert "a * b" not in buffer.signatures()
    with pytest.raises(TypeError):
        buffer.signatures()["x"] = 1  # read-only view


def test_state_round_trip_through_json():
    rng = random.Random(0)
    buffer = TaskBuffer("induction", capacity=10)
    buffer.add(random_task("induction", rng) for _ in range(12))
    state = json.loads(json.dumps(buffer.state_dict()))
    restored = TaskBuffer("induction", capacity=10)
    restored.load_state_dict(state)
    assert list(restored) == list(buffer)
    assert dict(restored.signatures()) == dict(buffer.signatures())
    assert dict(restored.operator_sets()) == dict(buffer.operator_sets())
    smaller = TaskBuffer("induction", capacity=4)
    smaller.load_state_dict(state)
    assert list(smaller) == list(buffer)[-4:]  # the configured capacity wins; the newest stay
    with pytest.raises(ValueError):
        TaskBuffer("abduction").load_state_dict(state)


def test_seed_programs_are_canonical():
    assert all(parse_program(text).text == text for text in SEED_PROGRAMS)


@pytest.mark.parametrize("inputs", ["small", "wide"])
@pytest.mark.parametrize("kind", TASK_KINDS)
def test_seed_and_random_tasks_are_valid(kind, inputs):
    rng = random.Random(0)
    tasks = seed_tasks(kind, rng, inputs) + [random_task(kind, rng, inputs) for _ in range(100)]
    assert [t.program for t in tasks[: len(SEED_PROGRAMS)]] == list(SEED_PROGRAMS)
    for t in tasks:
        assert t.kind == kind
        program = parse_program(t.program)
        assert program.variables
        assert make_task(kind, program, t.inputs, t.message) == t  # passes the proposal validator
        assert TASKS[kind].solver_prompt(t)
    if kind == "induction":
        assert all(t.message for t in tasks)
    assert random_task(kind, random.Random(5), inputs) == random_task(kind, random.Random(5), inputs)


def test_wide_inputs_give_each_digit_count_and_sign_an_equal_share():
    rng = random.Random(0)
    values = [x for _ in range(1000) for t in seed_tasks("deduction", rng, "wide") for x in t.inputs[0]]
    digits = Counter(len(str(abs(x))) for x in values)
    assert set(digits) == {1, 2, 3}
    assert all(abs(digits[d] / len(values) - 1 / 3) < 0.02 for d in (1, 2, 3))  # 12000 draws: SD 0.004
    assert abs(sum(x < 0 for x in values) / len(values) - 0.5 * (1 - 1 / 30)) < 0.02  # 0 is a tenth of 1 digit
    small = [x for _ in range(100) for t in seed_tasks("deduction", rng) for x in t.inputs[0]]
    assert min(small) == -10 and max(small) == 10 and min(values) >= -999 and max(values) <= 999


def test_references_uniform_by_default_and_report_when_each_was_added():
    buffer = TaskBuffer("deduction")
    buffer.add(numbered(5), iteration=0)
    buffer.add([task("b * 2"), task("b * 3")], iteration=7, solve_rates=[0.5, 1.0])
    rng = random.Random(0)
    seen = {}
    for _ in range(300):
        refs, added = buffer.references(3, rng)
        assert len(refs) == len(set(refs)) == 3
        for t, a in zip(refs, added):
            seen[t.program] = a
    assert seen == {**{f"a + {i}": 0 for i in range(5)}, "b * 2": 7, "b * 3": 7}  # every entry, its iteration
    assert buffer.frontier_size() == 1  # only 0 < p < 1 enters the frontier


def test_frontier_references_come_from_recent_learnable_tasks():
    buffer = TaskBuffer("deduction", frontier_size=2)
    buffer.add(numbered(50))
    buffer.add([task("b * 2"), task("b * 3"), task("b * 4")], iteration=3, solve_rates=[0.25, 0.75, 0.5])
    buffer.add([task("b * 5")], iteration=4, solve_rates=[0.0])  # p = 0: not learnable
    rng = random.Random(1)
    for _ in range(50):
        refs, _ = buffer.references(4, rng, frontier=0.5)  # 2 of 4 from the frontier: the two newest learnable
        assert {"b * 3", "b * 4"} <= {t.program for t in refs} and len(set(refs)) == 4
    refs, added = buffer.references(4, rng, frontier=1.0)  # the frontier holds only 2: the rest is uniform
    assert len(refs) == 4 and {"b * 3", "b * 4"} <= {t.program for t in refs}
    assert buffer.references(4, random.Random(5), 0.5) == buffer.references(4, random.Random(5), 0.5)
    assert buffer.frontier_rates() == {task("b * 3"): 0.75, task("b * 4"): 0.5}  # p of the frontier's tasks


def test_hardest_frontier_references_are_the_lowest_solve_rates_first():
    buffer = TaskBuffer("deduction", frontier_size=8)
    buffer.add(numbered(50))
    rates = {"b * 2": 0.75, "b * 3": 0.25, "b * 4": 0.5, "b * 5": 0.25, "b * 6": 0.75, "b * 7": 0.5}
    buffer.add([task(p) for p in rates], iteration=3, solve_rates=list(rates.values()))
    rng = random.Random(2)
    shown = {"random": Counter(), "hardest": Counter()}
    for _ in range(200):
        refs, _ = buffer.references(4, rng, frontier=0.5, pick="hardest")  # 2 of 4: the two at p = 0.25
        assert {"b * 3", "b * 5"} <= {t.program for t in refs} and len(set(refs)) == 4
        shown["hardest"].update(t.program for t in refs)
        shown["random"].update(t.program for t in buffer.references(4, rng, frontier=0.5)[0])
    easy = {pick: c["b * 2"] + c["b * 6"] for pick, c in shown.items()}  # the two at p = 0.75
    assert easy["hardest"] < 40 < 100 < easy["random"]  # about 15 (uniform half only) against about 150
    # 3 wanted: both p = 0.25, then one of the two at p = 0.5, each of them sometimes (ties in random order)
    thirds = Counter()
    for _ in range(200):
        refs, _ = buffer.references(4, rng, frontier=0.75, pick="hardest")
        progs = {t.program for t in refs}
        assert {"b * 3", "b * 5"} <= progs and progs & {"b * 4", "b * 7"}
        thirds.update(progs & {"b * 4", "b * 7"})
    assert min(thirds["b * 4"], thirds["b * 7"]) > 50
    # the frontier holds 6: asking for all 4 from it takes the 4 hardest, none at p = 0.75
    refs, _ = buffer.references(4, rng, frontier=1.0, pick="hardest")
    assert {t.program for t in refs} == {"b * 3", "b * 5", "b * 4", "b * 7"}
    assert (buffer.references(4, random.Random(5), 0.5, "hardest")
            == buffer.references(4, random.Random(5), 0.5, "hardest"))


def test_curriculum_state_round_trips_and_old_states_load():
    buffer = TaskBuffer("deduction", frontier_size=4)
    buffer.add(numbered(3))
    buffer.add([task("b * 2")], iteration=5, solve_rates=[0.25])
    state = json.loads(json.dumps(buffer.state_dict()))
    restored = TaskBuffer("deduction", frontier_size=4)
    restored.load_state_dict(state)
    assert restored.state_dict() == buffer.state_dict()
    assert restored.references(4, random.Random(0), 1.0) == buffer.references(4, random.Random(0), 1.0)
    assert state["frontier"][0][2] == 0.25 != UNKNOWN_RATE  # saved and restored (for a resume)
    no_rates = {**state, "frontier": [entry[:2] for entry in state["frontier"]]}  # saved before the rates were
    restored.load_state_dict(no_rates)
    assert restored.state_dict()["frontier"] == [[task("b * 2").to_dict(), 5, UNKNOWN_RATE]]
    old = {k: v for k, v in state.items() if k in ("kind", "capacity", "tasks")}  # before the curriculum fields
    legacy = TaskBuffer("deduction")
    legacy.load_state_dict(old)
    assert list(legacy) == list(buffer) and legacy.frontier_size() == 0
    assert set(legacy.references(4, random.Random(0))[1]) == {0}

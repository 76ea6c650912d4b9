"""Per-type task buffers, and the built-in tasks that seed or top them up.

A buffer is a FIFO of verified tasks (oldest dropped first once over capacity; the official AZR
code keeps the first 16384 instead, which freezes a full buffer). It hands out proposer references
and solver batches, and keeps running counts of program signatures and of output values for the novelty
bonuses.
Each entry remembers the iteration it was added at (0 for seeds and built-in tasks), for the curriculum;
the buffer also keeps its most recent *learnable* entries (0 < p < 1, p the solve rate measured when the
task was proposed) with their p as the "frontier", from which references can be drawn, at random or
hardest (lowest p) first.
All randomness comes from the caller's `random.Random`, so every rank draws the same samples.
"""

from __future__ import annotations

import random
import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from .tasks.common import INPUT_RANGE, N_INDUCTION_INPUTS, TASK_KINDS, Rejected, Task, make_task
from .tasks.program import Program, parse_program, random_program


FrontierPick = Literal["random", "hardest"]  # how references are drawn from the frontier (TaskBuffer.references)
SeedInputs = Literal["small", "wide"]  # the inputs of built-in tasks (seed_tasks, random_task)
UNKNOWN_RATE = 0.5  # the solve rate given to frontier entries of checkpoints that did not save it


def _signature(task: Task) -> str:
    return parse_program(task.program).signature  # parse_program is cached: cheap on repeats


def _operator_set(task: Task) -> str:
    return parse_program(task.program).operator_set


def is_learnable(solve_rate: float | None) -> bool:
    """0 < p < 1: the solver sometimes, but not always, solves the task (AZR's learnability)."""
    return solve_rate is not None and 0.0 < solve_rate < 1.0


class _Entries:
    """(task, iteration added) by index, without copying the buffer."""

    def __init__(self, buffer: TaskBuffer) -> None:
        self.buffer = buffer

    def __len__(self) -> int:
        return len(self.buffer._tasks)

    def __getitem__(self, i: int) -> tuple[Task, int]:
        return self.buffer._tasks[i], self.buffer._added[i]


class TaskBuffer:
    def __init__(self, kind: str, capacity: int = 16384, frontier_size: int = 64) -> None:
        if kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {kind!r}; expected one of {TASK_KINDS}")
        if capacity < 1 or frontier_size < 1:
            raise ValueError(f"capacity and frontier_size must be positive, got {capacity}, {frontier_size}")
        self.kind = kind
        self.capacity = capacity
        self._tasks: deque[Task] = deque()
        self._added: deque[int] = deque()  # iteration each entry was added at, parallel to _tasks
        self._signatures: Counter[str] = Counter()
        self._operator_sets: Counter[str] = Counter()
        self._outputs: Counter[tuple[int, ...]] = Counter()
        # the most recent learnable entries as (task, iteration added, p): references at the solver's edge
        self._frontier: deque[tuple[Task, int, float]] = deque(maxlen=frontier_size)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self):
        return iter(self._tasks)

    def add(self, tasks: Iterable[Task], iteration: int = 0, solve_rates: Sequence[float | None] | None = None) -> None:
        """Append tasks (whatever their reward, as in AZR); evict the oldest beyond capacity.
        ``solve_rates`` (one per task, None for built-in ones) decides which enter the frontier."""
        tasks = list(tasks)
        rates = [None] * len(tasks) if solve_rates is None else list(solve_rates)
        if len(rates) != len(tasks):
            raise ValueError(f"{len(tasks)} tasks but {len(rates)} solve rates")
        for task, rate in zip(tasks, rates):
            if task.kind != self.kind:
                raise ValueError(f"a {task.kind} task cannot go into the {self.kind} buffer")
            self._tasks.append(task)
            self._added.append(iteration)
            self._signatures[_signature(task)] += 1
            self._operator_sets[_operator_set(task)] += 1
            self._outputs[task.outputs] += 1
            if is_learnable(rate):
                self._frontier.append((task, iteration, float(rate)))
            if len(self._tasks) > self.capacity:
                self._added.popleft()
                self._forget(self._tasks.popleft())

    def _forget(self, task: Task) -> None:
        signature = _signature(task)
        self._signatures[signature] -= 1
        if not self._signatures[signature]:
            del self._signatures[signature]  # so `signature in buffer.signatures()` stays exact
        operator_set = _operator_set(task)
        self._operator_sets[operator_set] -= 1
        if not self._operator_sets[operator_set]:
            del self._operator_sets[operator_set]
        self._outputs[task.outputs] -= 1
        if not self._outputs[task.outputs]:
            del self._outputs[task.outputs]

    def sample(self, k: int, rng: random.Random) -> list[Task]:
        """min(k, len) tasks drawn uniformly without replacement (the proposer's references)."""
        indices = rng.sample(range(len(self._tasks)), min(k, len(self._tasks)))
        return [self._tasks[i] for i in indices]

    def references(
        self, k: int, rng: random.Random, frontier: float = 0.0, pick: FrontierPick = "random"
    ) -> tuple[list[Task], list[int]]:
        """K proposer references and the iteration each was added at. A share ``frontier`` of them
        (rounded; fewer if the frontier holds fewer) comes from the recent learnable tasks, the rest
        uniformly from the whole buffer (the paper: all uniform), without repeating a task; shuffled so
        the frontier ones do not always sit next to the prompt's end.

        ``pick`` says which frontier tasks: ``random`` (uniform) or ``hardest`` (lowest p first, ties in
        random order), so that the proposer imitates the tasks its solver found hardest but could still
        solve sometimes, rather than the easy bulk of the buffer."""
        picked: list[tuple[Task, int]] = []
        chosen: set[Task] = set()

        def take(pool, order: Iterable[int], want: int) -> None:  # up to `want` distinct new tasks, in `order`
            goal = len(picked) + want
            for i in order:
                task, added = pool[i][0], pool[i][1]
                if len(picked) < goal and task not in chosen:
                    picked.append((task, added))
                    chosen.add(task)

        want = round(frontier * k)
        if want and pick == "hardest":
            order = sorted(range(len(self._frontier)), key=lambda i: (self._frontier[i][2], rng.random()))
            take(self._frontier, order, want)
        elif want:  # 2x draws skip most repeats
            take(self._frontier, rng.sample(range(len(self._frontier)), min(2 * want, len(self._frontier))), want)
        rest = k - len(picked)
        everything = _Entries(self)
        take(everything, rng.sample(range(len(everything)), min(2 * rest, len(everything))), rest)
        rng.shuffle(picked)
        return [task for task, _ in picked], [added for _, added in picked]

    def frontier_size(self) -> int:
        return len(self._frontier)

    def frontier_rates(self) -> dict[Task, float]:
        """The solve rate p of each frontier task (the latest, if a task entered twice): the p of the
        references shown, for the curriculum metrics."""
        return {task: rate for task, _, rate in self._frontier}

    def solver_batch(self, new: Sequence[Task], size: int, rng: random.Random) -> list[Task]:
        """`size` solver tasks: this iteration's new tasks first (a random subset if there are more), the rest
        uniform from the buffer's other tasks (`new` is already in the buffer and is not drawn twice), without
        replacement when there are enough, else with.

        With no other task in the buffer the rest is drawn from `new`; with nothing at all the batch is empty.
        """
        if len(new) >= size:
            return rng.sample(list(new), size)
        fresh = set(new)  # already in the buffer (added before solving): drawing them again would repeat them
        pool: Sequence[Task] = [t for t in self._tasks if t not in fresh] or new
        missing = size - len(new)
        if not pool:
            return []
        if len(pool) >= missing:
            rest = [pool[i] for i in rng.sample(range(len(pool)), missing)]
        else:
            rest = [pool[i] for i in rng.choices(range(len(pool)), k=missing)]
        return [*new, *rest]

    def signatures(self) -> Mapping[str, int]:
        """Live read-only count of program signatures in the buffer (O(1) lookups)."""
        return MappingProxyType(self._signatures)

    def operator_sets(self) -> Mapping[str, int]:
        """Live read-only count of the programs' operator sets (`+ *`) in the buffer (O(1) lookups)."""
        return MappingProxyType(self._operator_sets)

    def outputs(self) -> Mapping[tuple[int, ...], int]:
        """Live read-only count of the tasks' output tuples in the buffer (O(1) lookups)."""
        return MappingProxyType(self._outputs)

    def state_dict(self) -> dict[str, Any]:
        tasks = [task.to_dict() for task in self._tasks]
        frontier = [[task.to_dict(), added, rate] for task, added, rate in self._frontier]
        return {"kind": self.kind, "capacity": self.capacity, "tasks": tasks, "added": list(self._added),
                "frontier": frontier}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the tasks; this buffer's own capacity and frontier size (from the config) win over the
        saved ones. Checkpoints from before the curriculum fields load with every entry at iteration 0, and
        frontier entries saved without their solve rate get ``UNKNOWN_RATE``."""
        if state["kind"] != self.kind:
            raise ValueError(f"state of a {state['kind']} buffer cannot load into the {self.kind} buffer")
        self._tasks.clear()
        self._added.clear()
        self._signatures.clear()
        self._operator_sets.clear()
        self._outputs.clear()
        self._frontier.clear()
        tasks = [Task.from_dict(d) for d in state["tasks"]]
        added = state.get("added", [0] * len(tasks))
        for task, iteration in zip(tasks, added):
            self.add([task], iteration=int(iteration))
        for entry in state.get("frontier", []):
            rate = float(entry[2]) if len(entry) > 2 else UNKNOWN_RATE
            self._frontier.append((Task.from_dict(entry[0]), int(entry[1]), rate))


# ---------------------------------------------------------------------------------------------
# Built-in tasks

SEED_PROGRAMS = ("a + b", "a * b", "a - b", "a * 2 + b", "(a + b) * 3", "a // 2 + b")
SEED_MESSAGES = {
    "a + b": "add the two numbers",
    "a * b": "multiply the two numbers",
    "a - b": "subtract b from a",
    "a * 2 + b": "double a, then add b",
    "(a + b) * 3": "three times the sum",
    "a // 2 + b": "half of a, rounded down, plus b",
}
SMALL_INPUTS = (-10, 10)  # inputs of built-in tasks: small numbers make easy first tasks
# --seed-inputs wide: 1, 2 or 3 digits with equal chance, either sign. Those are all of INPUT_RANGE but its two
# end points (+-1000), so no digit count is favoured; uniform over the range would make 90% of inputs 3 digits.
WIDE_DIGITS = len(str(INPUT_RANGE[1])) - 1


def _input_value(rng: random.Random, inputs: SeedInputs) -> int:
    if inputs == "small":
        return rng.randint(*SMALL_INPUTS)
    digits = rng.randint(1, WIDE_DIGITS)
    magnitude = rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)
    return -magnitude if rng.random() < 0.5 else magnitude


def _random_inputs(rng: random.Random, n: int, inputs: SeedInputs) -> list[tuple[int, int]]:
    """n distinct random inputs (small: -10..10; wide: see WIDE_DIGITS)."""
    drawn: dict[tuple[int, int], None] = {}
    while len(drawn) < n:
        drawn[(_input_value(rng, inputs), _input_value(rng, inputs))] = None
    return list(drawn)


def _random_message(program: Program) -> str:
    """A hint that names the operators without giving the program away: `a rule using * %`."""
    return "a rule using " + " ".join(dict.fromkeys(re.findall(r"//|[-+*/%]", program.text)))


def _n_inputs(kind: str) -> int:
    return N_INDUCTION_INPUTS if kind == "induction" else 1


def _task_on_random_inputs(
    kind: str, program: Program, message: str, rng: random.Random, tries: int, inputs: SeedInputs
) -> Task | None:
    for _ in range(tries):
        try:
            return make_task(kind, program, _random_inputs(rng, _n_inputs(kind), inputs), message)
        except Rejected:  # e.g. division by zero at one of the inputs: draw others
            continue
    return None


def seed_tasks(kind: str, rng: random.Random, inputs: SeedInputs = "small") -> list[Task]:
    """One task per seed program, on random inputs (with a message for induction)."""
    tasks = []
    for text in SEED_PROGRAMS:
        message = SEED_MESSAGES[text] if kind == "induction" else ""
        task = _task_on_random_inputs(kind, parse_program(text), message, rng, tries=1, inputs=inputs)
        assert task is not None, "seed programs run on every input"
        tasks.append(task)
    return tasks


def random_task(kind: str, rng: random.Random, inputs: SeedInputs = "small") -> Task:
    """A valid built-in task on a random program: fills buffers the model could not fill."""
    while True:
        program = random_program(rng)
        message = _random_message(program) if kind == "induction" else ""
        task = _task_on_random_inputs(kind, program, message, rng, tries=20, inputs=inputs)
        if task is not None:
            return task

"""Curriculum diagnostics: is the proposer climbing?

Per task type and iteration, over the valid proposals: how hard they are (operators, program size, digits of
the largest operand and of the result), which operators of the program language they use (a proposer can stay
"learnable" while collapsing onto additions; the solver then learns additions only), where their learnability p
fell (0, strictly between, 1), the solve rate p by difficulty bin, and how old the K references shown to the
proposer were. Pure Python on tasks and floats:
the trainer sums the counters over ranks and calls ``finish``.

A task's difficulty is read off its program and numbers only (never off the evaluation set): operator count and
digits are the two axes along which arithmetic gets harder for a language model.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .buffers import is_learnable
from .tasks.common import Task
from .tasks.program import Bin, Neg, Num, Var, parse_program

OPERATOR_BINS = ("1", "2", "3", "4+")
# The program language's binary operators (tasks/program.py), by metric-safe name.
OPERATOR_NAMES = {"+": "add", "-": "sub", "*": "mul", "//": "floordiv", "/": "div", "%": "mod"}
DIGIT_BINS = ("1", "2", "3", "4+")


@dataclass(frozen=True)
class Difficulty:
    operators: int       # binary operators in the program
    size: int            # nodes: literals, variables, unary and binary operators
    operand_digits: int  # digits of the largest |literal| or |input|
    result_digits: int   # digits of the largest |output|


def difficulty(task: Task) -> Difficulty:
    tree = parse_program(task.program).tree  # cached parse
    literals, operators, size = [], 0, 0
    stack = [tree]
    while stack:
        node = stack.pop()
        size += 1
        if isinstance(node, Num):
            literals.append(abs(node.value))
        elif isinstance(node, Neg):
            stack.append(node.operand)
        elif isinstance(node, Bin):
            operators += 1
            stack += [node.left, node.right]
        else:
            assert isinstance(node, Var)
    operands = literals + [abs(x) for pair in task.inputs for x in pair]
    return Difficulty(operators, size, _digits(max(operands, default=0)), _digits(max(abs(o) for o in task.outputs)))


def _digits(n: int) -> int:
    return len(str(abs(n)))


def _bin(value: int, bins: tuple[str, ...]) -> str:
    return bins[min(value, len(bins)) - 1] if value >= 1 else bins[0]


def proposal_counters(kind: str, tasks: list[Task], solve_rates: list[float], reference_added: list[int],
                      iteration: int, new_outputs: list[bool] | None = None,
                      reference_p: list[float] | None = None) -> dict:
    """Additive counters for one rank's proposals of one task type: ``tasks``/``solve_rates`` of the valid ones,
    ``reference_added`` the iteration each reference shown in this type's prompts was added at (0: a seed or
    built-in task); ``new_outputs``: per valid task, whether its output was new to the buffer; ``reference_p``:
    the solve rate of each shown reference that was in the frontier (the others' p is not kept). Sum them over
    ranks, then ``finish``."""
    c: dict[str, float] = defaultdict(float)
    c[f"{kind}/new_output"] += sum(new_outputs or [])
    for task, p in zip(tasks, solve_rates):
        d = difficulty(task)
        c[f"{kind}/n"] += 1
        c[f"{kind}/operators"] += d.operators
        c[f"{kind}/size"] += d.size
        c[f"{kind}/operand_digits"] += d.operand_digits
        c[f"{kind}/result_digits"] += d.result_digits
        c[f"{kind}/p_zero"] += float(p == 0.0)
        c[f"{kind}/p_mid"] += float(is_learnable(p))
        c[f"{kind}/p_one"] += float(p == 1.0)
        for op in parse_program(task.program).operator_set.split():  # the diversity bonus's key, cached parse
            c[f"{kind}/uses_{OPERATOR_NAMES[op]}"] += 1
        for axis, value, bins in (("ops", d.operators, OPERATOR_BINS), ("digits", d.result_digits, DIGIT_BINS)):
            b = _bin(value, bins)
            c[f"{kind}/n_{axis}_{b}"] += 1
            c[f"{kind}/p_{axis}_{b}"] += p
    c[f"{kind}/n_refs"] += len(reference_added)
    c[f"{kind}/ref_age"] += sum(iteration - added for added in reference_added)
    c[f"{kind}/ref_seed"] += sum(added == 0 for added in reference_added)
    c[f"{kind}/n_ref_p"] += len(reference_p or [])
    c[f"{kind}/ref_p"] += sum(reference_p or [])
    return dict(c)


def finish(kind: str, c: dict[str, float]) -> dict[str, float]:
    """Metrics ``curriculum/propose_{kind}/...`` from summed counters; NaN where there was nothing to average."""
    nan = float("nan")
    n = c.get(f"{kind}/n", 0.0)

    def mean(key, count=n):
        return c.get(f"{kind}/{key}", 0.0) / count if count else nan

    out = {f"curriculum/propose_{kind}/{key}": mean(key)
           for key in ("operators", "size", "operand_digits", "result_digits", "p_zero", "p_mid", "p_one", "new_output",
                       *(f"uses_{name}" for name in OPERATOR_NAMES.values()))}
    for axis, bins in (("ops", OPERATOR_BINS), ("digits", DIGIT_BINS)):
        for b in bins:
            out[f"curriculum/propose_{kind}/solve_rate_by_{axis}/{b}"] = mean(f"p_{axis}_{b}", c.get(f"{kind}/n_{axis}_{b}", 0.0))
    out[f"curriculum/propose_{kind}/reference_age"] = mean("ref_age", c.get(f"{kind}/n_refs", 0.0))
    out[f"curriculum/propose_{kind}/reference_seed_frac"] = mean("ref_seed", c.get(f"{kind}/n_refs", 0.0))
    out[f"curriculum/propose_{kind}/reference_frontier_frac"] = mean("n_ref_p", c.get(f"{kind}/n_refs", 0.0))
    out[f"curriculum/propose_{kind}/reference_p"] = mean("ref_p", c.get(f"{kind}/n_ref_p", 0.0))
    return out

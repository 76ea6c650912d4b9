"""Deduction: from a program and an input, predict the output.

The solver prompt is exactly the evaluation set's format (`Calculate: 3 * (-4) + 1 = `, no few-shot
examples), so what the solver learns here is what `morgan/arithmetic_eval` measures.
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import Rejected, Task, Verdict, first_integer, io_proposer_prompt, judge_with, parse_io_proposal
from .program import parse_program

KIND = "deduction"
PROPOSE_STOP = ["\n\n", "\noutput:"]  # the proposer writes program + input; the verifier the output
SOLVE_STOP = ["\n"]

INSTRUCTION = (
    "Write a new arithmetic task: a program over integers a and b using + - * / // % and "
    "parentheses (/ must divide exactly), and an input. Someone will compute the output."
)


def proposer_prompt(references: Sequence[Task], target: Task | None = None) -> str:
    """Instruction, the references in the proposal format, then `program:` for the model to continue."""
    return io_proposer_prompt(INSTRUCTION, references)


def parse_proposal(text: str, target: Task | None = None) -> Task:
    return parse_io_proposal(KIND, text)


def solver_prompt(task: Task) -> str:
    (a, b), = task.inputs
    return f"Calculate: {parse_program(task.program).render(a, b)} = "


def parse_answer(text: str) -> int:
    """The first integer, as the evaluation scores it (trailing text is fine)."""
    answer = first_integer(text)
    if answer is None:
        raise Rejected("no integer")
    return answer


def check(task: Task, answer: int) -> bool:
    return type(answer) is int and answer == task.outputs[0]


def judge(task: Task, completion: str) -> Verdict:
    return judge_with(parse_answer, check, task, completion)

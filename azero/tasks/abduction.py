"""Abduction: from a program and an output, find an input that produces it.

Any input that gives the output counts (programs are rarely one-to-one). Variable-free programs are
rejected as proposals: every input would solve them.
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import Rejected, Task, Verdict, completion_lines, in_input_range, io_proposer_prompt
from .common import judge_with, parse_input, parse_io_proposal
from .program import InvalidProgram, parse_program

KIND = "abduction"
PROPOSE_STOP = ["\n\n", "\noutput:"]  # the proposer writes program + input; the verifier the output
SOLVE_STOP = ["\n"]

INSTRUCTION = (
    "Write a new arithmetic task: a program over integers a and b using + - * / // % and "
    "parentheses (/ must divide exactly), and an input. Someone will see the program and the "
    "output and must find an input."
)
SOLVER_INSTRUCTION = "Find an input (a, b) for which the program gives the output."

# Worked examples for the solver, as (program, answer input, answer text). The third shows that
# an unused variable may be left out.
EXAMPLES = (
    ("a * 3 + b", (4, 2), "a = 4, b = 2"),
    ("(a - b) * b", (3, 5), "a = 3, b = 5"),
    ("a // 2 - 7", (6, 0), "a = 6"),
)


def proposer_prompt(references: Sequence[Task], target: Task | None = None) -> str:
    """Instruction, the references in the proposal format, then `program:` for the model to continue."""
    return io_proposer_prompt(INSTRUCTION, references)


def parse_proposal(text: str, target: Task | None = None) -> Task:
    return parse_io_proposal(KIND, text)


def _question(program: str, output: int) -> str:
    return f"program: {program}\noutput: {output}\ninput:"


def solver_prompt(task: Task) -> str:
    """Instruction, the worked examples, then the task ending at `input:` where the answer goes."""
    examples = [
        f"{_question(program, parse_program(program).run(*inputs))} {answer}"
        for program, inputs, answer in EXAMPLES
    ]
    return "\n\n".join([SOLVER_INSTRUCTION, *examples, _question(task.program, task.outputs[0])])


def parse_answer(text: str) -> tuple[int, int]:
    """`a = 4, b = -2` (trailing text is fine; an omitted variable is 0) -> (4, -2). An out-of-range value is
    well formed: ``check`` judges it wrong (-0.5), it is not malformed (-1)."""
    lines = completion_lines(text)
    if not lines:
        raise Rejected("no input")
    return parse_input(lines[0], check_range=False)


def check(task: Task, answer: tuple[int, int]) -> bool:
    if not (isinstance(answer, tuple) and len(answer) == 2 and all(type(x) is int for x in answer)):
        return False
    if not all(in_input_range(x) for x in answer):
        return False
    try:
        return parse_program(task.program).run(*answer) == task.outputs[0]
    except InvalidProgram:  # e.g. division by zero at this input: a wrong answer
        return False


def judge(task: Task, completion: str) -> Verdict:
    return judge_with(parse_answer, check, task, completion)


"""Induction: from some input/output pairs and a message, write the program.

The proposer is given a program (sampled by the trainer from the deduction and abduction buffers)
and writes N_INDUCTION_INPUTS distinct inputs and a one-line message. The solver sees the first
N_SHOWN pairs and the message. An answer is correct when it reproduces all pairs: the hidden ones
(the paper's criterion) and the shown ones too, because a program contradicting the examples in
its own prompt is wrong even if it happens to fit the hidden pairs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .common import N_INDUCTION_INPUTS, Rejected, Task, Verdict, completion_lines, drop_label, format_input
from .common import judge_with, make_task, parse_int, parse_program_line
from .program import InvalidProgram, Program, parse_program

KIND = "induction"
N_SHOWN = N_INDUCTION_INPUTS // 2  # pairs shown to the solver; the rest are hidden
PROPOSE_STOP = ["\n\n", "\nprogram:"]
SOLVE_STOP = ["\n"]

INSTRUCTION = (
    f"For the given program, write {N_INDUCTION_INPUTS} different inputs (a, b) that show what it "
    "does, and a one-line message that hints at it without giving the program away."
)
SOLVER_INSTRUCTION = (
    "Write a program over a and b (using + - * / // % and parentheses) that gives each output from its input."
)

# Worked examples for the solver: (program, shown inputs, message); outputs are computed.
EXAMPLES = (
    ("a * 3 + b", ((1, 2), (0, 4), (-2, 1)), "triple a, then add b"),
    ("a % 5", ((7, 0), (13, 9), (-1, 2)), "the remainder of a divided by 5"),
    ("(a + b) * (a - b)", ((3, 1), (5, 5), (2, -4)), "the sum times the difference"),
)

_PAIR = re.compile(r"\(\s*([-+]?[0-9]+)\s*,\s*([-+]?[0-9]+)\s*\)")


def _format_inputs(inputs: Sequence[tuple[int, int]]) -> str:
    return "; ".join(f"({a}, {b})" for a, b in inputs)


def proposer_prompt(references: Sequence[Task], target: Task | None = None) -> str:
    """Instruction, the reference induction tasks, then the target's program ending at `inputs:`.

    The target must use a variable (parse_proposal rejects variable-free programs), so the caller
    should sample targets among programs that have one.
    """
    if target is None:
        raise ValueError("an induction proposer prompt needs a target task (its program)")
    examples = [
        f"program: {task.program}\ninputs: {_format_inputs(task.inputs)}\nmessage: {task.message}"
        for task in references
    ]
    return "\n\n".join([INSTRUCTION, *examples, f"program: {target.program}\ninputs:"])


def parse_proposal(text: str, target: Task | None = None) -> Task:
    """`(1, 2); (3, -4); ...` on the first line, `message: ...` on the next; the rest is ignored."""
    if target is None:
        raise ValueError("an induction proposal needs its target task")
    lines = completion_lines(text)
    pairs = _PAIR.findall(drop_label(lines[0], "inputs:")) if lines else []
    if not pairs:
        raise Rejected("no inputs")
    if len(pairs) != N_INDUCTION_INPUTS:
        raise Rejected("wrong number of inputs")
    inputs = [(parse_int(a), parse_int(b)) for a, b in pairs]
    if len(lines) < 2 or not lines[1].startswith("message:"):
        raise Rejected("no message line")
    message = lines[1][len("message:") :].strip()
    if not message:
        raise Rejected("empty message")
    try:
        program = parse_program(target.program)
    except InvalidProgram as error:
        raise Rejected(f"invalid program: {error}") from None
    return make_task(KIND, program, inputs, message)


def _question(message: str, inputs: Sequence[tuple[int, int]], outputs: Sequence[int]) -> str:
    pairs = [f"{format_input(a, b)} -> {output}" for (a, b), output in zip(inputs, outputs)]
    return "\n".join([f"message: {message}", *pairs, "program:"])


def solver_prompt(task: Task) -> str:
    """Instruction, the worked examples, then the message and shown pairs ending at `program:`."""
    examples = []
    for program, inputs, message in EXAMPLES:
        outputs = [parse_program(program).run(a, b) for a, b in inputs]
        examples.append(f"{_question(message, inputs, outputs)} {program}")
    task_question = _question(task.message, task.inputs[:N_SHOWN], task.outputs[:N_SHOWN])
    return "\n\n".join([SOLVER_INSTRUCTION, *examples, task_question])


def parse_answer(text: str) -> Program:
    """The program on the first line; an unparseable one is malformed."""
    lines = completion_lines(text)
    if not lines:
        raise Rejected("no program line")
    return parse_program_line(lines[0])


def check(task: Task, answer: Program) -> bool:
    if not isinstance(answer, Program):
        return False
    try:
        pairs = zip(task.inputs, task.outputs, strict=True)
        return all(answer.run(a, b) == output for (a, b), output in pairs)
    except ValueError:  # InvalidProgram: a run error on any pair is a miss (also a corrupt task)
        return False


def judge(task: Task, completion: str) -> Verdict:
    return judge_with(parse_answer, check, task, completion)

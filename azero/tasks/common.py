"""What the three task types share: the Task record, verdicts and rewards, and tolerant parsing helpers.

Every parser here reads untrusted model text. It looks only at a bounded prefix, uses linear-time
regular expressions, and signals bad text with `Rejected`, whose message starts with a short stable
category (`"invalid program: ..."`, `"input out of range"`) so the trainer can count rejections by it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .program import InvalidProgram, Program, parse_program

TASK_KINDS = ("deduction", "abduction", "induction")
INPUT_RANGE = (-1000, 1000)  # inclusive bounds on a and b in proposals and abduction answers
N_INDUCTION_INPUTS = 6  # inputs per induction task (the solver sees half of them)
MAX_MESSAGE_LEN = 200  # induction message: one line of free text
MAX_COMPLETION_CHARS = 2000  # parsers never look further into a completion than this
MAX_SCAN = 1000  # first_integer looks for the integer within this prefix...
MAX_DIGITS = 30  # ...and treats a longer run of digits as no answer at all


class Rejected(ValueError):
    """A proposal or answer that cannot be used; the message is a short categorical reason."""


class Verdict(enum.Enum):
    CORRECT = "correct"
    WRONG = "wrong"  # well formed, but not a right answer
    MALFORMED = "malformed"  # no answer could be parsed


SOLVER_REWARD = {Verdict.CORRECT: 1.0, Verdict.WRONG: -0.5, Verdict.MALFORMED: -1.0}
INVALID_PROPOSAL_REWARD = -1.0
ProposerReward = Literal["learnability", "validity"]  # 1 - p, or +1 for any valid task (an ablation)


@dataclass(frozen=True)
class Task:
    """One verified task: a program (canonical text), its inputs and the verifier's outputs.

    Deduction and abduction tasks have one input; induction tasks have N_INDUCTION_INPUTS and a message.
    """

    kind: str
    program: str
    inputs: tuple[tuple[int, int], ...]
    outputs: tuple[int, ...]
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "program": self.program,
            "inputs": [list(pair) for pair in self.inputs],
            "outputs": list(self.outputs),
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Task:
        return cls(
            kind=str(d["kind"]),
            program=str(d["program"]),
            inputs=tuple((int(a), int(b)) for a, b in d["inputs"]),
            outputs=tuple(int(o) for o in d["outputs"]),
            message=str(d.get("message", "")),
        )


def in_input_range(value: int) -> bool:
    return INPUT_RANGE[0] <= value <= INPUT_RANGE[1]


def make_task(kind: str, program: Program, inputs: Iterable[tuple[int, int]], message: str = "") -> Task:
    """Validate a (program, inputs, message) proposal and compute its outputs with the verifier.

    The single place where task validity is decided, for model proposals and built-in tasks alike.
    Raises Rejected with the reason.
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {TASK_KINDS}")
    inputs = tuple((a, b) for a, b in inputs)
    if len(inputs) != (N_INDUCTION_INPUTS if kind == "induction" else 1):
        raise Rejected("wrong number of inputs")
    if kind != "deduction" and not program.variables:
        raise Rejected("program uses no variables")  # any input solves it: a trivial task
    if not all(in_input_range(a) and in_input_range(b) for a, b in inputs):
        raise Rejected("input out of range")
    if len(set(inputs)) != len(inputs):
        raise Rejected("duplicate inputs")
    if "\n" in message:
        raise Rejected("message not one line")
    if len(message) > MAX_MESSAGE_LEN:
        raise Rejected("message too long")
    try:
        outputs = tuple(program.run(a, b) for a, b in inputs)
    except InvalidProgram as error:
        raise Rejected(f"run error: {error}") from None
    return Task(kind, program.text, inputs, outputs, message)


# ---------------------------------------------------------------------------------------------
# Parsing helpers

_INTEGER = re.compile(r"[-+]?[0-9]+")
# `a = 4`, `b=-2`; a number followed by more digits or a decimal part is not an integer input.
_ASSIGNMENT = re.compile(r"\b([ab])\s*=\s*([-+]?[0-9]+)(?![0-9]|\.[0-9])")
_MAX_INPUT_DIGITS = len(str(INPUT_RANGE[1])) + 2  # room for leading zeros; longer is out of range


def first_integer(text: str) -> int | None:
    """The first integer in text (`-12` in "answer: -12."), or None; the eval's scoring rule.

    Linear and bounded: only the first MAX_SCAN chars are searched and an integer of more than
    MAX_DIGITS digits (or one running past the scanned prefix) counts as no integer.
    """
    match = _INTEGER.search(text, 0, MAX_SCAN)
    if match is None or len(match.group().lstrip("+-")) > MAX_DIGITS:
        return None
    if match.end() == MAX_SCAN and len(text) > MAX_SCAN:  # the digits may go on past the scan
        return None
    return int(match.group())


def parse_int(text: str, check_range: bool = True) -> int:
    """A plain integer input value (`-4`, `+3`), checked against INPUT_RANGE unless ``check_range`` is false.
    Unchecked, a value with more digits than any in range is returned as INPUT_RANGE[1] + 1 (out of range
    either way, and int() of thousands of digits is slow or refused)."""
    value = INPUT_RANGE[1] + 1 if len(text.lstrip("+-")) > _MAX_INPUT_DIGITS else int(text)
    if check_range and not in_input_range(value):
        raise Rejected("input out of range")
    return value


def parse_input(text: str, check_range: bool = True) -> tuple[int, int]:
    """`a = 4, b = -2` -> (4, -2). The first assignment of each name counts; a missing one is 0. Out-of-range
    values are rejected, or with ``check_range=False`` kept for the caller's check (a solver's wrong answer)."""
    values: dict[str, int] = {}
    for match in _ASSIGNMENT.finditer(text[:MAX_COMPLETION_CHARS]):
        if match.group(1) not in values:
            values[match.group(1)] = parse_int(match.group(2), check_range)
    if not values:
        raise Rejected("no input")
    return values.get("a", 0), values.get("b", 0)


def format_input(a: int, b: int) -> str:
    return f"a = {a}, b = {b}"


def completion_lines(text: str) -> list[str]:
    """The non-empty, stripped lines of a completion's bounded prefix."""
    return [line.strip() for line in text[:MAX_COMPLETION_CHARS].split("\n") if line.strip()]


def drop_label(line: str, label: str) -> str:
    """`program: a + b` -> `a + b` (models sometimes repeat the label the prompt ended with)."""
    return line[len(label) :].strip() if line.startswith(label) else line


def parse_program_line(line: str) -> Program:
    try:
        return parse_program(drop_label(line, "program:"))
    except InvalidProgram as error:
        raise Rejected(f"invalid program: {error}") from None


def parse_program_and_input(text: str) -> tuple[Program, tuple[int, int]]:
    """A deduction or abduction proposal: a program line, then an `input:` line; the rest is ignored."""
    lines = completion_lines(text)
    if not lines:
        raise Rejected("no program line")
    program = parse_program_line(lines[0])
    if len(lines) < 2 or not lines[1].startswith("input:"):
        raise Rejected("no input line")
    return program, parse_input(lines[1][len("input:") :])


def io_proposer_prompt(instruction: str, references: Sequence[Task]) -> str:
    """Deduction/abduction proposer prompt: the instruction, the references in the proposal format,
    then `program:` for the model to continue."""
    examples = [format_io_task(task) for task in references]
    return "\n\n".join([instruction, *examples, "A new task, different from the ones above:\nprogram:"])


def parse_io_proposal(kind: str, text: str) -> Task:
    """A deduction/abduction proposal: program + input lines -> a validated task (raises Rejected)."""
    program, inputs = parse_program_and_input(text)
    return make_task(kind, program, [inputs])


def format_io_task(task: Task) -> str:
    """A deduction/abduction task in the proposer's format (the references and the expected output)."""
    (a, b), (output,) = task.inputs[0], task.outputs
    return f"program: {task.program}\ninput: {format_input(a, b)}\noutput: {output}"


def judge_with(
    parse_answer: Callable[[str], Any], check: Callable[[Task, Any], bool], task: Task, completion: str
) -> Verdict:
    """parse_answer + check -> Verdict; a Rejected answer is MALFORMED."""
    try:
        answer = parse_answer(completion)
    except Rejected:
        return Verdict.MALFORMED
    return Verdict.CORRECT if check(task, answer) else Verdict.WRONG

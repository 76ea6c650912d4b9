import re
import pytest

from azero.tasks import Rejected, Task, Verdict, abduction, parse_program
from azero.tasks.common import make_task


def task(program: str, a: int, b: int) -> Task:
    return make_task("abduction", parse_program(program), [(a, b)])


def test_proposer_prompt():
    prompt = abduction.proposer_prompt([task("a * b + 3", 4, -2)])
    assert "find an input" in prompt
    assert "program: a * b + 3\ninput: a = 4, b = -2\noutput: -5\n\n" in prompt
    assert prompt.endswith("\nprogram:")


@pytest.mark.parametrize(
    "text, expected",
    [
        (" a * b + 3\ninput: a = 4, b = -2\n", Task("abduction", "a * b + 3", ((4, -2),), (-5,))),
        ("  b % 7\n input: b = 9\noutput:", Task("abduction", "b % 7", ((0, 9),), (2,))),
        (" a - b\ninput: a = 1, b = 2\n\nprogram: x", Task("abduction", "a - b", ((1, 2),), (-1,))),
    ],
)
def test_parse_proposal(text, expected):
    assert abduction.parse_proposal(text) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        (" 3 * 4\ninput: a = 1, b = 2", "program uses no variables"),
        (" a + b\ninput: a = -1001, b = 0", "input out of range"),
        (" a % b\ninput: a = 3, b = 0", "run error: modulo by zero"),
        (" a + b\n", "no input line"),
        (" a + b)\ninput: a = 1, b = 1", "invalid program: syntax error"),
    ],
)
def test_parse_proposal_rejects(text, reason):
    with pytest.raises(Rejected, match="^" + re.escape(reason)):
        abduction.parse_proposal(text)


def test_solver_prompt():
    prompt = abduction.solver_prompt(task("a * b + 3", 4, -2))
    assert prompt.endswith("\n\nprogram: a * b + 3\noutput: -5\ninput:")
    assert "a = 4, b = -2" not in prompt  # the proposer's input is the hidden answer


def test_solver_examples_are_correct():
    for program, inputs, answer in abduction.EXAMPLES:
        example = task(program, *inputs)
        shown = f"program: {program}\noutput: {example.outputs[0]}\ninput: {answer}\n"
        assert shown in abduction.solver_prompt(example)
        assert abduction.judge(example, answer) is Verdict.CORRECT


@pytest.mark.parametrize(
    "completion",
    [" a = 5, b = 0", " a = 2, b = 3", "a=-1,b=6", " a = 1000, b = -995", " a = 5", " b = 5", "b = 3, a = 2"],
)
def test_any_input_with_the_output_is_correct(completion):
    assert abduction.judge(task("a + b", 2, 3), completion) is Verdict.CORRECT


@pytest.mark.parametrize(
    "program, inputs, completion, verdict",
    [
        ("a + b", (2, 3), " a = 2, b = 3 since 2 + 3 = 5", Verdict.CORRECT),  # trailing text
        ("a + b", (2, 3), " a = 2, b = 3\na = 0, b = 0", Verdict.CORRECT),  # only the first line counts
        ("a + b", (2, 3), " a = 2, b = 2", Verdict.WRONG),
        ("a + b", (2, 3), " a = 2, b = 3, a = 99999", Verdict.CORRECT),  # the first assignment wins
        ("a // b", (8, 4), " a = 4, b = 0", Verdict.WRONG),  # a run error is a wrong answer
        ("a / b", (8, 4), " a = 5, b = 2", Verdict.WRONG),  # inexact division
        ("a + b", (2, 3), " a = 5000, b = -4995", Verdict.WRONG),  # well formed, out of INPUT_RANGE: wrong
        ("a + b", (2, 3), " a = " + "9" * 5000 + ", b = 1", Verdict.WRONG),  # more digits than int() takes
        ("a + b", (2, 3), "", Verdict.MALFORMED),
        ("a + b", (2, 3), " 2, 3", Verdict.MALFORMED),
        ("a + b", (2, 3), " a = 2.5, b = 2.5", Verdict.MALFORMED),
        ("a + b", (2, 3), " a == 2", Verdict.MALFORMED),
    ],
)
def test_judge(program, inputs, completion, verdict):
    assert abduction.judge(task(program, *inputs), completion) is verdict


def test_parse_answer_and_check():
    assert abduction.parse_answer(" a = -4, b = +2") == (-4, 2)
    assert abduction.parse_answer("a = 1001") == (1001, 0)  # parsed; check() finds it out of range
    with pytest.raises(Rejected, match="input out of range"):  # a proposal's input is refused outright
        abduction.parse_proposal(" a + b\ninput: a = 1001, b = 0")
    with pytest.raises(Rejected, match="no input"):
        abduction.parse_answer("   ")
    plus = task("a + b", 2, 3)
    assert abduction.check(plus, (1, 4))
    for bad in [None, (5,), (5, 0, 0), ("5", 0), (True, 4), (5.0, 0), [5, 0], (5000, -4995)]:
        assert not abduction.check(plus, bad)

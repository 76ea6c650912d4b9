import re
import pytest

from azero.tasks import Rejected, Task, Verdict, induction, parse_program
from azero.tasks.common import MAX_MESSAGE_LEN, make_task

INPUTS = ((1, 2), (0, 4), (-2, 1), (5, 5), (10, -3), (-7, 0))
INPUTS_TEXT = "(1, 2); (0, 4); (-2, 1); (5, 5); (10, -3); (-7, 0)"


def task(program: str = "a * 3 + b", inputs=INPUTS, message: str = "triple a, then add b") -> Task:
    return make_task("induction", parse_program(program), inputs, message)


def target(program: str) -> Task:
    return make_task("deduction", parse_program(program), [(0, 1)])


def test_constants():
    assert induction.N_INDUCTION_INPUTS == 6
    assert induction.N_SHOWN == 3


def test_proposer_prompt():
    prompt = induction.proposer_prompt([task()], target("a - b * 2"))
    assert f"program: a * 3 + b\ninputs: {INPUTS_TEXT}\nmessage: triple a, then add b\n\n" in prompt
    assert prompt.endswith("\n\nprogram: a - b * 2\ninputs:")
    with pytest.raises(ValueError):
        induction.proposer_prompt([task()], None)


@pytest.mark.parametrize(
    "text",
    [
        f" {INPUTS_TEXT}\nmessage: triple a, then add b\n",
        f"inputs: {INPUTS_TEXT}\n message:   triple a, then add b  \n\nprogram: junk",
        f"{INPUTS_TEXT.replace(' ', '')}\n\nmessage: triple a, then add b\nmore text",
    ],
)
def test_parse_proposal(text):
    proposal = induction.parse_proposal(text, target("a * 3 + b"))
    assert proposal == Task("induction", "a * 3 + b", INPUTS, (5, 4, -5, 20, 27, -21), "triple a, then add b")
    assert Task.from_dict(proposal.to_dict()) == proposal


@pytest.mark.parametrize(
    "program, text, reason",
    [
        ("a + b", "", "no inputs"),
        ("a + b", " 1, 2, 3\nmessage: x", "no inputs"),
        ("a + b", " (1, 2); (3, 4); (5, 6); (7, 8); (9, 10)\nmessage: x", "wrong number of inputs"),
        ("a + b", f" {INPUTS_TEXT}; (8, 8)\nmessage: x", "wrong number of inputs"),
        ("a + b", " (1, 2); (1, 2); (3, 4); (5, 6); (7, 8); (9, 10)\nmessage: x", "duplicate inputs"),
        ("a + b", " (1, 2); (2000, 2); (3, 4); (5, 6); (7, 8); (9, 10)\nmessage: x", "input out of range"),
        ("a + b", f" {INPUTS_TEXT}", "no message line"),
        ("a + b", f" {INPUTS_TEXT}\nthe sum", "no message line"),
        ("a + b", f" {INPUTS_TEXT}\nmessage:   ", "empty message"),
        ("a + b", f" {INPUTS_TEXT}\nmessage: " + "x" * (MAX_MESSAGE_LEN + 1), "message too long"),
        ("7 * 6", f" {INPUTS_TEXT}\nmessage: x", "program uses no variables"),
        ("a // b", f" {INPUTS_TEXT}\nmessage: x", "run error: division by zero"),  # (-7, 0)
    ],
)
def test_parse_proposal_rejects(program, text, reason):
    with pytest.raises(Rejected, match="^" + re.escape(reason)):
        induction.parse_proposal(text, target(program))


def test_parse_proposal_needs_a_target():
    with pytest.raises(ValueError):
        induction.parse_proposal(f" {INPUTS_TEXT}\nmessage: x", None)


def test_solver_prompt_shows_only_the_first_pairs():
    prompt = induction.solver_prompt(task())
    question = prompt.split("\n\n")[-1]
    assert question == (
        "message: triple a, then add b\n"
        "a = 1, b = 2 -> 5\na = 0, b = 4 -> 4\na = -2, b = 1 -> -5\n"
        "program:"
    )
    assert "a = 10, b = -3" not in prompt and "a = -7, b = 0" not in prompt


def test_solver_examples_are_correct():
    for program, inputs, message in induction.EXAMPLES:
        rest = [(9, 9), (-9, 4), (6, -6)]  # any hidden pairs: the example program itself is correct
        example = task(program, (*inputs, *rest), message)
        assert f" -> {example.outputs[2]}\nprogram: {program}\n\n" in induction.solver_prompt(example)
        assert induction.judge(example, program) is Verdict.CORRECT


@pytest.mark.parametrize(
    "completion, verdict",
    [
        (" a * 3 + b", Verdict.CORRECT),
        (" b + 3 * a", Verdict.CORRECT),  # any program with the same values
        (" (a + a + a) + b  # triple a", Verdict.CORRECT),  # a Python comment is fine
        (" a * 3 + b\nprogram: nonsense", Verdict.CORRECT),  # only the first line counts
        (" program: a * 3 + b", Verdict.CORRECT),
        (" a * 3 + b + (a - 1) * a * (a + 2)", Verdict.WRONG),  # shown pairs only
        (" a * 3 + b + (a - 5) * (a - 10) * (a + 7)", Verdict.WRONG),  # hidden pairs only
        (" a * 3 + b + b // a", Verdict.WRONG),  # division by zero at a = 0
        (" a * 4", Verdict.WRONG),
        (" a * 3 + b.", Verdict.MALFORMED),
        (" a ** 3", Verdict.MALFORMED),
        (" triple a then add b", Verdict.MALFORMED),
        ("", Verdict.MALFORMED),
    ],
)
def test_judge(completion, verdict):
    assert induction.judge(task(), completion) is verdict


def test_shown_and_hidden_pairs_of_the_wrong_answers():
    # The two "only" programs above really do split the pairs as their comments say.
    shown, hidden = INPUTS[: induction.N_SHOWN], INPUTS[induction.N_SHOWN :]
    right = parse_program("a * 3 + b")
    only_shown = parse_program("a * 3 + b + (a - 1) * a * (a + 2)")
    only_hidden = parse_program("a * 3 + b + (a - 5) * (a - 10) * (a + 7)")
    assert all(only_shown.run(*x) == right.run(*x) for x in shown)
    assert any(only_shown.run(*x) != right.run(*x) for x in hidden)
    assert all(only_hidden.run(*x) == right.run(*x) for x in hidden)
    assert any(only_hidden.run(*x) != right.run(*x) for x in shown)


def test_check():
    assert induction.check(task(), parse_program("a * 3 + b"))
    assert not induction.check(task(), "a * 3 + b")
    assert not induction.check(task(), None)
    with pytest.raises(Rejected, match="^invalid program"):
        induction.parse_answer("import os")

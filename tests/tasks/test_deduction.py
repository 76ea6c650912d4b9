import re
from pathlib import Path

import pytest

from azero.tasks import TASKS, Rejected, Task, Verdict, deduction, parse_program
from azero.tasks.common import make_task

REPO = Path(__file__).resolve().parents[2]
# CI clones the repo with shared/ beside it; some checkouts carry shared/ inside.
CANDIDATES = (REPO.parent / "shared/data/arithmetic_eval", REPO / "shared/data/arithmetic_eval")
EVAL_COPY = next((path for path in CANDIDATES if path.is_dir()), None)


def task(program: str, a: int = 0, b: int = 0) -> Task:
    return make_task("deduction", parse_program(program), [(a, b)])


def test_registry():
    assert TASKS["deduction"] is deduction
    assert deduction.KIND == "deduction"
    assert "\n" in deduction.SOLVE_STOP


def test_proposer_prompt_shows_references_in_the_proposal_format():
    prompt = deduction.proposer_prompt([task("a * b + 3", 4, -2), task("a - b", 1, 2)])
    assert "program: a * b + 3\ninput: a = 4, b = -2\noutput: -5\n\n" in prompt
    assert "program: a - b\ninput: a = 1, b = 2\noutput: -1\n\n" in prompt
    assert prompt.endswith("\nprogram:")
    assert deduction.proposer_prompt([]).endswith("\nprogram:")


@pytest.mark.parametrize(
    "text, program, inputs, output",
    [
        (" a * b + 3\ninput: a = 4, b = -2\n", "a * b + 3", (4, -2), -5),
        ("a*(b+3)\n  input: a=2,b=1", "a * (b + 3)", (2, 1), 8),
        ("program: a - b\ninput: a = 1, b = 2", "a - b", (1, 2), -1),  # the label repeated
        (" a + 1\ninput: a = 7\noutput: 8\n\nprogram: junk", "a + 1", (7, 0), 8),  # b omitted; rest ignored
        (" a // b\n\ninput: a = -7, b = 2 because why not", "a // b", (-7, 2), -4),
        (" 20 + 10\ninput: a = 0, b = 0", "20 + 10", (0, 0), 30),  # variable-free: like the eval
    ],
)
def test_parse_proposal(text, program, inputs, output):
    proposal = deduction.parse_proposal(text)
    assert proposal == Task("deduction", program, (inputs,), (output,))


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "no program line"),
        ("\n \n", "no program line"),
        (" a ** b\ninput: a = 1, b = 2", "invalid program: operator ** is not allowed"),
        (" a + b", "no input line"),
        (" a + b\noutput: 3", "no input line"),
        (" a + b\ninput: four", "no input"),
        (" a + b\ninput: a = 1001, b = 0", "input out of range"),
        (" a + b\ninput: a = 1, b = -99999999999999999999", "input out of range"),
        (" a // b\ninput: a = 1, b = 0", "run error: division by zero"),
        (" a / b\ninput: a = 7, b = 2", "run error: inexact division"),
    ],
)
def test_parse_proposal_rejects(text, reason):
    with pytest.raises(Rejected, match="^" + re.escape(reason)):
        deduction.parse_proposal(text)


def test_solver_prompt_is_the_eval_format():
    assert deduction.solver_prompt(task("a * b + 1", 3, -4)) == "Calculate: 3 * (-4) + 1 = "
    assert deduction.solver_prompt(task("a - b", -5, 2)) == "Calculate: -5 - 2 = "


@pytest.mark.parametrize(
    "completion, verdict",
    [
        ("-11", Verdict.CORRECT),
        (" -11", Verdict.CORRECT),
        ("-11.", Verdict.CORRECT),
        ("-11 because 3 * -4 = -12", Verdict.CORRECT),  # trailing text is fine, like the eval
        ("The answer is -11", Verdict.CORRECT),
        ("11", Verdict.WRONG),
        ("-12 + 1 = -11", Verdict.WRONG),  # the first integer is the answer
        ("", Verdict.MALFORMED),
        ("minus eleven", Verdict.MALFORMED),
        ("1" * 31, Verdict.MALFORMED),  # absurdly long digit runs are not answers
    ],
)
def test_judge(completion, verdict):
    assert deduction.judge(task("a * b + 1", 3, -4), completion) is verdict


def test_parse_answer_and_check():
    assert deduction.parse_answer(" +42 apples") == 42
    with pytest.raises(Rejected, match="no integer"):
        deduction.parse_answer("none")
    assert deduction.check(task("6 * 7"), 42)
    assert not deduction.check(task("6 * 7"), True)  # bool is not an answer
    assert not deduction.check(task("6 * 7"), "42")


@pytest.mark.skipif(EVAL_COPY is None, reason="no local copy of morgan/arithmetic_eval")
def test_every_eval_problem_is_a_deduction_task_with_the_same_prompt():
    import datasets

    rows = datasets.load_from_disk(str(EVAL_COPY))
    assert len(rows) == 200
    for row in rows:
        prompt = row["prompt"]
        assert prompt.startswith("Calculate: ") and prompt.endswith(" = ")
        program = parse_program(prompt[len("Calculate: ") : -len(" = ")])
        eval_task = make_task("deduction", program, [(0, 0)])
        assert eval_task.outputs == (int(row["answer"]),)
        assert deduction.solver_prompt(eval_task) == prompt
        assert deduction.judge(eval_task, row["answer"]) is Verdict.CORRECT

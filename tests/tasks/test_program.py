import random
import re

import pytest

from azero.tasks.program import MAX_LITERAL, MAX_MAGNITUDE, MAX_TEXT_LEN, InvalidProgram
from azero.tasks.program import parse_program, random_program


@pytest.mark.parametrize(
    "text, canonical, variables, signature",
    [
        ("a+b", "a + b", {"a", "b"}, "a + b"),
        ("  a * (b + 3) - 4 ", "a * (b + 3) - 4", {"a", "b"}, "a * (b + N) - N"),
        ("((a)) * ((b))", "a * b", {"a", "b"}, "a * b"),
        ("a - (b - 1)", "a - (b - 1)", {"a", "b"}, "a - (b - N)"),  # right operand keeps its parens
        ("(a - b) - 1", "a - b - 1", {"a", "b"}, "a - b - N"),  # left-associative: none needed
        ("a * (b * 3)", "a * (b * 3)", {"a", "b"}, "a * (b * N)"),  # structure is preserved
        ("(a + 1) // (b % 4)", "(a + 1) // (b % 4)", {"a", "b"}, "(a + N) // (b % N)"),
        ("-3 * a", "-3 * a", {"a"}, "N * a"),
        ("a * -3", "a * (-3)", {"a"}, "a * N"),
        ("-a * -b", "-a * (-b)", {"a", "b"}, "-a * (-b)"),
        ("-(a + b)", "-(a + b)", {"a", "b"}, "-(a + b)"),
        ("--a", "-(-a)", {"a"}, "-(-a)"),
        ("- -3", "3", set(), "N"),
        ("+b", "b", {"b"}, "b"),
        ("00", "0", set(), "N"),
        ("0 / 92", "0 / 92", set(), "N / N"),
        ("20 + 10", "20 + 10", set(), "N + N"),
        ("a % 5  # a comment", "a % 5", {"a"}, "a % N"),
        (f"{MAX_LITERAL} - a", f"{MAX_LITERAL} - a", {"a"}, "N - a"),
    ],
)
def test_valid_programs(text, canonical, variables, signature):
    program = parse_program(text)
    assert program.text == canonical
    assert program.variables == frozenset(variables)
    assert program.signature == signature
    assert parse_program(program.text) == program


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty program"),
        ("   ", "empty program"),
        ("a ** 2", "operator ** is not allowed"),
        ("a << 1", "operator << is not allowed"),
        ("a & b", "operator & is not allowed"),
        ("a ^ b", "operator ^ is not allowed"),
        ("~a", "operator ~ is not allowed"),
        ("not a", "operator not is not allowed"),
        ("abs(a)", "function calls are not allowed"),
        ("a.real", "attributes are not allowed"),
        ("a[0]", "subscripts are not allowed"),
        ("a < b", "comparisons are not allowed"),
        ("a and b", "boolean operators are not allowed"),
        ("a if b else 1", "conditional expressions are not allowed"),
        ("lambda: 1", "lambdas are not allowed"),
        ("(a := 1)", "assignments are not allowed"),
        ("[1, 2]", "containers are not allowed"),
        ("a, b", "containers are not allowed"),
        ("'a'", "strings are not allowed"),
        ("1.5", "float literals are not allowed"),
        ("1e309", "float literals are not allowed"),
        ("2j", "complex literals are not allowed"),
        ("True", "bool literals are not allowed"),
        ("None", "NoneType literals are not allowed"),
        ("1_000", "not plain decimal digits"),
        ("0x10", "not plain decimal digits"),
        ("０ + 1", "non-ASCII character"),
        ("１２３", "non-ASCII character"),
        ("٣ + a", "non-ASCII character"),
        ("a\x00b", "non-printable character"),
        ("a +\nb", "non-printable character"),
        ("c + 1", "unknown name 'c'"),
        ("__import__", "unknown name"),
        (f"a + {MAX_LITERAL + 1}", "literal too large"),
        ("a +", "syntax error"),
        ("1if 1 else 2", "syntax error"),
        (" + ".join(["(a + a + a + a)"] * 8), "program too large"),
        ("(" * 13 + "a" + ")" * 13, "nesting too deep"),
        ("-" * 20 + "a", "nesting too deep"),
        ("a" + " + 1" * 12, "nesting too deep"),  # a left-deep chain is a deep tree
        ("1" * (MAX_TEXT_LEN + 1), "program too long"),
    ],
)
def test_invalid_programs(text, reason):
    with pytest.raises(InvalidProgram, match=re.escape(reason)):
        parse_program(text)


def test_non_string_is_invalid():
    with pytest.raises(InvalidProgram, match="must be a string"):
        parse_program(12)


@pytest.mark.parametrize(
    "text, a, b, value",
    [
        ("a * b + 1", 3, -4, -11),
        ("a / b", 6, 3, 2),
        ("a / b", -6, 3, -2),
        ("a / b", 0, 92, 0),
        ("a // b", 7, 2, 3),
        ("a // b", -7, 2, -4),  # floor, like Python
        ("a // b", 7, -2, -4),
        ("a % b", -7, 2, 1),  # the sign follows the divisor
        ("a % b", 7, -2, -1),
        ("-a // 2", 3, 0, -2),  # unary minus binds tighter than //
        ("-(a // 2)", 3, 0, -1),
        ("a - b - 1", 5, 2, 2),
        ("a - (b - 1)", 5, 2, 4),
        ("a * b", MAX_MAGNITUDE, 1, MAX_MAGNITUDE),
        ("7", 0, 0, 7),
    ],
)
def test_run(text, a, b, value):
    assert parse_program(text).run(a, b) == value


@pytest.mark.parametrize(
    "text, a, b, reason",
    [
        ("a / b", 7, 2, "inexact division"),
        ("a / b", 1, 0, "division by zero"),
        ("a // b", 1, 0, "division by zero"),
        ("a % b", 1, 0, "modulo by zero"),
        ("a * b", MAX_MAGNITUDE, 2, "value out of range"),
        ("a * a * 0", 10**7, 0, "value out of range"),  # intermediate values are bounded too
        ("a - b", -MAX_MAGNITUDE, 1, "value out of range"),
        ("a", MAX_MAGNITUDE + 1, 0, "input out of range"),
        ("a", True, 0, "must be an int"),
        ("a", 1.0, 0, "must be an int"),
        ("b", 0, "1", "must be an int"),
        ("b", 0, None, "must be an int"),
    ],
)
def test_run_errors(text, a, b, reason):
    with pytest.raises(InvalidProgram, match=reason):
        parse_program(text).run(a, b)


def test_programs_are_values():
    assert parse_program("a+b") == parse_program(" (a) + (b) ")
    assert len({parse_program("a+b"), parse_program("a + b"), parse_program("b + a")}) == 2
    assert parse_program("a + b") is parse_program("a + b")  # cached


@pytest.mark.parametrize(
    "text, a, b, rendered",
    [
        ("a * b + 1", 3, -4, "3 * (-4) + 1"),
        ("a * b + 1", -3, -4, "-3 * (-4) + 1"),
        ("a - b", 5, -2, "5 - (-2)"),
        ("-a", -3, 0, "-(-3)"),
        ("-a", 3, 0, "-3"),
        ("b * -a", 2, 5, "5 * (-2)"),
        ("a * (b + 3) - 4", 3, -4, "3 * (-4 + 3) - 4"),
        ("20 + 10", 7, 7, "20 + 10"),
    ],
)
def test_render(text, a, b, rendered):
    program = parse_program(text)
    assert program.render(a, b) == rendered
    assert parse_program(rendered).run(0, 0) == program.run(a, b)


def test_canonical_and_render_round_trip_on_random_programs():
    rng = random.Random(1)
    for _ in range(300):
        program = random_program(rng, max_ops=rng.randint(1, 8))
        assert parse_program(program.text) == program
        for _ in range(5):
            a, b = rng.randint(-1000, 1000), rng.randint(-1000, 1000)
            rendered = parse_program(program.render(a, b))
            assert rendered.variables == frozenset()
            try:
                value = program.run(a, b)
            except InvalidProgram as error:
                with pytest.raises(InvalidProgram, match=str(error).split(":")[0]):
                    rendered.run(0, 0)
            else:
                assert rendered.run(0, 0) == value


def test_render_of_the_longest_programs_parses_back():
    # 16 leaves at the most negative literal-sized input: the longest rendering of a 31-node tree.
    program = parse_program("((a - a) - (a - a)) - ((a - a) - (a - a))".replace("a", "(a - a)"))
    rendered = program.render(-MAX_LITERAL, -MAX_LITERAL)
    assert len(rendered) <= MAX_TEXT_LEN
    assert parse_program(rendered).run(0, 0) == 0


def test_random_program_is_deterministic_and_usable():
    first = [random_program(random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = random.Random(3)
    programs = [random_program(rng) for _ in range(200)]
    assert all(program.variables for program in programs)
    assert len({program.signature for program in programs}) > 50
    with pytest.raises(ValueError):
        random_program(rng, max_ops=0)

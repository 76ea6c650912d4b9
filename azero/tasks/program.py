"""The safe arithmetic program language: parse, run, render.

A program is an integer expression over the variables `a` and `b`: decimal literals, `+ - * / // %`,
unary minus (and plus) and parentheses. `/` is *exact* division (an error unless it divides evenly),
so every `morgan/arithmetic_eval` problem is a program; `//` and `%` floor like Python's.

Model text is untrusted. It goes through cheap character, length and nesting checks, then
`ast.parse` (parsing only: nothing is compiled or executed), then a whitelist walk into our own
small tree, which our own interpreter runs. Bounds on length, nodes, depth, literals and every
intermediate value keep each call to `parse_program` and `Program.run` far below a millisecond,
and the only exception either ever raises is `InvalidProgram`.
"""

from __future__ import annotations

import ast
import functools
import random
import re
import warnings
from dataclasses import dataclass, field

# Long enough that any valid program, rendered with inputs of magnitude <= MAX_LITERAL, parses
# back: at most 20 leaves of <= 10 chars (`(-1000000)`) and 19 operators of <= 6 chars
# (` // ` plus a pair of parentheses) make 314 chars. Short enough that ast.parse stays ~0.1 ms.
MAX_TEXT_LEN = 400
MAX_NODES = 40  # literals, names, unary and binary operators of the tree
MAX_DEPTH = 12  # tree depth; also caps bracket nesting before ast.parse ever sees the text
MAX_LITERAL = 10**6  # largest absolute value of a literal
MAX_MAGNITUDE = 10**12  # largest absolute value of any input, intermediate or result

VARIABLES = ("a", "b")


class InvalidProgram(ValueError):
    """A program text that is not in the language, or a run that fails; the message says why."""


# ---------------------------------------------------------------------------------------------
# The tree. Negative literals are folded into Num (`-3` is one leaf), unary plus is dropped.


@dataclass(frozen=True, slots=True)
class Num:
    value: int


@dataclass(frozen=True, slots=True)
class Var:
    name: str


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node


@dataclass(frozen=True, slots=True)
class Bin:
    op: str
    left: Node
    right: Node


Node = Num | Var | Neg | Bin

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}
_ATOM = 3  # literals, names and unary minus bind tighter than any binary operator


def _precedence(node: Node) -> int:
    return _PRECEDENCE[node.op] if isinstance(node, Bin) else _ATOM


def _render(node: Node, at_start: bool = True, literal: str | None = None) -> str:
    """Text with minimal parentheses that parses back into the same tree.

    Binary operators are left-associative, so a right operand of equal precedence keeps its
    parentheses (`a - (b - 1)`). A negative operand is parenthesised (`3 * (-4)`) except at the
    very start of the text or of a parenthesised group (`-3 * a`). `literal` replaces every
    literal's text (the signature uses "N").
    """
    if isinstance(node, Num):
        if literal is not None:
            return literal
        return str(node.value) if node.value >= 0 or at_start else f"({node.value})"
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Neg):
        inner = node.operand
        negative_literal = isinstance(inner, Num) and inner.value < 0 and literal is None
        wrap = isinstance(inner, (Bin, Neg)) or negative_literal
        text = "-" + (f"({_render(inner, True, literal)})" if wrap else _render(inner, False, literal))
        return text if at_start else f"({text})"
    prec = _PRECEDENCE[node.op]
    if _precedence(node.left) < prec:
        left = f"({_render(node.left, True, literal)})"
    else:
        left = _render(node.left, at_start, literal)
    if _precedence(node.right) <= prec:
        right = f"({_render(node.right, True, literal)})"
    else:
        right = _render(node.right, False, literal)
    return f"{left} {node.op} {right}"


def _substitute(node: Node, a: int, b: int) -> Node:
    if isinstance(node, Var):
        return Num(a if node.name == "a" else b)
    if isinstance(node, Neg):
        return Neg(_substitute(node.operand, a, b))
    if isinstance(node, Bin):
        return Bin(node.op, _substitute(node.left, a, b), _substitute(node.right, a, b))
    return node


# ---------------------------------------------------------------------------------------------
# Running


def _check_magnitude(value: int) -> int:
    if -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        return value
    raise InvalidProgram(f"value out of range (|value| > {MAX_MAGNITUDE})")


def _apply(op: str, x: int, y: int) -> int:
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if y == 0:
        raise InvalidProgram("modulo by zero" if op == "%" else "division by zero")
    if op == "//":
        return x // y
    if op == "%":
        return x % y
    if x % y:
        raise InvalidProgram(f"inexact division: {x} / {y}")
    return x // y


def _evaluate(node: Node, a: int, b: int) -> int:
    # Recursion depth is bounded by MAX_DEPTH; operands are bounded by MAX_MAGNITUDE, so every
    # operation is on numbers of at most 80 bits.
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Var):
        return a if node.name == "a" else b
    if isinstance(node, Neg):
        return -_evaluate(node.operand, a, b)
    x = _evaluate(node.left, a, b)
    y = _evaluate(node.right, a, b)
    return _check_magnitude(_apply(node.op, x, y))


def _check_input(name: str, value: object) -> int:
    # bool is an int subclass and numpy integers are not ints: only plain ints are inputs.
    if type(value) is not int:
        raise InvalidProgram(f"input {name} must be an int, not {type(value).__name__}")
    if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        raise InvalidProgram(f"input out of range (|{name}| > {MAX_MAGNITUDE})")
    return value


@dataclass(frozen=True)
class Program:
    """A parsed program. Equal programs have equal canonical `text`; build them with parse_program."""

    text: str
    variables: frozenset[str]
    tree: Node = field(repr=False, compare=False)

    def run(self, a: int, b: int) -> int:
        """The program's value at (a, b); InvalidProgram on a bad input or a failing operation."""
        return _evaluate(self.tree, _check_input("a", a), _check_input("b", b))

    def render(self, a: int, b: int) -> str:
        """The expression with the inputs substituted, e.g. `3 * (-4) + 1` for `a * b + 1` at (3, -4).

        Parses back into a variable-free program with the same value when |a|, |b| <= MAX_LITERAL.
        """
        return _render(_substitute(self.tree, _check_input("a", a), _check_input("b", b)))

    @property
    def signature(self) -> str:
        """The structural skeleton, literals replaced by N (`a * (b + N) - N`): for diversity."""
        return _render(self.tree, literal="N")

    @property
    def operator_set(self) -> str:
        """The distinct binary operators used, in a fixed order (`+ *` for `a * (b + 2) + 1`; "" for none): a
        coarser key than the signature, for a diversity bonus that cannot be earned by one more `+ a`."""
        used, stack = set(), [self.tree]
        while stack:
            node = stack.pop()
            if isinstance(node, Bin):
                used.add(node.op)
                stack += [node.left, node.right]
            elif isinstance(node, Neg):
                stack.append(node.operand)
        return " ".join(op for op in _PRECEDENCE if op in used)

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------------------------------------
# Parsing

_DECIMAL = re.compile(r"[0-9]+")
_OPERATORS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
}
_FORBIDDEN_OPERATORS = {
    ast.Pow: "**", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Invert: "~", ast.Not: "not",
}
_FORBIDDEN_NODES = {
    ast.Call: "function calls", ast.Attribute: "attributes", ast.Subscript: "subscripts",
    ast.Compare: "comparisons", ast.BoolOp: "boolean operators", ast.IfExp: "conditional expressions",
    ast.Lambda: "lambdas", ast.NamedExpr: "assignments", ast.JoinedStr: "strings",
    ast.List: "containers", ast.Tuple: "containers", ast.Set: "containers", ast.Dict: "containers",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions", ast.Starred: "starred expressions", ast.Slice: "slices",
}


def _check_text(text: str) -> None:
    """Cheap checks that keep pathological text away from the Python parser."""
    if not text:
        raise InvalidProgram("empty program")
    if len(text) > MAX_TEXT_LEN:
        raise InvalidProgram(f"program too long ({len(text)} > {MAX_TEXT_LEN} chars)")
    if not text.isascii():
        raise InvalidProgram("non-ASCII character")  # also rules out unicode digits like '３'
    if not text.isprintable():
        raise InvalidProgram("non-printable character")  # NUL, newlines, tabs, escapes
    if "'" in text or '"' in text or "\\" in text:
        raise InvalidProgram("strings are not allowed")
    depth = 0
    for char in text:  # count bracket nesting so deep nesting never reaches the parser
        if char in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidProgram(f"nesting too deep (> {MAX_DEPTH})")
        elif char in ")]}":
            depth -= 1


class _Converter:
    """Whitelist walk from Python's AST to our tree, enforcing the node, depth and literal bounds."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = 0
        self.variables: set[str] = set()

    def convert(self, node: ast.AST, depth: int = 1) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise InvalidProgram(f"program too large (> {MAX_NODES} nodes)")
        if depth > MAX_DEPTH:
            raise InvalidProgram(f"nesting too deep (> {MAX_DEPTH})")
        if isinstance(node, ast.Constant):
            return Num(self.literal(node))
        if isinstance(node, ast.Name):
            if node.id not in VARIABLES:
                raise InvalidProgram(f"unknown name {node.id!r} (only a and b)")
            self.variables.add(node.id)
            return Var(node.id)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _OPERATORS:
                raise InvalidProgram(f"operator {_FORBIDDEN_OPERATORS[type(node.op)]} is not allowed")
            left = self.convert(node.left, depth + 1)
            return Bin(_OPERATORS[type(node.op)], left, self.convert(node.right, depth + 1))
        what = _FORBIDDEN_NODES.get(type(node), type(node).__name__)
        raise InvalidProgram(f"{what} are not allowed")

    def unary(self, node: ast.UnaryOp, depth: int) -> Node:
        if isinstance(node.op, ast.UAdd):
            return self.convert(node.operand, depth + 1)
        if not isinstance(node.op, ast.USub):
            raise InvalidProgram(f"operator {_FORBIDDEN_OPERATORS[type(node.op)]} is not allowed")
        if isinstance(node.operand, ast.Constant):
            # `-3` is a single leaf, so substituting -3 for a variable keeps node count and depth.
            return Num(-self.literal(node.operand))
        operand = self.convert(node.operand, depth + 1)
        return Num(-operand.value) if isinstance(operand, Num) else Neg(operand)

    def literal(self, node: ast.Constant) -> int:
        value = node.value
        if type(value) is not int:  # float, complex, bool, None, Ellipsis
            raise InvalidProgram(f"{type(value).__name__} literals are not allowed")
        # The text is one ASCII line, so column offsets index it directly: rejects 0x10, 1_000.
        source = self.text[node.col_offset : node.end_col_offset]
        if not _DECIMAL.fullmatch(source):
            raise InvalidProgram(f"literal {source} is not plain decimal digits")
        if value > MAX_LITERAL:
            raise InvalidProgram(f"literal too large (> {MAX_LITERAL})")
        return value


@functools.lru_cache(maxsize=1 << 16)
def _parse(text: str) -> Program:
    _check_text(text)
    try:
        # Parse only (no compile, no execution). Warnings (e.g. `1if`) become errors, not noise.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            expression = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError, Warning) as error:
        reason = error.msg if isinstance(error, SyntaxError) else type(error).__name__
        raise InvalidProgram(f"syntax error: {reason}") from None
    converter = _Converter(text)
    tree = converter.convert(expression.body)
    return Program(_render(tree), frozenset(converter.variables), tree)


def parse_program(text: str) -> Program:
    """Parse untrusted text into a Program; raises InvalidProgram (and nothing else) with a reason."""
    if not isinstance(text, str):
        raise InvalidProgram(f"program must be a string, not {type(text).__name__}")
    if len(text) > 4 * MAX_TEXT_LEN:  # cheap rejection before even stripping a huge string
        raise InvalidProgram(f"program too long ({len(text)} > {MAX_TEXT_LEN} chars)")
    return _parse(text.strip())


# ---------------------------------------------------------------------------------------------
# Built-in random programs (to top up buffers the model could not fill)

_RANDOM_OPS = ("+", "-", "*", "//", "%", "/")
_RANDOM_OP_WEIGHTS = (3, 3, 3, 1, 1, 1)  # exact `/` rarely survives the probes, so it stays rare


def _random_tree(rng: random.Random, ops: int) -> Node:
    if ops == 0:
        return Var(rng.choice(VARIABLES)) if rng.random() < 0.6 else Num(rng.randint(0, 20))
    left_ops = rng.randint(0, ops - 1)
    op = rng.choices(_RANDOM_OPS, _RANDOM_OP_WEIGHTS)[0]
    return Bin(op, _random_tree(rng, left_ops), _random_tree(rng, ops - 1 - left_ops))


def _runs(program: Program, inputs: list[tuple[int, int]]) -> bool:
    try:
        for a, b in inputs:
            program.run(a, b)
    except InvalidProgram:
        return False
    return True


def random_program(rng: random.Random, max_ops: int = 3) -> Program:
    """A random program with 1..max_ops operators over a, b and literals 0-20 (deterministic in rng).

    It uses at least one variable (variable-free programs make trivial abduction and induction
    tasks) and runs on a few random small inputs, which weeds out most inexact `/` and `x // 0`.
    """
    if not 1 <= max_ops < MAX_DEPTH:
        raise ValueError(f"max_ops must be in [1, {MAX_DEPTH - 1}], got {max_ops}")
    while True:
        program = parse_program(_render(_random_tree(rng, rng.randint(1, max_ops))))
        probes = [(rng.randint(-10, 10), rng.randint(-10, 10)) for _ in range(3)]
        if program.variables and _runs(program, probes):
            return program

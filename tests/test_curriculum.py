import math

from azero.curriculum import difficulty, finish, proposal_counters
from azero.tasks import make_task, parse_program


def ded(program, a=1, b=2):
    return make_task("deduction", parse_program(program), [(a, b)])


def test_difficulty_by_hand():
    d = difficulty(ded("a * 37 + (b - 4) // 2", 12, -250))  # 12 * 37 + (-254) // 2 = 317
    assert (d.operators, d.size, d.operand_digits, d.result_digits) == (4, 9, 3, 3)
    assert parse_program("a * 37 + (b - 4) // 2").operator_set == "+ - * //"  # the diversity key, fixed order
    assert parse_program("b * (a * 3)").operator_set == "*" and parse_program("-(a)").operator_set == ""
    d = difficulty(ded("-a", 5, 0))  # one unary minus: no binary operator
    assert (d.operators, d.size, d.operand_digits, d.result_digits) == (0, 2, 1, 1)
    induction = make_task("induction", parse_program("a * b"), [(i, 1000 - i) for i in range(6)])
    assert difficulty(induction).result_digits == len(str(5 * 995))  # the largest output


def test_counters_sum_over_ranks_and_finish_by_hand():
    tasks = [ded("a + b"), ded("a * b + 3"), ded("a * b * b + 1 - a", 10, 20)]
    rank0 = proposal_counters("deduction", tasks[:2], [1.0, 0.5], [0, 0, 4], iteration=6, new_outputs=[True, False])
    rank1 = proposal_counters("deduction", tasks[2:], [0.0], [5], iteration=6, reference_p=[0.25, 0.75, 0.5])
    summed = {k: rank0.get(k, 0) + rank1.get(k, 0) for k in set(rank0) | set(rank1)}
    m = finish("deduction", summed)
    assert m["curriculum/propose_deduction/operators"] == (1 + 2 + 4) / 3
    assert (m["curriculum/propose_deduction/p_zero"], m["curriculum/propose_deduction/p_mid"], m["curriculum/propose_deduction/p_one"]) == (1 / 3,) * 3
    assert m["curriculum/propose_deduction/solve_rate_by_ops/1"] == 1.0
    assert m["curriculum/propose_deduction/solve_rate_by_ops/2"] == 0.5
    assert m["curriculum/propose_deduction/solve_rate_by_ops/4+"] == 0.0
    assert math.isnan(m["curriculum/propose_deduction/solve_rate_by_ops/3"])
    assert m["curriculum/propose_deduction/solve_rate_by_digits/4+"] == 0.0  # 10 * 20 * 20 + 1 - 10 = 3991
    assert m["curriculum/propose_deduction/reference_age"] == (6 + 6 + 2 + 1) / 4
    assert m["curriculum/propose_deduction/reference_seed_frac"] == 0.5
    assert m["curriculum/propose_deduction/reference_frontier_frac"] == 3 / 4
    assert m["curriculum/propose_deduction/reference_p"] == 0.5
    assert m["curriculum/propose_deduction/new_output"] == 1 / 3
    # operator mix: a task counts once per distinct operator it uses ("a * b * b + 1 - a": mul, add, sub)
    share = {name: m[f"curriculum/propose_deduction/uses_{name}"] for name in ("add", "sub", "mul", "floordiv", "div", "mod")}
    assert share == {"add": 1.0, "sub": 1 / 3, "mul": 2 / 3, "floordiv": 0.0, "div": 0.0, "mod": 0.0}


def test_nothing_valid_gives_nan_not_an_error():
    m = finish("abduction", proposal_counters("abduction", [], [], [], iteration=1))
    assert math.isnan(m["curriculum/propose_abduction/uses_mul"])
    assert math.isnan(m["curriculum/propose_abduction/operators"]) and math.isnan(m["curriculum/propose_abduction/reference_age"])
    assert math.isnan(m["curriculum/propose_abduction/reference_p"])

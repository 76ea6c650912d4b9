"""The task environment: the program language, the three task types and their registry.

Each task module (deduction, abduction, induction) has the same functions: proposer_prompt,
parse_proposal, solver_prompt, parse_answer, check, judge, plus KIND, PROPOSE_STOP, SOLVE_STOP.
The trainer uses them through TASKS[kind]. Nothing here imports torch.
"""

from . import abduction, deduction, induction
from .common import INVALID_PROPOSAL_REWARD, SOLVER_REWARD, TASK_KINDS, Rejected, Task, Verdict, make_task
from .program import InvalidProgram, Program, parse_program, random_program

TASKS = {"deduction": deduction, "abduction": abduction, "induction": induction}

__all__ = [
    "INVALID_PROPOSAL_REWARD",
    "SOLVER_REWARD",
    "TASKS",
    "TASK_KINDS",
    "InvalidProgram",
    "Program",
    "Rejected",
    "Task",
    "Verdict",
    "make_task",
    "parse_program",
    "random_program",
]

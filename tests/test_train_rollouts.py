"""Training on learnability rollouts (--train-rollouts) and gathering uneven per-rank rows."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from azero.rl.sampling import Rollout
from azero.selfplay import Learnability, Proposal, trained_rollouts
from azero.tasks import SOLVER_REWARD, TASK_KINDS, Verdict, make_task, parse_program

ROOT = Path(__file__).resolve().parents[1]
C, W = Verdict.CORRECT, Verdict.WRONG


def fake_rollout(rows: int) -> Rollout:
    """rows x (prompt of 2 real tokens after 1 pad, completion of row % 3 + 1 tokens)."""
    prompt_ids = torch.arange(rows * 3).view(rows, 3)
    prompt_mask = torch.tensor([[0, 1, 1]] * rows)
    completion_ids = 100 + torch.arange(rows * 3).view(rows, 3)
    completion_mask = torch.tensor([[1] * (i % 3 + 1) + [0] * (2 - i % 3) for i in range(rows)])
    return Rollout(prompt_ids, prompt_mask, completion_ids, completion_mask, torch.zeros(rows, dtype=torch.bool),
                   [""] * rows, torch.arange(rows))


def proposal(kind: str, program: str, p: float) -> Proposal:
    inputs = [(1, 2)] if kind != "induction" else [(i, i + 1) for i in range(6)]
    return Proposal(kind, "", task=make_task(kind, parse_program(program), inputs), solve_rate=p)


def test_trained_rollouts_keep_learnable_tasks_with_their_rewards():
    props = [proposal("deduction", "a + b", 0.5), proposal("abduction", "a * b", 1.0), proposal("deduction", "a - b", 0.0)]
    verdicts = [C, W, C, C, W, W]  # n = 2 rows per proposal
    learn = Learnability(fake_rollout(6), props, verdicts)
    seqs, rewards, tasks = trained_rollouts(learn, "learnable")
    assert len(seqs) == 2  # only the first proposal has 0 < p < 1
    assert rewards.tolist() == [SOLVER_REWARD[C], SOLVER_REWARD[W]]
    assert tasks.tolist() == [TASK_KINDS.index("deduction")] * 2
    assert [len(c) for _, c in seqs] == [1, 2] and all(len(p) == 2 for p, _ in seqs)  # padding stripped
    seqs, rewards, tasks = trained_rollouts(learn, "all")
    assert len(seqs) == 6 and tasks.tolist() == [0, 0, 1, 1, 0, 0]
    assert trained_rollouts(Learnability(None, [], []), "all")[1].numel() == 0


@pytest.mark.slow
def test_gather_rows_with_different_row_counts_on_two_ranks(tmp_path):
    with socket.socket() as sock:  # a free port: other test runs on this machine may hold a fixed one
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           str(ROOT / "tests" / "helpers" / "gather_rows_check.py")]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "OUT_DIR": str(tmp_path)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [o["rewards"] for o in outs] == [[0, 1, 2, 10, 11, 12, 13, 14]] * 2
    assert [o["groups"] for o in outs] == [[0, 0, 0, 1, 1, 1, 1, 1]] * 2
    assert [o["mine"] for o in outs] == [[0, 3], [3, 8]] and all(o["check"] for o in outs)

"""bench/throughput.py runs our trainer end to end (tiny model): the real update path, exact completion lengths.

It calls `selfplay.update` with its own per-prompt groups; a change in the update's metrics once broke it
silently (nothing else runs the bench), hence this check."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.bench import load_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_small_bench_of_our_trainer(tmp_path):
    out = tmp_path / "bench.json"
    # 4 prompts, one baseline group each (the bench's default grouping), passed to update() as explicit groups
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "throughput.py"), "--trainers", "ours", "--model", "tiny",
                           "--prompts", "4", "--generations", "2", "--completion-len", "4", "--repeats", "1",
                           "--steps", "2", "--warmup", "1", "--json-out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]["ours"]
    assert len(runs) == 1 and len(runs[0]["steps"]) == 2  # 1 repeat of 2 measured steps
    for step in runs[0]["steps"]:
        assert step["sequences"] == 8 and step["generated_tokens"] == 8 * 4  # 4 prompts x 2, exactly 4 tokens each
        assert step["total"] > 0


@pytest.mark.parametrize("grouping", ["prompt", "task_role"])
def test_call_update_passes_groups_to_todays_update_and_prompt_ids_to_old_ones(grouping):
    """ours@DIR runs checkouts whose update() predates the groups argument (a TypeError stopped the A/B of
    RESULTS 22): there the prompt index stands in for the task index, as the bench did before."""
    import torch

    bench = load_bench("throughput")
    task_idx, prompt_index, seqs = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 1, 1]), [[1], [2], [3], [4]]
    seen = {}

    def today(ctx, seqs, rewards, task_idx, role_idx, groups):
        seen["today"] = (task_idx.tolist(), role_idx.tolist(), None if groups is None else groups.tolist())
        return {}

    def old(ctx, seqs, rewards, task_idx, role_idx):
        seen["old"] = (task_idx.tolist(), role_idx.tolist())
        return {}

    bench.call_update(today, None, seqs, None, task_idx, prompt_index, grouping)
    bench.call_update(old, None, seqs, None, task_idx, prompt_index, grouping)
    per_prompt = grouping == "prompt"
    assert seen["today"] == ([0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1] if per_prompt else None)
    assert seen["old"] == ([0, 0, 1, 1] if per_prompt else [0, 0, 0, 0], [1, 1, 1, 1])

"""The lr schedule: warmup, then constant, linear or cosine decay to a floor (``trainer.lr_factor``), as the
trainer's own optimizer sees it."""

from __future__ import annotations

import math

import pytest

from azero.trainer import lr_factor


def test_hand_computed_factors():
    # warmup 2, then linear over 4 iterations to 0.1: the fall is 0.9 / 4 = 0.225 per iteration
    linear = [lr_factor(s, 2, "linear", 4, 0.1) for s in range(9)]
    assert linear == pytest.approx([0.5, 1.0, 1.0, 0.775, 0.55, 0.325, 0.1, 0.1, 0.1])
    # cosine: half-way (t = 0.5) is the mean of peak and floor, a quarter of the way 0.1 + 0.9 * (1 + cos(pi/4)) / 2
    cosine = [lr_factor(s, 2, "cosine", 4, 0.1) for s in range(9)]
    assert cosine == pytest.approx([0.5, 1.0, 1.0, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55,
                                    0.1 + 0.45 * (1 - math.cos(math.pi / 4)), 0.1, 0.1, 0.1])
    assert [lr_factor(s, 0, "none", 4, 0.1) for s in (0, 3, 100)] == [1.0, 1.0, 1.0]  # the old constant lr
    assert [lr_factor(s, 4, "none", 1, 0.0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]  # warmup alone
    assert lr_factor(1, 0, "linear", 1, 0.0) == 0.0  # a floor of 0 is reached, not overshot


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")  # stepping the schedule alone, no optimizer step
@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_the_trainers_optimizer_follows_the_schedule(tmp_path, decay):
    """build_context wires --lr, --warmup-iterations, --lr-decay, --lr-decay-iterations and --lr-min-ratio into
    the optimizer the loop steps; 0 decay iterations means the rest of --iterations."""
    from azero.config import parse_config
    from azero.distributed import make_accelerator
    from azero.trainer import build_context

    cfg, _ = parse_config(["--preset", "tiny", "--lr", "1e-3", "--warmup-iterations", "1", "--lr-decay", decay,
                           "--lr-min-ratio", "0.2", "--iterations", "5", "--output-dir", str(tmp_path)])
    ctx, start = build_context(cfg, make_accelerator(cfg.mixed_precision, cfg.grad_clip), None, lambda msg: None)
    seen = []
    for _ in range(7):
        seen.append(ctx.optimizer.param_groups[0]["lr"])
        ctx.scheduler.step()
    assert start == 0
    assert seen == pytest.approx([1e-3 * lr_factor(s, 1, decay, 4, 0.2) for s in range(7)])
    assert seen[:2] == pytest.approx([1e-3, 1e-3]) and seen[5:] == pytest.approx([2e-4, 2e-4])
    assert seen[1] > seen[2] > seen[3] > seen[4] > seen[5]

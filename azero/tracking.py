"""Metrics sinks: console, ``metrics.jsonl``, wandb (optional, offline-capable), sample tables, a PNG plot.

Only the main process writes. Metric names are namespaced (``trr/solve_deduction/reward_mean``,
``propose/abduction/valid_rate``, ``loss/kl``, ``time/generate``, ``eval/arithmetic_eval/hard``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

SAMPLE_COLUMNS = ["iteration", "task", "role", "prompt", "completion", "reward", "verdict"]

# What the one-line console summary shows, in order (short label, metric key, format).
CONSOLE_FIELDS = [
    ("ded", "solve/deduction/accuracy", ".2f"),
    ("abd", "solve/abduction/accuracy", ".2f"),
    ("ind", "solve/induction/accuracy", ".2f"),
    ("valid", "propose/valid_rate", ".2f"),
    ("learn", "propose/learnability_mean", ".2f"),
    ("kl", "loss/kl", ".4f"),
    ("gnorm", "optim/grad_norm", ".3f"),
    ("eval", "eval/arithmetic_eval/overall", ".3f"),
    ("s/it", "time/iteration", ".1f"),
]


class Tracker:
    def __init__(self, output_dir: str | Path, config: dict, *, enabled: bool, use_wandb: bool = False,
                 wandb_project: str = "azero", run_name: str | None = None, resume_iteration: int | None = None):
        self.enabled = enabled
        self.dir = Path(output_dir)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.samples_path = self.dir / "samples.jsonl"
        self.wandb = None
        self._table = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if resume_iteration is not None:  # drop lines written after the checkpoint we resume from
            for path in (self.metrics_path, self.samples_path):
                _truncate_after(path, resume_iteration)
        if use_wandb:
            import wandb  # optional dependency: imported only when asked for

            self.wandb = wandb.init(project=wandb_project, name=run_name, config=config, dir=str(self.dir),
                                    resume="allow", id=_wandb_id(self.dir))
            # INCREMENTAL tables append rows across steps instead of replacing the table each time.
            self._table = wandb.Table(columns=SAMPLE_COLUMNS, log_mode="INCREMENTAL")

    def log(self, metrics: dict[str, Any], iteration: int) -> None:
        if not self.enabled:
            return
        row = {"iteration": iteration, **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self.wandb.log(row, step=iteration)

    def log_samples(self, rows: list[dict], iteration: int) -> None:
        if not self.enabled or not rows:
            return
        with open(self.samples_path, "a") as f:
            for r in rows:
                f.write(json.dumps({"iteration": iteration, **r}) + "\n")
        if self.wandb is not None:
            for r in rows:
                self._table.add_data(*[_plain({"iteration": iteration, **r}.get(c)) for c in SAMPLE_COLUMNS])
            self.wandb.log({"samples": self._table}, step=iteration)

    def summary_line(self, metrics: dict[str, Any], iteration: int, total: int) -> str:
        parts = [f"it {iteration}/{total}"]
        for label, key, fmt in CONSOLE_FIELDS:
            if key in metrics:
                parts.append(f"{label} {format(float(metrics[key]), fmt)}")
        return " | ".join(parts)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def read_metrics(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_run(output_dir: str | Path) -> Path | None:
    """PNG of the six per-(task, role) baselines, solver accuracy, KL and eval accuracy over iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(Path(output_dir) / "metrics.jsonl")
    if not rows:
        return None

    def series(key):
        pts = [(r["iteration"], r[key]) for r in rows if key in r and r[key] is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    kinds = ("deduction", "abduction", "induction")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    for kind in kinds:
        for role, style in (("propose", "--"), ("solve", "-")):
            ax.plot(*series(f"trr/{role}_{kind}/reward_mean"), style, label=f"{role} {kind}")
    ax.set_title("per-(task, role) baselines: mean reward")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for kind in kinds:
        ax.plot(*series(f"solve/{kind}/accuracy"), label=f"solve {kind}")
        ax.plot(*series(f"propose/{kind}/valid_rate"), ":", label=f"valid {kind}")
    ax.set_title("solver accuracy and proposal valid rate")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    ax.plot(*series("loss/kl"), label="KL to reference (per token)")
    ax.plot(*series("loss/entropy"), label="entropy (per token)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title("KL and entropy")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    present = {k.rsplit("/", 1)[1] for r in rows for k in r if k.startswith("eval/arithmetic_eval/") and "/n/" not in k}
    tiers = [t for t in ("overall", "very_easy", "easy", "medium", "hard", "very_hard") if t in present]
    for tier in tiers:
        xs, ys = series(f"eval/arithmetic_eval/{tier}")
        ax.plot(xs, ys, "o-" if tier == "overall" else ".--", label=tier, lw=2.5 if tier == "overall" else 1)
    ax.set_ylim(0, 1)
    ax.set_title("arithmetic_eval accuracy (greedy)")
    ax.legend(fontsize=7)
    for a in axes.flat:
        a.set_xlabel("iteration")
    fig.tight_layout()
    out = Path(output_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _plain(v):
    """JSON-safe scalars: tensors and numpy numbers become floats, non-finite floats become None."""
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _truncate_after(path: Path, iteration: int) -> None:
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["iteration"] <= iteration]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def _wandb_id(run_dir: Path) -> str:
    """A stable wandb run id per output folder, so ``--resume`` continues the same wandb run."""
    path = run_dir / "wandb_id.txt"
    if path.exists():
        return path.read_text().strip()
    import uuid

    rid = uuid.uuid4().hex[:12]
    path.write_text(rid)
    return rid

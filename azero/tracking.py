"""Metrics sinks: console, ``metrics.jsonl``, wandb (optional, offline-capable), sample tables, a PNG plot.

Only the main process writes. Metric names are namespaced (``trr/solve_deduction/reward_mean``,
``tasks/propose_abduction/valid_rate``, ``loss/kl``, ``time/generate``, ``eval/arithmetic_eval/hard``).

The JSONL logs survive a crash at any instant: each row is appended with one ``write`` and flushed to
disk before the loop goes on (so it is on disk before the checkpoint of its iteration), and on resume
``repair_jsonl`` drops a torn last line and every row past the checkpoint's iteration, so each
iteration is logged exactly once however often the run was killed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

SAMPLE_COLUMNS = ["iteration", "task", "role", "prompt", "completion", "reward", "verdict"]

# What the one-line console summary shows, in order (short label, metric key, format).
CONSOLE_FIELDS = [
    ("ded", "tasks/solve_deduction/accuracy", ".2f"),
    ("abd", "tasks/solve_abduction/accuracy", ".2f"),
    ("ind", "tasks/solve_induction/accuracy", ".2f"),
    ("valid", "tasks/propose/valid_rate", ".2f"),
    ("learn", "tasks/propose/learnability", ".2f"),
    ("kl", "loss/kl", ".4f"),
    ("gnorm", "optim/grad_norm", ".3f"),
    ("eval", "eval/arithmetic_eval/overall", ".3f"),
    ("s/it", "time/iteration", ".1f"),
]


# What a run writes into its folder (checkpoint* covers checkpoint/, checkpoint.tmp/, checkpoint.old/). A folder
# holding any of these holds a run: a new run there is refused unless --resume or --overwrite says what to do.
RUN_FILES = ("config.json", "metrics.jsonl", "samples.jsonl", "curves.png", "wandb_id.txt", "wandb", "final",
             "snapshots")


def run_contents(output_dir: str | Path) -> list[str]:
    """The entries of ``output_dir`` that a run wrote (empty for a new or unrelated folder)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name in RUN_FILES or p.name.startswith("checkpoint"))


def claim_run_folder(output_dir: str | Path, *, resume_dir: str | None, overwrite: bool,
                     main_process: bool = True) -> None:
    """Before anything is written: a new run never silently appends to, or overwrites, another run's files.

    A folder that holds a run is refused (ConfigError, one line) unless it is the run being resumed, or
    ``overwrite`` is set, in which case the main process deletes the run's files (only those: others stay)."""
    from azero.config import ConfigError, same_folder

    found = run_contents(output_dir)
    if not found or (resume_dir is not None and same_folder(str(output_dir), resume_dir)):
        return
    if not overwrite:
        what = f"continue it with --resume {output_dir}, " if resume_dir is None else ""
        raise ConfigError(f"{output_dir} already holds a run ({', '.join(found)}): {what}replace it with --overwrite, "
                          f"or pass another --output-dir")
    if main_process:
        for name in found:
            path = Path(output_dir) / name
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


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
        if resume_iteration is not None:  # drop torn lines and lines written after the checkpoint we resume from
            for path in (self.metrics_path, self.samples_path):
                repair_jsonl(path, resume_iteration)
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
        _append_lines(self.metrics_path, [row])
        if self.wandb is not None:
            self.wandb.log(row, step=iteration)

    def log_samples(self, rows: list[dict], iteration: int) -> None:
        if not self.enabled or not rows:
            return
        _append_lines(self.samples_path, [{"iteration": iteration, **r} for r in rows])
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
    """The rows of a JSONL log. A line that does not parse (a torn append of a crashed run, or the row a
    live run is writing right now) is skipped: readers such as plots must work on any run folder."""
    return [row for _, row, _ in _parse_lines(Path(path).read_bytes()) if row is not None]


def repair_jsonl(path: str | Path, last_iteration: int) -> None:
    """Make a JSONL log consistent with a checkpoint at ``last_iteration`` before a resumed run appends.

    A line that does not parse is what a crash (kill -9, full disk) leaves in the middle of an append: it
    is dropped with a warning naming the file and line. Rows past ``last_iteration`` were written after
    that checkpoint and are written again by the resumed run, so they are dropped too. The file is
    replaced atomically, so a crash during the repair leaves the old file, which the next resume repairs."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    keep, changed = [], False
    for lineno, row, raw in _parse_lines(data):
        if row is None or not isinstance(row.get("iteration"), int):
            warnings.warn(f"{path}: dropping torn line {lineno} ({len(raw)} bytes, left by a crash during an append): "
                          f"{raw[:60]!r}", stacklevel=2)
            changed = True
        elif row["iteration"] > last_iteration:
            changed = True
        else:
            keep.append(raw)
    if not changed and (not data or data.endswith(b"\n")):
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(b"".join(line + b"\n" for line in keep))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def plot_run(output_dir: str | Path) -> Path | None:
    """``curves.png``: one panel per entry of ``PANELS`` (two columns), x = iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(Path(output_dir) / "metrics.jsonl")
    if not rows:
        return None
    nrows = math.ceil(len(PANELS) / 2)
    fig, axes = plt.subplots(nrows, 2, figsize=(12, 4 * nrows), squeeze=False)
    for panel, ax in zip(PANELS, axes.flat):
        panel(ax, rows)
        ax.set_xlabel("iteration")
        if ax.has_data() and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in axes.flat[len(PANELS):]:
        ax.set_visible(False)
    fig.tight_layout()
    out = Path(output_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def series(rows: list[dict], key: str) -> tuple[list, list]:
    """(iterations, values) of one metric over the rows that hold it (non-finite values were logged as null)."""
    pts = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


KINDS = ("deduction", "abduction", "induction")


def plot_six(ax, rows, stat: str):
    """One line per (task, role) group of ``trr/{role}_{task}/{stat}``: proposers dashed, solvers solid."""
    for kind in KINDS:
        for role, style in (("propose", "--"), ("solve", "-")):
            ax.plot(*series(rows, f"trr/{role}_{kind}/{stat}"), style, label=f"{role} {kind}")


def panel_baselines(ax, rows):
    plot_six(ax, rows, "reward_mean")
    ax.set_title("per-(task, role) baselines: mean reward")


def panel_loss_share(ax, rows):
    plot_six(ax, rows, "loss_share")
    ax.set_ylim(0, None)
    ax.set_title("share of the loss weight per (task, role) (--aggregation)")


def panel_accuracy(ax, rows):
    for kind in KINDS:
        ax.plot(*series(rows, f"tasks/solve_{kind}/accuracy"), label=f"solve {kind}")
        ax.plot(*series(rows, f"tasks/propose_{kind}/valid_rate"), ":", label=f"valid {kind}")
    ax.set_title("solver accuracy and proposal valid rate")


def panel_kl(ax, rows):
    ax.plot(*series(rows, "loss/kl"), label="KL to reference (per token)")
    ax.plot(*series(rows, "loss/entropy"), label="entropy (per token)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title("KL and entropy")


def panel_eval(ax, rows):
    present = {k.rsplit("/", 1)[1] for r in rows for k in r if k.startswith("eval/arithmetic_eval/") and "/n/" not in k}
    for tier in [t for t in ("overall", "very_easy", "easy", "medium", "hard", "very_hard") if t in present]:
        xs, ys = series(rows, f"eval/arithmetic_eval/{tier}")
        ax.plot(xs, ys, "o-" if tier == "overall" else ".--", label=tier, lw=2.5 if tier == "overall" else 1)
    ax.set_ylim(0, 1)
    ax.set_title("arithmetic_eval accuracy (greedy)")


# --- curriculum (azero/curriculum.py): is the proposer climbing?
COLORS = dict(zip(KINDS, ("C0", "C1", "C2")))


def panel_difficulty(ax, rows):
    for kind in KINDS:
        ax.plot(*series(rows, f"curriculum/propose_{kind}/operators"), "-", color=COLORS[kind], label=f"{kind}: operators")
        ax.plot(*series(rows, f"curriculum/propose_{kind}/result_digits"), "--", color=COLORS[kind], label=f"{kind}: result digits")
        ax.plot(*series(rows, f"curriculum/propose_{kind}/operand_digits"), ":", color=COLORS[kind], label=f"{kind}: operand digits")
    ax.set_title("difficulty of valid proposals (mean)")


def panel_operator_mix(ax, rows):
    from azero.curriculum import OPERATOR_NAMES

    for i, name in enumerate(OPERATOR_NAMES.values()):
        for kind, style in (("deduction", "-"), ("abduction", "--")):
            ax.plot(*series(rows, f"curriculum/propose_{kind}/uses_{name}"), style, color=f"C{i}", label=f"{kind}: {name}")
    ax.set_ylim(0, 1)
    ax.set_title("operators used: share of valid proposals")


def panel_learnability(ax, rows):
    for kind in KINDS:
        ax.plot(*series(rows, f"curriculum/propose_{kind}/p_mid"), "-", color=COLORS[kind], label=f"{kind}: 0 < p < 1")
        ax.plot(*series(rows, f"curriculum/propose_{kind}/p_one"), "--", color=COLORS[kind], label=f"{kind}: p = 1")
        ax.plot(*series(rows, f"curriculum/propose_{kind}/p_zero"), ":", color=COLORS[kind], label=f"{kind}: p = 0")
    ax.set_ylim(0, 1)
    ax.set_title("learnability p of valid proposals (fraction)")


def panel_solve_by_difficulty(ax, rows):
    for kind, style in (("deduction", "-"), ("abduction", "--")):
        for i, b in enumerate(("1", "2", "3", "4+")):
            ax.plot(*series(rows, f"curriculum/propose_{kind}/solve_rate_by_ops/{b}"), style, color=f"C{i}",
                    label=f"{kind}: {b} operator{'' if b == '1' else 's'}")
    ax.set_ylim(0, 1)
    ax.set_title("solve rate p of new proposals by operator count")


def panel_references(ax, rows):
    for kind in KINDS:
        ax.plot(*series(rows, f"curriculum/propose_{kind}/reference_age"), "-", color=COLORS[kind], label=f"{kind}: age")
        ax.plot(*series(rows, f"curriculum/propose_{kind}/reference_seed_frac"), ":", color=COLORS[kind],
                label=f"{kind}: share from seeding (0-1)")
        ax.plot(*series(rows, f"curriculum/propose_{kind}/reference_p"), "--", color=COLORS[kind],
                label=f"{kind}: p of the frontier ones (0-1)")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title("references shown: mean age in iterations, share from seeding, p")


# The panels of curves.png, in order: a function (matplotlib Axes, metric rows) -> None that draws and titles
# one panel. Add a panel by appending here; the grid grows by a row per two panels.
PANELS = [panel_baselines, panel_accuracy, panel_kl, panel_eval, panel_difficulty, panel_learnability,
          panel_solve_by_difficulty, panel_references, panel_operator_mix, panel_loss_share]


def _plain(v):
    """JSON-safe scalars: tensors and numpy numbers become floats, non-finite floats become None."""
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _parse_lines(data: bytes):
    """(1-based line number, parsed row or None if it does not parse, raw bytes) for each non-blank line.
    A last line without its newline is torn even if it happens to parse: the row was cut mid-write."""
    lines = data.split(b"\n")
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        row = None
        if i < len(lines):  # the part after the last newline is an unfinished append
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass
            if not isinstance(row, dict):
                row = None
        yield i, row, raw


def _append_lines(path: Path, rows: list[dict]) -> None:
    """Append rows with one write and put them on disk: a crash leaves at most one torn last line, and
    the rows of an iteration reach the disk before its checkpoint does (a power cut cannot lose them).
    A failed write (a full disk) stops the run with one line; --resume repairs the torn row it may leave."""
    try:
        with open(path, "ab") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows).encode())
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise SystemExit(f"cannot append to {path}: {e.strerror}; make room (or fix the folder), then continue the run "
                         f"with --resume {path.parent} (from its last checkpoint)") from e


def _fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (POSIX needs the directory itself synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _wandb_id(run_dir: Path) -> str:
    """A stable wandb run id per output folder, so ``--resume`` continues the same wandb run."""
    path = run_dir / "wandb_id.txt"
    if path.exists():
        return path.read_text().strip()
    import uuid

    rid = uuid.uuid4().hex[:12]
    path.write_text(rid)
    return rid

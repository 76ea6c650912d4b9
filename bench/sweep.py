"""Sweep: every (arm, seed) as a fresh `train.py` run; eval before/after per tier over seeds, curves with a band.

    python bench/sweep.py --preset cpu --arm main="" --arm beta0="--kl-coef 0" --seeds 2 \\
        --iterations 40 --time-limit-minutes 60 --output-dir runs/sweep1 [--parallel K] [--eval-data PATH] \\
        [-- flags for every run]

Each run lives in OUTPUT/ARM/seedS (train.py's metrics.jsonl, curves.png, checkpoint/, plus train.log and
sweep_run.json, the sweep's record of its command, exit code and minutes). The command line of a run is
`train.py --preset P --seed S --output-dir OUTPUT/ARM/seedS [--iterations N] [--time-limit-minutes M]
[--eval-data E] [flags after --] [the arm's flags]`: argparse keeps the last value, so an arm's flags win.

`--arm NAME@S1,S2="FLAGS"` runs that arm on its own seeds instead of `--seeds` (say two seeds of a candidate and
one baseline in a single wave of three GPU processes). Runs go seed by seed (seed 0 of every arm first), one at a time unless `--parallel K`. A failed run (non-zero
exit, crash, `--run-timeout-minutes` passed) is reported with its exit code and log tail, and the others go on.
After every run the sweep rewrites OUTPUT/summary.md, summary.json and summary.png, so partial results are
always there. Invoked again with the same output folder it skips the runs that finished (and reruns failed or
interrupted ones from scratch); `--force` reruns everything. Exit code: 0 when every run finished, 1 when some
failed, 128 + signal number when the sweep itself was stopped (its running children get SIGTERM, which makes
train.py checkpoint after the current iteration).

Threads: with `--parallel K` > 1 each child gets OMP_NUM_THREADS = the usable cores // K (capped by an
OMP_NUM_THREADS already set): on the 2-core box two processes with 2 OpenMP threads each ran up to 55x slower
than one alone (busy-waiting barriers), so K children must not oversubscribe the cores. One at a time, the child
inherits the environment: unpinned, train.py's thread governor (azero/cpu.py) follows the load beside it.
`--threads N` pins N in every case.

Report set: `--report-data DATA` scores every finished run on a second eval set once the runs are done: its
final/ and, with `-- --snapshot-every N`, its snapshots/ (bench/evaluate.py in a child process, one at a time,
at the run's own precision and answer length), and each untrained model once. The runs' own evaluations use
`--eval-data`, the set they are tuned on; the report set never reaches them. Scores land in OUTPUT/ARM/seedS/
report.json (+ report_items.jsonl, every item's answer) and OUTPUT/report_base.json, summary.md gets a report
section per arm (mean [min, max] over seeds, per tier, before -> after) and OUTPUT/report.png the report curves.
A sweep invoked again scores only what has no report for DATA yet.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "train.py"
TIERS = ("overall", "very_easy", "easy", "medium", "hard", "very_hard")
EVAL_KEY = "eval/arithmetic_eval/{}"
KINDS = ("deduction", "abduction", "induction")
STATUS_FILE = "sweep_run.json"
REPORT_FILE = "report.json"  # a run's scores on --report-data: bench/evaluate.py's --json-out
REPORT_BASE = "report_base.json"  # OUTPUT's: the untrained models' scores on --report-data
EVALUATE = ROOT / "bench" / "evaluate.py"
LOG_FILE = "train.log"
# A run's own identity is its seed and folder; arms and shared flags must not override them.
RESERVED = ("--seed", "--output-dir", "--resume")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ----------------------------------------------------------------------------------------------------
# Reading and aggregating metrics (pure functions; unit-tested on hand-written files)


def read_metrics(path: str | Path, warn=None) -> dict[int, dict]:
    """metrics.jsonl -> {iteration: merged row}. Tolerant: a line that is not a JSON object with an integer
    `iteration` (a torn last line of a run killed mid-write, a stray blank) is skipped with a warning; several
    lines of one iteration are merged (later keys win). NaN and Infinity parse as floats (json's default)."""
    rows: dict[int, dict] = {}
    path = Path(path)
    if not path.exists():
        return rows
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                it = int(row["iteration"])
            except (ValueError, KeyError, TypeError) as e:
                if warn:
                    warn(f"{path}:{n}: skipped an unreadable line ({type(e).__name__}: {str(e)[:80]})")
                continue
            rows.setdefault(it, {}).update(row)
    return rows


def finite(x) -> float | None:
    """A float when x is a finite number, else None (NaN, inf, None, strings, bools)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def eval_points(rows: dict[int, dict]) -> list[tuple[int, dict[str, float | None]]]:
    """[(iteration, {tier: accuracy or None})] for the iterations that hold an evaluation, in order."""
    return [(it, {t: finite(rows[it].get(EVAL_KEY.format(t))) for t in TIERS})
            for it in sorted(rows) if EVAL_KEY.format("overall") in rows[it]]


LATE_EVALS = 3  # "late": the mean of a run's last 3 evaluations, steadier than the last one alone


def run_result(rows: dict[int, dict]) -> dict:
    """One run's numbers: eval before (iteration 0) and after (the last evaluation after training), per tier;
    the late mean (the last LATE_EVALS evaluations after training, per tier: one 200-item eval swings by a few
    points between neighbouring iterations, docs/RESULTS.md section 10b); iterations done; median seconds per
    iteration; self-play metrics early vs late; the eval curve."""
    points = eval_points(rows)
    before = next((e for it, e in points if it == 0), None)
    after_pts = [(it, e) for it, e in points if it > 0]
    after = after_pts[-1][1] if after_pts else None
    late = after_pts[-LATE_EVALS:]
    trained = sorted(it for it, r in rows.items() if it > 0 and "time/iteration" in r)
    s_per_it = [v for v in (finite(rows[it].get("time/iteration")) for it in trained) if v is not None]

    def window(key: str, first: bool, k: int = 4) -> float | None:
        vals = [v for v in (finite(rows[it].get(key)) for it in trained) if v is not None]
        vals = vals[:k] if first else vals[-k:]
        return statistics.fmean(vals) if vals else None

    selfplay = {}
    for key in [f"tasks/solve_{k}/accuracy" for k in KINDS] + ["tasks/propose/valid_rate"]:
        selfplay[key] = {"first4": window(key, True), "last4": window(key, False)}
    return {
        "before": before,
        "after": after,
        "after_iteration": after_pts[-1][0] if after_pts else None,
        "late": {t: (stats(e[t] for _, e in late) or {}).get("mean") for t in TIERS} if late else None,
        "late_iterations": [it for it, _ in late],
        "delta": ({t: (after[t] - before[t]) if after[t] is not None and before[t] is not None else None
                   for t in TIERS} if before and after else None),
        "iterations": max(trained, default=0),
        "s_per_iteration": statistics.median(s_per_it) if s_per_it else None,
        "selfplay": selfplay,
        "final_kl": finite(rows[trained[-1]].get("loss/kl")) if trained else None,
        "curve": points,
    }


def stats(values) -> dict | None:
    """mean, min, max and count of the finite values; None when there are none."""
    vals = [v for v in (finite(x) for x in values) if v is not None]
    if not vals:
        return None
    return {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def aggregate(results: list[dict]) -> dict:
    """Over the finished seeds of one arm: per tier, before / after / delta as mean, min, max; iterations,
    minutes, s/iteration; self-play early -> late; and the eval curve at the iterations every seed evaluated."""
    out: dict = {}
    for part in ("before", "after", "delta", "late"):
        out[part] = {t: stats(r[part][t] for r in results if r.get(part)) for t in TIERS}
    out["iterations"] = stats(r["iterations"] for r in results)
    out["after_iteration"] = stats(r["after_iteration"] for r in results)
    out["minutes"] = stats(r.get("minutes") for r in results)
    out["s_per_iteration"] = stats(r.get("s_per_iteration") for r in results)
    out["final_kl"] = stats(r.get("final_kl") for r in results)
    out["selfplay"] = {key: {w: stats(r["selfplay"][key][w] for r in results) for w in ("first4", "last4")}
                       for key in (results[0]["selfplay"] if results else {})}
    curves = [dict(r["curve"]) for r in results]
    common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    out["curve"] = {"iteration": common}
    for t in TIERS:
        per_it = [stats(c[it][t] for c in curves) for it in common]
        out["curve"][t] = {k: [s[k] if s else None for s in per_it] for k in ("mean", "min", "max")}
    return out


def eval_settings(run_dir: Path) -> dict | None:
    """How a run evaluated itself (its config.json): the model it started from, autocast, answer length, batch.
    A report scores the run's weights the same way on another set."""
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    random_init = cfg["model"] == "tiny" or cfg["model"].startswith("random:")  # its init depends on the seed
    return {"model": cfg["model"], "precision": "no" if cfg["mixed_precision"] == "no" else "bf16",
            "max_tokens": cfg["eval_max_tokens"], "batch_size": cfg["eval_batch_size"],
            "seed": cfg["seed"] if random_init else None}


def base_key(settings: dict) -> str:
    """The untrained model's entry in report_base.json: one per model, precision and answer length (and seed, for
    a random init)."""
    seed = "" if settings["seed"] is None else f" | seed {settings['seed']}"
    return f"{settings['model']} | {settings['precision']} | {settings['max_tokens']} tokens{seed}"


def read_report(path: Path, data: str) -> dict | None:
    """bench/evaluate.py's results in ``path`` when they were scored on ``data``, else None."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report["results"] if report.get("eval_data") == data else None


def report_result(results: dict, run_dir: Path, before: dict | None) -> dict:
    """One run's report: before (the untrained model), after (final/), delta per tier, and the curve over its
    snapshots (iteration from the folder name) ending at final/ (the run's last iteration)."""
    evaluate = load_bench_script("evaluate")  # its rules: a snapshot's iteration, a run's last iteration
    # the one other entry is the run folder itself (final/), however the folder was spelled when it was scored
    after = next((r for m, r in results.items() if evaluate.snapshot_iteration(m) is None), None)
    snaps = sorted((evaluate.snapshot_iteration(m), r) for m, r in results.items()
                   if evaluate.snapshot_iteration(m) is not None)
    last = evaluate.taken_at(str(run_dir))
    final = [(last, after)] if after and last is not None and (not snaps or snaps[-1][0] < last) else []
    curve = ([(0, before)] if before else []) + snaps + final
    tiers = lambda e: {t: finite((e or {}).get(t)) for t in TIERS}  # noqa: E731
    return {"before": tiers(before) if before else None, "after": tiers(after) if after else None,
            "delta": ({t: after[t] - before[t] for t in TIERS if t in after and t in before}
                      if before and after else None),
            "curve": [(it, tiers(e)) for it, e in curve]}


@functools.cache
def load_bench_script(name: str):
    """A sibling script of bench/ (not a package) as a module, loaded once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report_differences(items: dict[str, list[Path]], resamples: int = 2000) -> dict:
    """Every arm against the first, on the report set's final/ verdicts (report_items.jsonl): the difference of the
    means over seeds per tier, with bench/compare.py's bootstrap interval (seeds and paired items redrawn) and the
    share of resamples <= 0. {} when fewer than two arms have reports."""
    items = {arm: files for arm, files in items.items() if files}
    if len(items) < 2:
        return {}
    compare, evaluate = load_bench_script("compare"), load_bench_script("evaluate")
    names, rows, arms = [], {}, {}
    for arm, files in items.items():
        for f in files:  # one file per run; its final/ rows are those whose model is not a snapshot
            for model, by_index in compare.read_items([f]).items():
                if evaluate.snapshot_iteration(model) is None:
                    rows[f"{arm}/{f.parent.name}"] = by_index
                    arms.setdefault(arm, []).append(len(names))
                    names.append(f"{arm}/{f.parent.name}")
    correct, tiers = compare.verdicts(rows, names)
    return compare.compare(correct, tiers, arms, None, resamples)["differences"]


# ----------------------------------------------------------------------------------------------------
# Formatting


def f3(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def fmt_stat(s: dict | None, signed: bool = False, digits: int = 3) -> str:
    """`mean [min, max]` (just the value for one seed)."""
    if not s:
        return "–"
    f = (lambda v: f"{v:+.{digits}f}") if signed else (lambda v: f"{v:.{digits}f}")
    return f(s["mean"]) if s["n"] == 1 else f"{f(s['mean'])} [{f(s['min'])}, {f(s['max'])}]"


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, with tqdm's carriage-return redraws split into lines and blank ones dropped."""
    if not path.exists():
        return "(no log)"
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64_000))
        text = f.read().decode(errors="replace")
    parts = [p.rstrip() for p in re.split(r"[\r\n]", text)]
    return "\n".join([p for p in parts if p.strip()][-lines:])


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = ""
    if shutil.which("nvidia-smi"):
        try:
            names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                   text=True, timeout=20).stdout.split("\n")
            names = [n.strip() for n in names if n.strip()]
            gpus = f", {len(names)} GPU ({names[0]})" if names else ""
        except (OSError, subprocess.SubprocessError):
            pass
    return f"{platform.node()}, {cores} usable cores{gpus or ', no GPU'}"


# ----------------------------------------------------------------------------------------------------
# Runs


@dataclass
class Run:
    arm: str
    seed: int
    dir: Path
    argv: list[str]                       # train.py's arguments (no interpreter, no script)
    flags: list[str] | None = None        # the arm's own flags (part of argv), so --summary-only can name them
    status: str = "pending"               # pending | running | finished | failed | timeout | interrupted
    rc: int | None = None
    minutes: float | None = None
    command: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started: float = 0.0
    term_sent: float | None = None
    skipped: bool = False

    @property
    def name(self) -> str:
        return f"{self.arm}/seed{self.seed}"

    def record(self) -> dict:
        return {"arm": self.arm, "seed": self.seed, "argv": self.argv, "flags": self.flags, "command": self.command,
                "status": self.status, "rc": self.rc, "minutes": self.minutes, "log": str(self.dir / LOG_FILE),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def parse_arm(text: str) -> tuple[str, list[str], list[int] | None]:
    """`NAME=FLAGS`, or `NAME@S1,S2=FLAGS` to run that arm on its own seeds instead of --seeds / --seed-list."""
    name, sep, flags = text.partition("=")
    name, at, seed_text = name.partition("@")
    try:
        seeds = [int(x) for x in seed_text.split(",") if x.strip()] if at else None
    except ValueError:
        raise SystemExit(f"sweep: --arm {name}: seeds after @ must be integers separated by commas (got {seed_text!r})")
    if not sep or not NAME_RE.match(name) or seeds == [] or (seeds and len(set(seeds)) != len(seeds)):
        raise SystemExit(f"sweep: --arm wants NAME=FLAGS or NAME@SEEDS=FLAGS with NAME of letters, digits, _ . + - "
                         f"(got {text!r})")
    try:
        argv = shlex.split(flags)
    except ValueError as e:
        raise SystemExit(f"sweep: --arm {name}: cannot parse its flags {flags!r}: {e}")
    check_reserved(argv, f"--arm {name}")
    return name, argv, seeds


def check_reserved(argv: list[str], where: str) -> None:
    for a in argv:
        if a.split("=", 1)[0] in RESERVED:
            raise SystemExit(f"sweep: {where} sets {a.split('=', 1)[0]}, which the sweep sets for each run")


def parse_args(argv: list[str]) -> argparse.Namespace:
    # Everything after the first bare `--` goes to every run.
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Everything after a bare -- is passed to every run.")
    p.add_argument("--preset", default="cpu", help="train.py --preset for every run (default cpu)")
    p.add_argument("--arm", action="append", default=[], metavar='NAME[@SEEDS]="FLAGS"',
                   help="an arm: a name and train.py flags (shell-quoted, may be empty); repeat for each arm")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 per arm (default 2)")
    p.add_argument("--seed-list", default=None, help="comma-separated seeds instead of --seeds, e.g. 2,3")
    p.add_argument("--iterations", type=int, default=None, help="train.py --iterations for every run")
    p.add_argument("--time-limit-minutes", type=float, default=None, help="train.py --time-limit-minutes for every run")
    p.add_argument("--eval-data", default=None, help="train.py --eval-data for every run")
    p.add_argument("--output-dir", required=True, type=Path, help="OUTPUT: runs in OUTPUT/ARM/seedS, summary.* in OUTPUT")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1; several fit on one large GPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP_NUM_THREADS per run (default: with --parallel K > 1 the usable cores // K, capped by "
                        "$OMP_NUM_THREADS; one at a time the environment's, else train.py's governor adapts)")
    p.add_argument("--run-timeout-minutes", type=float, default=None,
                   help="stop a run (SIGTERM, then SIGKILL) that takes longer and count it failed; default: "
                        "1.5 x --time-limit-minutes + 15 when a time limit is given, else none")
    p.add_argument("--kill-grace-seconds", type=float, default=300.0,
                   help="after SIGTERM, seconds before SIGKILL (default 300: train.py checkpoints after its current "
                        "iteration, which took 1-5 minutes with the cpu preset on the 2-core box); a second Ctrl-C "
                        "kills at once")
    p.add_argument("--report-data", default=None,
                   help="after the runs, score each finished run's final/ (and snapshots/, from -- --snapshot-every N) "
                        "and the untrained model on this eval set, which the runs never see (the set to report)")
    p.add_argument("--python", default=sys.executable, help="interpreter for train.py (default: this one)")
    p.add_argument("--force", action="store_true", help="rerun runs that finished earlier (their folders are replaced)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    p.add_argument("--summary-only", action="store_true",
                   help="run nothing; rewrite the summary from the folders on disk (all arms found when no --arm)")
    args = p.parse_args(argv)
    args.extra = extra
    check_reserved(extra, "the flags after --")
    if args.seed_list:
        try:
            args.seed_values = [int(s) for s in args.seed_list.split(",") if s.strip()]
        except ValueError:
            raise SystemExit(f"sweep: --seed-list wants integers separated by commas (got {args.seed_list!r})")
    else:
        args.seed_values = list(range(args.seeds))
    if not args.seed_values or len(set(args.seed_values)) != len(args.seed_values):
        raise SystemExit("sweep: give at least one seed, each once (--seeds N >= 1 or --seed-list)")
    if args.parallel < 1 or (args.threads is not None and args.threads < 1):
        raise SystemExit("sweep: --parallel and --threads must be >= 1")
    parsed = [parse_arm(a) for a in args.arm]
    arms = [(n, flags) for n, flags, _ in parsed]
    args.arm_seeds = {n: seeds for n, _, seeds in parsed if seeds is not None}  # arms with their own seeds
    args.global_seeds = args.seed_values  # arms without @SEEDS run these; seed_values: every seed of the sweep
    args.seed_values = sorted(set(args.seed_values) | {s for seeds in args.arm_seeds.values() for s in seeds}) \
        if args.arm_seeds else args.seed_values
    names = [n for n, _ in arms]
    if len(set(names)) != len(names):
        raise SystemExit(f"sweep: arm names must differ (got {names})")
    if not arms and not args.summary_only:
        raise SystemExit('sweep: give at least one --arm NAME="FLAGS" (e.g. --arm main="")')
    args.arms = arms
    if args.run_timeout_minutes is None and args.time_limit_minutes:
        # seeding, evaluations and the final checkpoint come on top of train.py's time limit
        args.run_timeout_minutes = 1.5 * args.time_limit_minutes + 15
    return args


def train_argv(args, arm_flags: list[str], seed: int, run_dir: Path) -> list[str]:
    argv = ["--preset", args.preset, "--seed", str(seed), "--output-dir", str(run_dir)]
    if args.iterations is not None:
        argv += ["--iterations", str(args.iterations)]
    if args.time_limit_minutes is not None:
        argv += ["--time-limit-minutes", f"{args.time_limit_minutes:g}"]
    if args.eval_data is not None:
        argv += ["--eval-data", args.eval_data]
    return argv + list(args.extra) + list(arm_flags)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_run(args) -> int | None:
    """OMP_NUM_THREADS for each child, or None to leave the environment as it is (one run at a time: an unset
    variable lets train.py's governor adapt the threads to the load beside it)."""
    if args.threads:
        return args.threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    pinned = int(env) if env.isdigit() and int(env) > 0 else None
    if args.parallel == 1:
        return pinned
    n = max(1, usable_cores() // args.parallel)
    return min(n, pinned) if pinned else n


def read_record(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


class Sweep:
    def __init__(self, args):
        self.args = args
        self.out: Path = args.output_dir
        self.t0 = time.monotonic()
        self.threads = threads_per_run(args)
        self.threads_text = str(self.threads) if self.threads else "unset (train.py's governor adapts)"
        self.warnings: list[str] = []
        self.runs: list[Run] = []
        self.arm_flags: dict[str, list[str] | None] = {}  # None: rebuilt from records that lack them
        self.command = shlex.join([_short(sys.executable), *sys.argv]) if sys.argv and sys.argv[0] else ""
        self.machine = machine()
        self.stop_signal: int | None = None

    # -- output ---------------------------------------------------------------------------------------

    def say(self, msg: str) -> None:
        el = int(time.monotonic() - self.t0)
        print(f"[{datetime.now().strftime('%H:%M:%S')} +{el // 3600}:{el // 60 % 60:02d}:{el % 60:02d}] {msg}", flush=True)

    def warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)
            self.say(f"warning: {msg}")

    # -- plan -----------------------------------------------------------------------------------------

    def plan(self) -> None:
        a = self.args
        if a.summary_only and not a.arms:  # summarise what is on disk
            for rec_path in sorted(self.out.glob(f"*/seed*/{STATUS_FILE}")):
                rec = read_record(rec_path.parent)
                if rec:  # records written before the arm's flags were kept in them: None, "see the command lines"
                    self.arm_flags.setdefault(rec["arm"], rec.get("flags"))
                    self.runs.append(self._from_record(Run(rec["arm"], rec["seed"], rec_path.parent, rec["argv"],
                                                           rec.get("flags")), rec))
            self.runs.sort(key=lambda r: (r.seed, list(self.arm_flags).index(r.arm)))
            a.seed_values = sorted({r.seed for r in self.runs})
            return
        for name, flags in a.arms:
            self.arm_flags[name] = flags
        for seed in a.seed_values:  # seed by seed: after the first round every arm has one result
            for name, flags in a.arms:
                if seed not in a.arm_seeds.get(name, a.global_seeds):
                    continue
                run_dir = self.out / name / f"seed{seed}"
                self.runs.append(Run(name, seed, run_dir, train_argv(a, flags, seed, run_dir), flags))
        a.seed_values = sorted({r.seed for r in self.runs})  # the seeds that run: arms with @SEEDS skip --seeds'
        for run in self.runs:
            run.command = shlex.join([_short(a.python), _short(TRAIN), *run.argv])
            rec = read_record(run.dir)
            if rec is None:
                continue
            if a.summary_only or (rec.get("status") == "finished" and not a.force):
                if rec.get("argv") != run.argv and not a.summary_only:
                    raise SystemExit(
                        f"sweep: {run.name} finished earlier with another command line:\n  then: {shlex.join(rec.get('argv') or [])}"
                        f"\n  now:  {shlex.join(run.argv)}\nuse --force to rerun it, or another --output-dir")
                self._from_record(run, rec)
                run.skipped = True

    @staticmethod
    def _from_record(run: Run, rec: dict) -> Run:
        run.status, run.rc, run.minutes = rec.get("status", "failed"), rec.get("rc"), rec.get("minutes")
        run.command = rec.get("command", run.command)
        return run

    # -- execution ------------------------------------------------------------------------------------

    def child_env(self) -> dict:
        env = dict(os.environ)
        if self.threads:
            env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        env.update(TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        env.setdefault("TQDM_MININTERVAL", "30")  # fewer progress-bar redraws in the logs
        return env

    def start(self, run: Run, index: int, total: int) -> None:
        if run.dir.exists():
            if any(run.dir.iterdir()) and not ((run.dir / LOG_FILE).exists() or (run.dir / STATUS_FILE).exists()):
                raise SystemExit(f"sweep: {run.dir} holds files the sweep did not write; move them away first")
            shutil.rmtree(run.dir)  # a failed, interrupted or --force'd earlier attempt: start clean
        run.dir.mkdir(parents=True)
        log = open(run.dir / LOG_FILE, "w")
        log.write(f"# {run.command}\n# OMP_NUM_THREADS={self.threads_text}\n")
        log.flush()
        # cwd: the sweep's own, so relative paths (--output-dir, --eval-data) mean what they meant to the user
        run.proc = subprocess.Popen([self.args.python, str(TRAIN), *run.argv], env=self.child_env(),
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # its own group: a terminal's Ctrl-C reaches the sweep only
        log.close()
        run.status, run.started = "running", time.monotonic()
        running = sum(r.status == "running" for r in self.runs)
        self.say(f"start {run.name} ({index}/{total}, {running} running, OMP_NUM_THREADS={self.threads_text}): "
                 f"{run.dir / LOG_FILE}")

    def finish(self, run: Run, rc: int) -> None:
        run.rc = rc
        run.minutes = (time.monotonic() - run.started) / 60
        if run.status == "running":
            run.status = "finished" if rc == 0 else "failed"
        run.proc = None
        (run.dir / STATUS_FILE).write_text(json.dumps(run.record(), indent=1))
        if run.status == "finished":
            res = run_result(read_metrics(run.dir / "metrics.jsonl", self.warn))
            ev = ""
            if res["before"] and res["after"]:
                b, a = res["before"]["overall"], res["after"]["overall"]
                ev = f", eval overall {f3(b)} -> {f3(a)}" + (f" ({a - b:+.3f})" if a is not None and b is not None else "")
            self.say(f"done  {run.name} in {run.minutes:.1f} min: {res['iterations']} iterations{ev}")
        else:
            last = log_tail(run.dir / LOG_FILE, 1)
            word = "STOP " if run.status == "interrupted" else "FAIL "
            self.say(f"{word} {run.name} ({run.status}) in {run.minutes:.1f} min: exit code {rc}; last log line: {last}")

    def signal_group(self, run: Run, sig: int) -> None:
        try:
            os.killpg(run.proc.pid, sig)  # the group we started for this run (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def execute(self) -> int:
        a = self.args
        todo = [r for r in self.runs if not r.skipped]
        for r in self.runs:
            if r.skipped:
                self.say(f"skip  {r.name}: {r.status} earlier ({(r.minutes or 0):.1f} min)")
        total = len(todo)
        if a.parallel * (self.threads or 1) > usable_cores():
            self.warn(f"{a.parallel} runs x {self.threads} threads exceed the usable cores: expect heavy slowdowns")
        self.say(f"sweep: {len(self.arm_flags)} arm(s) x {len(a.seed_values)} seed(s) = {len(self.runs)} runs, "
                 f"{total} to run, {a.parallel} at a time, OMP_NUM_THREADS={self.threads_text}; {self.machine}; "
                 f"output {self.out}")

        def on_signal(sig, frame):
            if self.stop_signal is not None:  # second time: stop waiting
                for r in self.runs:
                    if r.proc is not None:
                        self.signal_group(r, signal.SIGKILL)
                return
            self.stop_signal = sig
            self.say(f"{signal.Signals(sig).name}: stopping the running runs (SIGTERM; they checkpoint), starting no more")
            for r in self.runs:
                if r.proc is not None:
                    r.status = "interrupted"
                    r.term_sent = time.monotonic()
                    self.signal_group(r, signal.SIGTERM)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.write_summary()
        queue = list(todo)
        done = 0
        try:
            while (queue and self.stop_signal is None) or any(r.proc is not None for r in self.runs):
                while queue and self.stop_signal is None and sum(r.proc is not None for r in self.runs) < a.parallel:
                    done += 1
                    self.start(queue.pop(0), done, total)
                time.sleep(0.2)
                now = time.monotonic()
                for r in self.runs:
                    if r.proc is None:
                        continue
                    rc = r.proc.poll()
                    if rc is not None:
                        self.finish(r, rc)
                        self.write_summary()
                        continue
                    if a.run_timeout_minutes and r.term_sent is None and now - r.started > 60 * a.run_timeout_minutes:
                        self.say(f"timeout {r.name}: over {a.run_timeout_minutes:g} minutes, sending SIGTERM")
                        r.status, r.term_sent = "timeout", now
                        self.signal_group(r, signal.SIGTERM)
                    elif r.term_sent is not None and now - r.term_sent > a.kill_grace_seconds:
                        self.signal_group(r, signal.SIGKILL)
            self.report()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            for r in self.runs:  # only on an error in the sweep itself: leave no orphaned run behind
                if r.proc is not None and r.proc.poll() is None:
                    self.signal_group(r, signal.SIGTERM)
        self.write_summary()
        failed = [r for r in self.runs if r.status not in ("finished", "pending")]
        self.say(f"sweep done: {sum(r.status == 'finished' for r in self.runs)} finished, {len(failed)} failed or "
                 f"stopped; summary {self.out / 'summary.md'}")
        if self.stop_signal is not None:
            return 128 + self.stop_signal
        return 1 if failed else 0

    # -- report set -----------------------------------------------------------------------------------

    def report(self) -> None:
        """--report-data: score each finished run (final/ and snapshots/) and, once, each untrained model on the
        report set, one bench/evaluate.py process at a time. What is already scored on that set is kept."""
        a = self.args
        if not a.report_data:
            return
        base_path = self.out / REPORT_BASE
        base = read_report(base_path, a.report_data) or {}
        for r in self.runs:
            if self.stop_signal is not None:
                return
            settings = eval_settings(r.dir)
            if r.status != "finished" or settings is None:
                continue
            key = base_key(settings)
            if key not in base:
                tmp = self.out / "report_base.new.json"
                got = self.evaluate(f"untrained {settings['model']}", [settings["model"]], settings, tmp,
                                    self.out / "report_base.log")
                if got is not None:
                    base[key] = got[settings["model"]]
                    _atomic_write(base_path, json.dumps({"eval_data": a.report_data, "results": base}, indent=1))
                tmp.unlink(missing_ok=True)
            if read_report(r.dir / REPORT_FILE, a.report_data) is None:
                self.evaluate(r.name, [str(r.dir), "--snapshots", "--items-out", str(r.dir / "report_items.jsonl")],
                              settings, r.dir / REPORT_FILE, r.dir / "report.log")
            self.write_summary()

    def evaluate(self, label: str, models: list[str], settings: dict, json_out: Path, log: Path) -> dict | None:
        """bench/evaluate.py on the report set in a child process; its results, or None (warned) when it fails."""
        a = self.args
        cmd = [a.python, str(EVALUATE), *models, "--eval-data", a.report_data, "--mixed-precision",
               settings["precision"], "--max-new-tokens", str(settings["max_tokens"]), "--batch-size",
               str(settings["batch_size"]), "--seed", str(settings["seed"] or 0), "--json-out", str(json_out)]
        self.say(f"report {label} on {a.report_data}: {log}")
        t = time.monotonic()
        with open(log, "w") as f:
            f.write(f"# {shlex.join(cmd)}\n")
            f.flush()
            rc = subprocess.run(cmd, env=self.child_env(), stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
        results = read_report(json_out, a.report_data) if rc == 0 else None
        if results is None:
            self.warn(f"report of {label} failed (exit code {rc}): see {log}")
            return None
        self.say(f"report {label}: overall {', '.join(f3(finite(r.get('overall'))) for r in results.values())} "
                 f"({(time.monotonic() - t) / 60:.1f} min)")
        return results

    # -- summary --------------------------------------------------------------------------------------

    def collect(self) -> dict:
        arms = {}
        for name, flags in self.arm_flags.items():
            runs = [r for r in self.runs if r.arm == name]
            results, run_rows = [], []
            for r in runs:
                res = None
                if r.status not in ("pending", "running") and (r.dir / "metrics.jsonl").exists():
                    # a failed or stopped run's numbers are shown in its own row, never in the arm's aggregates
                    res = run_result(read_metrics(r.dir / "metrics.jsonl", self.warn))
                    res["minutes"] = r.minutes
                    if r.status == "finished":
                        results.append(res)
                run_rows.append({
                    "seed": r.seed, "status": r.status, "rc": r.rc, "minutes": r.minutes, "dir": str(r.dir),
                    "command": r.command,
                    "iterations": res["iterations"] if res else None,
                    "before": res["before"] if res else None, "after": res["after"] if res else None,
                    "after_iteration": res["after_iteration"] if res else None,
                    "late": res["late"] if res else None, "late_iterations": res["late_iterations"] if res else None,
                    "s_per_iteration": res["s_per_iteration"] if res else None,
                    "curve": res["curve"] if res else None,
                    "log_tail": log_tail(r.dir / LOG_FILE) if r.status not in ("finished", "pending", "running") else None,
                    "report": self.run_report(r),
                })
            arms[name] = {
                "flags": None if flags is None else shlex.join(flags), "argv": flags,
                "seeds_finished": [r.seed for r in runs if r.status == "finished"],
                "seeds_failed": [r.seed for r in runs if r.status in ("failed", "timeout", "interrupted")],
                "seeds_pending": [r.seed for r in runs if r.status in ("pending", "running")],
                **aggregate(results), "runs": run_rows,
                "report": {part: {t: stats(row["report"][part][t] for row in run_rows
                                           if row["status"] == "finished" and row["report"] and row["report"][part])
                                  for t in TIERS} for part in ("before", "after", "delta")},
            }
        a = self.args
        if a.report_data:
            items = {name: [r.dir / "report_items.jsonl" for r in self.runs if r.arm == name and r.status == "finished"
                            and read_report(r.dir / REPORT_FILE, a.report_data) is not None
                            and (r.dir / "report_items.jsonl").exists()] for name in arms}
            try:
                differences = report_differences(items)
            except SystemExit as e:  # e.g. runs scored on different report items: say so, keep the summary
                self.warn(f"report: no differences between arms: {e}")
                differences = {}
            for key, per_tier in differences.items():
                arms[key.split(" - ")[0]]["report_vs_first"] = {"vs": key.split(" - ")[1], **per_tier}
        return {"sweep": {"output_dir": str(self.out), "command": self.command, "rebuilt": bool(a.summary_only),
                          "preset": a.preset,
                          "seeds": a.seed_values, "iterations": a.iterations, "time_limit_minutes": a.time_limit_minutes,
                          "eval_data": a.eval_data, "report_data": a.report_data, "extra": a.extra, "parallel": a.parallel, "threads": self.threads,
                          "machine": self.machine,
                          "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                "warnings": self.warnings, "arms": arms}

    def run_report(self, r: Run) -> dict | None:
        a = self.args
        results = read_report(r.dir / REPORT_FILE, a.report_data) if a.report_data else None
        settings = eval_settings(r.dir)
        if results is None or settings is None:
            return None
        before = (read_report(self.out / REPORT_BASE, a.report_data) or {}).get(base_key(settings))
        return report_result(results, r.dir, before)

    def write_summary(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = self.collect()
        _atomic_write(self.out / "summary.json", json.dumps(_json_safe(data), indent=1))
        _atomic_write(self.out / "summary.md", render_markdown(data))
        try:
            plot_summary(data, self.out / "summary.png")
            if any(r["report"] for arm in data["arms"].values() for r in arm["runs"]):
                plot_report(data, self.out / "report.png")
        except ImportError:
            self.warn("matplotlib is not installed: no summary.png")


def _short(path) -> str:
    """A path relative to the current folder when it lies inside it (shorter, still exact command lines)."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def render_markdown(data: dict) -> str:
    sw, arms = data["sweep"], data["arms"]
    runs = [r for arm in arms.values() for r in arm["runs"]]
    count = {s: sum(r["status"] == s for r in runs) for s in ("finished", "pending", "running")}
    failed = len(runs) - sum(count.values())
    budget = ", ".join(x for x in (f"{sw['iterations']} iterations" if sw["iterations"] is not None else "",
                                   f"time limit {sw['time_limit_minutes']:g} min" if sw["time_limit_minutes"] else "") if x)
    setup = (f"Rebuilt {sw['updated']} from the run folders (`--summary-only`): each run's exact command is at the end."
             if sw.get("rebuilt") else
             f"Updated {sw['updated']} on {sw['machine']}. Preset `{sw['preset']}`, seeds {sw['seeds']}, "
             f"budget per run: {budget or 'the preset’s'}, eval data `{sw['eval_data'] or 'the preset’s'}`, "
             f"{sw['parallel']} run(s) at a time with OMP_NUM_THREADS={sw['threads'] or 'unset'}"
             + (f", flags for every run `{shlex.join(sw['extra'])}`" if sw["extra"] else "") + ".")
    L = [f"# Sweep: {sw['output_dir']}", "", setup,
         f"Runs: {count['finished']} finished, {failed} failed or stopped, {count['running']} running, "
         f"{count['pending']} pending of {len(runs)}. Numbers are mean [min, max] over the finished seeds; "
         f"`after` is each run's last evaluation; `late` the mean of its last {LATE_EVALS} evaluations after "
         "training, steadier than one end point.", ""]
    L += ["| arm | flags | seeds finished | failed | iterations | minutes / run | s / iteration | eval overall before | after | delta | late |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in arms.items():
        fin = f"{len(a['seeds_finished'])}/{len(a['runs'])}" + (f" ({', '.join(map(str, a['seeds_finished']))})" if a["seeds_finished"] else "")
        fail = ", ".join(f"seed {s}" for s in a["seeds_failed"]) or "–"
        shown = "(see the command lines)" if a["flags"] is None else f"`{a['flags']}`" if a["flags"] else "(none)"
        L.append(f"| {name} | {shown} | {fin} | {fail} | {fmt_stat(a['iterations'], digits=0)} | "
                 f"{fmt_stat(a['minutes'], digits=1)} | {fmt_stat(a['s_per_iteration'], digits=1)} | "
                 f"{fmt_stat(a['before']['overall'])} | {fmt_stat(a['after']['overall'])} | "
                 f"{fmt_stat(a['delta']['overall'], signed=True)} | {fmt_stat(a['late']['overall'])} |")
    L += ["", "## Eval per tier", "", "| arm | | " + " | ".join(TIERS) + " |", "|---|---|" + "---|" * len(TIERS)]
    for name, a in arms.items():
        for part in ("before", "after", "delta", "late"):
            cells = [fmt_stat(a[part][t], signed=part == "delta") for t in TIERS]
            L.append(f"| {name if part == 'before' else ''} | {part} | " + " | ".join(cells) + " |")
    if sw.get("report_data"):
        L += ["", f"## Report set `{sw['report_data']}`: scored after the runs, never seen by them", "",
              "bench/evaluate.py on the untrained model (`before`) and each finished run's final/ (`after`), at the "
              "run's precision; mean [min, max] over the seeds with a report. Each run's curve over its snapshots is "
              "in report.png and in the runs table below.", "",
              "| arm | | seeds | " + " | ".join(TIERS) + " |", "|---|---|---|" + "---|" * len(TIERS)]
        for name, a in arms.items():
            rep = a["report"]
            n = sum(1 for r in a["runs"] if r["status"] == "finished" and r["report"] and r["report"]["after"])
            for part in ("before", "after", "delta"):
                cells = [fmt_stat(rep[part][t], signed=part == "delta") for t in TIERS]
                L.append(f"| {name if part == 'before' else ''} | {part} | {n if part == 'before' else ''} | "
                         + " | ".join(cells) + " |")
        vs = [(name, a["report_vs_first"]) for name, a in arms.items() if a.get("report_vs_first")]
        if vs:
            L += ["", f"Each arm against `{vs[0][1]['vs']}`, final/ on the report set: difference of the means, 95% "
                  "interval from a bootstrap over seeds and items (bench/compare.py; with 2 seeds a floor on the "
                  "uncertainty), share of resamples <= 0.", "",
                  "| arm | vs | " + " | ".join(TIERS) + " |", "|---|---|" + "---|" * len(TIERS)]
            for name, d in vs:
                cells = [f"{d[t]['mean']:+.3f} [{d[t]['ci'][0]:+.3f}, {d[t]['ci'][1]:+.3f}] ({d[t]['share_le_0']:.2f})"
                         if t in d else "–" for t in TIERS]
                L.append(f"| {name} | {d['vs']} | " + " | ".join(cells) + " |")
        L += ["", "| run | report overall at iteration ... |", "|---|---|"]
        for name, a in arms.items():
            for r in a["runs"]:
                if r["report"]:
                    pts = ", ".join(f"{f3(e['overall'])} ({it})" for it, e in r["report"]["curve"])
                    L.append(f"| {name}/seed{r['seed']} | {pts} |")
    L += ["", "## Self-play: mean of the first 4 -> last 4 iterations; KL at the end", "",
          "| arm | " + " | ".join(k for k in (f"{kind} solve acc" for kind in KINDS)) + " | valid rate | final KL |",
          "|---|---|---|---|---|---|"]
    for name, a in arms.items():
        sp = a["selfplay"]
        cells = [f"{fmt_stat(sp[key]['first4'], digits=2)} -> {fmt_stat(sp[key]['last4'], digits=2)}" if key in sp else "–"
                 for key in [f"tasks/solve_{k}/accuracy" for k in KINDS] + ["tasks/propose/valid_rate"]]
        L.append(f"| {name} | " + " | ".join(cells) + f" | {fmt_stat(a['final_kl'], digits=4)} |")
    L += ["", "## Runs", "", "Failed or stopped runs show how far they got; only finished runs enter the tables above.", "",
          "| run | status | exit | iterations | minutes | eval overall before -> after (at iteration) | late (iterations) |",
          "|---|---|---|---|---|---|---|"]
    for name, a in arms.items():
        for r in a["runs"]:
            ev = (f"{f3((r['before'] or {}).get('overall'))} -> {f3((r['after'] or {}).get('overall'))}"
                  + (f" ({r['after_iteration']})" if r["after_iteration"] is not None else "")
                  if r["before"] or r["after"] else "–")
            mins = "–" if r["minutes"] is None else f"{r['minutes']:.1f}"
            late = (f"{f3(r['late']['overall'])} ({', '.join(map(str, r['late_iterations']))})"
                    if r.get("late") else "–")
            L.append(f"| {name}/seed{r['seed']} | {r['status']} | {'–' if r['rc'] is None else r['rc']} | "
                     f"{'–' if r['iterations'] is None else r['iterations']} | {mins} | {ev} | {late} |")
    bad = [(name, r) for name, a in arms.items() for r in a["runs"] if r["log_tail"] is not None]
    if bad:
        L += ["", "## Failed or stopped runs"]
        for name, r in bad:
            mins = "?" if r["minutes"] is None else f"{r['minutes']:.1f}"
            L += ["", f"### {name}/seed{r['seed']}: {r['status']}, exit code {r['rc']}, after {mins} min",
                  "", f"Log `{r['dir']}/{LOG_FILE}`, last lines:", "", "```", r["log_tail"], "```"]
    L += ["", "## Command lines", "", "The sweep (latest invocation):", "", "```", sw["command"], "```", "",
          "Each run:", "", "```"]
    L += [r["command"] for a in arms.values() for r in a["runs"]]
    L += ["```"]
    if data["warnings"]:
        L += ["", "## Warnings", ""] + [f"- {w}" for w in data["warnings"]]
    return "\n".join(L) + "\n"


def plot_summary(data: dict, path: Path) -> None:
    """Eval accuracy vs iteration, one panel per tier: per arm the mean over seeds (line) and the min-max band,
    at the iterations every finished seed evaluated; each seed's own curve faintly (its final point included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, tier in zip(axes.flat, TIERS):
        for i, (name, a) in enumerate(data["arms"].items()):
            c = colors[i % len(colors)]
            for r in a["runs"]:
                if r["status"] == "finished" and r["curve"]:
                    pts = [(it, e[tier]) for it, e in r["curve"] if e[tier] is not None]
                    if pts:
                        ax.plot(*zip(*pts), color=c, alpha=0.3, lw=0.8)
            xs, cv = a["curve"]["iteration"], a["curve"][tier]
            ok = [j for j, m in enumerate(cv["mean"]) if m is not None]
            if ok:
                n = len(a["seeds_finished"])
                ax.plot([xs[j] for j in ok], [cv["mean"][j] for j in ok], "o-", color=c, ms=3,
                        label=f"{name} ({n} seed{'s' if n != 1 else ''})")
                ax.fill_between([xs[j] for j in ok], [cv["min"][j] for j in ok], [cv["max"][j] for j in ok],
                                color=c, alpha=0.2, lw=0)
            # runs stopped by a time limit end at different iterations: their final evals, as one point
            # (mean iteration, mean accuracy, min-max bar), joined to the band's last point by a dashed line
            fin, fin_it = a["after"][tier], a["after_iteration"]
            if fin and fin_it and (not ok or fin_it["mean"] > xs[ok[-1]]):
                ax.errorbar([fin_it["mean"]], [fin["mean"]], yerr=[[fin["mean"] - fin["min"]], [fin["max"] - fin["mean"]]],
                            fmt="s", color=c, ms=4, capsize=3)
                if ok:
                    ax.plot([xs[ok[-1]], fin_it["mean"]], [cv["mean"][ok[-1]], fin["mean"]], "--", color=c, lw=1)
        ax.set_title(f"eval {tier}")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("iteration")
    if any(ax.get_legend_handles_labels()[0] for ax in axes.flat):
        axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{data['sweep']['output_dir']}: mean over seeds, band = min-max, faint = each seed, "
                 "square = final evals (mean iteration)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def plot_report(data: dict, path: Path) -> None:
    """The report set's overall and hard-tier accuracy against iteration: one line per run (the untrained model
    at 0, its snapshots, final/ at its last iteration), a colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, tier in zip(axes, ("overall", "hard", "very_hard")):
        for i, (name, a) in enumerate(data["arms"].items()):
            shown = False
            for r in a["runs"]:
                pts = [(it, e[tier]) for it, e in (r["report"] or {}).get("curve", []) if e[tier] is not None]
                if pts:
                    ax.plot(*zip(*pts), "o-", color=colors[i % len(colors)], ms=3, lw=1,
                            label=None if shown else name)
                    shown = True
        ax.set(title=f"report {tier}", xlabel="iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{data['sweep']['output_dir']}: {data['sweep']['report_data']} (never used by the runs), "
                 "one line per seed", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sweep = Sweep(args)
    sweep.plan()
    if args.dry_run:
        for r in sweep.runs:
            pin = f"OMP_NUM_THREADS={sweep.threads} " if sweep.threads else ""
            print(("# skip (finished): " if r.skipped else "") + pin + r.command)
        return 0
    if args.summary_only:
        sweep.write_summary()
        print(f"summary: {args.output_dir / 'summary.md'}")
        return 0
    return sweep.execute()


if __name__ == "__main__":
    sys.exit(main())

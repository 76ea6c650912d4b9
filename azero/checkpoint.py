"""Save and resume everything a run needs to continue as if it had never stopped, under every engine.

A checkpoint is a folder written by Accelerate's state API (``accelerator.save_state``: model, optimizer, the
registered lr scheduler, every rank's RNG states; sharded under FSDP2 and DeepSpeed ZeRO) plus our
``trainer_state.pt`` (iteration, config, buffers, task RNG) and, written last, ``COMPLETE.json`` (iteration,
process count, engine, and the size of every file). A folder without a valid marker is not a checkpoint.

Crash consistency. A save writes ``checkpoint.tmp/``, marks it complete, renames ``checkpoint/`` to
``checkpoint.old/``, renames ``checkpoint.tmp/`` to ``checkpoint/`` and deletes ``checkpoint.old/``. At every
instant at least one complete checkpoint exists among the three folders, and ``latest`` picks the newest complete
one, so a crash (kill -9, power loss: files and marker are fsynced) anywhere in a save resumes from the new or the
previous checkpoint, never from a torn one. Before writing, a save keeps only the newest complete folder and moves
it to ``checkpoint/``, so leftovers of a crashed save never block the next one.

Invariants (relied on by the trainer and the fault-injection test):
  * ``latest(run)`` never returns a folder whose marker is missing or whose files differ from the marker's sizes;
  * the newest complete checkpoint is never deleted or modified by a save before a newer one is complete;
  * a save never writes non-finite weights, and a failed save (disk full ...) leaves the previous checkpoint as it
    was, removes its partial folder and stops the run with one line saying what happened and what to do;
  * resume refuses a checkpoint written by another number of processes or another engine (the per-rank RNG
    streams, and so the run, would differ), and one whose weights are not finite.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from azero.config import ConfigError

CKPT = "checkpoint"
MARKER = "COMPLETE.json"
TRAINER = "trainer_state.pt"
FORMAT = 2


class CheckpointError(SystemExit):
    """A checkpoint cannot be written: one line with the cause and what to do (no traceback, exit 1)."""

    def __init__(self, msg: str):
        super().__init__(f"checkpoint error: {msg}")


class ResumeError(ConfigError):
    """--resume cannot continue from this folder: one line (train.py prints it, exit 2) that says what to do."""


# ----------------------------------------------------------------------------------------------------
# finding the newest complete checkpoint


def candidates(run_dir: str | Path) -> list[Path]:
    out = Path(run_dir)
    return [out / CKPT, out / f"{CKPT}.tmp", out / f"{CKPT}.old"]  # tie-break order: the swapped-in one first


def marker(folder: Path) -> dict | None:
    """The folder's completeness marker if it is complete: marker readable, every listed file present at its size."""
    try:
        meta = json.loads((folder / MARKER).read_text())
        for rel, size in meta["files"].items():
            if (folder / rel).stat().st_size != size:
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run (highest iteration; ties: checkpoint/ first), or None."""
    best, best_it = None, -1
    for folder in candidates(run_dir):
        meta = marker(folder)
        if meta is not None and meta["iteration"] > best_it:
            best, best_it = folder, meta["iteration"]
    return best


def require(run_dir: str | Path) -> Path:
    folder = latest(run_dir)
    if folder is None:
        legacy = Path(run_dir) / CKPT / "trainer.pt"
        if legacy.exists():
            raise ResumeError(f"{legacy.parent} was written by an older azero (no {MARKER}); resume it with the "
                              "version that wrote it, or start a new run")
        raise ResumeError(f"--resume {run_dir}: no checkpoint there (no complete one among {CKPT}/, {CKPT}.tmp/ "
                          f"and {CKPT}.old/, each marked by {MARKER}); a run that never reached its first checkpoint "
                          "cannot be resumed: start it again")
    return folder


def load_trainer_state(run_dir: str | Path) -> dict:
    """Config, iteration, buffers and task RNG of the newest complete checkpoint; read before the model is built
    (the config decides it). Adds ``checkpoint_dir`` and ``checkpoint_meta``."""
    folder = require(run_dir)
    state = torch.load(folder / TRAINER, map_location="cpu", weights_only=False)
    return {**state, "checkpoint_dir": str(folder), "checkpoint_meta": marker(folder)}


# ----------------------------------------------------------------------------------------------------
# saving


def save(accelerator, output_dir: str | Path, *, model, trainer_state: dict) -> Path:
    """Write a checkpoint of the prepared model/optimizer (and what ``register_for_checkpointing`` holds) plus
    ``trainer_state``, crash-consistently (module docstring). Every rank must call it."""
    from azero.distributed import engine_name, nonfinite_parameters

    out = Path(output_dir)
    final, tmp, old = candidates(out)
    main = accelerator.is_main_process
    if main:
        _keep_only_newest(out)
    accelerator.wait_for_everyone()

    bad = nonfinite_parameters(accelerator, model)
    if bad:
        raise CheckpointError(f"not saving iteration {trainer_state.get('iteration')}: the weights hold inf/NaN "
                              f"({', '.join(bad[:3])}); the previous checkpoint in {final} is kept")

    failure = None
    # Accelerate warns at every save that it dropped the tied lm_head from model.safetensors; loading re-ties it
    logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)
    try:
        accelerator.save_state(str(tmp))
        if main:
            torch.save(trainer_state, tmp / TRAINER)
            _mark_complete(tmp, {"iteration": int(trainer_state["iteration"]), "num_processes": accelerator.num_processes,
                                 "engine": engine_name(accelerator)})
    except Exception as e:  # noqa: BLE001 - any write failure (ENOSPC surfaces as RuntimeError from torch) is reported alike
        failure = e
    if _any_rank(accelerator, failure is not None):
        if main:
            shutil.rmtree(tmp, ignore_errors=True)  # give the space back; the previous checkpoint is untouched
        raise CheckpointError(_explain(failure, out, final)) from failure

    accelerator.wait_for_everyone()
    if main:
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        _fsync_dir(out)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _keep_only_newest(out: Path) -> None:
    """Leftovers of an interrupted save: keep the newest complete folder, as checkpoint/, and delete the others
    (incomplete ones, or complete but older). The kept folder is never touched until it has been renamed."""
    best = latest(out)
    for folder in candidates(out):
        if folder != best and (folder.exists() or folder.is_symlink()):
            shutil.rmtree(folder) if folder.is_dir() and not folder.is_symlink() else folder.unlink()
    if best is not None and best != out / CKPT:
        best.rename(out / CKPT)
    _fsync_dir(out)


def _mark_complete(folder: Path, meta: dict) -> None:
    """fsync every file, then write the marker (itself via a temp file + rename): a marker never precedes its data."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            _fsync_file(path)
            files[str(path.relative_to(folder))] = path.stat().st_size
    for d in sorted({p.parent for p in folder.rglob("*")} | {folder}):
        _fsync_dir(d)
    meta = {"format": FORMAT, **meta, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files}
    part = folder / f"{MARKER}.part"
    with open(part, "w") as f:
        json.dump(meta, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    part.rename(folder / MARKER)
    _fsync_dir(folder)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems refuse fsync on directories; the rename is still atomic
        pass


def _any_rank(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    from accelerate.utils import reduce

    return reduce(torch.tensor(float(flag), device=accelerator.device), "sum").item() > 0


def _explain(exc: BaseException | None, out: Path, final: Path) -> str:
    """One line: what failed, whether the disk is full, that the previous checkpoint is intact, what to do."""
    try:
        free_gb = shutil.disk_usage(out).free / 2**30
    except OSError:
        free_gb = float("nan")
    prev = marker(final)
    kept = (f"the previous checkpoint ({final}, iteration {prev['iteration']}) is intact" if prev
            else "there is no earlier checkpoint")
    if exc is None:
        return f"another process failed to write its part of the checkpoint in {out}; {kept}"
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    full = _is_disk_full(exc) or free_gb < 0.05
    if full:
        return (f"the disk holding {out} is full ({free_gb:.2f} GiB free) while writing a checkpoint ({text}); {kept}. "
                f"Free some space, then continue with --resume {out}")
    return f"could not write a checkpoint in {out} ({text}); {kept}. Fix the cause, then continue with --resume {out}"


def _is_disk_full(exc: BaseException) -> bool:
    """ENOSPC anywhere in the exception chain, or torch's stream errors for it (``basic_ios::clear``,
    ``file write failed``), which carry no errno."""
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(s in str(e) for s in ("No space left", "basic_ios::clear", "file write failed", "Disk quota")):
            return True
        e = e.__cause__ or e.__context__
    return False


# ----------------------------------------------------------------------------------------------------
# resuming


def check_resumable(run_dir: str | Path, accelerator) -> dict:
    """Before the model loads: the checkpoint's process count and engine must be this launch's."""
    from azero.distributed import engine_name

    folder = require(run_dir)
    meta = marker(folder)
    now = (accelerator.num_processes, engine_name(accelerator))
    then = (meta["num_processes"], meta["engine"])
    if now != then:
        raise ResumeError(
            f"{folder} was written by {then[0]} process(es) under {then[1]}, this launch has {now[0]} under {now[1]}. "
            f"Resume with the launch that wrote it ({then[0]} process(es), {then[1]}): every rank's sampling stream "
            "is part of the checkpoint, so another process count or engine would not continue the run exactly")
    return meta


def restore(accelerator, run_dir: str | Path, model) -> dict:
    """Load model, optimizer, scheduler and every rank's RNG into the prepared objects; returns the trainer state.
    Refuses weights that are not finite (a corrupt or hand-edited checkpoint: the trainer never saves them)."""
    from azero.distributed import nonfinite_parameters

    check_resumable(run_dir, accelerator)
    folder = require(run_dir)
    accelerator.load_state(str(folder))
    bad = nonfinite_parameters(accelerator, model)
    if bad:
        raise ResumeError(f"{folder} holds non-finite weights ({', '.join(bad[:3])}): the files are damaged or "
                          "were edited (azero never saves inf/NaN weights). Resume from an intact copy of the run "
                          "folder, or start a new run")
    return load_trainer_state(run_dir)


def fingerprint(accelerator, model, buffers: dict) -> str:
    """A hash of the full parameter bytes and buffer contents: equal on every rank of a healthy run. Sharded
    parameters are gathered (FSDP2) or left out (ZeRO-3 partitions: DeepSpeed keeps them consistent itself).
    Every rank must call it."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if hasattr(p, "ds_tensor"):
            continue
        t = p.full_tensor() if hasattr(p, "full_tensor") else p
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(json.dumps({k: b.state_dict() for k, b in sorted(buffers.items())}, sort_keys=True, default=str).encode())
    return h.hexdigest()

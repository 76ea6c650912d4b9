"""Fault injection for tests/test_fault_injection.py: SIGKILL a real training run at a chosen file-system event.

No hook lives in the trainer: this driver wraps the primitives that checkpoints and logs are made of
(``open`` for writing, ``os.replace`` / ``os.rename``, ``os.mkdir``, ``shutil.rmtree``, ``torch.save``,
``safetensors.torch.save_file``) for paths inside the run folder, and numbers each *event*:

  ``before``  the call has not started;
  ``torn``    the call wrote half of its bytes (a file's writes up to a flush or close, ``torch.save``,
              ``save_file``) or deleted one file of
              the tree (``rmtree``) -- what a kill, a power cut or a full disk leaves in the middle of a call;
  ``after``   the call returned.

So whatever the checkpoint and log code become, the kills land between and inside its real steps.

The driver imports torch and the trainer once, then runs each case in forked children (a fresh process
costs seconds; a fork, milliseconds), the way ``python train.py ARGS`` runs, exit codes included:

    python tests/fault_driver.py trace  OUT -- ARGS     # run ARGS once, write the numbered events to OUT/events
    python tests/fault_driver.py cases  OUT '[[K, R], ...]' -- ARGS
                                                           # per case: run ARGS in OUT/caseI/run killed at event K
                                                           # (and its first --resume killed at event R), then
                                                           # `--resume` it to the end; if that fails (no checkpoint
                                                           # yet), run ARGS again with --overwrite

``cases`` prints one JSON line per case: the last event, and the exit code of each run (-9: SIGKILL).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import runpy
import shutil
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azero.cpu import prepare_openmp  # noqa: E402  (train.py does this before torch is imported, so do we)

prepare_openmp()
import safetensors.torch  # noqa: E402
import torch  # noqa: E402

import train  # noqa: E402,F401  (imports the whole trainer once, before any fork)


class Faults:
    """Numbers the file-system events inside ``run_dir``; SIGKILLs the process at event ``kill_at``."""

    def __init__(self, run_dir: Path, kill_at: int | None, log_fd: int):
        self.run_dir, self.kill_at, self.log_fd, self.n = str(run_dir.resolve()), kill_at, log_fd, 0

    def mine(self, path) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(self.run_dir)
        except TypeError:  # a file descriptor or a file object
            return False

    def event(self, name: str, phase: str) -> bool:
        """Record the event; True when this is the one to die at (the caller then does its torn part).
        ``kill_at`` is an event number, or text: the first event whose "name<TAB>phase" contains it."""
        self.n += 1
        line = f"{name}\t{phase}"
        os.write(self.log_fd, f"{self.n}\t{line}\n".encode())
        if isinstance(self.kill_at, str):
            return self.kill_at in line
        return self.n == self.kill_at

    def rel(self, path) -> str:
        return os.path.relpath(os.path.abspath(os.fspath(path)), self.run_dir)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def install(faults: Faults) -> None:
    """Wrap the primitives (in this forked child only)."""
    real_open, real_replace, real_rename = builtins.open, os.replace, os.rename
    real_mkdir, real_rmtree = os.mkdir, shutil.rmtree
    real_torch_save, real_save_file = torch.save, safetensors.torch.save_file

    def simple(real, op):
        def wrapped(src, *args, **kwargs):
            if not faults.mine(src):
                return real(src, *args, **kwargs)
            name = f"{op} {faults.rel(src)}" + (f" -> {faults.rel(args[0])}" if args and op != "mkdir" else "")
            if faults.event(name, "before"):
                die()
            result = real(src, *args, **kwargs)
            if faults.event(name, "after"):
                die()
            return result
        return wrapped

    def rmtree(path, *args, **kwargs):
        if not faults.mine(path):
            return real_rmtree(path, *args, **kwargs)
        name = f"rmtree {faults.rel(path)}"
        if faults.event(name, "before"):
            die()
        if faults.event(name, "torn"):
            files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if os.path.isdir(path) else []
            if files:
                os.unlink(files[0])
            die()
        result = real_rmtree(path, *args, **kwargs)
        if faults.event(name, "after"):
            die()
        return result

    def saver(real, op):
        def wrapped(obj, f, *args, **kwargs):
            if not faults.mine(f):
                return real(obj, f, *args, **kwargs)
            name = f"{op} {faults.rel(f)}"
            if faults.event(name, "before"):
                die()
            result = real(obj, f, *args, **kwargs)
            if faults.event(name, "torn"):
                os.truncate(f, os.path.getsize(f) // 2)
                die()
            if faults.event(name, "after"):
                die()
            return result
        return wrapped

    class Writer:
        """A file opened for writing in the run folder. Its bytes are held until flush() or close(), then
        written as one event: a json.dump of many small writes is one write of a whole, half or no file."""

        def __init__(self, f, name):
            self._f, self._name, self._pending = f, name, []

        def write(self, data):
            self._pending.append(data)
            return len(data)

        def flush(self):
            if self._pending:
                data, self._pending = self._pending[0][:0].join(self._pending), []
                if faults.event(self._name, "before"):
                    die()
                if faults.event(self._name, "torn"):
                    self._f.write(data[: max(1, len(data) // 2)])
                    self._f.flush()
                    die()
                self._f.write(data)
                if faults.event(self._name, "after"):
                    self._f.flush()
                    die()
            self._f.flush()

        def close(self):
            self.flush()
            self._f.close()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

        def __getattr__(self, attr):
            return getattr(self._f, attr)

    def opener(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+") and faults.mine(file):
            return Writer(f, f"write {faults.rel(file)} ({mode})")
        return f

    import azero.checkpoint

    real_ckpt_save = azero.checkpoint.save

    def checkpoint_save(*args, **kwargs):
        result = real_ckpt_save(*args, **kwargs)
        if faults.event("checkpoint.save returned", "after"):  # the test's landmark: a complete checkpoint exists
            die()
        return result

    builtins.open = io.open = opener
    os.replace, os.rename, os.mkdir = simple(real_replace, "replace"), simple(real_rename, "rename"), simple(real_mkdir, "mkdir")
    shutil.rmtree = rmtree
    azero.checkpoint.save = checkpoint_save
    # Libraries bind these at import (`from safetensors.torch import save_file as safe_save_file` in Accelerate):
    # replace every binding of the real function, wherever it lives.
    swaps = {id(real_torch_save): saver(real_torch_save, "torch.save"),
             id(real_save_file): saver(real_save_file, "save_file")}
    for module in list(sys.modules.values()):
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if id(value) in swaps and callable(value):
                try:
                    setattr(module, attr, swaps[id(value)])
                except (AttributeError, TypeError):
                    pass


def run_child(argv: list[str], run_dir: Path, kill_at: int | str | None, events: Path | None, log: Path) -> int:
    """``python train.py ARGV`` in a forked child, its output appended to ``log``; returns its exit code, or
    -signal if a signal killed it."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.write(fd, f"\n### train.py {' '.join(argv)} (kill at {kill_at!r})\n".encode())
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            log_fd = os.open(events, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if events else os.open(os.devnull, os.O_WRONLY)
            install(Faults(run_dir, kill_at, log_fd))
            sys.argv = [str(ROOT / "train.py"), *argv]
            runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main() -> None:
    cmd, out = sys.argv[1], Path(sys.argv[2])
    argv = sys.argv[sys.argv.index("--") + 1:]
    out.mkdir(parents=True, exist_ok=True)
    if cmd == "trace":
        run_dir = out / "run"
        code = run_child([*argv, "--output-dir", str(run_dir)], run_dir, None, out / "events", out / "train.log")
        print("RESULT " + json.dumps({"exit": code}), flush=True)
        return
    # a JSON list of [K, R]: kill the run at event K (a number), and its first resume at event R (null: not at all;
    # a number, or text matched against "name<TAB>phase")
    for i, (kill_at, kill_resume_at) in enumerate(json.loads(sys.argv[3])):
        case = out / f"case{i}"
        run_dir, log = case / "run", case / "train.log"
        case.mkdir(parents=True)
        result = {"case": i}
        result["killed"] = run_child([*argv, "--output-dir", str(run_dir)], run_dir, kill_at, case / "events", log)
        events = (case / "events").read_text().splitlines()
        result["last_event"] = events[-1] if events else None
        if kill_resume_at is not None:
            result["resume_killed"] = run_child(["--resume", str(run_dir)], run_dir, kill_resume_at,
                                                case / "resume_events", log)
            result["resume_last_event"] = (case / "resume_events").read_text().splitlines()[-1]
        result["resumed"] = run_child(["--resume", str(run_dir)], run_dir, None, None, log)
        if result["resumed"] != 0:  # allowed before the first checkpoint exists (the test checks which): start over
            result["resume_error"] = log.read_text().strip().splitlines()[-1]
            result["overwritten"] = run_child([*argv, "--output-dir", str(run_dir), "--overwrite"], run_dir, None,
                                              None, log)
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

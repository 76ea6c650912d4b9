"""CPU threads on a shared machine: keep a run fast alone and make it degrade in proportion beside others.

Why (docs/RESULTS.md, "CPU contention"): torch's OpenMP threads busy-wait at the end of every parallel
region. On a 2-core machine, two processes with 2 threads each run up to 55x slower than alone, not 2x,
because every barrier waits for a peer thread the scheduler has parked behind the other process's
spinning threads. One thread per process never waits on a peer; several threads alone are faster.

So, unless the user pins the threads (OMP_NUM_THREADS, torch.set_num_threads):
  * ``prepare_openmp()``, before torch is imported, shortens the spin before an idle OpenMP thread sleeps
    (GOMP_SPINCOUNT, KMP_BLOCKTIME) to a value that costs nothing alone but bounds the damage while the
    governor has not reacted yet;
  * ``ThreadGovernor.poll()``, called at phase boundaries, measures how many of the CPUs this process may
    use are kept busy by *other* processes (from /proc/stat minus our own CPU time) and sets torch's
    intra-op threads to the CPUs left free (at least 1).
When the user pins the threads, the governor only warns when the machine is oversubscribed.

This module imports torch only inside functions: ``prepare_openmp`` must run before torch is imported.
"""

from __future__ import annotations

import ctypes
import math
import os
import time
from collections.abc import Callable

# Set before torch loads libgomp (or Intel's libiomp): spin this long before sleeping at a barrier.
# 20000 spins (tens of microseconds) lost nothing alone in the measurements and cut the slowdown of two
# 2-thread processes on 2 cores from 55x to 8x; the default (300000) is what makes it 55x.
SPIN_ENV = {"GOMP_SPINCOUNT": "20000", "KMP_BLOCKTIME": "0"}
# Variables that mean the user chose the OpenMP behaviour: we leave it alone.
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# AZERO_THREADS=off turns the governor off (threads stay as torch chose); used by the contention bench.
GOVERNOR_VAR = "AZERO_THREADS"


def prepare_openmp(environ=os.environ) -> dict[str, str]:
    """Call first thing in an entry point, before ``import torch``. Returns the variables it set."""
    if environ.get(GOVERNOR_VAR) == "off" or any(v in environ for v in WAIT_VARS):
        return {}
    environ.update(SPIN_ENV)
    return dict(SPIN_ENV)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota if there is one."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _busy_seconds(cpus: set[int] | None) -> float | None:
    """Seconds the given CPUs (all if None) spent not idle since boot, from /proc/stat; None off Linux."""
    try:
        lines = open("/proc/stat").read().splitlines()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(x) for x in fields]
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        busy += sum(values[:8]) - values[3] - values[4]
    return busy / tick


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system  # every thread of this process (children are counted apart)


class ThreadGovernor:
    """Pick torch's intra-op thread count from the CPUs other processes leave free.

    ``poll()`` is cheap (one read of /proc/stat) and acts at most every ``interval`` seconds, on the
    average load of the other processes since the last action. Call it from the thread that runs the
    model: OpenMP thread counts belong to the calling thread."""

    def __init__(self, say: Callable[[str], None] = print, *, interval: float = 2.0, enabled: bool | None = None,
                 cpus: int | None = None):
        import torch

        self.say, self.interval = say, interval
        self.cpus = cpus or usable_cpus()
        try:
            self._mask = set(os.sched_getaffinity(0))
        except AttributeError:
            self._mask = None
        pinned = "OMP_NUM_THREADS" in os.environ or os.environ.get(GOVERNOR_VAR) == "off"
        self.enabled = (not pinned) if enabled is None else enabled
        self.threads = torch.get_num_threads()
        self.max_threads = min(self.threads, self.cpus)  # torch's own choice (physical cores) is the ceiling
        self.others = float("nan")  # CPUs' worth of other processes' load over the last window (nan: not yet)
        self._warned = False
        self._mark()

    def _mark(self) -> None:
        self._t, self._busy, self._own = time.monotonic(), _busy_seconds(self._mask), _own_cpu_seconds()

    def poll(self, force: bool = False) -> int:
        """Re-measure if a window has passed; returns the thread count in use."""
        now = time.monotonic()
        wall = now - self._t
        # /proc/stat counts in ticks of 10 ms: a window much shorter than a second measures nothing
        if self._busy is None or wall < (0.25 if force else self.interval):
            return self.threads
        busy, own = _busy_seconds(self._mask), _own_cpu_seconds()
        self.others = max(0.0, ((busy - self._busy) - (own - self._own)) / wall)
        self._mark()
        want = min(self.max_threads, choose_threads(self.cpus, self.others))
        if self.enabled and want > self.threads:  # take threads back only with a margin: no flapping at the edge
            want = max(self.threads, min(want, choose_threads(self.cpus, self.others + HYSTERESIS)))
        if self.enabled and want != self.threads:
            import torch

            torch.set_num_threads(want)
            self.say(f"cpu: other processes keep {self.others:.1f} of {self.cpus} CPUs busy: "
                     f"{want} thread(s) now (was {self.threads}); pin with OMP_NUM_THREADS to stop adapting")
            self.threads = want
        elif not self.enabled and self.threads > want and not self._warned:
            self.say(f"WARNING: cpu oversubscribed: other processes keep {self.others:.1f} of {self.cpus} CPUs busy "
                     f"while this run uses {self.threads} threads; expect a far larger slowdown than the share lost "
                     f"(OpenMP threads wait on parked peers). Unset OMP_NUM_THREADS to adapt, or set it to {want}.")
            self._warned = True
        return self.threads

    def metrics(self) -> dict[str, float]:
        """Logged per iteration under perf/ (they vary with the machine, like timings)."""
        return {"perf/threads": float(self.threads), "perf/cpu_busy_others": self.others}


HYSTERESIS = 0.2  # CPUs of others' load below the threshold before a thread given up is taken back


def choose_threads(cpus: int, others: float) -> int:
    """CPUs left free by a load of ``others`` CPUs, rounded so that a background 0.4 CPU keeps every
    thread and 0.5 CPU of others' load already gives one up (a busy peer thread costs more than a
    thread of our own gains), and never fewer than 1."""
    return max(1, min(cpus, math.floor(cpus - others + 0.45)))


# glibc mallopt parameters (malloc.h) and the values "keep" sets: blocks up to 32 MiB (the most glibc accepts) come
# from the heap instead of a fresh mmap, and up to 2 GiB of free memory at the heap's top stays there.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
KEEP_HEAP = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 512 << 20))


def keep_freed_memory() -> bool:
    """Make glibc keep the memory a CPU run frees for its next allocations (``--cpu-heap keep``). Returns False
    where the C library has no ``mallopt`` (musl, macOS) or refuses a value.

    Why: by default glibc serves large blocks with a fresh ``mmap`` and gives freed memory back, so every training
    pass touches new pages. On the 2-core box a cpu-preset update pass took 3-6 million page faults and 11-16 s of
    kernel time; with these settings it took 0.3 million and 2.4 s, and 49 s instead of 57-62 (docs/RESULTS.md,
    section 16). The cost is resident memory: what a phase frees stays with the process."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in KEEP_HEAP)


def heap_trimmer() -> Callable[[], bool] | None:
    """A function that hands the heap's free pages back to the OS (glibc ``malloc_trim(0)``), or None where the C
    library has none (musl, macOS).

    Why (docs/RESULTS.md, section 11b): glibc keeps memory that a CPU run frees in the middle of its heap, so the
    resident size of a cpu-preset run grew from 10 to 14 GB over 60 minutes while its live set stayed under 8 GB.
    Trimming gave the same numbers and a lower resident size; on one box it cost no measurable time, on another
    (section 16) the page faults it brings back made the first iterations 24% slower than ``keep_freed_memory``."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: bool(trim(0))  # True when it released memory

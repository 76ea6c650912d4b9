"""CPU threads on a shared machine (azero/cpu.py): the OpenMP spin set before torch loads, the thread governor."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from azero import cpu

ROOT = Path(__file__).resolve().parents[1]


def test_prepare_openmp_shortens_the_spin_unless_the_user_chose():
    env = {}
    assert cpu.prepare_openmp(env) == {"GOMP_SPINCOUNT": "20000", "KMP_BLOCKTIME": "0"}
    assert env["GOMP_SPINCOUNT"] == "20000"
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}, {"KMP_BLOCKTIME": "200"},
                   {"AZERO_THREADS": "off"}):
        env = dict(chosen)
        assert cpu.prepare_openmp(env) == {} and env == chosen


@pytest.mark.slow  # a python process importing train.py (torch, transformers): ~5-15 s
def test_train_py_sets_the_spin_before_torch_is_imported():
    """OpenMP reads GOMP_SPINCOUNT once, when torch loads libgomp: set later, it does nothing."""
    probe = (
        "import os, sys, importlib.abc\n"
        "seen = []\n"
        "class Watch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' and not seen: seen.append(os.environ.get('GOMP_SPINCOUNT'))\n"
        "sys.meta_path.insert(0, Watch())\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import train\n"
        "print(seen)\n")
    env = {k: v for k, v in os.environ.items() if k not in cpu.WAIT_VARS + (cpu.GOVERNOR_VAR,)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "['20000']", out.stderr[-2000:]


@pytest.mark.parametrize("cpus, others, want", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 3.0, 1),
    (8, 0.0, 8), (8, 2.0, 6), (8, 2.6, 5), (8, 20.0, 1), (1, 0.0, 1),
])
def test_choose_threads_leaves_the_cpus_others_use(cpus, others, want):
    assert cpu.choose_threads(cpus, others) == want


class FakeMachine:
    """/proc/stat and our own CPU time, advanced by hand: a deterministic load for the governor."""

    def __init__(self, monkeypatch):
        self.t = self.busy = self.own = 0.0
        monkeypatch.setattr(cpu, "_busy_seconds", lambda mask: self.busy)
        monkeypatch.setattr(cpu, "_own_cpu_seconds", lambda: self.own)
        monkeypatch.setattr(cpu.time, "monotonic", lambda: self.t)

    def run(self, seconds, own_cpus, other_cpus):
        self.t += seconds
        self.own += seconds * own_cpus
        self.busy += seconds * (own_cpus + other_cpus)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_governor_gives_up_threads_to_other_processes_and_takes_them_back(monkeypatch, restore_threads):
    machine = FakeMachine(monkeypatch)
    torch.set_num_threads(2)
    said = []
    gov = cpu.ThreadGovernor(said.append, interval=2.0, enabled=True, cpus=2)
    machine.run(1.0, own_cpus=2, other_cpus=1)
    assert gov.poll() == 2 and not said  # within the window: no decision yet
    machine.run(1.5, own_cpus=1.5, other_cpus=1)
    assert gov.poll() == 1 and torch.get_num_threads() == 1
    assert gov.metrics() == {"perf/threads": 1.0, "perf/cpu_busy_others": pytest.approx(1.0)}
    assert said == ["cpu: other processes keep 1.0 of 2 CPUs busy: 1 thread(s) now (was 2); pin with "
                    "OMP_NUM_THREADS to stop adapting"]
    machine.run(3.0, own_cpus=1, other_cpus=0.35)  # at the edge: a thread is taken back only with a margin
    assert gov.poll() == 1 and len(said) == 1
    machine.run(3.0, own_cpus=1, other_cpus=0.1)  # the other process ended
    assert gov.poll() == 2 and torch.get_num_threads() == 2 and len(said) == 2


def test_governor_with_pinned_threads_only_warns_once(monkeypatch, restore_threads):
    machine = FakeMachine(monkeypatch)
    torch.set_num_threads(2)
    said = []
    gov = cpu.ThreadGovernor(said.append, enabled=False, cpus=2)
    for _ in range(3):
        machine.run(3.0, own_cpus=1.2, other_cpus=1.5)
        assert gov.poll() == 2 and torch.get_num_threads() == 2
    assert len(said) == 1 and said[0].startswith("WARNING: cpu oversubscribed: other processes keep 1.5 of 2 CPUs")
    assert "set it to 1" in said[0]


def test_governor_is_off_when_the_user_pins_threads(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert not cpu.ThreadGovernor(print).enabled
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("AZERO_THREADS", "off")
    assert not cpu.ThreadGovernor(print).enabled
    monkeypatch.delenv("AZERO_THREADS")
    assert cpu.ThreadGovernor(print).enabled


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux's /proc/stat")
def test_governor_measures_a_real_busy_process(restore_threads):
    """A real CPU-bound neighbour shows up as (at least) most of a CPU of others' load: the measurement reads
    the CPUs this process may use and subtracts our own time (we sleep here). Other load only adds to it."""
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 30\nwhile time.time() < t: pass"])
    try:
        os.sched_setaffinity(spin.pid, os.sched_getaffinity(0))
        gov = cpu.ThreadGovernor(lambda m: None, enabled=False)
        time.sleep(1.5)
        gov.poll(force=True)
        assert gov.others >= 0.7
    finally:
        spin.kill()
        spin.wait()


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim; /proc/self/statm")
def test_heap_trimmer_returns_freed_heap_pages_to_the_os():
    """Free most of 200 MB of heap blocks but keep one in 64 alive: free() alone cannot shrink a heap with live
    blocks above the holes, so the resident size stays up until malloc_trim(0) releases the free pages."""
    trim = cpu.heap_trimmer()
    assert trim is not None
    blocks = [bytearray(1000) for _ in range(200_000)]  # > 512 bytes: glibc malloc, not Python's small-object arenas
    kept = blocks[::64]
    del blocks
    before = resident_mb()
    trim()
    after = resident_mb()
    assert before - after > 100, (before, after)  # of the ~190 MB freed, most lies in whole free pages
    assert len(kept) == 3125


def test_heap_policy_is_a_no_op_off_cpu():
    from types import SimpleNamespace

    from azero.trainer import heap_policy

    assert heap_policy(SimpleNamespace(device=SimpleNamespace(type="cuda")), "trim")() is None
    assert heap_policy(SimpleNamespace(device=SimpleNamespace(type="cuda")), "keep")() is None
    assert heap_policy(SimpleNamespace(device=SimpleNamespace(type="cpu")), "trim")() in (True, False)


KEEP_PROBE = r"""
import ctypes, sys
from types import SimpleNamespace
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]

def mmapped(size):  # glibc marks a chunk served by its own mmap with bit 1 (IS_MMAPPED) of the size word before it
    p = libc.malloc(size)
    return bool(ctypes.c_size_t.from_address(p - ctypes.sizeof(ctypes.c_size_t)).value & 2)

before = mmapped(20 << 20)
if sys.argv[1] == "keep":
    from azero.trainer import heap_policy
    trim = heap_policy(SimpleNamespace(device=SimpleNamespace(type="cpu")), "keep")
    assert trim() is None  # keep: nothing to do at phase boundaries
print(before, mmapped(20 << 20))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and chunk header")
@pytest.mark.parametrize("mode", ["keep", "default"])
def test_keep_serves_large_blocks_from_the_heap(mode):
    """--cpu-heap keep: a 20 MiB block, which glibc by default serves with a fresh mmap (new pages, faulted in on
    every use), comes from the reusable heap. A subprocess: mallopt changes the whole process."""
    out = subprocess.run([sys.executable, "-c", KEEP_PROBE, mode], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split()
    assert first == "True"
    # without keep the second 20 MiB block is mmapped too (glibc's threshold only rises when a mapped block is freed)
    assert second == ("False" if mode == "keep" else "True")

#!/bin/bash
# Same command as roll seed 0 (cpu60roll), 3 iterations, with a background thread that calls glibc's
# malloc_trim(0) every 5 s (returns freed heap pages to the OS without changing the allocator's thresholds).
cd /work/main
( while true; do p=$(pgrep -f "azero-trim-test" | head -1); [ -n "$p" ] && echo "$(date -u +%T) $(ps -o rss= -p $p)" >> /work/runs/memtest/rsstrim.log; sleep 30; done ) &
W=$!
.venv/bin/python - azero-trim-test <<'PY' > /work/runs/memtest/traintrim.log 2>&1
import ctypes, runpy, sys, threading, time
libc = ctypes.CDLL("libc.so.6")
def trim():
    while True:
        time.sleep(5)
        libc.malloc_trim(0)
threading.Thread(target=trim, daemon=True).start()
sys.argv = ["train.py", "--preset", "cpu", "--seed", "0", "--output-dir", "/work/runs/memtest/runtrim", "--iterations", "3",
            "--time-limit-minutes", "60", "--eval-data", "builtin", "--eval-every", "10", "--checkpoint-every", "10",
            "--train-rollouts", "learnable"]
runpy.run_path("train.py", run_name="__main__")
PY
kill $W

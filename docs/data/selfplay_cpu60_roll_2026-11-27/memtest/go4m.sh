#!/bin/bash
# Same command as roll seed 0 (cpu60roll), 12 iterations, with glibc's mmap threshold fixed at 4 MiB
# (disables its dynamic growth, so large freed blocks go back to the OS instead of fragmenting the heap).
cd /work/main
( while true; do p=$(pgrep -f "output-dir /work/runs/memtest/run4m" | head -1); [ -n "$p" ] && echo "$(date -u +%T) $(ps -o rss= -p $p)" >> /work/runs/memtest/rss4m.log; sleep 30; done ) &
W=$!
MALLOC_MMAP_THRESHOLD_=4194304 .venv/bin/python train.py --preset cpu --seed 0 --output-dir /work/runs/memtest/run4m --iterations 3 --time-limit-minutes 60 --eval-data builtin --eval-every 10 --checkpoint-every 10 --train-rollouts learnable > /work/runs/memtest/train4m.log 2>&1
kill $W

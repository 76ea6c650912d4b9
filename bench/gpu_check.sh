#!/usr/bin/env bash
# GPU check of the rollout engine and the token-budget update (issue 9): one prepared script, a function of env
# vars, for the lead to fold into the device calls of DEVELOPERS.md. It needs what bench/gpu_call1.sh sets up
# (wheels in $SITE: transformers 5.24, gguf, datasets) and the joined GGUF (bench/gpu_call2.sh joins it; by hand:
# cat $PARK/part00 .gpu_sweep/b/part01 > $PARK/smol.gguf). Then, on the device:
#     MODEL=/tmp/azero_gpu/smol.gguf bash bench/gpu_check.sh
# Runs, each under `timeout BUDGET_S` (default 120 s), one after the other:
#   1. SmolLM2-135M real weights at the default batch: hf engine, static KV cache + CUDA-graph decode (default)
#   2. the same with --no-cuda-graphs (the eager decode loop): the A/B of the graph capture
#   3. the 0.5B upper bound: random weights in Qwen2-0.5B's architecture (SmolLM2's tokenizer), every proposal
#      stood in by a valid task, every sequence to its maximum length
# Each prints s/iteration (mean after the first), phase times, peak GPU memory and FLOP utilisation against a bf16
# matmul loop measured on the card. Whole script: at most 3 x BUDGET_S + ~10 s (default about 6 minutes).
# Knobs: MODEL, ITERATIONS (6; 4 for the 0.5B run), BUDGET_S, RUNS ("smol smol_eager qwen05"), EXTRA (flags for
# every run, e.g. "--micro-batch-tokens 16384 --micro-batch-size 128"), OUT (where the metrics go), PY, SITE.
# Test here, off the device, on the tiny model (seconds):
#   MODEL=tiny PY=.venv/bin/python ITERATIONS=2 RUNS="smol smol_eager" EXTRA="--batch-size 4 --learnability-rollouts 2" \
#   BUDGET_S=200 bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
[ -d "$SITE" ] && export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
MODEL=${MODEL:-/tmp/azero_gpu/smol.gguf}
ITERATIONS=${ITERATIONS:-6}
BUDGET_S=${BUDGET_S:-120}
RUNS=${RUNS:-"smol smol_eager qwen05"}
OUT=${OUT:-/tmp/azero_out}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
t0=$SECONDS
for run in $RUNS; do
  case $run in
    smol)       args=(--model "$MODEL" --iterations "$ITERATIONS") ;;
    smol_eager) args=(--model "$MODEL" --iterations "$ITERATIONS" --no-cuda-graphs) ;;
    qwen05)     args=(--model random:qwen2-0.5b --tokenizer "$MODEL" --iterations "${ITERATIONS_05:-4}") ;;
    *) echo "gpu_check: unknown run $run"; continue ;;
  esac
  echo "=== $run: ${args[*]} $EXTRA"
  # shellcheck disable=SC2086
  timeout -k 10 "$BUDGET_S" "$PY" bench/gpu_check.py "${args[@]}" --output-dir "$OUT/gpu_check_$run" $EXTRA \
    > "$OUT/gpu_check_$run.log" 2>&1
  echo "$run rc=$? ($((SECONDS - t0)) s so far)"
  sed -n '/=== GPU check/,$p' "$OUT/gpu_check_$run.log"
  grep -iE "warn.*(graph|capture)|error|Traceback" "$OUT/gpu_check_$run.log" | head -5
done
echo "gpu_check done in $((SECONDS - t0)) s; metrics in $OUT/gpu_check_*/metrics.jsonl"

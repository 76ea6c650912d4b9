#!/usr/bin/env bash
# The last device call (DEVELOPERS.md): carry .gpu_sweep/b, send it right after call 1 (or the last middle call,
# bench/gpu_park.sh, when gpu_prepare.sh split the model into more pieces), on the same warm machine.
# Joins the GGUF (md5 checked), runs bench/sweep.py with --parallel 3 at the default batch on SmolLM2-135M, and
# returns summary.md / summary.json / summary.png, the sweep's log and runs.tgz (every run's metrics, config,
# log, curves, samples; no weights) in $OUT.
#
# Arms (NAME=FLAGS, as bench/sweep.py --arm takes them):
#   ARMS='main=;beta0=--kl-coef 0'     entries separated by ';' or newlines; NAME@0,1=FLAGS: that arm's own seeds
#   ARMS_FILE=path                     one entry per line, '#' starts a comment
#   (neither: one arm, main=)
# Budget: the sweep must end inside the device's 600 s per command. Runs go PARALLEL (3; 4 on a card of 120 GB or
# more, the H200) at a time, in
# ceil(arms x seeds / 3) waves of BUDGET_S (510) / waves seconds each; every run gets
# --time-limit-minutes = (wave seconds - OVERHEAD_S (100: start, model load, seeding, evals, final save)) / 60
# unless LIMIT (minutes) is given, and is stopped by the sweep at the end of its wave. One wave of 3 runs gives
# each about 6.8 minutes of training (about 27 iterations at ~15 s with three runs sharing the card).
# Other knobs: SEEDS (2), PARALLEL (3 or 4, as above), EXTRA (flags added for every run), GPU_FLAGS (replaces the default
# flags below), PRESET (default), PARK (/tmp/azero_gpu, where call 1 parked its files), R (/tmp/azero_sweep_HHMMSS).
# Testing here, off the device (tiny preset, the real joined file checked but not used):
#   PY=.venv/bin/python SITE=/nonexistent PARK=/tmp/x PRESET=tiny GPU_FLAGS="--iterations 500" BUDGET_S=90 \
#   OVERHEAD_S=45 MIN_LIMIT=0.5 OUT=/tmp/x_out bash bench/gpu_call2.sh
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
B=${B:-.gpu_sweep/b}
PARK=${PARK:-/tmp/azero_gpu}
R=${R:-/tmp/azero_sweep_$(date +%H%M%S)}  # a fresh folder: a resent call never meets an old sweep
OUT=${OUT:-/tmp/azero_out}
PY=${PY:-python3}
SEEDS=${SEEDS:-2}
# Runs on the card at once: 3 fit an H100 (80 GB; 4 at micro-batch 64 ran out of memory), 4 an H200 (141 GB;
# 22-35 GB in use with four at micro-batch 16, RESULTS 28). PARALLEL=N overrides.
if [ -z "${PARALLEL:-}" ]; then
  gpu_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
  PARALLEL=3; [ "${gpu_mib:-0}" -ge 120000 ] && PARALLEL=4
  echo "runs at once: $PARALLEL (card memory ${gpu_mib:-unknown} MiB; PARALLEL=N overrides)"
fi
BUDGET_S=${BUDGET_S:-510}
OVERHEAD_S=${OVERHEAD_S:-100}
PRESET=${PRESET:-default}
export PYTHONPATH=${SITE:-/tmp/site}${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True

# --- what call 1 left on this machine -------------------------------------------------------------------
if [ ! -f "$PARK/part00" ]; then
  echo "call2: no $PARK/part00: this is a fresh machine (call 1 ran on another, or the ~30 s warm window passed)."
  echo "call2: run call 1 again and send call 2 immediately after it returns."
  exit 3
fi
"$PY" -c "import gguf, datasets" 2>/dev/null || { echo "call2: gguf/datasets missing in ${SITE:-/tmp/site}: rerun call 1"; exit 3; }
md5file=$(realpath "$B/smol.md5")
# every piece in name order: part00 (call 1), part01.. (middle calls, gpu_park.sh, if any), the last one in $B
pieces=$(for f in "$PARK"/part?? "$B"/part??; do [ -f "$f" ] && echo "$(basename "$f") $f"; done | sort | cut -d' ' -f2-)
echo "model pieces: $(echo $pieces)"
# shellcheck disable=SC2086  # the piece paths have no spaces (part?? in fixed folders)
cat $pieces > "$PARK/smol.gguf" && (cd "$PARK" && md5sum -c "$md5file") \
  || { echo "call2: the joined model file is wrong (md5): were all the .gpu_sweep folders made by the same" \
            "gpu_prepare run, and every middle call (gpu_park.sh) made?"; exit 4; }
EVAL=builtin; [ -d "$PARK/arithmetic_eval" ] && EVAL=$PARK/arithmetic_eval
echo "eval data: $EVAL"

# --- arms ------------------------------------------------------------------------------------------------
if [ -n "${ARMS:-}" ]; then src=$(printf '%s\n' "$ARMS" | tr ';' '\n')
elif [ -n "${ARMS_FILE:-}" ]; then src=$(cat "$ARMS_FILE") || exit 2
else src="main="; fi
arms=()
while IFS= read -r line; do
  line=${line%%#*}; line=$(echo "$line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
  [ -n "$line" ] && arms+=(--arm "$line")
done <<< "$src"
n_arms=$(( ${#arms[@]} / 2 ))
[ "$n_arms" -gt 0 ] || { echo "call2: no arms"; exit 2; }
runs=0  # an arm NAME@S1,S2=FLAGS runs its own seeds, the others SEEDS each
for ((i = 1; i < ${#arms[@]}; i += 2)); do
  name=${arms[i]%%=*}
  if [[ $name == *@* ]]; then seeds=${name#*@}; runs=$(( runs + $(echo "$seeds" | tr ',' '\n' | grep -c .) ))
  else runs=$(( runs + SEEDS )); fi
done
waves=$(( (runs + PARALLEL - 1) / PARALLEL ))
wave_s=$(( BUDGET_S / waves ))
LIMIT=${LIMIT:-$(awk -v w="$wave_s" -v o="$OVERHEAD_S" 'BEGIN {printf "%.2f", (w - o) / 60}')}
awk -v l="$LIMIT" -v m="${MIN_LIMIT:-3}" 'BEGIN {exit !(l >= m)}' || {
  echo "call2: $runs runs in $waves wave(s) leave $LIMIT minutes of training each (under MIN_LIMIT ${MIN_LIMIT:-3}):" \
       "use fewer arms or seeds (at most $PARALLEL runs fit one wave)"; exit 2; }
echo "arms: ${arms[*]}"
echo "$runs runs, $PARALLEL at a time: $waves wave(s) of ${wave_s} s; time limit per run $LIMIT min"

# --- the sweep ---------------------------------------------------------------------------------------------
# The default batch (B 64, n 8, K 6) on SmolLM2-135M, as the 2026-11-26 H100 runs: micro-batch 16 (about 23 GB
# per process with three on the card; four at micro-batch 64 ran out of memory at 22-24 GB each).
if [ -z "${GPU_FLAGS+x}" ]; then
  GPU_FLAGS="--model $PARK/smol.gguf --seed-rounds 2 --micro-batch-size 16 --solve-max-tokens 16 --lr 2e-5
             --eval-every 5 --eval-batch-size 200 --checkpoint-every 0 --iterations 500"
fi
mkdir -p "$OUT" "$R"
( while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$R/smi.txt" 2>/dev/null; done ) &
smi=$!
# shellcheck disable=SC2086  # GPU_FLAGS and EXTRA are word lists on purpose
timeout -s TERM -k 30 $((BUDGET_S + 40)) "$PY" bench/sweep.py --preset "$PRESET" "${arms[@]}" --seeds "$SEEDS" \
  --parallel "$PARALLEL" --time-limit-minutes "$LIMIT" --run-timeout-minutes "$(awk -v w="$wave_s" 'BEGIN {printf "%.2f", w / 60}')" \
  --kill-grace-seconds 20 --eval-data "$EVAL" --output-dir "$R" -- $GPU_FLAGS ${EXTRA:-} 2>&1 | tee "$OUT/sweep.log"
rc=${PIPESTATUS[0]}
kill "$smi" 2>/dev/null
echo "sweep exit code $rc after $((SECONDS - t0)) s"

# --- results back: at most 8 files of 16 MiB ------------------------------------------------------------------
cp "$R"/summary.md "$R"/summary.json "$R"/summary.png "$OUT"/ 2>/dev/null
[ -s "$R/smi.txt" ] && cp "$R/smi.txt" "$OUT"/
# Named files only: each run folder also holds final/ (0.5 GB of weights) and checkpoint/ (1.6 GB), which cannot
# come back and which, when they were packed too, kept gzip busy past the call's 600 s (2026-11-27).
pack() {  # pack NAME...: those files of every run (ARM/seedN/NAME) into runs.tgz
  local names=() n
  for n in "$@"; do names+=(-o -name "$n"); done
  (cd "$R" && find . -mindepth 3 -maxdepth 3 -type f \( "${names[@]:1}" \) -print0 | sort -z \
     | tar czf "$OUT/runs.tgz" --null -T -)
}
small=(metrics.jsonl config.json train.log curves.png sweep_run.json)
pack "${small[@]}" samples.jsonl
[ "$(stat -c %s "$OUT/runs.tgz")" -gt $((15 * 1024 * 1024)) ] && pack "${small[@]}"
ls -la "$OUT"
[ -f "$R/summary.md" ] && sed -n '1,/^## Self-play/p' "$R/summary.md"
echo "call2 done in $((SECONDS - t0)) s"
exit "$rc"

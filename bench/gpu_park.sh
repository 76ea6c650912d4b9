#!/usr/bin/env bash
# A middle device call (DEVELOPERS.md), made only when bench/gpu_prepare.sh split the model file into more than two
# pieces because the working tree is large: carry .gpu_sweep/mK and run `bash bench/gpu_park.sh .gpu_sweep/mK`
# right after call 1 (or the previous middle call), on the same warm machine. It parks the piece beside part00;
# gpu_call2.sh joins every parked piece with its own in name order. A few seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
M=${1:?usage: bash bench/gpu_park.sh .gpu_sweep/mK}
PARK=${PARK:-/tmp/azero_gpu}
[ -f "$PARK/part00" ] || { echo "park: no $PARK/part00: a fresh machine (the ~30 s warm window passed): start again at call 1"; exit 3; }
ls "$M"/part?? >/dev/null 2>&1 || { echo "park: no pieces in $M: carry it"; exit 3; }
cp "$M"/part?? "$PARK"/ && ls -la "$PARK" && echo "park ok: send the next call now"

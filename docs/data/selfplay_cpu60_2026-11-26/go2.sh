#!/bin/bash
# Same as go.sh (continue a cpu4 run to 60 minutes of training in all), in the order given on the command line;
# first waits for the base/seed0 run that go.sh started (pid 2127).
cd /work/main
while kill -0 2127 2>/dev/null; do sleep 10; done
[ -f /work/runs/cpu60/base/seed0/resume.log ] && grep -q "final model" /work/runs/cpu60/base/seed0/resume.log && touch /work/runs/cpu60/base/seed0/RESUMED_DONE
echo "$(date -u +%FT%T) end base/seed0 (go.sh)" >> /work/runs/cpu60/go.log
for r in "$@"; do
  d=/work/runs/cpu60/$r
  [ -f $d/RESUMED_DONE ] && continue
  [ -f /work/runs/cpu60/STOP ] && break
  echo "$(date -u +%FT%T) start $r" >> /work/runs/cpu60/go.log
  s=$(date +%s)
  .venv/bin/python train.py --resume $d --iterations 400 --time-limit-minutes 41 > $d/resume.log 2>&1
  rc=$?
  echo "$(date -u +%FT%T) end $r rc=$rc minutes=$(( ($(date +%s)-s)/60 ))" >> /work/runs/cpu60/go.log
  [ $rc = 0 ] && touch $d/RESUMED_DONE
done

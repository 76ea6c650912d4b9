#!/bin/bash
# Continue the 20-iteration cpu4 runs (18 min each) to 60 minutes of training in all: 41 more minutes each.
cd /work/main
for r in base/seed0 base/seed1 nov/seed0 nov/seed1; do
  d=/work/runs/cpu60/$r
  [ -f $d/RESUMED_DONE ] && continue
  echo "$(date -u +%FT%T) start $r" >> /work/runs/cpu60/go.log
  s=$(date +%s)
  .venv/bin/python train.py --resume $d --iterations 400 --time-limit-minutes 41 > $d/resume.log 2>&1
  rc=$?
  echo "$(date -u +%FT%T) end $r rc=$rc minutes=$(( ($(date +%s)-s)/60 ))" >> /work/runs/cpu60/go.log
  [ $rc = 0 ] && touch $d/RESUMED_DONE
done

#!/bin/bash
# Current RSS of the running train.py every 60 s (mem/peak_gb is the lifetime peak, ru_maxrss: monotone).
while true; do
  p=$(pgrep -f "train.py --preset cpu" | head -1)
  [ -n "$p" ] && echo "$(date -u +%T) $(ps -o rss= -p $p) $(tr '\0' ' ' < /proc/$p/cmdline | grep -o 'seed [0-9]')" >> /work/runs/cpu60s23/rss.log
  sleep 60
done

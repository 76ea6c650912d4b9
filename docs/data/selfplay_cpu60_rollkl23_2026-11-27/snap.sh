#!/bin/bash
# Keep the policy weights at iterations 20, 40 and 60 of each run (the checkpoint folder is overwritten every 10).
while true; do
  for d in /work/runs/cpu60s23/*/seed*; do
    [ -f $d/checkpoint/COMPLETE.json ] || continue
    it=$(python3 -c "import json;print(json.load(open('$d/checkpoint/COMPLETE.json'))['iteration'])" 2>/dev/null)
    case "$it" in 20|40|50|60) ;; *) continue;; esac
    s=$d/snap/it$it; [ -f $s/model.safetensors ] && continue
    mkdir -p $s && cp /work/runs/cpu60/nov/seed0/final/*.json /work/runs/cpu60/nov/seed0/final/*.jinja $s/ && cp $d/checkpoint/model.safetensors $s/model.safetensors.tmp && mv $s/model.safetensors.tmp $s/model.safetensors
    echo "$(date -u +%T) $d it$it" >> /work/runs/cpu60s23/snap.log
  done
  sleep 30
done

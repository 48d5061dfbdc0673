#!/usr/bin/env bash
# e2e timelines on the GPU machine (scripts/gpu_lab/e2e_timeline.py), after bash /tmp/gpu-parts/install.sh;
# .cache/bench-media and .cache/bench-model carried. VARIANTS="default ctx0 cpu-decode rt"
set -u
OUT=${OUT:-out-gpu}; STREAMS=${STREAMS:-16}; SECS=${SECONDS_:-6}; CFG=${CFG:-configs/bench-gpu-yolov8n.yaml}
export PYTHONPATH=/tmp/gpu-site:$PWD PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/gpu-cache
for v in ${VARIANTS:-default ctx0 cpu-decode rt}; do
  extra=""; variant=$v; [ "$v" = rt ] && { extra=--realtime; variant=default; }
  timeout 150 python3 scripts/gpu_lab/e2e_timeline.py $CFG --streams $STREAMS --seconds $SECS --variant $variant $extra \
    > "$OUT/timeline_$v.log" 2>&1
  echo "== $v rc=$?"; grep -E "^e2e_|^ *[0-9]+\.[05] " "$OUT/timeline_$v.log" | cut -c1-160
done

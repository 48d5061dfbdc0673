#!/usr/bin/env bash
# The GPU benchmark runs of docs/BENCHMARKS.md, on the GPU machine from the repo root, after
#   bash /tmp/gpu-parts/install.sh        (wheels from ../shared/gpu-host/stage.sh)
# with .cache/bench-media and .cache/bench-model carried (make_bench_media.py, make_bench_model.py).
#   STEPS="timeline bench16 findmax hevc tests"   results (JSON + logs) in $OUT/bench.tar.gz
set -u
OUT=${OUT:-out-gpu}; STEPS=${STEPS:-"timeline bench16 findmax hevc tests"}
R=$OUT/bench; mkdir -p "$R"
export PYTHONPATH=/tmp/gpu-site:$PWD PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/gpu-cache
CFG=configs/bench-gpu-yolov8n.yaml
for step in $STEPS; do case $step in
timeline)
  timeout 150 python3 scripts/e2e_timeline.py $CFG --streams 16 --seconds 6 > "$R/timeline_fast.log" 2>&1
  echo "timeline rc=$?"; grep -E "^e2e_|^ *1[0-9]\.[05] " "$R/timeline_fast.log" | cut -c1-150 | head -14 ;;
bench16)
  timeout 300 python3 -m pipeline bench $CFG --streams 16 --seconds 8 --json "$R/h264_16.json" > "$R/h264_16.log" 2>&1
  echo "bench16 rc=$?"; grep -A20 "^stage " "$R/h264_16.log" ;;
findmax)
  timeout 560 python3 -m pipeline bench $CFG --find-max --streams 32 --max-streams 128 --seconds 6 --warmup 3 \
    --json "$R/h264_findmax.json" > "$R/h264_findmax.log" 2>&1
  echo "findmax rc=$?"; grep -E "trial|held|max|^stage|^e2e|^decode|^infer|^pre|^post|ceiling" "$R/h264_findmax.log" | tail -30 ;;
hevc)
  timeout 300 python3 -m pipeline bench $CFG --media .cache/bench-media/hevc_1080p30.mp4 --streams 32 --seconds 8 \
    --json "$R/hevc_32.json" > "$R/hevc_32.log" 2>&1
  echo "hevc rc=$?"; grep -A20 "^stage " "$R/hevc_32.log" ;;
tests)
  timeout 400 python3 -m pytest tests/gpu -v -s -p no:cacheprovider --timeout 200 -rs > "$R/tests_gpu.log" 2>&1
  echo "pytest rc=$?"; grep -E "FAILED|ERROR|passed|failed|XFAIL|XPASS|max \|" "$R/tests_gpu.log" | cut -c1-220 | tail -25 ;;
esac
  tar czf "$OUT/bench.tar.gz" -C "$OUT" bench
done
rm -rf "$R"

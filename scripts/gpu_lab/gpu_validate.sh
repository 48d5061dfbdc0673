#!/usr/bin/env bash
# The GPU validation run of docs/gpu-validation.md, on the GPU machine from the repo root, after the
# wheel parts were installed (bash /tmp/gpu-parts/install.sh). Logs go to $OUT (default out-gpu/).
#   MEDIA=/tmp/media  folder holding cam1080_h264.mp4 (scripts/gpu_lab/gpu_make_media.py) and
#                     h264_1080p30.mp4 / hevc_1080p30.mp4 (scripts/assets/make_bench_media.py)
#   STEPS="tests run16 bench"   which parts to run
set -u
OUT=${OUT:-out-gpu}; MEDIA=${MEDIA:-/tmp/media}; STEPS=${STEPS:-"tests run16 bench"}
mkdir -p "$OUT" .gpu-media .cache/bench-media
export PYTHONPATH=/tmp/gpu-site:$PWD PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/gpu-cache
cp -n "$MEDIA"/cam1080_h264.mp4 .gpu-media/ 2>/dev/null
cp -n "$MEDIA"/h264_1080p30.mp4 "$MEDIA"/hevc_1080p30.mp4 .cache/bench-media/ 2>/dev/null
{ nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; uname -r; nproc
  python3 --version
  python3 -c "import nvidia.dali, onnxruntime, av, PyNvVideoCodec; print('dali', nvidia.dali.__version__, 'ort', onnxruntime.__version__, onnxruntime.get_available_providers(), 'av', av.__version__, 'PyNvVideoCodec', PyNvVideoCodec.__version__)"
} > "$OUT/machine.txt" 2>&1
grep -E "H200|H100|Driver Version|dali" "$OUT/machine.txt" | head -4
for step in $STEPS; do case $step in
tests)
  timeout ${TEST_TIMEOUT:-330} python3 -m pytest tests/gpu -v -s -p no:cacheprovider --timeout 200 -rs > "$OUT/tests_gpu.log" 2>&1
  echo "pytest rc=$?"; grep -E "FAILED|ERROR|passed|failed|NVDEC vs CPU|max \||matched|sizes|XFAIL|XPASS|boxes" "$OUT/tests_gpu.log" | cut -c1-260 | tail -30 ;;
run16)  # RUN16_CONFIG: configs/bench-gpu.yaml (demo model) or configs/bench-gpu-yolov8n.yaml
  cfg=${RUN16_CONFIG:-configs/bench-gpu.yaml}; name=run16_$(basename "$cfg" .yaml)
  [ -f .cache/bench-model/yolov8n-bench.onnx ] || python3 scripts/assets/make_bench_model.py > "$OUT/bench_model.log" 2>&1
  timeout ${RUN16_TIMEOUT:-200} python3 -m pipeline bench "$cfg" --streams 16 --seconds 12 \
    --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "$name rc=$?"; tail -7 "$OUT/$name.log" ;;
ortcheck)
  [ -f .cache/bench-model/yolov8n-bench.onnx ] || python3 scripts/assets/make_bench_model.py > "$OUT/bench_model.log" 2>&1
  timeout ${ORT_TIMEOUT:-150} python3 scripts/gpu_lab/gpu_ort_check.py .cache/bench-model/yolov8n-bench.onnx 640 80 \
    --batches 1,8,16,32 > "$OUT/ort_check.log" 2>&1
  echo "ortcheck rc=$?"; grep -E "load|batch|Some nodes|CPUExecutionProvider" "$OUT/ort_check.log" | cut -c1-200 | head -20 ;;
bench)
  [ -f .cache/bench-model/yolov8n-bench.onnx ] || python3 scripts/assets/make_bench_model.py > "$OUT/bench_model.log" 2>&1
  timeout ${BENCH_TIMEOUT:-240} python3 -m pipeline bench configs/bench-gpu-yolov8n.yaml --streams 16 --seconds 8 \
    --json "$OUT/bench16.json" > "$OUT/bench16.log" 2>&1
  echo "bench rc=$?"; tail -16 "$OUT/bench16.log" ;;
findmax)
  timeout ${FINDMAX_TIMEOUT:-400} python3 -m pipeline bench configs/bench-gpu-yolov8n.yaml --streams 16 --seconds 6 \
    --find-max --json "$OUT/bench_max.json" > "$OUT/bench_max.log" 2>&1
  echo "find-max rc=$?"; tail -16 "$OUT/bench_max.log" ;;
esac; done

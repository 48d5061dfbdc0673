#!/usr/bin/env bash
# Real-time 16-camera run with CPU decode vs NVDEC (localises the real-time throughput loss), the demo
# detection comparison, and the HEVC decode ceiling. On the GPU machine after install (docs/gpu-validation.md).
export PYTHONPATH=/tmp/gpu-site:$PWD PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/gpu-cache
mkdir -p .gpu-media .cache/bench-media; cp -n /tmp/media/cam1080_h264.mp4 .gpu-media/; cp -n /tmp/media/*_1080p30.mp4 .cache/bench-media/
sed 's/decode:     {device: gpu}/decode:     {device: cpu}/' configs/bench-gpu.yaml > configs/_x_cpudec.yaml
sed 's#../.gpu-media/cam1080_h264.mp4#../.cache/bench-media/hevc_1080p30.mp4#' configs/bench-gpu.yaml > configs/_x_hevc.yaml
timeout 120 python3 -m pytest tests/gpu/test_daemon_gpu.py -v -s -p no:cacheprovider -k demo > $OUT/tests_demo.log 2>&1; echo "demo rc=$?"; grep -E "model-input|passed|failed" $OUT/tests_demo.log | cut -c1-200
timeout 60 python3 scripts/gpu_run16.py configs/_x_cpudec.yaml --streams 16 --seconds 8 --only e2e-rt --json $OUT/rt_cpudec.json > $OUT/rt_cpudec.log 2>&1; echo "cpudec rc=$?"; grep "== e2e" $OUT/rt_cpudec.log | cut -c1-600
timeout 60 python3 scripts/gpu_run16.py configs/bench-gpu.yaml --streams 16 --seconds 8 --only e2e-rt --json $OUT/rt_nvdec.json > $OUT/rt_nvdec.log 2>&1; echo "nvdec rc=$?"; grep "== e2e" $OUT/rt_nvdec.log | cut -c1-600
timeout 40 python3 scripts/gpu_run16.py configs/_x_hevc.yaml --streams 16 --seconds 10 --only decode --json $OUT/hevc_decode.json > $OUT/hevc_decode.log 2>&1; echo "hevc rc=$?"; grep "== decode" $OUT/hevc_decode.log | cut -c1-200

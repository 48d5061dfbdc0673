#!/usr/bin/env bash
# Issue 22, session 3: the GIL switch interval and the lock-keeping CUDA calls, A/B in one run on the
# GPU machine (repo root, wheels installed, .cache/bench-media and .cache/bench-model there, .ab/old a
# copy of the package before the change: see bench_ab_tree.sh). 4 decode workers under CUDA MPS.
#   OUT=out bash scripts/gpu_lab/switch_ab.sh        -> $OUT/switch/*.json, *.log; one line per run
set -u
OUT=${OUT:-out-gpu}; R=$(realpath -m "$OUT/switch"); mkdir -p "$R"; here=$(pwd)
export PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/gpu-cache CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
[ -e $CUDA_MPS_PIPE_DIRECTORY/control ] || { nvidia-cuda-mps-control -d && trap 'echo quit | nvidia-cuda-mps-control' EXIT; }
sed "s/^decode: *{device: gpu, gpu_id: 0/decode:     {device: gpu, gpu_id: 0, workers: 4/" configs/bench-gpu-yolov8n.yaml > configs/_sw_w4.yaml
cfg=$here/configs/_sw_w4.yaml
RT="--streams 135 --seconds 8 --warmup 3 --stages e2e-realtime --max-p99 0.25"
FAST="--streams 16 --seconds 8 --warmup 2 --stages e2e-fast"
one() {  # one NAME TREE SWITCH_MS(or -) ARGS...
  local name=$1 tree=$2 sw=$3; shift 3
  (cd "$tree" && if [ "$sw" = - ]; then unset PIPELINE_SWITCH_INTERVAL_MS; else export PIPELINE_SWITCH_INTERVAL_MS=$sw; fi
   PYTHONPATH=/tmp/gpu-site:$tree timeout 200 python3 -m pipeline bench "$cfg" "$@" --json "$R/$name.json" > "$R/$name.log" 2>&1)
  echo "$name rc=$? $(grep -E '^e2e_' "$R/$name.log" | tr -s ' ' | cut -c1-160)"
}
for s in ${STEPS:-rt fast}; do case $s in
rt)   one rt135_before "$here/.ab/old" - $RT; one rt135_after_sw5 "$here" 5 $RT; one rt135_after "$here" - $RT ;;
fast) one fast16_before "$here/.ab/old" - $FAST; one fast16_after "$here" - $FAST ;;
esac; done
rm -f configs/_sw_w4.yaml

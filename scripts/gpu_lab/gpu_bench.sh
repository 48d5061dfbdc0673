#!/usr/bin/env bash
# The GPU benchmark runs of docs/BENCHMARKS.md and docs/gpu-validation.md, on the GPU machine from the repo root, after
#   bash /tmp/gpu-parts/install.sh        (wheels from ../shared/gpu-host/stage.sh)
# with .cache/bench-media and .cache/bench-model carried (make_bench_media.py, make_bench_model.py).
#   STEPS="timeline bench16 findmax hevc tests" (also findmax_hevc, prep, confirm, confirm_hevc, profile_rt, decode_cost)   results (JSON + logs) in $OUT/bench.tar.gz
# A/B steps: variants (scripts/gpu_lab/infer_variants.py, batch 32), ab (decode + inference + e2e-fast, 16
# streams, per AB='name:{model.onnxruntime yaml};...'), timeline_sw (a 1 ms GIL switch interval),
# abw (decode worker processes, ABW='0 4 8'), abi (model instances, ABI='1 2'), abk (preprocess kernel,
# ABK='fused dali'), abenv (environment variables, ABENV='name:VAR=value;...'), abs (scheduler batch, ABS='32x10 64x20'); AB_STREAMS and AB_STAGES
# (e.g. 135 and e2e-realtime) change what each A/B bench runs. WORKERS=N runs the
# other steps with N decode workers, INSTANCES=N with model.instances N; MPS=1 runs them under CUDA
# MPS (this script starts the control daemon and stops it at the end).
# Each step's GPU utilisation (nvidia-smi dmon: SM %, NVDEC %, one line a second) goes to dmon_STEP.log.
set -u
OUT=${OUT:-out-gpu}; STEPS=${STEPS:-"timeline bench16 findmax hevc tests"}
DETS=${DETS:-0}  # DETS=10: the end-to-end runs add 10 synthetic detections a frame (pipeline bench --detections-per-frame)
R=$OUT/bench; mkdir -p "$R"
# a second run in the same call adds to the first's results instead of replacing its bench.tar.gz
[ -f "$OUT/bench.tar.gz" ] && tar xzf "$OUT/bench.tar.gz" -C "$OUT"
export PYTHONPATH=/tmp/gpu-site:$PWD PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/gpu-cache
CFG=${CFG:-configs/bench-gpu-yolov8n.yaml}  # CFG=configs/bench-cpu.yaml runs the A/B steps on a CPU box
variant_cfg() {  # variant_cfg NAME 'yaml for model.onnxruntime' -> configs/_ab_NAME.yaml
  sed "s/^  iou_threshold: 0.45\$/  iou_threshold: 0.45\n  onnxruntime: $2/" $CFG > configs/_ab_$1.yaml; }
workers_cfg() {  # workers_cfg IN N OUT: IN with decode.workers N
  sed "s/^decode: *{device: gpu, gpu_id: 0/decode:     {device: gpu, gpu_id: 0, workers: $2/" $1 > $3
  grep -q "workers: $2" $3 || { echo "workers_cfg: no decode line to change in $1"; exit 2; }; }
instances_cfg() {  # instances_cfg IN N OUT: IN with model.instances N
  sed "/^  iou_threshold: /a\\  instances: $2" $1 > $3
  grep -q "^  instances: $2" $3 || { echo "instances_cfg: no model line to change in $1"; exit 2; }; }
kernel_cfg() {  # kernel_cfg IN KERNEL OUT: IN with preprocess.kernel KERNEL (dali: NVDEC's RGB output too)
  if [ "$2" = dali ]; then sed "s/nvdec_output: nv12/nvdec_output: rgb/; s/kernel: fused/kernel: dali/" $1 > $3
  else sed "s/kernel: dali/kernel: $2/" $1 > $3; fi
  grep -q "kernel: $2" $3 || { echo "kernel_cfg: no preprocess kernel to change in $1"; exit 2; }; }
sched_cfg() {  # sched_cfg IN BATCHxWAIT_MS OUT: IN with scheduler.max_batch BATCH and max_wait_ms WAIT_MS
  sed "s/^scheduler: *{max_batch: [0-9]*, max_wait_ms: [0-9]*/scheduler:  {max_batch: ${2%%x*}, max_wait_ms: ${2#*x}/" $1 > $3
  grep -q "max_batch: ${2%%x*}, max_wait_ms: ${2#*x}" $3 || { echo "sched_cfg: no scheduler line to change in $1"; exit 2; }; }
host_speed() {  # one pure-Python loop timed: the host's speed right now (these machines are shared)
  python3 -c "import time; t=time.perf_counter(); sum(i*i for i in range(3_000_000)); print(f'host loop {1e3*(time.perf_counter()-t):.0f} ms')"; }
ab_bench() {  # ab_bench NAME CFG [ENV=VALUE...]: one bench of the A/B steps -> abNAME.json (AB_STREAMS, default 16;
  # AB_STAGES, default decode,inference,e2e-fast; a real-time stage is judged with the issue's p99 <= 250 ms)
  local name=$1 cfg=$2; shift 2
  local stages=${AB_STAGES:-decode,inference,e2e-fast} hold=()
  case $stages in *e2e-realtime*) hold=(--max-p99 0.25) ;; esac
  host_speed
  env "$@" timeout 240 python3 -m pipeline bench $cfg --streams ${AB_STREAMS:-${ABW_STREAMS:-16}} --seconds 8 --warmup 2 \
    --stages $stages "${hold[@]}" --detections-per-frame $DETS --json "$R/ab$name.json" > "$R/ab$name.log" 2>&1
  echo "ab$name rc=$?"; grep -E "^(decode|inference|e2e_fast|e2e_realtime|end to end|shared)|garbage|Error|error|Traceback" \
    "$R/ab$name.log" | cut -c1-200 | head -12; }
ab_runs() {  # ab_runs KEY MAKE_CFG VALUE...: a bench per value -> abKEY_VALUE.json
  local key=$1 make_cfg=$2 v; shift 2
  for v in "$@"; do
    $make_cfg $CFG $v configs/_ab_$key$v.yaml
    ab_bench ${key}_$v configs/_ab_$key$v.yaml
    rm -f configs/_ab_$key$v.yaml
  done; }
if [ -n "${WORKERS:-}" ]; then  # WORKERS=4: the steps run with 4 decode worker processes
  workers_cfg $CFG "$WORKERS" configs/_ab_runw.yaml; CFG=configs/_ab_runw.yaml; echo "decode.workers: $WORKERS"; fi
if [ -n "${INSTANCES:-}" ]; then  # INSTANCES=2: the steps run with two copies of the model
  instances_cfg $CFG "$INSTANCES" configs/_ab_runi.yaml; CFG=configs/_ab_runi.yaml; echo "model.instances: $INSTANCES"; fi
if [ -n "${SCHED:-}" ]; then  # SCHED=64x20: the steps run with scheduler.max_batch 64, max_wait_ms 20
  sched_cfg $CFG "$SCHED" configs/_ab_runs.yaml; CFG=configs/_ab_runs.yaml; echo "scheduler: $SCHED"; fi
if [ -n "${ORT:-}" ]; then  # ORT='{prefer_nhwc: true}': the other steps (not ab) run with these model.onnxruntime settings
  variant_cfg run "$ORT"; CFG=configs/_ab_run.yaml; echo "model.onnxruntime: $ORT"; fi
if [ "${MPS:-0}" = 1 ]; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  nvidia-cuda-mps-control -d && echo "CUDA MPS: control daemon started" || { echo "CUDA MPS: cannot start"; exit 2; }
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
for step in $STEPS; do
  dmon_pid=""
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi dmon -s u -o T -d 1 > "$R/dmon_$step.log" 2>&1 & dmon_pid=$!
  fi
  case $step in
timeline)
  timeout 150 python3 scripts/gpu_lab/e2e_timeline.py $CFG --streams 16 --seconds 6 > "$R/timeline_fast.log" 2>&1
  echo "timeline rc=$?"; grep -E "^e2e_|^ *1[0-9]\.[05] |^steady" "$R/timeline_fast.log" | cut -c1-200 | tail -8 ;;
bench16)
  timeout 300 python3 -m pipeline bench $CFG --streams 16 --seconds 8 --json "$R/h264_16.json" > "$R/h264_16.log" 2>&1
  echo "bench16 rc=$?"; grep -A20 "^stage " "$R/h264_16.log" ;;
findmax|findmax_hevc)  # FINDMAX_START=N: the first N tried (then doubling up to FINDMAX_LIMIT, default 192, then bisecting); judged with the issue's p99 <= 250 ms
  name=h264_findmax; media=(); [ $step = findmax_hevc ] && { name=hevc_findmax; media=(--media .cache/bench-media/hevc_1080p30.mp4); }
  timeout 560 python3 -m pipeline bench $CFG "${media[@]}" --find-max --streams ${FINDMAX_START:-32} --max-streams ${FINDMAX_LIMIT:-192} \
    --seconds 6 --warmup 3 --max-p99 0.25 --detections-per-frame $DETS --json "$R/$name.json" > "$R/$name.log" 2>&1
  echo "$step rc=$?"; grep -E "trial|held|max|^stage|^e2e|^decode|^infer|^pre|^post|ceiling" "$R/$name.log" | tail -30 ;;
hevc)
  timeout 300 python3 -m pipeline bench $CFG --media .cache/bench-media/hevc_1080p30.mp4 --streams 32 --seconds 8 \
    --json "$R/hevc_32.json" > "$R/hevc_32.log" 2>&1
  echo "hevc rc=$?"; grep -A20 "^stage " "$R/hevc_32.log" ;;
variants)
  timeout 400 python3 scripts/gpu_lab/infer_variants.py .cache/bench-model/yolov8n-bench.onnx --device gpu --precision fp16 \
    --batch 32 --seconds 3 --json "$R/infer_variants_b32.json" 2>&1 | grep -v "^20..-" | tee "$R/infer_variants_b32.log" \
    | grep -E "images/s|failed|not on the CUDA" ;;
ab)
  default_ab='nograph:{cuda_graph: false, prefer_nhwc: false};graph:{prefer_nhwc: false};graph_nhwc:{}'
  IFS=';' read -ra variants <<< "${AB:-$default_ab}"
  for v in "${variants[@]}"; do
    name=${v%%:*}; variant_cfg $name "${v#*:}"
    ab_bench _$name configs/_ab_$name.yaml
  done; rm -f configs/_ab_[!r]*.yaml ;;
abw)  # decode workers: ABW='0 4 8' (decode and inference ceilings in every run, for same-run ratios)
  ab_runs w workers_cfg ${ABW:-0 4} ;;
confirm|confirm_hevc)  # one real-time run at CONFIRM_STREAMS (default 135) with the issue's criteria (p99 <= 250 ms)
  n=${CONFIRM_STREAMS:-135}; name=h264_confirm_$n; media=()
  [ $step = confirm_hevc ] && { name=hevc_confirm_$n; media=(--media .cache/bench-media/hevc_1080p30.mp4); }
  # CONFIRM_STAGES: default decode,inference,e2e-realtime; add inference-under-decode for what decoding leaves the model
  timeout 300 python3 -m pipeline bench $CFG "${media[@]}" --streams $n --stages ${CONFIRM_STAGES:-decode,inference,e2e-realtime} \
    --seconds 8 --warmup 3 --max-p99 0.25 --detections-per-frame $DETS --json "$R/$name.json" > "$R/$name.log" 2>&1
  echo "$step $n rc=$?"; grep -A16 "^stage " "$R/$name.log" ;;
abs)  # scheduler batch: ABS='32x10 64x20' (max_batch x max_wait_ms; likewise)
  ab_runs s sched_cfg ${ABS:-32x10 64x20} ;;
abk)  # preprocess kernel: ABK='fused dali' (fused on NVDEC's NV12; dali on NVDEC's RGB), same-run ceilings
  ab_runs k kernel_cfg ${ABK:-fused dali} ;;
prep)  # frame preparation alone (issue 22): fused NV12 / fused RGB / DALI RGB, 1080p, batch 32, fp16
  timeout 200 python3 scripts/gpu_lab/prep_bench.py --batch 32 --size 640 --dtype fp16 --json "$R/prep_b32_fp16.json" \
    > "$R/prep.log" 2>&1
  echo "prep rc=$?"; tail -6 "$R/prep.log" ;;
abi)  # model instances: ABI='1 2' (likewise)
  ab_runs i instances_cfg ${ABI:-1 2} ;;
abenv)  # environment variables: ABENV='gcpython:PIPELINE_GC=python;gcfreeze:PIPELINE_GC=freeze' (likewise)
  IFS=';' read -ra variants <<< "${ABENV:-gcpython:PIPELINE_GC=python;gcfreeze:PIPELINE_GC=freeze}"
  for v in "${variants[@]}"; do ab_bench env_${v%%:*} $CFG ${v#*:}; done ;;
timeline_sw)
  timeout 150 python3 scripts/gpu_lab/e2e_timeline.py $CFG --streams 16 --seconds 6 --switch-interval 0.001 > "$R/timeline_sw1ms.log" 2>&1
  echo "timeline_sw rc=$?"; grep -E "^e2e_|^steady" "$R/timeline_sw1ms.log" ;;
profile_rt)  # RUNS (default 3) real-time runs at PROFILE_STREAMS (default 135) cameras, each with the daemon's queues
  # once a second and py-spy (threads holding the interpreter lock) over 6 s of the measured window: a run that
  # keeps up and one that falls behind, side by side (issue 22 session 6: the same code does both)
  # PROFILE_MEDIA=.cache/bench-media/hevc_1080p30.mp4: another clip (HEVC)
  n=${PROFILE_STREAMS:-135}; media=(); [ -n "${PROFILE_MEDIA:-}" ] && media=(--media "$PROFILE_MEDIA")
  for r in $(seq ${RUNS:-3}); do
    timeout 120 python3 scripts/gpu_lab/queue_probe.py --profile "$R/profile_rt${n}_$r.txt" --profile-after ${PROFILE_AFTER:-14} -- $CFG "${media[@]}" --streams $n \
      --stages e2e-realtime --seconds 8 --warmup 3 --max-p99 0.25 --detections-per-frame $DETS --json "$R/profile_rt${n}_$r.json" > "$R/profile_rt${n}_$r.log" 2>&1
    echo "profile_rt $n run $r rc=$?: $(grep -E '^e2e_realtime ' "$R/profile_rt${n}_$r.log" | tr -s ' ' | cut -c1-150)"
    grep -E "^queues|py-spy: exit" "$R/profile_rt${n}_$r.log" | awk 'NR % 4 == 0' | cut -c1-100
    python3 scripts/gpu_lab/profile_summary.py "$R/profile_rt${n}_$r.txt" --rate 200 --top 8 > "$R/profile_rt${n}_$r.summary.txt" 2>&1
    head -30 "$R/profile_rt${n}_$r.summary.txt"
  done ;;
decode_cost)  # what decoding costs inference (scripts/gpu_lab/decode_load.py): `pipeline bench --stages inference`
  # alone, then while DC_STREAMS (default 135) real-time streams of H.264 / HEVC decode (the config's workers, under
  # MPS when MPS=1), interleaved RUNS (default 2) times. The inference bench starts 8 s after NVDEC got busy.
  n=${DC_STREAMS:-135}
  for r in $(seq ${RUNS:-2}); do for clip in none h264 hevc; do
    name=dc_${clip}_$r; lpid=""
    if [ $clip != none ]; then
      timeout 150 python3 scripts/gpu_lab/decode_load.py $CFG --media .cache/bench-media/${clip}_1080p30.mp4 --streams $n \
        --seconds ${DC_SECONDS:-35} --json "$R/${name}_decode.json" > "$R/${name}_decode.log" 2>&1 & lpid=$!
      busy=0; for i in $(seq 120); do
        u=$(nvidia-smi --query-gpu=utilization.decoder --format=csv,noheader,nounits | head -1)
        [ "${u:-0}" -ge 10 ] && busy=$((busy + 1)) || busy=0; [ $busy -ge 3 ] && break; sleep 1; done
      sleep 8
    fi
    host_speed
    timeout 120 python3 -m pipeline bench $CFG --stages inference --seconds 8 --warmup 2 --json "$R/${name}_infer.json" \
      > "$R/${name}_infer.log" 2>&1
    echo "$name inference rc=$?: $(grep -E '^inference ' "$R/${name}_infer.log" | tr -s ' ' | cut -c1-90)"
    [ -n "$lpid" ] && { wait $lpid; echo "$name decode rc=$?: $(grep -E 'frames/s' "$R/${name}_decode.log" | tail -1)"; }
  done; done ;;
tests)
  timeout 400 python3 -m pytest tests/gpu -v -s -p no:cacheprovider --timeout 200 -rs > "$R/tests_gpu.log" 2>&1
  echo "pytest rc=$?"; grep -E "FAILED|ERROR|passed|failed|XFAIL|XPASS|max \|" "$R/tests_gpu.log" | cut -c1-220 | tail -25 ;;
esac
  [ -n "$dmon_pid" ] && kill $dmon_pid 2> /dev/null
  tar czf "$OUT/bench.tar.gz" -C "$OUT" bench
done
rm -rf "$R" configs/_ab_*.yaml

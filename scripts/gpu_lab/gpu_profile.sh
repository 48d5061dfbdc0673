#!/usr/bin/env bash
# Profile of the GPU path (issue 7): where inference time goes, and where the GIL goes while 16
# 1080p30 H.264 cameras run end to end. On the GPU machine, from the repo root, after
#   bash /tmp/gpu-parts/install.sh          (the GPU wheels, ../shared/gpu-host/stage.sh)
# with .cache/bench-media, .cache/bench-model (scripts/assets/make_bench_media.py, make_bench_model.py) and
# a py-spy wheel in .gpu-extra/ carried along. Results: $OUT/profile.tar.gz and a summary on stdout.
#   STREAMS=16 SECONDS_=8 STEPS="infer stages gil e2e threads switch realtime gil_rt threads_rt" CFG=configs/bench-gpu-yolov8n.yaml
#   (gil_rt, threads_rt: RT_STREAMS=135 cameras in real time, decode workers included: --subprocesses)
set -u
OUT=${OUT:-out-gpu}; STREAMS=${STREAMS:-16}; SECS=${SECONDS_:-8}
STEPS=${STEPS:-"infer stages gil e2e threads switch realtime"}
R=$OUT/profile; mkdir -p "$R"
export PYTHONPATH=/tmp/gpu-site:$PWD PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/gpu-cache
[ -d .gpu-extra ] && python3 -m pip install -q --no-index --no-deps --target /tmp/gpu-extra .gpu-extra/*.whl 2>/dev/null
SPY=/tmp/gpu-extra/bin/py-spy; [ -x "$SPY" ] || SPY=/tmp/gpu-site/bin/py-spy  # stage_lean.sh puts it in the site
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc; python3 --version
  python3 -c "import nvidia.dali, onnxruntime, av, PyNvVideoCodec; print('dali', nvidia.dali.__version__, 'ort', onnxruntime.__version__, 'av', av.__version__, 'pynvc', PyNvVideoCodec.__version__)"
} > "$R/machine.txt" 2>&1; head -3 "$R/machine.txt"
CFG=${CFG:-configs/bench-gpu-yolov8n.yaml}
if [ -n "${WORKERS:-}" ]; then  # WORKERS=4: decode in 4 worker processes (as gpu_bench.sh)
  sed "s/^decode: *{device: gpu, gpu_id: 0/decode:     {device: gpu, gpu_id: 0, workers: $WORKERS/" $CFG > configs/_prof_w.yaml
  grep -q "workers: $WORKERS" configs/_prof_w.yaml || { echo "no decode line to change in $CFG"; exit 2; }
  CFG=configs/_prof_w.yaml; echo "decode.workers: $WORKERS"; fi
if [ "${MPS:-0}" = 1 ]; then  # CUDA MPS, as gpu_bench.sh
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  nvidia-cuda-mps-control -d && echo "CUDA MPS: control daemon started" || { echo "CUDA MPS: cannot start"; exit 2; }
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
sed 's/^  iou_threshold: 0.45$/  iou_threshold: 0.45\n  max_candidates: null/' $CFG > configs/_full_output.yaml
BENCH="python3 -m pipeline bench"
E2E="--streams $STREAMS --seconds $SECS --warmup 2"
row() { python3 - "$@" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    try:
        r = json.load(open(path))
    except Exception as exc:
        print(f"{path}: {exc}"); continue
    for name, st in r["stages"].items():
        if st:
            lat = st.get("latency_ms") or st.get("call_ms") or {}
            res = st.get("resources") or {}
            print(f"  {path.split('/')[-1]:24s} {name:13s} {st['fps'] or 0:8.1f} fps  p50/p99 {lat.get('p50')}/{lat.get('p99')} ms"
                  f"  cpu {res.get('cpu_percent')}%  held {st.get('held')} {st.get('held_reason') or ''} {st.get('error') or ''}")
EOF
}
for step in $STEPS; do case $step in
infer)  # model variants: what leaves the device
  for b in 32 64; do
    timeout 150 python3 scripts/gpu_lab/infer_variants.py .cache/bench-model/yolov8n-bench.onnx --device gpu \
      --precision fp16 --batch $b --seconds 3 --json "$R/infer_fp16_b$b.json" 2>&1 | grep -v "^20..-" | tee "$R/infer_fp16_b$b.log"
  done
  timeout 100 python3 scripts/gpu_lab/infer_variants.py .cache/bench-model/yolov8n-bench.onnx --device gpu \
    --precision fp32 --batch 32 --seconds 3 --json "$R/infer_fp32_b32.json" 2>&1 | grep -v "^20..-" | tee "$R/infer_fp32_b32.log" ;;
stages)
  timeout 200 $BENCH $CFG $E2E --stages decode,preprocess,inference --json "$R/stages.json" > "$R/stages.log" 2>&1
  timeout 100 $BENCH configs/_full_output.yaml $E2E --stages inference --json "$R/stages_full.json" > "$R/stages_full.log" 2>&1
  row "$R/stages.json" "$R/stages_full.json" ;;
e2e)
  timeout 150 $BENCH $CFG $E2E --stages e2e-fast --json "$R/e2e_fast.json" > "$R/e2e_fast.log" 2>&1
  timeout 150 $BENCH configs/_full_output.yaml $E2E --stages e2e-fast --json "$R/e2e_fast_full.json" > "$R/e2e_fast_full.log" 2>&1
  row "$R/e2e_fast.json" "$R/e2e_fast_full.json" ;;
gil)  # only the thread holding the GIL is sampled: where the interpreter lock goes
  timeout 180 $SPY record --gil --rate 250 --format raw -o "$R/gil.txt" -- $BENCH $CFG $E2E --stages e2e-fast \
    --json "$R/e2e_fast_gil.json" > "$R/gil.log" 2>&1
  row "$R/e2e_fast_gil.json"; python3 scripts/gpu_lab/profile_summary.py "$R/gil.txt" --rate 250 --top 10 > "$R/gil_summary.txt"
  head -80 "$R/gil_summary.txt" ;;
threads)  # every running thread (GIL or not, idle excluded)
  timeout 180 $SPY record --rate 100 --format raw -o "$R/threads.txt" -- $BENCH $CFG $E2E --stages e2e-fast \
    --json "$R/e2e_fast_threads.json" > "$R/threads.log" 2>&1
  python3 scripts/gpu_lab/profile_summary.py "$R/threads.txt" --rate 100 --top 8 > "$R/threads_summary.txt"
  head -60 "$R/threads_summary.txt" ;;
switch)  # a shorter GIL switch interval (default 5 ms)
  for iv in 0.001 0.0002; do
    timeout 150 python3 -c "import sys; sys.setswitchinterval($iv); sys.argv=['pipeline','bench','$CFG',*'$E2E'.split(),'--stages','e2e-fast','--json','$R/e2e_fast_sw$iv.json']; from pipeline.cli import main; sys.exit(main())" > "$R/e2e_fast_sw$iv.log" 2>&1
    row "$R/e2e_fast_sw$iv.json"
  done ;;
realtime)
  timeout 150 $BENCH $CFG $E2E --stages e2e-realtime --json "$R/e2e_rt.json" > "$R/e2e_rt.log" 2>&1
  row "$R/e2e_rt.json" ;;
gil_rt|threads_rt)  # RT_STREAMS cameras in real time, the daemon and its decode workers sampled (issue 22)
  gil=--gil; [ $step = threads_rt ] && gil=""
  timeout 200 $SPY record $gil --subprocesses --rate 200 --format raw -o "$R/$step.txt" -- $BENCH $CFG \
    --streams ${RT_STREAMS:-135} --seconds $SECS --warmup 3 --stages e2e-realtime --json "$R/$step.json" > "$R/$step.log" 2>&1
  row "$R/$step.json"; python3 scripts/gpu_lab/profile_summary.py "$R/$step.txt" --rate 200 --top 8 > "$R/${step}_summary.txt"
  head -70 "$R/${step}_summary.txt" ;;
esac
  tar czf "$OUT/profile.tar.gz" -C "$OUT" profile  # after every step: a run cut short still returns its results
done
rm -f configs/_full_output.yaml configs/_prof_w.yaml; rm -rf "$R"
ls -la "$OUT"

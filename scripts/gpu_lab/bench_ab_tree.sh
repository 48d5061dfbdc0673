#!/usr/bin/env bash
# A/B in one run on the GPU machine (which gets a copy of the working tree, not the git history):
# the same `pipeline bench` arguments under an older copy of the package (A) and this checkout (B),
# interleaved, ROUNDS times. From the repo root, after the wheels are installed:
#
#   mkdir -p .ab/old && git archive OLD_COMMIT pipeline | tar x -C .ab/old     # here; carry .ab
#   OUT=out ROUNDS=1 WORKERS=4 MPS=1 bash scripts/gpu_lab/bench_ab_tree.sh NAME .ab/old CONFIG [bench args...]
#
# Results: $OUT/ab/NAME_{A,B}_rK.{json,log}, and one line per run on stdout. WORKERS=N sets
# decode.workers (as gpu_bench.sh); MPS=1 runs under CUDA MPS.
set -u
name=${1:?usage: bench_ab_tree.sh NAME OLD_TREE CONFIG [bench args]}; old=$(cd "${2:?}" && pwd); cfg=$(realpath "${3:?}"); shift 3
OUT=${OUT:-out-gpu}; R=$(realpath -m "$OUT/ab"); mkdir -p "$R"
export PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/gpu-cache
site=/tmp/gpu-site
if [ -n "${WORKERS:-}" ]; then
  sed "s/^decode: *{device: gpu, gpu_id: 0/decode:     {device: gpu, gpu_id: 0, workers: $WORKERS/" "$cfg" > "$(dirname "$cfg")/_ab_tree.yaml"
  grep -q "workers: $WORKERS" "$(dirname "$cfg")/_ab_tree.yaml" || { echo "no decode line to change in $cfg"; exit 2; }
  cfg=$(dirname "$cfg")/_ab_tree.yaml
fi
if [ "${MPS:-0}" = 1 ] && [ ! -e /tmp/mps-pipe/control ]; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  nvidia-cuda-mps-control -d && echo "CUDA MPS: control daemon started" || { echo "CUDA MPS: cannot start"; exit 2; }
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
elif [ "${MPS:-0}" = 1 ]; then export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log; fi
here=$(pwd)
for r in $(seq 1 "${ROUNDS:-1}"); do
  for side in A B; do
    tree=$here; [ $side = A ] && tree=$old
    # `python -m` puts the working directory first on sys.path: run from the tree whose package is meant
    (cd "$tree" && PYTHONPATH=$site:$tree timeout 400 python3 -m pipeline bench "$cfg" "$@" \
      --json "$R/${name}_${side}_r$r.json" > "$R/${name}_${side}_r$r.log" 2>&1)
    echo "$name $side r$r rc=$? $(python3 - "$R/${name}_${side}_r$r.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as exc:
    print(f"no json: {exc}"); sys.exit()
parts = []
for name, st in r["stages"].items():
    if st:
        lat = st.get("latency_ms") or {}
        drops = st.get("drops") or {}
        parts.append(f"{name} {st.get('fps') or 0:.0f} fps" + (f" p99 {lat.get('p99')} ms" if lat.get('p99') else "")
                     + (f" drop {drops.get('drop_fraction')}" if drops else "") + (f" held={st['held']}" if st.get('held') is not None else ""))
s = r.get("summary") or {}
print("; ".join(parts), f"| ratio {s.get('e2e_ratio')} shared {s.get('e2e_ratio_shared_gpu')}")
EOF
)"
  done
done
rm -f "$(dirname "$cfg")/_ab_tree.yaml"

#!/usr/bin/env bash
# A/B of environment settings in one run, interleaved: `pipeline bench` with the same config and
# arguments under each VAR=VALUE ("-": none set), ROUNDS times (these machines are shared and noisy).
#   ROUNDS=3 bash scripts/bench_env_ab.sh "PIPELINE_SWITCH_INTERVAL_MS=5 -" configs/bench-cpu.yaml --stages e2e-fast
# One line per run: the setting, the round, and each stage's frames/s.
set -u
variants=${1:?usage: bench_env_ab.sh "VAR=VALUE ... | -" CONFIG [bench args]}; shift
py=${PYTHON:-python3}
for r in $(seq 1 "${ROUNDS:-3}"); do
  for v in $variants; do
    out=$(mktemp)
    if [ "$v" = - ]; then $py -m pipeline bench "$@" --json "$out" > /dev/null 2>&1
    else env "$v" $py -m pipeline bench "$@" --json "$out" > /dev/null 2>&1; fi
    echo "$v round $r: $($py -c "import json,sys; r=json.load(open(sys.argv[1])); print(', '.join(f\"{k} {s['fps']:.1f}\" for k, s in r['stages'].items() if s))" "$out")"
    rm -f "$out"
  done
done

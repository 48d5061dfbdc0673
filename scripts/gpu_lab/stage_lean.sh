#!/usr/bin/env bash
# A leaner GPU-machine bundle than ../shared/gpu-host/stage.sh, for sessions that run the fused
# kernel path only (no DALI): ONNX Runtime GPU, PyNvVideoCodec, PyAV, pyzmq, orjson, pydantic and py-spy,
# unpacked here, stripped of what never runs (ffmpeg sources, samples, ORT tools),
# packed as one tar.xz with the bench clips, and split into parts that fit one device call each
# beside the repository (64 MiB a call in all).
#
#   bash scripts/gpu_lab/stage_lean.sh OUTDIR MEDIA_DIR      # MEDIA_DIR: make_bench_media.py's output
#
# On the GPU machine, one call per part (carry OUTDIR/pNN): mkdir -p /tmp/gpu-parts && cp OUTDIR/pNN/* /tmp/gpu-parts/
# then, in the call that runs:   bash /tmp/gpu-parts/install_lean.sh && export PYTHONPATH=/tmp/gpu-site
# (the clips land in .cache/bench-media, py-spy in /tmp/gpu-site/bin). DALI tests skip without DALI.
set -euo pipefail
out=${1:?usage: stage_lean.sh OUTDIR MEDIA_DIR}; media=${2:?usage: stage_lean.sh OUTDIR MEDIA_DIR}
PART_BYTES=${PART_BYTES:-46000000}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/wheels" "$tmp/bundle/site" "$tmp/bundle/media"
python3 -m pip download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
  --platform manylinux1_x86_64 --platform any -d "$tmp/wheels" \
  onnxruntime-gpu pynvvideocodec av pyzmq orjson pydantic pydantic-core annotated-types typing-inspection py-spy
for w in "$tmp"/wheels/*.whl; do python3 -m zipfile -e "$w" "$tmp/bundle/site/"; done
site="$tmp/bundle/site"
rm -rf "$site/benchmarks" "$site/samples" "$site"/pynvvideocodec-*.data/data/external \
  "$site/onnxruntime/tools"  # keep onnxruntime/transformers: model.precision fp16 converts with it
mkdir -p "$site/bin"; mv "$site"/py_spy-*.data/scripts/py-spy "$site/bin/"; chmod +x "$site/bin/py-spy"
cp "$media"/h264_1080p30.mp4 "$media"/hevc_1080p30.mp4 "$tmp/bundle/media/"
tar cf - -C "$tmp/bundle" site media | xz -T2 -5 > "$tmp/bundle.tar.xz"
rm -rf "$out"; mkdir -p "$out"; printf '*\n' > "$out/.gitignore"
split -b "$PART_BYTES" -d -a 2 "$tmp/bundle.tar.xz" "$tmp/chunk."
i=0
for c in "$tmp"/chunk.*; do i=$((i + 1)); d=$(printf '%s/p%02d' "$out" "$i"); mkdir -p "$d"; mv "$c" "$d/"; done
(cd "$tmp" && sha256sum bundle.tar.xz | cut -d' ' -f1) > "$d/bundle.sha256"
cat > "$d/install_lean.sh" <<'EOF'
#!/usr/bin/env bash
# On the GPU machine, from the repo root, once every part is in /tmp/gpu-parts.
set -euo pipefail
cd /tmp/gpu-parts && cat chunk.* > /tmp/bundle.tar.xz
[ "$(sha256sum /tmp/bundle.tar.xz | cut -d' ' -f1)" = "$(cat bundle.sha256)" ] || { echo "bundle checksum mismatch"; exit 1; }
cd - > /dev/null
mkdir -p /tmp/gpu-bundle && tar xJf /tmp/bundle.tar.xz -C /tmp/gpu-bundle && rm -rf /tmp/gpu-site && mv /tmp/gpu-bundle/site /tmp/gpu-site
mkdir -p .cache/bench-media && cp /tmp/gpu-bundle/media/* .cache/bench-media/
echo "installed: $(ls /tmp/gpu-site | grep -c dist-info) packages in /tmp/gpu-site; clips: $(ls .cache/bench-media)"
EOF
echo "$i parts in $out ($(du -sh "$tmp/bundle.tar.xz" | cut -f1))"

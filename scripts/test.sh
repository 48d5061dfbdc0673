#!/usr/bin/env bash
# The test command: installs what the tests need and runs them.
#   bash scripts/test.sh [pytest args...]
# Debian packages (as root, when missing): a real RTSP server (GStreamer's, driven by Debian's python3-gi),
# ffmpeg, and opencv-doc for real street footage and a corrupt AVI, mosquitto and redis-server for the bridge,
# chromium and its driver for the preview page's browser test. Python packages go into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
debs=(ffmpeg opencv-doc python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
      gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
      systemd  # systemd: systemd-analyze verify checks the unit file
      mosquitto redis-server openssl  # real brokers for pipeline bridge (tests/integration/scaleout); openssl: TLS certs
      chromium chromium-driver)  # the preview page's real-browser test (tests/integration/preview/)
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages (tests that need them will fail): ${missing[*]}" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# tensorrt-rtx: TensorRT-RTX builds engines on the CPU, so the real TensorRT build path runs here too
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,tensorrt-rtx]'
exec .venv/bin/python -m pytest -ra "$@"

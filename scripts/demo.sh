#!/usr/bin/env bash
# The demo command: installs the package into .venv and runs the bundled demo (no GPU, no network):
# the daemon on the bundled clips, a subscriber printing detections, per-camera status lines, a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/pipeline demo "$@"

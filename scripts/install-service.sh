#!/usr/bin/env bash
# Installs the pipeline as a systemd service (see docs/operations.md):
#   sudo scripts/install-service.sh [--config FILE] [--extras gpu,tensorrt] [--prefix /opt/pipeline]
# What it does: creates the system user `pipeline`, a virtualenv in PREFIX/venv with this checkout
# installed, /etc/pipeline (config, credentials/, curve-clients/), the unit
# /etc/systemd/system/pipeline.service, then `systemctl daemon-reload`. It never overwrites an
# existing /etc/pipeline/pipeline.yaml and never enables or starts the service by itself.
#   --destdir DIR   stage every file under DIR instead (packaging, tests): no user, no pip, no systemctl
#   --no-venv       keep PREFIX/venv as it is (its bin/pipeline must exist)
#   --python PATH   interpreter for the virtualenv (default /usr/bin/python3)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/pipeline destdir="" config="" extras="" make_venv=1 python=/usr/bin/python3
user=pipeline

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "install-service: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --destdir) destdir="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --extras) extras="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --no-venv) make_venv=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install-service: unknown option $1" >&2; usage 2 ;;
  esac
done
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
[ -z "$config" ] || [ -f "$config" ] || die "--config $config: no such file"
staged() { [ -n "$destdir" ]; }
if ! staged && [ "$(id -u)" != 0 ]; then die "run as root (or use --destdir to stage files)"; fi

# ownership only on a real install: in a staging tree the user need not exist
owned() { if staged; then install "$@"; else install -o root -g "$user" "$@"; fi; }

if ! staged && ! getent passwd "$user" >/dev/null; then
  echo "creating system user $user"
  useradd --system --user-group --home-dir /var/lib/pipeline --no-create-home \
          --shell /usr/sbin/nologin --comment "video analytics pipeline" "$user"
fi

if ! staged && [ "$make_venv" = 1 ]; then
  [ -x "$prefix/venv/bin/python" ] || "$python" -m venv "$prefix/venv"
  echo "installing $repo into $prefix/venv${extras:+ with extras [$extras]}"
  "$prefix/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade \
      "$repo${extras:+[$extras]}"
fi
if ! staged && [ ! -x "$prefix/venv/bin/pipeline" ]; then
  die "$prefix/venv/bin/pipeline is missing (run without --no-venv)"
fi

install -d -m 0755 "$destdir$prefix/docs" "$destdir/etc/systemd/system"
install -m 0644 "$repo/docs/operations.md" "$repo/docs/metrics.md" "$destdir$prefix/docs/"

# The unit, with ExecStart and the docs pointing into PREFIX
sed -e "s|/opt/pipeline/|$prefix/|g" "$repo/systemd/pipeline.service" > "$destdir/etc/systemd/system/pipeline.service.tmp"
chmod 0644 "$destdir/etc/systemd/system/pipeline.service.tmp"
mv "$destdir/etc/systemd/system/pipeline.service.tmp" "$destdir/etc/systemd/system/pipeline.service"

# /etc/pipeline: config readable by the service; credentials readable by root only (systemd hands
# them to the service through LoadCredential=); curve-clients holds public keys only.
owned -d -m 0750 "$destdir/etc/pipeline"
install -d -m 0700 "$destdir/etc/pipeline/credentials"
install -d -m 0755 "$destdir/etc/pipeline/curve-clients"
if [ -e "$destdir/etc/pipeline/pipeline.yaml" ]; then
  echo "keeping the existing /etc/pipeline/pipeline.yaml"
else
  owned -m 0640 "${config:-$repo/systemd/pipeline.example.yaml}" "$destdir/etc/pipeline/pipeline.yaml"
  echo "installed /etc/pipeline/pipeline.yaml from ${config:-the example}: edit it before starting"
fi

if ! staged && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "installed pipeline.service; next: systemctl enable --now pipeline && journalctl -fu pipeline"
else
  echo "installed pipeline.service${destdir:+ under $destdir} (systemd not running here: no daemon-reload)"
fi

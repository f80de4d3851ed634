#!/usr/bin/env bash
# Install the Hallwatch hall gateway (大厅网关) on Raspberry Pi OS or Debian, from this source tree.
#
#   deploy/install/install-gateway.sh [--bundle BUNDLE] [options]
#
# Creates the service user, a virtual environment with the package, the configuration and
# data directories, the systemd unit and log rotation; with --bundle it installs the
# provisioning bundle from `hallwatch-central gateway provision` and writes edge.yaml.
# Idempotent: run it again to upgrade the software or apply a new bundle.
#
# Options:
#   --prefix DIR      software prefix (default /opt/hallwatch). Any other prefix also holds
#                     the configuration (DIR/etc) and data (DIR/var/lib/hallwatch), so a
#                     trial installation touches nothing outside DIR.
#   --bundle FILE     provisioning bundle (.tar.gz or directory) to install
#   --user NAME       service user (default hallwatch; created when run as root)
#   --no-systemd      do not install or start the systemd unit (containers, CI)
#   --wheels DIR      install offline from a directory of wheels
#                     (`pip wheel -w DIR . setuptools`: the build backend too)
#   --python PATH     interpreter for the virtual environment (default python3, ≥ 3.11)
#   --no-apt          never call apt-get (the Debian packages are already there)
#   --allow-plain     accept a bundle with an mqtt:// broker (development only)
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PREFIX=/opt/hallwatch
BUNDLE=""
SERVICE_USER=hallwatch
SYSTEMD=1
WHEELS=""
PYTHON=python3
APT=1
ALLOW_PLAIN=""

say() { printf '\033[1m[hallwatch-gateway]\033[0m %s\n' "$*"; }
die() { printf '[hallwatch-gateway] error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=$2; shift 2 ;;
    --bundle) BUNDLE=$2; shift 2 ;;
    --user) SERVICE_USER=$2; shift 2 ;;
    --no-systemd) SYSTEMD=0; shift ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --no-apt) APT=0; shift ;;
    --allow-plain) ALLOW_PLAIN=--allow-plain; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

PREFIX=$(realpath -m "$PREFIX")
if [ "$PREFIX" = /opt/hallwatch ]; then
  ETC=/etc/hallwatch; DATA=/var/lib/hallwatch; LOGS=/var/log/hallwatch
  LOGROTATE=/etc/logrotate.d; UNITS=/etc/systemd/system
else
  ETC=$PREFIX/etc; DATA=$PREFIX/var/lib/hallwatch; LOGS=$PREFIX/var/log/hallwatch
  LOGROTATE=$PREFIX/etc/logrotate.d; UNITS=$PREFIX/etc/systemd/system
fi
VENV=$PREFIX/venv
[ -z "$BUNDLE" ] || BUNDLE=$(realpath "$BUNDLE")
[ -z "$WHEELS" ] || WHEELS=$(realpath "$WHEELS")
ROOT=0; [ "$(id -u)" = 0 ] && ROOT=1

# -- Debian packages --------------------------------------------------------------------------
need=()
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || die "$PYTHON is missing or older than 3.11 (Raspberry Pi OS/Debian bookworm has 3.11)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  [ "$APT" = 1 ] && [ "$ROOT" = 1 ] || die "missing Debian packages: ${need[*]}"
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# -- service user -----------------------------------------------------------------------------
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  [ "$ROOT" = 1 ] || die "user $SERVICE_USER does not exist and only root can create it"
  say "creating system user $SERVICE_USER"
  adduser --system --group --home "$DATA" --no-create-home --shell /usr/sbin/nologin \
    "$SERVICE_USER" >/dev/null
fi
if [ "$ROOT" = 1 ] && [ "$SERVICE_USER" != root ]; then
  # serial adapters (RS-485/RS-232/USB) and USB cameras
  for group in dialout video; do
    getent group "$group" >/dev/null && usermod -a -G "$group" "$SERVICE_USER"
  done
fi
GROUP=$(id -gn "$SERVICE_USER")

# -- software ---------------------------------------------------------------------------------
say "virtual environment in $VENV"
mkdir -p "$PREFIX"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_args=(--quiet --disable-pip-version-check)
[ -z "$WHEELS" ] || pip_args+=(--no-index --find-links "$WHEELS")
"$VENV/bin/pip" install "${pip_args[@]}" "$SRC"
"$VENV/bin/hallwatch-edge" --help >/dev/null

# -- directories ------------------------------------------------------------------------------
install -d -m 0750 "$ETC" "$DATA" "$LOGS"
if [ "$ROOT" = 1 ]; then
  chown "root:$GROUP" "$ETC"
  chown "$SERVICE_USER:$GROUP" "$DATA" "$LOGS"
fi

# -- provisioning bundle ----------------------------------------------------------------------
if [ -n "$BUNDLE" ]; then
  say "installing the provisioning bundle $BUNDLE"
  owner=(); [ "$ROOT" = 1 ] && owner=(--user "$SERVICE_USER")
  "$VENV/bin/hallwatch-edge" provision apply "$BUNDLE" --target "$ETC" --data-dir "$DATA" \
    "${owner[@]}" $ALLOW_PLAIN
fi

# -- systemd unit and log rotation ------------------------------------------------------------
render() {  # the shipped files name the default paths; point them at this installation
  sed -e "s|/opt/hallwatch/venv|$VENV|g" -e "s|/etc/hallwatch|$ETC|g" \
      -e "s|/var/lib/hallwatch|$DATA|g" -e "s|/var/log/hallwatch|$LOGS|g" \
      -e "s|^User=hallwatch|User=$SERVICE_USER|" -e "s|^Group=hallwatch|Group=$GROUP|" \
      -e "s|su hallwatch hallwatch|su $SERVICE_USER $GROUP|" "$1"
}
install -d -m 0755 "$UNITS" "$LOGROTATE"
render "$SRC/deploy/systemd/hallwatch-edge.service" > "$UNITS/hallwatch-edge.service"
render "$SRC/deploy/logrotate/hallwatch" > "$LOGROTATE/hallwatch"
chmod 0644 "$UNITS/hallwatch-edge.service" "$LOGROTATE/hallwatch"

if [ -f "$ETC/edge.yaml" ]; then
  "$VENV/bin/hallwatch-edge" check-config "$ETC/edge.yaml"
fi

if [ "$SYSTEMD" = 1 ]; then
  [ "$ROOT" = 1 ] || die "installing the systemd unit needs root (or use --no-systemd)"
  systemctl daemon-reload
  if [ -f "$ETC/edge.yaml" ]; then
    systemctl enable hallwatch-edge.service
    systemctl restart hallwatch-edge.service
    say "hallwatch-edge.service started"
  else
    systemctl enable hallwatch-edge.service
    say "unit enabled; it starts once $ETC/edge.yaml exists (install a bundle)"
  fi
fi

say "done. Self-test: $VENV/bin/hallwatch-edge selftest -c $ETC/edge.yaml"
[ "$SYSTEMD" = 0 ] || say "(stop the service for the device and broker checks)"

#!/usr/bin/env bash
# Hallwatch's one entry point on a fresh Debian machine:
#   ./run.sh demo    a simulated hall end to end (broker, central, gateway) on the embedded defaults
#   ./run.sh test    the whole test suite on real parts (what CI runs)
#   ./run.sh bench   the benchmarks (journal, ingest, drain, broker ceiling, cameras)
# Each first installs what is missing: Debian packages (as root, or through sudo), a virtual
# environment in .venv with the project and its Python dependencies.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"

say() { printf '\033[1m[hallwatch]\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; exit 1; fi
}

apt_missing=()
need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || apt_missing+=("$1"); }

install_debian_packages() {
  local profile=$1
  need_pkg mosquitto
  need_pkg mosquitto-clients
  python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkg python3-venv
  if [ "$profile" = test ] || [ "$profile" = bench ]; then
    command -v psql >/dev/null || need_pkg postgresql
  fi
  if [ ${#apt_missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${apt_missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${apt_missing[@]}" >/dev/null
  fi
  # the Debian package starts a system broker on 1883; ours always run on private ports
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  say "starting PostgreSQL"
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -n "$version" ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -q -h 127.0.0.1 -p 5432 || { say "PostgreSQL did not start"; exit 1; }
}

ensure_postgres_login() {
  # Tests create and drop their own databases as the postgres role over TCP. A fresh Debian
  # cluster asks for a password on 127.0.0.1, so give the role one and hand it to the tests.
  if PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' \
      >/dev/null 2>&1 </dev/null; then return; fi
  export PGPASSWORD=${PGPASSWORD:-hallwatch-test}
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1 </dev/null; then
    say "setting a password for the local postgres role (tests log in over TCP)"
    as_root su postgres -c "psql -q -c \"ALTER ROLE postgres PASSWORD '$PGPASSWORD'\"" >/dev/null
  fi
}

ensure_venv() {
  local stamp="$VENV/.hallwatch-installed"
  local want
  want=$(sha256sum pyproject.toml | cut -c1-16)
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment in .venv"
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing Python packages (first run only)"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e ".[test,camera]"
    echo "$want" >"$stamp"
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  demo)
    install_debian_packages demo
    ensure_venv
    exec "$VENV/bin/python" deploy/demo.py "$@"
    ;;
  test)
    install_debian_packages test
    ensure_postgres
    ensure_postgres_login
    ensure_venv
    [ -x deploy/scripts/install-test-extras.sh ] && deploy/scripts/install-test-extras.sh
    say "lint: ruff, mypy --strict on the whole tree"
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy" --no-error-summary
    say "tests"
    exec "$VENV/bin/pytest" -q -p no:randomly --durations=25 "$@"
    ;;
  bench)
    install_debian_packages bench
    ensure_postgres
    ensure_postgres_login
    ensure_venv
    exec "$VENV/bin/pytest" -q -s -m bench tests/bench "$@"
    ;;
  *)
    sed -n '2,8p' "$0"
    exit 2
    ;;
esac

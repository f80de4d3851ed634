#!/usr/bin/env bash
# Install Hallwatch central (电子监察中心) on Debian, from this source tree.
#
#   deploy/install/install-central.sh --broker-host broker.example.cn [options]
#
# Creates the service user, a virtual environment with the package, a PostgreSQL role and
# database, central.yaml with the PostgreSQL URL, runs the migrations, creates the CA and the
# broker's TLS configuration (Mosquitto, one client certificate per gateway and per MQTT client
# of central, generated ACL and CRL), the systemd units (central, broker reload on ACL/CRL
# change) and log rotation.
# Idempotent: run it again to upgrade; the CA, the keys and the database are kept.
#
# Options:
#   --prefix DIR        software prefix (default /opt/hallwatch). Any other prefix also holds
#                       the configuration (DIR/etc), data (DIR/var/lib/…) and the broker's
#                       files (DIR/etc/mosquitto), so a trial touches nothing outside DIR.
#   --broker-host NAME  name or address gateways use for the broker (repeat; default: the
#                       fully qualified host name)
#   --broker-port N     TLS port of the broker (default 8883)
#   --broker-bind ADDR  address the TLS listener binds (default 0.0.0.0)
#   --database-url URL  use this database instead of creating one (postgresql+asyncpg://…)
#   --db-name NAME      PostgreSQL database to create (default hallwatch)
#   --db-user NAME      PostgreSQL role to create (default hallwatch)
#   --pg-admin CMD      how to run psql as a PostgreSQL superuser (default: runuser -u
#                       postgres -- psql, as root)
#   --http-port N       API port (default 8600, on 127.0.0.1; put a TLS proxy in front)
#   --user NAME         service user (default hallwatch; created when run as root)
#   --no-systemd        do not install or start systemd units (containers, CI)
#   --no-apt            never call apt-get
#   --wheels DIR        install offline from a directory of wheels
#                       (`pip wheel -w DIR . setuptools`: the build backend too)
#   --python PATH       interpreter for the virtual environment (default python3, ≥ 3.11)
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PREFIX=/opt/hallwatch
BROKER_HOSTS=()
BROKER_PORT=8883
BROKER_BIND=0.0.0.0
DATABASE_URL=""
DB_NAME=hallwatch
DB_USER=hallwatch
PG_ADMIN=""
HTTP_PORT=8600
SERVICE_USER=hallwatch
SYSTEMD=1
APT=1
WHEELS=""
PYTHON=python3

say() { printf '\033[1m[hallwatch-central]\033[0m %s\n' "$*"; }
die() { printf '[hallwatch-central] error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=$2; shift 2 ;;
    --broker-host) BROKER_HOSTS+=("$2"); shift 2 ;;
    --broker-port) BROKER_PORT=$2; shift 2 ;;
    --broker-bind) BROKER_BIND=$2; shift 2 ;;
    --database-url) DATABASE_URL=$2; shift 2 ;;
    --db-name) DB_NAME=$2; shift 2 ;;
    --db-user) DB_USER=$2; shift 2 ;;
    --pg-admin) PG_ADMIN=$2; shift 2 ;;
    --http-port) HTTP_PORT=$2; shift 2 ;;
    --user) SERVICE_USER=$2; shift 2 ;;
    --no-systemd) SYSTEMD=0; shift ;;
    --no-apt) APT=0; shift ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

PREFIX=$(realpath -m "$PREFIX")
if [ "$PREFIX" = /opt/hallwatch ]; then
  ETC=/etc/hallwatch; DATA=/var/lib/hallwatch-central; BROKER_DIR=/var/lib/hallwatch-broker
  LOGS=/var/log/hallwatch; MOSQ=/etc/mosquitto; MOSQ_DATA=/var/lib/mosquitto
  LOGROTATE=/etc/logrotate.d; UNITS=/etc/systemd/system; BROKER_USER=mosquitto
else
  ETC=$PREFIX/etc; DATA=$PREFIX/var/lib/hallwatch-central
  BROKER_DIR=$PREFIX/var/lib/hallwatch-broker; LOGS=$PREFIX/var/log/hallwatch
  MOSQ=$PREFIX/etc/mosquitto; MOSQ_DATA=$PREFIX/var/lib/mosquitto
  LOGROTATE=$PREFIX/etc/logrotate.d; UNITS=$PREFIX/etc/systemd/system
  BROKER_USER=$(id -un)  # a trial broker runs as whoever starts it
fi
VENV=$PREFIX/venv
[ -z "$WHEELS" ] || WHEELS=$(realpath "$WHEELS")
[ ${#BROKER_HOSTS[@]} -gt 0 ] || BROKER_HOSTS=("$(hostname -f 2>/dev/null || hostname)")
ROOT=0; [ "$(id -u)" = 0 ] && ROOT=1
if [ -z "$PG_ADMIN" ]; then
  if [ "$ROOT" = 1 ]; then PG_ADMIN="runuser -u postgres -- psql"; else PG_ADMIN="sudo -u postgres psql"; fi
fi

# -- Debian packages --------------------------------------------------------------------------
need=()
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || die "$PYTHON is missing or older than 3.11 (Debian bookworm has 3.11)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if [ -z "$DATABASE_URL" ]; then
  command -v psql >/dev/null || need+=(postgresql)
fi
command -v pg_dump >/dev/null || need+=(postgresql-client)  # backup and restore
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
GROUP=$(id -gn "$SERVICE_USER")

# -- software ---------------------------------------------------------------------------------
say "virtual environment in $VENV"
mkdir -p "$PREFIX"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_args=(--quiet --disable-pip-version-check)
[ -z "$WHEELS" ] || pip_args+=(--no-index --find-links "$WHEELS")
"$VENV/bin/pip" install "${pip_args[@]}" "$SRC"
CENTRAL=$VENV/bin/hallwatch-central
"$CENTRAL" --help >/dev/null

install -d -m 0750 "$ETC" "$LOGS"
install -d -m 0700 "$DATA"
install -d -m 2750 "$BROKER_DIR"
if [ "$ROOT" = 1 ]; then
  chown "root:$GROUP" "$ETC"
  chown "$SERVICE_USER:$GROUP" "$DATA" "$LOGS"
  # central writes the ACL and CRL here; the broker reads them through its group
  if getent group "$BROKER_USER" >/dev/null; then
    chown "$SERVICE_USER:$BROKER_USER" "$BROKER_DIR"
  fi
fi

# -- PostgreSQL -------------------------------------------------------------------------------
CONF=$ETC/central.yaml
if [ -f "$CONF" ]; then
  say "keeping $CONF"
else
  if [ -z "$DATABASE_URL" ]; then
    [[ $DB_NAME =~ ^[a-z_][a-z0-9_]*$ && $DB_USER =~ ^[a-z_][a-z0-9_]*$ ]] \
      || die "--db-name and --db-user must be lower-case identifiers"
    password=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))')
    say "PostgreSQL role $DB_USER and database $DB_NAME"
    # shellcheck disable=SC2086 # PG_ADMIN is a command line
    $PG_ADMIN -v ON_ERROR_STOP=1 -qAt -d postgres >/dev/null <<SQL
SELECT count(*) > 0 AS role FROM pg_roles WHERE rolname = '$DB_USER' \gset exists_
\if :exists_role
ALTER ROLE "$DB_USER" LOGIN PASSWORD '$password';
\else
CREATE ROLE "$DB_USER" LOGIN PASSWORD '$password';
\endif
SELECT count(*) > 0 AS db FROM pg_database WHERE datname = '$DB_NAME' \gset exists_
\if :exists_db
\else
CREATE DATABASE "$DB_NAME" OWNER "$DB_USER" ENCODING 'UTF8' TEMPLATE template0;
\endif
SQL
    DATABASE_URL="postgresql+asyncpg://$DB_USER:$password@127.0.0.1:5432/$DB_NAME"
  fi
  say "writing $CONF"
  umask 027
  {
    echo "# Hallwatch central. Written by deploy/install/install-central.sh; see deploy/README.md."
    echo "database_url: \"$DATABASE_URL\""
    echo "data_dir: $DATA"
    echo "broker:"
    echo "  host: 127.0.0.1"
    echo "  port: $BROKER_PORT"
    echo "  instance: main"
    echo "  tls: {ca: $DATA/broker-client/ca.crt, cert: $DATA/broker-client/central.crt, key: $DATA/broker-client/central.key}"
    echo "  # the case feed is a second MQTT client: its own certificate, hence its own client id"
    echo "  feed_tls: {ca: $DATA/broker-client/ca.crt, cert: $DATA/broker-client/central-cases.crt, key: $DATA/broker-client/central-cases.key}"
    echo "http: {host: 127.0.0.1, port: $HTTP_PORT}"
    echo "provisioning:"
    echo "  pki_dir: $DATA/pki"
    echo "  command_key: $DATA/command-signing.key"
    echo "  broker_dir: $BROKER_DIR"
    echo "  broker_url: mqtts://${BROKER_HOSTS[0]}:$BROKER_PORT"
    echo "  central_users: [central.main, central.main-cases]"
  } > "$CONF.tmp"
  umask 022
  mv "$CONF.tmp" "$CONF"
  [ "$ROOT" = 1 ] && chown "root:$GROUP" "$CONF"
fi
"$CENTRAL" migrate --config "$CONF"

# -- broker: CA, certificates, TLS configuration, ACL, CRL ------------------------------------
host_args=()
for host in "${BROKER_HOSTS[@]}"; do host_args+=(--host "$host"); done
install -d -m 0755 "$MOSQ" "$MOSQ_DATA"
"$CENTRAL" broker setup --config "$CONF" "${host_args[@]}" --mosquitto-dir "$MOSQ" \
  --port "$BROKER_PORT" --bind "$BROKER_BIND" --run-as "$BROKER_USER" --data-dir "$MOSQ_DATA/" \
  --templates "$SRC/deploy/mosquitto"
if [ "$ROOT" = 1 ]; then
  chown -R "$SERVICE_USER:$GROUP" "$DATA"
  chown "$SERVICE_USER:$GROUP" "$BROKER_DIR"/*
  getent group "$BROKER_USER" >/dev/null && chgrp -R "$BROKER_USER" "$BROKER_DIR"
  id "$BROKER_USER" >/dev/null 2>&1 && chown "$BROKER_USER" "$MOSQ_DATA"
fi

# -- systemd units and log rotation -----------------------------------------------------------
render() {
  sed -e "s|/opt/hallwatch/venv|$VENV|g" -e "s|/etc/hallwatch|$ETC|g" \
      -e "s|/var/lib/hallwatch-central|$DATA|g" -e "s|/var/lib/hallwatch-broker|$BROKER_DIR|g" \
      -e "s|/var/log/hallwatch|$LOGS|g" \
      -e "s|^User=hallwatch|User=$SERVICE_USER|" -e "s|^Group=hallwatch|Group=$GROUP|" \
      -e "s|su hallwatch hallwatch|su $SERVICE_USER $GROUP|" "$1"
}
install -d -m 0755 "$UNITS" "$LOGROTATE"
for unit in hallwatch-central.service hallwatch-broker-reload.path \
            hallwatch-broker-reload.service; do
  render "$SRC/deploy/systemd/$unit" > "$UNITS/$unit"
  chmod 0644 "$UNITS/$unit"
done
render "$SRC/deploy/logrotate/hallwatch" > "$LOGROTATE/hallwatch"
chmod 0644 "$LOGROTATE/hallwatch"

if [ "$SYSTEMD" = 1 ]; then
  [ "$ROOT" = 1 ] || die "installing systemd units needs root (or use --no-systemd)"
  systemctl daemon-reload
  systemctl enable --now hallwatch-broker-reload.path
  systemctl restart mosquitto.service
  systemctl enable hallwatch-central.service
  systemctl restart hallwatch-central.service
  say "mosquitto (TLS on $BROKER_PORT) and hallwatch-central.service started"
fi

say "done. Provision a gateway: $CENTRAL gateway provision --config $CONF --hall HALL --name GW"

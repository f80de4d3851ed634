#!/usr/bin/env bash
# One machine of a province (Debian 12): a node of the three-node RabbitMQ cluster and N
# aggregator processes. Run it after install-central.sh, with the same --prefix, on each of
# the three machines (docs/province.md, "Setting it up"):
#
#   first:   install-province-node.sh --amqp-node n1 --amqp-node n2 --amqp-node n3
#   others:  install-province-node.sh --amqp-node n1 --amqp-node n2 --amqp-node n3 \
#              --rabbitmq-join rabbit@n1 --erlang-cookie FILE --amqp-password-file FILE
#
# The node: Debian's rabbitmq-server with deploy/rabbitmq/rabbitmq.conf.in (MQTT 3.1.1 over TLS
# only, login by certificate, quorum queues) and its plugins, the broker certificate
# install-central.sh made (the CA's, for every --broker-host name), Mosquitto stopped (the
# cluster takes its port). The first node creates central's AMQP user (password in
# ETC/amqp-password, root:hallwatch 0640); the others join the first and reuse its password.
# Central: central.yaml reads the cluster (broker.kind rabbitmq, one AMQP URL per node); N
# aggregator processes run as hallwatch-aggregator@1..N.service (hallwatch-aggregators.target)
# beside hallwatch-central.service, which keeps the API and the case feed.
# Idempotent: run it again to change N or the nodes; a node already in the cluster stays.
#
# Options:
#   --prefix DIR             as given to install-central.sh (default /opt/hallwatch)
#   --amqp-node HOST         a cluster node's name or address (repeat, the first node first;
#                            default: this host alone)
#   --amqp-port N            AMQP port of every node (default 5672)
#   --amqp-bind ADDR         address this node's AMQP listener binds (default 0.0.0.0: the
#                            other machines' aggregators read from it; firewall it to them)
#   --mqtts-port N           TLS port gateways use (default 8883)
#   --rabbitmq-join NODE     join this node to the cluster of NODE (rabbit@n1)
#   --erlang-cookie FILE     the first node's Erlang cookie (/var/lib/rabbitmq/.erlang.cookie),
#                            copied to this machine by a secure channel; read from the file,
#                            never given on a command line (it would show in ps)
#   --amqp-password-file F   central's AMQP password: the first node's ETC/amqp-password
#   --partitions N           quorum queues of the gateways' messages (default 4)
#   --aggregators N          aggregator processes on this machine (default 2)
#   --user NAME              service user (default hallwatch)
#   --no-systemd             write files only: no rabbitmq-server, no units started
#   --no-apt                 never call apt-get
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PREFIX=/opt/hallwatch
NODES=()
AMQP_PORT=5672
AMQP_BIND=0.0.0.0
MQTTS_PORT=8883
JOIN=""
COOKIE_FILE=""
PASSWORD_FILE=""
PARTITIONS=4
AGGREGATORS=2
SERVICE_USER=hallwatch
SYSTEMD=1
APT=1

say() { printf '\033[1m[hallwatch-province]\033[0m %s\n' "$*"; }
die() { printf '[hallwatch-province] error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=$2; shift 2 ;;
    --amqp-node) NODES+=("$2"); shift 2 ;;
    --amqp-port) AMQP_PORT=$2; shift 2 ;;
    --amqp-bind) AMQP_BIND=$2; shift 2 ;;
    --mqtts-port) MQTTS_PORT=$2; shift 2 ;;
    --rabbitmq-join) JOIN=$2; shift 2 ;;
    --erlang-cookie) COOKIE_FILE=$2; shift 2 ;;
    --amqp-password-file) PASSWORD_FILE=$2; shift 2 ;;
    --partitions) PARTITIONS=$2; shift 2 ;;
    --aggregators) AGGREGATORS=$2; shift 2 ;;
    --user) SERVICE_USER=$2; shift 2 ;;
    --no-systemd) SYSTEMD=0; shift ;;
    --no-apt) APT=0; shift ;;
    -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[[ $AGGREGATORS =~ ^[0-9]+$ && $AGGREGATORS -le 32 ]] || die "--aggregators: 0 to 32"
[[ $PARTITIONS =~ ^[0-9]+$ && $PARTITIONS -ge 1 && $PARTITIONS -le 64 ]] \
  || die "--partitions: 1 to 64"
[ -z "$JOIN" ] || [[ $JOIN =~ ^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$ ]] || die "--rabbitmq-join: name@host"
if [ -n "$JOIN" ]; then
  [ -n "$PASSWORD_FILE" ] || die "--rabbitmq-join needs --amqp-password-file (the first node's)"
  [ "$SYSTEMD" = 0 ] || [ -n "$COOKIE_FILE" ] || die "--rabbitmq-join needs --erlang-cookie"
fi
[ ${#NODES[@]} -gt 0 ] || NODES=("$(hostname -f 2>/dev/null || hostname)")

PREFIX=$(realpath -m "$PREFIX")
if [ "$PREFIX" = /opt/hallwatch ]; then
  ETC=/etc/hallwatch; MOSQ=/etc/mosquitto; UNITS=/etc/systemd/system
  DATA=/var/lib/hallwatch-central; BROKER_DIR=/var/lib/hallwatch-broker
  RABBIT_ETC=/etc/rabbitmq; RABBIT_HOME=/var/lib/rabbitmq; RABBIT_USER=rabbitmq
else
  ETC=$PREFIX/etc; MOSQ=$PREFIX/etc/mosquitto; UNITS=$PREFIX/etc/systemd/system
  DATA=$PREFIX/var/lib/hallwatch-central; BROKER_DIR=$PREFIX/var/lib/hallwatch-broker
  RABBIT_ETC=$PREFIX/etc/rabbitmq; RABBIT_HOME=$PREFIX/var/lib/rabbitmq
  RABBIT_USER=$(id -un)
fi
CONF=$ETC/central.yaml
VENV=$PREFIX/venv
[ -f "$CONF" ] && [ -x "$VENV/bin/hallwatch-central" ] \
  || die "no central in $PREFIX: run install-central.sh first (same --prefix)"
[ -f "$MOSQ/certs/server.crt" ] || die "no broker certificate in $MOSQ/certs (install-central.sh)"
ROOT=0; [ "$(id -u)" = 0 ] && ROOT=1
GROUP=$(id -gn "$SERVICE_USER")

# -- Debian packages --------------------------------------------------------------------------
if [ "$SYSTEMD" = 1 ] && [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  [ "$APT" = 1 ] && [ "$ROOT" = 1 ] || die "missing Debian package: rabbitmq-server"
  say "installing rabbitmq-server"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server
fi
if [ "$SYSTEMD" = 1 ]; then
  [ "$ROOT" = 1 ] || die "a system node needs root (or use --no-systemd)"
  RABBIT_USER=rabbitmq
fi

# -- the node's configuration -----------------------------------------------------------------
say "RabbitMQ node configuration in $RABBIT_ETC"
install -d -m 0755 "$RABBIT_ETC"
install -d -m 0750 "$RABBIT_ETC/tls" "$RABBIT_HOME"
for file in ca.crt server.crt server.key; do  # the broker certificate of install-central.sh
  install -m 0640 "$MOSQ/certs/$file" "$RABBIT_ETC/tls/$file"
done
sed -e "s|@AMQP_PORT@|$AMQP_BIND:$AMQP_PORT|" -e "s|@MQTTS_PORT@|$MQTTS_PORT|" \
    -e "s|@CA@|$RABBIT_ETC/tls/ca.crt|" -e "s|@CERT@|$RABBIT_ETC/tls/server.crt|" \
    -e "s|@KEY@|$RABBIT_ETC/tls/server.key|" \
    "$SRC/deploy/rabbitmq/rabbitmq.conf.in" > "$RABBIT_ETC/rabbitmq.conf.tmp"
mv "$RABBIT_ETC/rabbitmq.conf.tmp" "$RABBIT_ETC/rabbitmq.conf"
install -m 0644 "$SRC/deploy/rabbitmq/enabled_plugins" "$RABBIT_ETC/enabled_plugins"
if [ "$ROOT" = 1 ] && id "$RABBIT_USER" >/dev/null 2>&1; then
  chown -R "root:$(id -gn "$RABBIT_USER")" "$RABBIT_ETC/tls"
  chown "$RABBIT_USER:$(id -gn "$RABBIT_USER")" "$RABBIT_HOME"
fi

# The Erlang cookie: every node of a cluster holds the same one. The file is read, never
# echoed; installed 0400 for the broker's user. A running node keeps the cookie it started
# with, so a changed cookie means a restart (below).
COOKIE=$RABBIT_HOME/.erlang.cookie
cookie_changed=0
if [ -n "$COOKIE_FILE" ]; then
  [ -s "$COOKIE_FILE" ] || die "--erlang-cookie: $COOKIE_FILE is missing or empty"
  if ! cmp -s "$COOKIE_FILE" "$COOKIE" 2>/dev/null; then
    cookie_changed=1
    [ ! -f "$COOKIE" ] || chmod 0600 "$COOKIE"
    install -m 0400 "$COOKIE_FILE" "$COOKIE.new"
    if [ "$ROOT" = 1 ]; then chown "$RABBIT_USER:$(id -gn "$RABBIT_USER")" "$COOKIE.new"; fi
  fi
fi

# -- central's AMQP password and its configuration --------------------------------------------
PASSWORD_AT=$ETC/amqp-password
if [ -n "$PASSWORD_FILE" ]; then
  [ -s "$PASSWORD_FILE" ] || die "--amqp-password-file: $PASSWORD_FILE is missing or empty"
  [ "$(realpath "$PASSWORD_FILE")" = "$(realpath -m "$PASSWORD_AT")" ] \
    || install -m 0640 "$PASSWORD_FILE" "$PASSWORD_AT"
elif [ ! -s "$PASSWORD_AT" ]; then
  say "central's AMQP password in $PASSWORD_AT"
  (umask 027 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))' \
    > "$PASSWORD_AT")
fi
chmod 0640 "$PASSWORD_AT"
[ "$ROOT" = 0 ] || chown "root:$GROUP" "$PASSWORD_AT"

say "central.yaml reads the cluster: ${NODES[*]}; aggregator configurations 1..$AGGREGATORS"
# central.yaml: broker.kind rabbitmq and one URL per node; aggregator-I.yaml: the same with
# its own client names and no case feed (the API process keeps it: one subscriber, not N)
"$VENV/bin/python" - "$CONF" "$PASSWORD_AT" "$AMQP_PORT" "$PARTITIONS" "$AGGREGATORS" \
  "${NODES[@]}" <<'PY'
import os
import sys
from pathlib import Path
from urllib.parse import quote

import yaml

conf, password_at, port, partitions, count, *nodes = sys.argv[1:]
password = quote(Path(password_at).read_text().strip(), safe="")
settings = yaml.safe_load(Path(conf).read_text())
broker = settings.setdefault("broker", {})
broker["kind"] = "rabbitmq"
broker["amqp"] = {
    **(broker.get("amqp") or {}),
    "urls": [f"amqp://central:{password}@{node}:{port}/" for node in nodes],
    "partitions": int(partitions),
}


def write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "w") as out:
        out.write("# Hallwatch central. Written by deploy/install/install-*.sh; see deploy/README.md.\n")
        yaml.safe_dump(data, out, allow_unicode=True, sort_keys=False)
    os.chmod(tmp, 0o640)
    stat = Path(conf).stat()
    if os.geteuid() == 0:
        os.chown(tmp, stat.st_uid, stat.st_gid)
    tmp.replace(path)


write(Path(conf), settings)
etc = Path(conf).parent
for i in range(1, int(count) + 1):
    own = yaml.safe_load(yaml.safe_dump(settings))
    own["broker"]["instance"] = f"{broker.get('instance', 'main')}-agg{i}"
    own["broker"].pop("feed_tls", None)
    write(etc / f"aggregator-{i}.yaml", own)
for stale in etc.glob("aggregator-*.yaml"):
    number = stale.stem.removeprefix("aggregator-")
    if not number.isdigit() or int(number) > int(count):
        stale.unlink()
PY

# -- systemd units ----------------------------------------------------------------------------
render() {  # as install-central.sh renders the API unit
  sed -e "s|/opt/hallwatch/venv|$VENV|g" -e "s|/etc/hallwatch|$ETC|g" \
      -e "s|/var/lib/hallwatch-central|$DATA|g" -e "s|/var/lib/hallwatch-broker|$BROKER_DIR|g" \
      -e "s|^User=hallwatch|User=$SERVICE_USER|" -e "s|^Group=hallwatch|Group=$GROUP|" "$1"
}
install -d -m 0755 "$UNITS"
for unit in hallwatch-aggregator@.service hallwatch-aggregators.target; do
  render "$SRC/deploy/systemd/$unit" > "$UNITS/$unit"
  chmod 0644 "$UNITS/$unit"
done

[ "$SYSTEMD" = 1 ] || { say "done (--no-systemd: nothing started)"; exit 0; }

# -- the node: start, join, central's user ----------------------------------------------------
ctl() { rabbitmqctl --quiet "$@"; }
systemctl disable --now hallwatch-broker-reload.path mosquitto.service >/dev/null 2>&1 || true
if [ "$cookie_changed" = 1 ]; then
  systemctl stop rabbitmq-server.service
  mv "$COOKIE.new" "$COOKIE"
fi
systemctl enable rabbitmq-server.service >/dev/null
systemctl restart rabbitmq-server.service
ctl await_startup --timeout 120
if [ -n "$JOIN" ]; then
  if ctl cluster_status --formatter json | "$VENV/bin/python" -c \
      'import json, sys; sys.exit(sys.argv[1] not in json.load(sys.stdin)["disk_nodes"])' "$JOIN"
  then
    say "already in the cluster of $JOIN"
  else
    say "joining the cluster of $JOIN"
    ctl stop_app
    ctl join_cluster "$JOIN"
    ctl start_app
    ctl await_startup --timeout 120
  fi
else
  # users and permissions are cluster-wide: made once, on the first node
  if ctl list_users --formatter json | "$VENV/bin/python" -c \
      'import json, sys; sys.exit(not any(u["user"] == "central" for u in json.load(sys.stdin)))'
  then
    ctl change_password central "$(cat "$PASSWORD_AT")" >/dev/null  # argv of a local root call
  else
    ctl add_user central "$(cat "$PASSWORD_AT")" >/dev/null
  fi
  # central declares and reads the partitions (hw.*) and publishes acks to amq.topic
  ctl set_permissions -p / central '^hw\..*' '^(amq\.topic|hw\..*)$' '^(amq\.topic|hw\..*)$'
fi

# -- aggregators ------------------------------------------------------------------------------
systemctl daemon-reload
systemctl enable hallwatch-aggregators.target >/dev/null
for unit in $(systemctl list-units --all --plain --no-legend 'hallwatch-aggregator@*.service' \
                | awk '{print $1}'); do
  number=${unit#hallwatch-aggregator@}; number=${number%.service}
  if [ "$number" -gt "$AGGREGATORS" ]; then systemctl disable --now "$unit" >/dev/null; fi
done
for i in $(seq 1 "$AGGREGATORS"); do
  systemctl enable "hallwatch-aggregator@$i.service" >/dev/null
  systemctl restart "hallwatch-aggregator@$i.service"
done
systemctl restart hallwatch-central.service
say "done: node $(hostname -s), MQTTS on $MQTTS_PORT, $AGGREGATORS aggregators and the API"

#!/bin/bash
# The province broker: N RabbitMQ nodes on one machine (or one node per machine with --nodes 1
# and --join), clustered, with the MQTT plugin on TLS and the consistent-hash exchange.
#
#   rabbitmq-cluster.sh start --base DIR --nodes 3 --amqp-port 5680 --mqtts-port 8890 \
#       --dist-port 25680 --ca CA --cert CERT --key KEY [--central-password PW] [--name hw]
#       node i (1..N) is <name><i>@localhost on amqp-port+i-1, mqtts-port+i-1, dist-port+i-1;
#       nodes 2..N join node 1. Prints one line per node: name, AMQP port, MQTTS port, pid.
#   rabbitmq-cluster.sh add-gateway --base DIR --hall H --gateway G
#       the gateway's certificate user (gw.H.G) with its topic permissions
#   rabbitmq-cluster.sh stop --base DIR
#
# The node name prefix (--name, default hw) is kept in DIR/name: two clusters on one machine
# (the system's, a test run's, another's) must not share Erlang node names.
#
# Installs rabbitmq-server with apt-get when it is absent. The system instance (if any) is left
# alone: every node here has its own name, ports, data, logs, config and Erlang cookie.
set -euo pipefail

DEPLOY=$(cd "$(dirname "$0")/.." && pwd)
SBIN=/usr/lib/rabbitmq/bin
BASE="" NODES=3 AMQP=5680 MQTTS=8890 DIST=25680 CA="" CERT="" KEY=""
CENTRAL_USER=central CENTRAL_PASSWORD="" HALL="" GATEWAY="" NAME=""
HOST=localhost

cmd=${1:-}
shift || true
while [ $# -gt 0 ]; do
    case "$1" in
        --base) BASE=$2 ;;
        --nodes) NODES=$2 ;;
        --amqp-port) AMQP=$2 ;;
        --mqtts-port) MQTTS=$2 ;;
        --dist-port) DIST=$2 ;;
        --ca) CA=$2 ;;
        --cert) CERT=$2 ;;
        --key) KEY=$2 ;;
        --central-user) CENTRAL_USER=$2 ;;
        --central-password) CENTRAL_PASSWORD=$2 ;;
        --hall) HALL=$2 ;;
        --gateway) GATEWAY=$2 ;;
        --name) NAME=$2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift 2
done
[ -n "$BASE" ] || { echo "--base DIR is required" >&2; exit 2; }
BASE=$(mkdir -p "$BASE" && cd "$BASE" && pwd)
if [ -z "$NAME" ]; then NAME=$(cat "$BASE/name" 2>/dev/null || echo hw); fi
[[ "$NAME" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || { echo "--name: letters, digits, _ and - only" >&2; exit 2; }

ensure_installed() {
    if [ ! -x "$SBIN/rabbitmq-server" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server
        # Debian starts a system instance on 5672; it is not ours to stop
    fi
}

node_env() {  # node_env I: the environment of node I
    local i=$1 dir="$BASE/n$1"
    export HOME="$BASE"  # the cluster's own Erlang cookie: $BASE/.erlang.cookie
    export RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf"
    export RABBITMQ_NODENAME="$NAME$i@$HOST"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=$((AMQP + i - 1))
    export RABBITMQ_DIST_PORT=$((DIST + i - 1))
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_PID_FILE="$dir/pid"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins"
    export RABBITMQ_FEATURE_FLAGS_FILE="$dir/feature_flags"
    export RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand"
}

ctl() {  # ctl I ARGS...: rabbitmqctl against node I
    local i=$1
    shift
    (node_env "$i" && "$SBIN/rabbitmqctl" -n "$NAME$i@$HOST" "$@")
}

render_conf() {  # render_conf I
    local i=$1 dir="$BASE/n$1"
    mkdir -p "$dir/mnesia" "$dir/log"
    sed -e "s|@AMQP_PORT@|127.0.0.1:$((AMQP + i - 1))|" \
        -e "s|@MQTTS_PORT@|$((MQTTS + i - 1))|" \
        -e "s|@CA@|$CA|" -e "s|@CERT@|$CERT|" -e "s|@KEY@|$KEY|" \
        "$DEPLOY/rabbitmq/rabbitmq.conf.in" >"$dir/rabbitmq.conf"
    echo "[]." >"$dir/advanced.config"
}

start_node() {  # start_node I: in the background; waits until it runs
    local i=$1 dir="$BASE/n$1"
    render_conf "$i"
    (node_env "$i" && exec setsid "$SBIN/rabbitmq-server" >>"$dir/log/console.log" 2>&1 </dev/null) &
    ctl "$i" wait --timeout 120 "$dir/pid" >/dev/null
}

start() {
    [ -n "$CA" ] && [ -n "$CERT" ] && [ -n "$KEY" ] || { echo "--ca, --cert, --key needed" >&2; exit 2; }
    ensure_installed
    echo "$NAME" >"$BASE/name"
    cp "$DEPLOY/rabbitmq/enabled_plugins" "$BASE/enabled_plugins"
    : >"$BASE/rabbitmq-env.conf"
    if [ ! -f "$BASE/.erlang.cookie" ]; then
        (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$BASE/.erlang.cookie")
    fi
    chmod 400 "$BASE/.erlang.cookie"
    # the nodes boot side by side (10-20 s each), then 2..N join node 1
    local i waits=()
    for i in $(seq 1 "$NODES"); do
        start_node "$i" &
        waits+=($!)
    done
    for i in "${waits[@]}"; do wait "$i"; done
    for i in $(seq 2 "$NODES"); do
        ctl "$i" stop_app >/dev/null
        ctl "$i" join_cluster "${NAME}1@$HOST" >/dev/null
        ctl "$i" start_app >/dev/null
    done
    if [ -n "$CENTRAL_PASSWORD" ]; then
        ctl 1 add_user "$CENTRAL_USER" "$CENTRAL_PASSWORD" >/dev/null 2>&1 ||
            ctl 1 change_password "$CENTRAL_USER" "$CENTRAL_PASSWORD" >/dev/null
        # central declares and reads the partitions (hw.*) and publishes acks to amq.topic
        ctl 1 set_permissions -p / "$CENTRAL_USER" '^hw\..*' '^(amq\.topic|hw\..*)$' \
            '^(amq\.topic|hw\..*)$' >/dev/null
    fi
    for i in $(seq 1 "$NODES"); do
        echo "$NAME$i@$HOST $((AMQP + i - 1)) $((MQTTS + i - 1)) $(cat "$BASE/n$i/pid")"
    done
}

add_gateway() {
    [ -n "$HALL" ] && [ -n "$GATEWAY" ] || { echo "--hall and --gateway needed" >&2; exit 2; }
    local user="gw.$HALL.$GATEWAY" node="" dir
    for dir in "$BASE"/n*; do  # any running node: users and permissions are cluster-wide
        if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            node=${dir##*/n}
            break
        fi
    done
    [ -n "$node" ] || { echo "no node of $BASE is running" >&2; exit 1; }
    # login is by certificate only: the user has no password
    ctl "$node" add_user "$user" "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
        >/dev/null 2>&1 || true
    ctl "$node" clear_password "$user" >/dev/null
    # its MQTT session queue (client id = gateway id) and amq.topic, nothing else
    local own="mqtt-subscription-${GATEWAY}qos[01]"
    ctl "$node" set_permissions -p / "$user" "^$own\$" "^(amq\\.topic|$own)\$" \
        "^(amq\\.topic|$own)\$" >/dev/null
    # topic authorisation on amq.topic: publish its own channels, read its acks and commands
    local topic="hw\\.v1\\.$HALL\\.$GATEWAY"
    ctl "$node" set_topic_permissions -p / "$user" amq.topic \
        "^$topic\\.(events|state|result|evidence)\$" "^$topic\\.(ack|cmd|receipt)\$" >/dev/null
}

stop() {
    for dir in "$BASE"/n*; do
        [ -f "$dir/pid" ] || continue
        local pid
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/pid"
    done
}

case "$cmd" in
    start) start ;;
    add-gateway) add_gateway ;;
    stop) stop ;;
    *) echo "usage: $0 start|add-gateway|stop --base DIR ..." >&2; exit 2 ;;
esac

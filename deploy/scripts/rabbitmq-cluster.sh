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
#   rabbitmq-cluster.sh add-gateways --base DIR --file LIST
#       the same for every "HALL GATEWAY" line of LIST (# comments allowed), in one
#       import_definitions call: ~1 s for hundreds of gateways instead of ~1 s each
#   rabbitmq-cluster.sh add-bridge --base DIR --bridge NAME --halls H1,H2,...
#       a tier bridge's certificate user (bridge.NAME): it publishes its halls' gateway channels
#       and its link notification, reads its halls' acks, commands and receipts
#   rabbitmq-cluster.sh check-bridge --base DIR --bridge NAME --halls H1,H2,...
#       exits 1, naming each refused topic, unless the cluster lets bridge.NAME carry every
#       one of these halls (the list its county renders with render_bridge_config(halls=...)):
#       RabbitMQ closes the bridge's link at the first refused subscribe or publish, so one
#       hall missing here stops every hall of the county (docs/province.md#tier-bridges)
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
CENTRAL_USER=central CENTRAL_PASSWORD="" HALL="" GATEWAY="" NAME="" LIST="" BRIDGE="" HALLS=""
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
        --file) LIST=$2 ;;
        --bridge) BRIDGE=$2 ;;
        --halls) HALLS=$2 ;;
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

running_node() {  # the number of a running node: users and permissions are cluster-wide
    local dir
    for dir in "$BASE"/n*; do
        if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "${dir##*/n}"
            return
        fi
    done
    echo "no node of $BASE is running" >&2
    exit 1
}

check_id() {  # check_id WHAT VALUE: ids are topic levels and regex literals, so [A-Za-z0-9_-]
    [[ "$2" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "$1 '$2': letters, digits, _ and - only" >&2; exit 2; }
}

# One user's definitions, as JSON objects (regexes with their backslashes doubled for JSON).
# Login is by certificate only: the user has no password (an empty hash matches none).
user_json() {  # user_json USER
    printf '{"name":"%s","password_hash":"","hashing_algorithm":"rabbit_password_hashing_sha256","tags":[],"limits":{}}' "$1"
}
permission_json() {  # permission_json USER QUEUE: its MQTT session queue and amq.topic
    printf '{"user":"%s","vhost":"/","configure":"^%s$","write":"^(amq\\\\.topic|%s)$","read":"^(amq\\\\.topic|%s)$"}' \
        "$1" "$2" "$2" "$2"
}
topic_json() {  # topic_json USER WRITE READ (already JSON-escaped)
    printf '{"user":"%s","vhost":"/","exchange":"amq.topic","write":"%s","read":"%s"}' "$1" "$2" "$3"
}

gateway_definitions() {  # gateway_definitions LIST OUT: users, permissions, topic permissions
    local list=$1 out=$2 hall gateway rest user topic sep="" users="" perms="" topics=""
    while read -r hall gateway rest; do
        [ -n "$hall" ] && [ "${hall:0:1}" != "#" ] || continue
        check_id hall "$hall"
        check_id gateway "${gateway:-}"
        [ -z "$rest" ] || { echo "$list: one 'HALL GATEWAY' per line" >&2; exit 2; }
        user="gw.$hall.$gateway"
        # its MQTT session queue (client id = gateway id) and amq.topic, nothing else;
        # on amq.topic: publish its own channels, read its acks and commands
        topic="hw\\\\.v1\\\\.$hall\\\\.$gateway"
        users+="$sep$(user_json "$user")"
        perms+="$sep$(permission_json "$user" "mqtt-subscription-${gateway}qos[01]")"
        topics+="$sep$(topic_json "$user" "^$topic\\\\.(events|live|state|result|evidence)\$" \
            "^$topic\\\\.(ack|cmd|receipt)\$")"
        sep=,
    done <"$list"
    [ -n "$users" ] || { echo "$list: no gateway" >&2; exit 2; }
    printf '{"users":[%s],"permissions":[%s],"topic_permissions":[%s]}\n' \
        "$users" "$perms" "$topics" >"$out"
}

import_definitions() {  # import_definitions FILE: one call for every user in it
    ctl "$(running_node)" import_definitions "$1" >/dev/null
}

add_gateways() {
    [ -n "$LIST" ] || { echo "--file LIST needed" >&2; exit 2; }
    local defs
    defs=$(mktemp "$BASE/definitions.XXXXXX")
    gateway_definitions "$LIST" "$defs"
    import_definitions "$defs"
    rm -f "$defs"
}

add_gateway() {
    [ -n "$HALL" ] && [ -n "$GATEWAY" ] || { echo "--hall and --gateway needed" >&2; exit 2; }
    LIST=$(mktemp "$BASE/gateway.XXXXXX")
    echo "$HALL $GATEWAY" >"$LIST"
    add_gateways
    rm -f "$LIST"
}

add_bridge() {
    [ -n "$BRIDGE" ] && [ -n "$HALLS" ] || { echo "--bridge and --halls needed" >&2; exit 2; }
    check_id bridge "$BRIDGE"
    local user="bridge.$BRIDGE" hall alternatives="" sep="" defs
    for hall in ${HALLS//,/ }; do
        check_id hall "$hall"
        alternatives+="$sep$hall"
        sep="|"
    done
    # its halls' gateways (any gateway id: the county registers them), on amq.topic; its
    # link notification (Mosquitto's bridge publishes it upstream, and it is its will);
    # a refused publish closes the link on RabbitMQ 3.10, so the bridge's topic lines must
    # name these halls only (docs/province.md#tier-bridges); it subscribes with + for the
    # gateway (hw/v1/H/+/ack), which RabbitMQ checks as the routing key hw.v1.H.*.ack
    local halls="hw\\\\.v1\\\\.($alternatives)\\\\."
    local notification="hw\\\\.bridge\\\\.$BRIDGE\\\\.state"
    defs=$(mktemp "$BASE/definitions.XXXXXX")
    printf '{"users":[%s],"permissions":[%s],"topic_permissions":[%s]}\n' \
        "$(user_json "$user")" \
        "$(permission_json "$user" "mqtt-subscription-bridge\\\\.${BRIDGE}qos[01]")" \
        "$(topic_json "$user" \
            "^(${halls}[A-Za-z0-9_-]+\\\\.(events|live|state|result|evidence)|$notification)\$" \
            "^${halls}([A-Za-z0-9_-]+|\\\\*)\\\\.(ack|cmd|receipt)\$")" >"$defs"
    import_definitions "$defs"
    rm -f "$defs"
    check_bridge
}

may() {  # may REGEX KEY: whether a topic permission regex admits a routing key
    [ -n "$1" ] && printf '%s\n' "$2" | grep -Eq -- "$1"
}

check_bridge() {
    [ -n "$BRIDGE" ] && [ -n "$HALLS" ] || { echo "--bridge and --halls needed" >&2; exit 2; }
    check_id bridge "$BRIDGE"
    local user="bridge.$BRIDGE" listing write="" read="" hall key channel refused=""
    if ! listing=$(ctl "$(running_node)" list_user_topic_permissions "$user" --quiet \
        --no-table-headers 2>&1); then
        echo "$user: no such user on this cluster: run add-bridge --bridge $BRIDGE" \
            "--halls $HALLS" >&2
        exit 1
    fi
    # vhost, exchange, write, read (tab-separated); the bridge publishes on amq.topic only
    IFS=$'\t' read -r _ _ write read < <(printf '%s\n' "$listing" | grep -P '^/\tamq\.topic\t') ||
        true
    for hall in ${HALLS//,/ }; do
        check_id hall "$hall"
        for channel in events live state result evidence; do
            key="hw.v1.$hall.gateway.$channel"
            may "$write" "$key" || refused+=" publish $key"
        done
        for channel in ack cmd receipt; do
            key="hw.v1.$hall.*.$channel"  # the bridge subscribes with + for the gateway
            may "$read" "$key" || refused+=" subscribe $key"
        done
    done
    key="hw.bridge.$BRIDGE.state"
    may "$write" "$key" || refused+=" publish $key"
    if [ -n "$refused" ]; then
        echo "$user may not carry $HALLS: the cluster would close its link at each of:$refused" \
            "(rerun add-bridge with every hall the county's bridge carries)" >&2
        exit 1
    fi
    echo "$user may carry $HALLS"
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
    add-gateways) add_gateways ;;
    add-bridge) add_bridge ;;
    check-bridge) check_bridge ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|add-gateway|add-gateways|add-bridge|check-bridge|stop --base DIR ..." >&2
        exit 2
        ;;
esac

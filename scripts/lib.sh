# Shell helpers shared by the scripts (sourced, not run).

# Whether something listens on TCP port $1. Not a connect attempt: on a port
# in the ephemeral range, a connect can reach itself and "succeed".
listening() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE ":$hex [0-9A-F]+:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Waits until port $1 listens; fails after $3 seconds (default 60) or as soon
# as process $4 (optional) is gone. $2 names what should listen.
wait_for_port() {
    local port=$1 what=$2 deadline=$((SECONDS + ${3:-60})) pid=${4:-}
    until listening "$port"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            echo "$what exited before listening on port $port" >&2
            return 1
        fi
        if ((SECONDS > deadline)); then
            echo "$what is not listening on port $port" >&2
            return 1
        fi
        sleep 0.1
    done
}

# For a measuring script run from the repository root: $work_dir and
# $broker_home, removed (the broker there stopped) when the script exits.
scratch_dirs() {
    work_dir=$(mktemp -d)
    broker_home=$(mktemp -d)
    trap 'KAFKA_HOME=$broker_home scripts/kafka.sh stop || true; rm -rf "$broker_home" "$work_dir"' EXIT
}

# KAFKA_BOOTSTRAP as given, else a broker of its own in $broker_home. Its
# deleted topics go after 1 s instead of 60: a benchmark deletes a topic of
# hundreds of MB every second or so (14 rounds of scripts/bench/ab.py left
# 12 GB of deleted topics on the broker), and their dirty pages would be
# written to disk under the runs that follow.
use_or_start_broker() {
    if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
        local port=$((29092 + RANDOM % 1000))
        KAFKA_BOOTSTRAP=$(KAFKA_HOME=$broker_home KAFKA_PORT=$port \
            KAFKA_EXTRA_PROPERTIES=log.segment.delete.delay.ms=1000 scripts/kafka.sh start | tail -n 1)
    fi
}

# Refuses to measure beside another Kafka broker on this machine (a test's,
# left running): on two cores its background work moves every number.
# Counts the local processes of Kafka's main class, the measured broker
# among them when it is local.
only_one_broker() {
    local pids
    pids=$(pgrep -f 'kafka\.Kafka' | tr '\n' ' ' || true)
    if [ "$(wc -w <<<"$pids")" -gt 1 ]; then
        echo "$1: Kafka brokers run on this machine with pids $pids: stop all but the one measured against" >&2
        exit 1
    fi
}

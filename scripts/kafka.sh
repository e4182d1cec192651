#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft mode) on loopback, from Maven Central jars.
#
#   scripts/kafka.sh fetch            download the broker jars once (cached)
#   scripts/kafka.sh start            one broker; prints host:port on its last line
#   scripts/kafka.sh cluster          three brokers; prints host:port,host:port,host:port
#   scripts/kafka.sh stop             stop every node started from KAFKA_HOME
#   scripts/kafka.sh status           running or not, pids, bootstrap address
#   scripts/kafka.sh logs [NODE]      print a node's log (default node 1)
#   scripts/kafka.sh kill-node N      SIGKILL node N (fault tests)
#   scripts/kafka.sh stop-node N      stop node N cleanly (SIGTERM), as a rolling restart does
#   scripts/kafka.sh pause-node N     SIGSTOP node N; resume-node N sends SIGCONT
#   scripts/kafka.sh start-node N     restart node N of an existing setup
#   scripts/kafka.sh unregister-node N  make the controller forget running node N:
#                                     until restarted it lists no broker to
#                                     clients, as a fenced broker does
#
# Environment:
#   KAFKA_HOME             data, config and logs (default ~/.cache/gst-kafka/broker)
#   KAFKA_PORT             first client port (default 9092; node N uses +N-1);
#                          remembered in KAFKA_HOME for the other commands
#   KAFKA_CONTROLLER_PORT  first controller port (default KAFKA_PORT+100)
#   KAFKA_SASL_PORT        first SASL_PLAINTEXT port (default KAFKA_PORT+200), a test
#                          listener: mechanism PLAIN, user alice / password alice-secret,
#                          and SCRAM-SHA-512, user bob / password bob-secret (stored
#                          when a node's data is first formatted: older homes lack it)
#   KAFKA_SSL_PORT         first SSL port (default KAFKA_PORT+300), a test listener with
#                          a throwaway CA made once per KAFKA_HOME: its certificate
#                          is KAFKA_HOME/tls/ca.pem (librdkafka's ssl.ca.location)
#   KAFKA_CACHE            jar cache (default ~/.cache/gst-kafka/jars)
#   KAFKA_HEAP             broker heap (default 512M; 256M per node in a cluster)
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
#   KAFKA_AUTO_CREATE_TOPICS  true (default, as stock Kafka: producing to or
#                          subscribing to a missing topic creates it) or false
#   KAFKA_EXTRA_PROPERTIES server.properties lines added to every node's, one per
#                          line (the benchmark's storage settings)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# The one place where the Kafka version is pinned.
KAFKA_VERSION=4.4.0
LOG4J_VERSION=2.26.1
# Kafka's own dependencies bring slf4j 1.7, which does not see the log4j2
# binding for slf4j 2: without this the broker runs silently.
SLF4J_VERSION=2.0.17
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

# Frames are larger than Kafka's 1 MB default; this is the broker-wide limit
# for a record batch (topics inherit it unless they set max.message.bytes).
MAX_MESSAGE_BYTES=16777216

CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/gst-kafka
KAFKA_HOME=${KAFKA_HOME:-$CACHE_ROOT/broker}
# The ports a KAFKA_HOME was last started with, unless given again.
if [ -z "${KAFKA_PORT:-}" ] && [ -f "$KAFKA_HOME/ports" ]; then
    # shellcheck source=/dev/null
    . "$KAFKA_HOME/ports"
fi
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 100))}
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-$((KAFKA_PORT + 200))}
KAFKA_SSL_PORT=${KAFKA_SSL_PORT:-$((KAFKA_PORT + 300))}
KAFKA_CACHE=${KAFKA_CACHE:-$CACHE_ROOT/jars}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_AUTO_CREATE_TOPICS=${KAFKA_AUTO_CREATE_TOPICS:-true}
LIBS=$KAFKA_CACHE/kafka-$KAFKA_VERSION-log4j-$LOG4J_VERSION-slf4j-$SLF4J_VERSION

die() {
    echo "kafka.sh: $*" >&2
    exit 1
}

fetch() {
    if [ -f "$LIBS/.complete" ]; then
        return
    fi
    command -v mvn >/dev/null || die "Maven (mvn) is not installed"
    command -v java >/dev/null || die "Java is not installed"
    local pom_dir
    pom_dir=$(mktemp -d)
    cat >"$pom_dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.gstkafka</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
    echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars into $LIBS" >&2
    rm -rf "$LIBS.tmp"
    mkdir -p "$LIBS.tmp"
    (cd "$pom_dir" && mvn -q -B -Dstyle.color=never "$DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp") >&2 ||
        die "Maven could not fetch the Kafka jars"
    rm -rf "$pom_dir" "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    touch "$LIBS/.complete"
}

node_count() {
    cat "$KAFKA_HOME/nodes" 2>/dev/null || echo 0
}

client_port() { echo $((KAFKA_PORT + $1 - 1)); }
controller_port() { echo $((KAFKA_CONTROLLER_PORT + $1 - 1)); }
sasl_port() { echo $((KAFKA_SASL_PORT + $1 - 1)); }
ssl_port() { echo $((KAFKA_SSL_PORT + $1 - 1)); }

bootstrap() {
    local n i list=""
    n=$(node_count)
    for ((i = 1; i <= n; i++)); do
        list+="${list:+,}127.0.0.1:$(client_port "$i")"
    done
    echo "$list"
}

# Whether process $1 runs. An exited broker whose parent has not reaped it
# yet still answers kill -0: only a state other than zombie (Z) or dead (X)
# counts.
alive() {
    local state
    state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

node_pid() {
    local pid_file=$KAFKA_HOME/node$1/broker.pid
    [ -f "$pid_file" ] || return 1
    local pid
    pid=$(cat "$pid_file")
    alive "$pid" || return 1
    echo "$pid"
}

# A throwaway CA and a certificate it signs for 127.0.0.1 (clients check the
# name), made once per KAFKA_HOME. Kafka reads the unencrypted key and the
# certificate from one PEM file.
make_tls() {
    local dir=$KAFKA_HOME/tls
    if [ -f "$dir/broker.pem" ]; then
        return
    fi
    command -v openssl >/dev/null || die "openssl is not installed"
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    (
        cd "$dir.tmp"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=gst-kafka test CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile broker.ext -out broker.crt
        cat broker.key broker.crt >broker.pem
    ) >/dev/null 2>"$KAFKA_HOME/tls.log" || die "making the test CA failed (see $KAFKA_HOME/tls.log)"
    mv "$dir.tmp" "$dir"
}

write_config() {
    local n=$1 id=$2 dir=$KAFKA_HOME/node$2
    local voters="" i replication=$((n < 3 ? n : 3))
    for ((i = 1; i <= n; i++)); do
        voters+="${voters:+,}$i@127.0.0.1:$(controller_port "$i")"
    done
    mkdir -p "$dir/data"
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(client_port "$id"),CONTROLLER://127.0.0.1:$(controller_port "$id"),SASL_PLAINTEXT://127.0.0.1:$(sasl_port "$id"),SSL://127.0.0.1:$(ssl_port "$id")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$id"),SASL_PLAINTEXT://127.0.0.1:$(sasl_port "$id"),SSL://127.0.0.1:$(ssl_port "$id")
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$KAFKA_HOME/tls/broker.pem
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$replication
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=$MAX_MESSAGE_BYTES
replica.fetch.max.bytes=$MAX_MESSAGE_BYTES
auto.create.topics.enable=$KAFKA_AUTO_CREATE_TOPICS
${KAFKA_EXTRA_PROPERTIES:-}
PROPS
    cat >"$dir/log4j2.properties" <<'LOG'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
LOG
}

launch_node() {
    local id=$1 dir=$KAFKA_HOME/node$1 heap
    if node_pid "$id" >/dev/null; then
        return
    fi
    heap=${KAFKA_HEAP:-$(($(node_count) > 1 ? 256 : 512))M}
    # setsid: the broker survives the caller's terminal and is stopped by pid.
    setsid java "-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true "-Dlog4j2.configurationFile=$dir/log4j2.properties" \
        -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        >>"$dir/broker.log" 2>&1 </dev/null &
    echo $! >"$dir/broker.pid"
}

wait_ready() {
    local id=$1 port deadline
    port=$(client_port "$id")
    deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ! listening "$port"; do
        if ! node_pid "$id" >/dev/null; then
            tail -n 40 "$KAFKA_HOME/node$id/broker.log" >&2 || true
            die "broker node $id exited before serving on port $port"
        fi
        if ((SECONDS > deadline)); then
            tail -n 40 "$KAFKA_HOME/node$id/broker.log" >&2 || true
            die "broker node $id not ready on port $port after ${KAFKA_START_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

start_nodes() {
    local n=$1 i existing
    existing=$(node_count)
    if [ "$existing" != 0 ] && [ "$existing" != "$n" ] && [ -n "$(running_pids)" ]; then
        die "a $existing-node setup is running in $KAFKA_HOME; stop it first"
    fi
    fetch
    mkdir -p "$KAFKA_HOME"
    printf 'KAFKA_PORT=%s\nKAFKA_CONTROLLER_PORT=%s\nKAFKA_SASL_PORT=%s\nKAFKA_SSL_PORT=%s\n' \
        "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT" "$KAFKA_SSL_PORT" >"$KAFKA_HOME/ports"
    make_tls
    if [ "$existing" != "$n" ]; then
        rm -rf "$KAFKA_HOME"/node*
        echo "$n" >"$KAFKA_HOME/nodes"
    fi
    local cluster_id
    if [ -f "$KAFKA_HOME/cluster.id" ]; then
        cluster_id=$(cat "$KAFKA_HOME/cluster.id")
    else
        cluster_id=$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
        echo "$cluster_id" >"$KAFKA_HOME/cluster.id"
    fi
    for ((i = 1; i <= n; i++)); do
        if node_pid "$i" >/dev/null; then
            continue
        fi
        write_config "$n" "$i"
        # SCRAM credentials live in the cluster metadata: KRaft takes them
        # at format time (the SASL listener's user bob).
        java -Xmx256M -cp "$LIBS/*" kafka.tools.StorageTool format -t "$cluster_id" \
            -c "$KAFKA_HOME/node$i/server.properties" --ignore-formatted \
            --add-scram 'SCRAM-SHA-512=[name=bob,password=bob-secret]' \
            >>"$KAFKA_HOME/node$i/broker.log" 2>&1 ||
            die "formatting storage of node $i failed (see $KAFKA_HOME/node$i/broker.log)"
        launch_node "$i"
    done
    for ((i = 1; i <= n; i++)); do
        wait_ready "$i"
    done
    bootstrap
}

running_pids() {
    local n i
    n=$(node_count)
    for ((i = 1; i <= n; i++)); do
        node_pid "$i" || true
    done
}

stop_node() {
    local id=$1 pid deadline
    pid=$(node_pid "$id") || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$KAFKA_HOME/node$id/broker.pid"
}

stop_all() {
    local n i
    n=$(node_count)
    # In a cluster, stopping the brokers one by one leaves the last ones
    # without a quorum and slow to shut down: signal all, then wait.
    for ((i = 1; i <= n; i++)); do
        stop_node "$i" &
    done
    wait
}

status() {
    local n i pid running=0
    n=$(node_count)
    for ((i = 1; i <= n; i++)); do
        if pid=$(node_pid "$i"); then
            echo "node $i: running, pid $pid, 127.0.0.1:$(client_port "$i") (SASL_PLAINTEXT: $(sasl_port "$i"), SSL: $(ssl_port "$i"))"
            running=$((running + 1))
        else
            echo "node $i: stopped"
        fi
    done
    if ((running == 0)); then
        echo "not running ($KAFKA_HOME)"
        return 3
    fi
    echo "bootstrap: $(bootstrap)"
}

require_node() {
    [[ ${1:-} =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= $(node_count))) ||
        die "no node '${1:-}' in $KAFKA_HOME (nodes: $(node_count))"
}

case ${1:-} in
fetch) fetch && echo "$LIBS" ;;
start) start_nodes 1 ;;
cluster) start_nodes 3 ;;
stop) stop_all ;;
status) status ;;
logs)
    require_node "${2:-1}"
    cat "$KAFKA_HOME/node${2:-1}/broker.log"
    ;;
kill-node)
    require_node "${2:-}"
    pid=$(node_pid "$2") || die "node $2 is not running"
    kill -KILL "$pid"
    # Gone for sure (ports and the data directory lock released) on return.
    while alive "$pid"; do sleep 0.05; done
    ;;
stop-node)
    require_node "${2:-}"
    stop_node "$2"
    ;;
pause-node | resume-node)
    require_node "${2:-}"
    pid=$(node_pid "$2") || die "node $2 is not running"
    if [ "$1" = pause-node ]; then kill -STOP "$pid"; else kill -CONT "$pid"; fi
    ;;
start-node)
    require_node "${2:-}"
    fetch
    launch_node "$2"
    wait_ready "$2"
    bootstrap
    ;;
unregister-node)
    require_node "${2:-}"
    node_pid "$2" >/dev/null || die "node $2 is not running"
    fetch
    # java runs the source file itself (a JDK's compiler); the broker's jars
    # hold the Admin client.
    command -v javac >/dev/null || die "unregister-node needs a JDK (javac): scripts/setup.sh installs it"
    java -Xmx128M -cp "$LIBS/*" "$(dirname "$0")/kafka/UnregisterBroker.java" "$(bootstrap)" "$2"
    ;;
*)
    sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

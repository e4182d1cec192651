#!/usr/bin/env bash
# Camera to browser through Kafka, in one command:
#   RTSP camera -> kafkasink -> Kafka topic -> kafkasrc -> mjpeghttpsink -> browser
#
# Installs what is missing, builds the plugin, starts a local broker unless
# BROKERS is given and a test camera unless RTSP_URL is given, runs both
# pipelines and prints the URL to open once a frame has gone all the way,
# camera → Kafka → viewer (/snapshot.jpg answers). When a stage fails, then
# or later, it exits non-zero naming it: camera, broker, producer or viewer.
# Ctrl-C stops everything it started.
#
# Environment:
#   RTSP_URL      a real camera (default: the test camera, examples/test-camera.rs)
#   BROKERS       an existing Kafka cluster, host:port[,host:port…] (default: a local broker)
#   TOPIC         default rtsp-stream
#   HTTP_ADDRESS  default 127.0.0.1 (0.0.0.0 exposes the stream to the network)
#   HTTP_PORT     default 8080
#   DEMO_SECONDS  stop by itself after this many seconds (default: run until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

TOPIC=${TOPIC:-rtsp-stream}
HTTP_ADDRESS=${HTTP_ADDRESS:-127.0.0.1}
HTTP_PORT=${HTTP_PORT:-8080}
CAMERA_PORT=${CAMERA_PORT:-8554}

pids=()
names=()
started_broker=""
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping"
    local i
    for i in "${!pids[@]}"; do
        # gst-launch-1.0 turns SIGINT into EOS; the camera, started in the
        # background of a script, ignores SIGINT.
        if [ "${names[i]}" = camera ]; then
            kill -TERM "${pids[i]}" 2>/dev/null || true
        else
            kill -INT "${pids[i]}" 2>/dev/null || true
        fi
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "$started_broker" ]; then
        scripts/kafka.sh stop
    fi
}
trap cleanup EXIT INT TERM

# Stops the demo, naming the stage that failed.
fail() {
    echo "demo: FAILED at the $1: $2" >&2
    exit 1
}

# Runs "$@" in the background as stage $name.
start_stage() {
    local name=$1
    shift
    "$@" &
    pids+=($!)
    names+=("$name")
}

# Fails naming the first stage whose process is gone.
check_stages() {
    local i
    for i in "${!pids[@]}"; do
        kill -0 "${pids[i]}" 2>/dev/null || fail "${names[i]}" "it stopped (its messages are above)"
    done
    if [ -n "$started_broker" ] && ! scripts/kafka.sh status >/dev/null 2>&1; then
        fail broker "the local Kafka broker stopped (scripts/kafka.sh logs)"
    fi
}

# Waits up to $1 s for command $2… to succeed, checking the stages meanwhile.
await() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        check_stages
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# A camera that already sends JPEG is published as it is; anything else
# (H.264, H.265) is decoded and encoded to JPEG for the browser.
probe_camera() {
    local report
    # gst-discoverer-1.0 exits 0 also when it could not open the URL.
    report=$(gst-discoverer-1.0 -t 10 "$RTSP_URL" 2>&1) || true
    if ! echo "$report" | grep -qE "video(\(| #[0-9]+:)"; then
        fail camera "no video from $RTSP_URL: $(echo "$report" | grep -vE '^(Analyzing|Done discovering)' | tr -s '\n ' ' ')"
    fi
    if echo "$report" | grep -qE "video #[0-9]+: JPEG"; then
        ingest="rtpjpegdepay ! jpegparse"
    else
        ingest="decodebin ! videoconvert ! jpegenc quality=85"
    fi
}

scripts/setup.sh
# A real camera is checked before the build, so that a wrong address is
# told in seconds.
[ -z "${RTSP_URL:-}" ] || probe_camera
echo "demo: building the plugin"
cargo build --release --lib --example test-camera
export GST_PLUGIN_PATH=$PWD/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}

if [ -z "${BROKERS:-}" ]; then
    scripts/kafka.sh status >/dev/null 2>&1 || started_broker=yes
    BROKERS=$(scripts/kafka.sh start | tail -n 1) || fail broker "scripts/kafka.sh start failed (scripts/kafka.sh logs)"
fi
echo "demo: Kafka at $BROKERS"
kcat -L -b "$BROKERS" -m 10 >/dev/null 2>&1 || fail broker "no Kafka broker answers at $BROKERS"

if [ -z "${RTSP_URL:-}" ]; then
    start_stage camera target/release/examples/test-camera --port "$CAMERA_PORT"
    wait_for_port "$CAMERA_PORT" "the test camera" 60 "${pids[-1]}" ||
        fail camera "the test camera is not serving on port $CAMERA_PORT"
    RTSP_URL=rtsp://127.0.0.1:$CAMERA_PORT/test
    probe_camera
fi
echo "demo: camera at $RTSP_URL"

# shellcheck disable=SC2086 # $ingest is a pipeline fragment
start_stage producer gst-launch-1.0 -e rtspsrc location="$RTSP_URL" latency=0 ! $ingest \
    ! kafkasink topic="$TOPIC" bootstrap-servers="$BROKERS" create-topic=true
newest_record() {
    [ -n "$(kcat -C -b "$BROKERS" -t "$TOPIC" -o -1 -c 1 -e -q -f '%o' 2>/dev/null)" ]
}
await 60 newest_record || fail producer "no frame reached topic $TOPIC at $BROKERS within 60 s"
echo "demo: frames are arriving in topic $TOPIC"

start_stage viewer gst-launch-1.0 kafkasrc topic="$TOPIC" bootstrap-servers="$BROKERS" max-lag-ms=1000 \
    ! mjpeghttpsink address="$HTTP_ADDRESS" port="$HTTP_PORT"
# The viewer listens on HTTP_ADDRESS; 0.0.0.0 includes loopback.
viewer_host=$HTTP_ADDRESS
[ "$viewer_host" != 0.0.0.0 ] || viewer_host=127.0.0.1
await 60 curl -sf -o /dev/null "http://$viewer_host:$HTTP_PORT/snapshot.jpg" ||
    fail viewer "no frame served at http://$viewer_host:$HTTP_PORT/snapshot.jpg within 60 s"

echo
echo "demo: open http://$viewer_host:$HTTP_PORT/  (stream: /video_feed, snapshot: /snapshot.jpg, stats: /stats)"
echo "demo: Ctrl-C stops the camera, both pipelines${started_broker:+ and the broker}"
end=$((SECONDS + ${DEMO_SECONDS:-0}))
while [ -z "${DEMO_SECONDS:-}" ] || ((SECONDS < end)); do
    check_stages
    sleep 1
done

#!/usr/bin/env bash
# Camera to browser through Kafka, in one command:
#   RTSP camera -> kafkasink -> Kafka topic -> kafkasrc -> mjpeghttpsink -> browser
#
# Installs what is missing, builds the plugin, starts a local broker unless
# BROKERS is given and a test camera unless RTSP_URL is given, runs both
# pipelines and prints the URL to open. Ctrl-C stops everything it started.
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
started_broker=""
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping"
    for pid in "${pids[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
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

scripts/setup.sh
echo "demo: building the plugin"
cargo build --release --lib --example test-camera
export GST_PLUGIN_PATH=$PWD/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}

if [ -z "${BROKERS:-}" ]; then
    scripts/kafka.sh status >/dev/null 2>&1 || started_broker=yes
    BROKERS=$(scripts/kafka.sh start | tail -n 1)
fi
echo "demo: Kafka at $BROKERS"

if [ -z "${RTSP_URL:-}" ]; then
    target/release/examples/test-camera --port "$CAMERA_PORT" &
    pids+=($!)
    wait_for_port "$CAMERA_PORT" "the test camera" 60 "${pids[-1]}"
    RTSP_URL=rtsp://127.0.0.1:$CAMERA_PORT/test
fi
echo "demo: camera at $RTSP_URL"

# A camera that already sends JPEG is published as it is; anything else
# (H.264, H.265) is decoded and encoded to JPEG for the browser.
if gst-discoverer-1.0 -t 10 "$RTSP_URL" 2>/dev/null | grep -qE "video #[0-9]+: JPEG"; then
    ingest="rtpjpegdepay ! jpegparse"
else
    ingest="decodebin ! videoconvert ! jpegenc quality=85"
fi

gst-launch-1.0 -e rtspsrc location="$RTSP_URL" latency=0 ! $ingest \
    ! kafkasink topic="$TOPIC" bootstrap-servers="$BROKERS" create-topic=true &
pids+=($!)
# The producer creates the topic; the viewer needs it to exist.
deadline=$((SECONDS + 60))
until kcat -L -b "$BROKERS" -t "$TOPIC" 2>/dev/null | grep -q "partition 0"; do
    ((SECONDS < deadline)) || { echo "demo: topic $TOPIC was not created" >&2; exit 1; }
    sleep 0.2
done
gst-launch-1.0 kafkasrc topic="$TOPIC" bootstrap-servers="$BROKERS" max-lag-ms=1000 \
    ! mjpeghttpsink address="$HTTP_ADDRESS" port="$HTTP_PORT" &
pids+=($!)
wait_for_port "$HTTP_PORT" "the viewer" 60 "${pids[-1]}"

echo
echo "demo: open http://127.0.0.1:$HTTP_PORT/  (stream: /video_feed, snapshot: /snapshot.jpg, stats: /stats)"
echo "demo: Ctrl-C stops the camera, both pipelines${started_broker:+ and the broker}"
if [ -n "${DEMO_SECONDS:-}" ]; then
    sleep "$DEMO_SECONDS"
else
    wait -n "${pids[@]}"
fi

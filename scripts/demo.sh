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
#   TOPIC         default rtsp-stream (cameras with CAMERAS)
#   HTTP_ADDRESS  default 127.0.0.1 (0.0.0.0 exposes the stream to the network)
#   HTTP_PORT     default 8080
#   DEMO_SECONDS  stop by itself after this many seconds (default: run until Ctrl-C)
#   CAMERAS       publish this many moving test streams instead, one key each, into one
#                 topic; the page is then a wall of every camera (one Kafka consumer)
#   HTTPS=1       serve the page over HTTPS and HTTP/2 with a self-signed certificate
#                 (made once in ~/.cache/gst-kafka/demo-tls)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

if [ -n "${CAMERAS:-}" ]; then TOPIC=${TOPIC:-cameras}; else TOPIC=${TOPIC:-rtsp-stream}; fi
HTTP_ADDRESS=${HTTP_ADDRESS:-127.0.0.1}
HTTP_PORT=${HTTP_PORT:-8080}
CAMERA_PORT=${CAMERA_PORT:-8554}
CAMERAS=${CAMERAS:-}
HTTPS=${HTTPS:-}
if [ -n "$CAMERAS" ] && ! [[ "$CAMERAS" =~ ^[1-9][0-9]*$ ]]; then
    echo "demo: CAMERAS must be a number of cameras, not '$CAMERAS'" >&2
    exit 2
fi

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
[ -z "${RTSP_URL:-}" ] || [ -n "$CAMERAS" ] || probe_camera
echo "demo: building the plugin"
cargo build --release --lib --example test-camera
export GST_PLUGIN_PATH=$PWD/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}

if [ -z "${BROKERS:-}" ]; then
    scripts/kafka.sh status >/dev/null 2>&1 || started_broker=yes
    BROKERS=$(scripts/kafka.sh start | tail -n 1) || fail broker "scripts/kafka.sh start failed (scripts/kafka.sh logs)"
fi
echo "demo: Kafka at $BROKERS"
kcat -L -b "$BROKERS" -m 10 >/dev/null 2>&1 || fail broker "no Kafka broker answers at $BROKERS"

if [ -n "$CAMERAS" ]; then
    # One pipeline, one kafkasink (one key) per camera, each a moving pattern
    # with its name and the time drawn on it.
    patterns=(ball smpte snow pinwheel spokes gradient circular checkers-8 colors zone-plate)
    cameras=""
    for i in $(seq -w 1 "$CAMERAS"); do
        pattern=${patterns[$((10#$i % ${#patterns[@]}))]}
        cameras+=" videotestsrc is-live=true pattern=$pattern ! video/x-raw,width=640,height=360,framerate=15/1"
        cameras+=" ! timeoverlay text=cam$i halignment=left valignment=top ! jpegenc quality=70"
        cameras+=" ! kafkasink topic=$TOPIC bootstrap-servers=$BROKERS create-topic=true key=cam$i"
    done
    # shellcheck disable=SC2086 # $cameras is a pipeline description
    start_stage producer gst-launch-1.0 -e $cameras
    echo "demo: $CAMERAS test cameras publishing into topic $TOPIC, keys cam01…"
else
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
fi
newest_record() {
    [ -n "$(kcat -C -b "$BROKERS" -t "$TOPIC" -o -1 -c 1 -e -q -f '%o' 2>/dev/null)" ]
}
await 60 newest_record || fail producer "no frame reached topic $TOPIC at $BROKERS within 60 s"
echo "demo: frames are arriving in topic $TOPIC"

scheme=http
tls=()
curl_tls=()
if [ -n "$HTTPS" ]; then
    scheme=https
    tls_dir=${XDG_CACHE_HOME:-$HOME/.cache}/gst-kafka/demo-tls
    if [ ! -s "$tls_dir/cert.pem" ]; then
        mkdir -p "$tls_dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
            -addext basicConstraints=critical,CA:FALSE \
            -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null
    fi
    tls=(tls-certificate="$tls_dir/cert.pem" tls-key="$tls_dir/key.pem")
    curl_tls=(--cacert "$tls_dir/cert.pem")
fi
start_stage viewer gst-launch-1.0 kafkasrc topic="$TOPIC" bootstrap-servers="$BROKERS" max-lag-ms=1000 \
    ! mjpeghttpsink address="$HTTP_ADDRESS" port="$HTTP_PORT" "${tls[@]}"
# The viewer listens on HTTP_ADDRESS; 0.0.0.0 includes loopback.
viewer_host=$HTTP_ADDRESS
[ "$viewer_host" != 0.0.0.0 ] || viewer_host=127.0.0.1
viewer_url=$scheme://$viewer_host:$HTTP_PORT
await 60 curl -sf "${curl_tls[@]}" -o /dev/null "$viewer_url/snapshot.jpg" ||
    fail viewer "no frame served at $viewer_url/snapshot.jpg within 60 s"
if [ -n "$CAMERAS" ]; then
    wall() { [ "$(curl -sf "${curl_tls[@]}" "$viewer_url/stats" | grep -o '"camera":"cam' | wc -l)" -ge "$CAMERAS" ]; }
    await 60 wall || fail viewer "not every camera reached the wall at $viewer_url/ within 60 s"
fi

echo
echo "demo: open $viewer_url/  (stream: /video_feed${CAMERAS:+, cameras: /video_feed/cam01…}, snapshot: /snapshot.jpg, stats: /stats, metrics: /metrics)"
[ -z "$HTTPS" ] || echo "demo: the certificate is self-signed: $tls_dir/cert.pem (your browser asks once)"
echo "demo: Ctrl-C stops the camera, both pipelines${started_broker:+ and the broker}"
end=$((SECONDS + ${DEMO_SECONDS:-0}))
while [ -z "${DEMO_SECONDS:-}" ] || ((SECONDS < end)); do
    check_stages
    sleep 1
done

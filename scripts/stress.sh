#!/usr/bin/env bash
# The long reliability runs, beyond the per-commit suite:
#   cluster   tests/cluster.rs against three brokers (partition leader killed,
#             rolling restart under a live viewer, frozen leader)
#   faults    tests/reliability.rs (broker killed/gone/frozen, group members
#             killed, a thousand HTTP clients) in release mode
#   soak      30 fps through the whole chain for SOAK_SECONDS (default 1800)
#             with 20 HTTP clients joining and leaving every 30 s; samples
#             resident memory and open files of both pipelines
#
#   scripts/stress.sh [cluster] [faults] [soak]      (default: all three)
#
# Prints a summary for docs/reliability.md; exits non-zero if a promise broke.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

cases=("$@")
((${#cases[@]})) || cases=(cluster faults soak)
SOAK_SECONDS=${SOAK_SECONDS:-1800}

scripts/setup.sh
cargo build --release --lib --examples
export GST_PLUGIN_PATH=$PWD/target/release

for case in "${cases[@]}"; do
    case $case in
    cluster) cargo test --release --test cluster -- --nocapture ;;
    faults) cargo test --release --test reliability -- --nocapture ;;
    soak) ;;
    *) echo "stress.sh: unknown case $case" >&2; exit 2 ;;
    esac
done
[[ " ${cases[*]} " == *" soak "* ]] || exit 0

work=$(mktemp -d)
broker_home=$work/broker
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        { kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true
    done
    KAFKA_HOME=$broker_home scripts/kafka.sh stop || true
    rm -rf "$work"
}
trap cleanup EXIT

bootstrap=$(KAFKA_HOME=$broker_home KAFKA_PORT=$((49092 + RANDOM % 1000)) scripts/kafka.sh start | tail -n 1)
topic=soak
frames=$((SOAK_SECONDS * 30))
port=$((48080 + RANDOM % 1000))
target/release/examples/kafka-topics --bootstrap-server "$bootstrap" create "$topic" >/dev/null

gst-launch-1.0 -q kafkasrc topic=$topic bootstrap-servers="$bootstrap" start-from=earliest \
    ! mjpeghttpsink port=$port &
viewer=$!
pids+=("$viewer")
gst-launch-1.0 -q -e videotestsrc is-live=true num-buffers=$frames pattern=ball \
    ! video/x-raw,width=1280,height=720,framerate=30/1 ! jpegenc \
    ! kafkasink topic=$topic bootstrap-servers="$bootstrap" &
producer=$!
pids+=("$producer")
wait_for_port "$port" "the viewer" 60 "$viewer"

sample() {
    local pid=$1
    echo "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0) $(ls "/proc/$pid/fd" 2>/dev/null | wc -l)"
}

echo "elapsed_s producer_rss_kb producer_fds viewer_rss_kb viewer_fds" >"$work/samples"
start=$SECONDS
while kill -0 "$producer" 2>/dev/null; do
    line="$((SECONDS - start)) $(sample "$producer") $(sample "$viewer")"
    kill -0 "$producer" 2>/dev/null && echo "$line" >>"$work/samples"
    # 20 clients for 25 s, then they all leave and new ones come.
    target/release/examples/mjpeg-clients "http://127.0.0.1:$port/video_feed" --clients 20 --seconds 25 \
        --warmup-ms 0 >>"$work/clients" 2>/dev/null || true
done
wait "$producer" || { echo "stress.sh: the producer pipeline failed" >&2; exit 1; }

records=$(kcat -Q -b "$bootstrap" -t "$topic:0:-1" | awk '{print $NF}')
gaps=$(kcat -C -b "$bootstrap" -t "$topic" -e -q -f '%h\n' | grep -o 'gst-seq=[0-9]*' | cut -d= -f2 |
    awk 'NR > 1 && $1 != prev + 1 {bad++} {prev = $1} END {print bad + 0}')
viewer_in=$(curl -s "http://127.0.0.1:$port/stats" | grep -o '"frames_in":[0-9]*' | cut -d: -f2)

echo
echo "soak: ${SOAK_SECONDS}s at 30 fps, 1280x720 JPEG; 20 HTTP clients replaced every 25 s"
echo "frames produced $frames, records in Kafka $records, sequence breaks $gaps, frames into the viewer $viewer_in"
column -t "$work/samples"
# Memory growth after a minute of warm-up, against the last sample.
awk 'NR > 1 && $1 >= 60 && p == "" {p = $2; v = $4} END {if (p) printf "rss growth after warm-up: producer %.1f%%, viewer %.1f%%\n", ($2 - p) * 100 / p, ($4 - v) * 100 / v}' "$work/samples"
awk 'NR > 1 && $1 >= 60 && p == "" {p = $3; v = $5} END {if (p) printf "open files after warm-up/last: producer %d/%d, viewer %d/%d\n", p, $3, v, $5}' "$work/samples"
# The last window ends with the stream, so it is left out.
awk -F'"fps_min":' 'NF > 1 {split($2, a, ","); if (prev != "" && (prev < min || min == "")) min = prev; prev = a[1]}
    END {print "lowest per-client fps in a full 25 s window: " min}' "$work/clients"

[ "$records" = "$frames" ] && [ "$gaps" = 0 ] && [ "$viewer_in" = "$frames" ] || {
    echo "stress.sh: frames were lost" >&2
    exit 1
}

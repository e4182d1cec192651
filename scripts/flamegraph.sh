#!/usr/bin/env bash
# A CPU flame graph of kafkasink publishing pre-made 1080p JPEG frames
# (multifilesrc ! kafkasink, the ingest case of scripts/bench.sh), every
# thread of the process: docs/kafkasink-flamegraph.svg.
#
# Needs perf (Debian package linux-perf) and inferno (cargo install
# inferno). Environment: KAFKA_BOOTSTRAP (use an existing broker), RECORDS
# (default 1200), FRAMES_DIR (default: the frames scripts/bench.sh makes).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

for tool in perf inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" >/dev/null ||
        { echo "flamegraph: $tool is missing (perf: apt-get install linux-perf; inferno: cargo install inferno)" >&2; exit 1; }
done

cache=${XDG_CACHE_HOME:-$HOME/.cache}/gst-kafka
frames_dir=${FRAMES_DIR:-$cache/bench-frames-1080p}
records=${RECORDS:-1200}
[ -f "$frames_dir/.complete" ] || [ -n "${FRAMES_DIR:-}" ] ||
    { echo "flamegraph: no frames in $frames_dir: run scripts/bench.sh once" >&2; exit 1; }
last_index=$(($(find "$frames_dir" -name 'f-*.jpg' | wc -l) - 1))

scratch_dirs

cargo build --release --lib --examples
use_or_start_broker
only_one_broker flamegraph

topic=flamegraph-$$
target/release/examples/kafka-topics --bootstrap-server "$KAFKA_BOOTSTRAP" create "$topic" \
    --partitions 1 --replication-factor 1 >/dev/null
export GST_PLUGIN_PATH=$PWD/target/release GST_REGISTRY=$work_dir/registry.bin
gst-inspect-1.0 kafkasink >/dev/null
# DWARF call graphs: the release build keeps its debug info, librdkafka and
# GStreamer have no frame pointers.
perf record -q -F 999 --call-graph dwarf,16384 -o "$work_dir/perf.data" -- \
    gst-launch-1.0 -q multifilesrc location="$frames_dir/f-%05d.jpg" stop-index="$last_index" loop=true \
    num-buffers="$records" caps=image/jpeg ! kafkasink topic="$topic" bootstrap-servers="$KAFKA_BOOTSTRAP"
target/release/examples/kafka-topics --bootstrap-server "$KAFKA_BOOTSTRAP" delete "$topic" >/dev/null
perf script -i "$work_dir/perf.data" 2>/dev/null | inferno-collapse-perf > "$work_dir/folded"
inferno-flamegraph --title "multifilesrc ! kafkasink, $records 1080p JPEG frames (CPU samples, every thread)" \
    "$work_dir/folded" > docs/kafkasink-flamegraph.svg
echo "wrote docs/kafkasink-flamegraph.svg"

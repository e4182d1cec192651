#!/usr/bin/env bash
# Benchmarks against the tutorial's stack, kcat and the Python Kafka
# clients, in one run on one local broker; writes docs/benchmarks.md and its
# plots. bench.py alone takes about 11 minutes on two cores.
#
# Environment: KAFKA_BOOTSTRAP (use an existing broker), BENCH_ARGS (extra
# arguments for scripts/bench/bench.py, e.g. "--rounds 1 --max-clients 100"),
# WALL_BENCH_ARGS (for scripts/bench/wall.py, which writes
# docs/benchmarks-wall.md, e.g. "--cases tls --seconds 10"),
# REPLAY_BENCH_ARGS (for scripts/bench/replay.py, which writes
# docs/benchmarks-replay.md; by default the issue's case: seeks in an hour
# of 30 fps frames, then 20 replays beside 100 live clients for 30 s),
# BENCH_ONLY=replay (run only that one).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
case ${BENCH_ONLY:-} in
    '' | replay) ;;
    *) echo "bench: BENCH_ONLY is empty or replay, not '$BENCH_ONLY'" >&2; exit 2 ;;
esac

cache=${XDG_CACHE_HOME:-$HOME/.cache}/gst-kafka
frames_dir=$cache/bench-frames-1080p
scratch_dirs

scripts/setup.sh
cargo build --release --lib --examples

python=$(scripts/python-env.sh)

if [ ! -f "$frames_dir/.complete" ]; then
    echo "bench: making 600 1080p JPEG frames in $frames_dir" >&2
    rm -rf "$frames_dir"
    mkdir -p "$frames_dir"
    gst-launch-1.0 -q compositor name=mix sink_1::alpha=0.01 ! video/x-raw,width=1920,height=1080 \
        ! videoconvert ! jpegenc quality=80 ! multifilesink location="$frames_dir/f-%05d.jpg" \
        videotestsrc num-buffers=600 pattern=smpte horizontal-speed=8 ! video/x-raw,width=1920,height=1080,framerate=30/1 ! mix. \
        videotestsrc num-buffers=600 pattern=snow ! video/x-raw,width=1920,height=1080,framerate=30/1 ! mix.
    touch "$frames_dir/.complete"
fi

frames_4k_dir=$cache/bench-frames-4k
if [ ! -f "$frames_4k_dir/.complete" ]; then
    echo "bench: making 60 4K JPEG frames of 1.5-4 MB in $frames_4k_dir" >&2
    rm -rf "$frames_4k_dir"
    mkdir -p "$frames_4k_dir"
    # Three levels of noise: 20 frames each of about 1.7, 2.6 and 3.6 MB,
    # numbered on (multifilesrc reads f-00000 to f-00059 in turn).
    index=0
    for alpha in 0.002 0.005 0.01; do
        gst-launch-1.0 -q compositor name=mix sink_1::alpha="$alpha" ! video/x-raw,width=3840,height=2160 \
            ! videoconvert ! jpegenc quality=95 \
            ! multifilesink index=$index location="$frames_4k_dir/f-%05d.jpg" \
            videotestsrc num-buffers=20 pattern=smpte horizontal-speed=8 ! video/x-raw,width=3840,height=2160,framerate=30/1 ! mix. \
            videotestsrc num-buffers=20 pattern=snow ! video/x-raw,width=3840,height=2160,framerate=30/1 ! mix.
        index=$((index + 20))
    done
    touch "$frames_4k_dir/.complete"
fi

# The ingest table's other frame sizes: 640×360 bars (~25 KB), 1080p bars
# (~155 KB) and 1080p noise (~1.2 MB), all jpegenc quality 80.
make_frames() { # name count width height pattern
    local dir=$cache/bench-frames-$1
    if [ ! -f "$dir/.complete" ]; then
        echo "bench: making $2 $3x$4 $5 JPEG frames in $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        gst-launch-1.0 -q videotestsrc num-buffers="$2" pattern="$5" horizontal-speed=4 \
            ! video/x-raw,width="$3",height="$4",framerate=30/1 ! jpegenc quality=80 \
            ! multifilesink location="$dir/f-%05d.jpg"
        touch "$dir/.complete"
    fi
}
make_frames 360p 300 640 360 smpte
make_frames 1080p-bars 300 1920 1080 smpte
make_frames 1080p-noise 100 1920 1080 snow

use_or_start_broker
only_one_broker bench

if [ "${BENCH_ONLY:-}" != replay ]; then
    # Records per run: about a second of kcat -P's rate at each size, so
    # that start-up (measured apart, 11 ms for kcat and about 30 for
    # kafkasink) weighs a few percent of a run, not a tenth.
    # shellcheck disable=SC2086
    "$python" scripts/bench/bench.py --bootstrap "$KAFKA_BOOTSTRAP" --frames-dir "$frames_dir" \
        --frames-4k-dir "$frames_4k_dir" --work-dir "$work_dir" \
        --size-set "640×360 bars=$cache/bench-frames-360p:30000" \
        --size-set "1080p bars=$cache/bench-frames-1080p-bars:6000" \
        --size-set "1080p bars + noise=$frames_dir:3000" \
        --size-set "1080p noise=$cache/bench-frames-1080p-noise:800" \
        --extra-set "1080p bars + noise" ${BENCH_ARGS:-}
    # shellcheck disable=SC2086
    "$python" scripts/bench/wall.py --bootstrap "$KAFKA_BOOTSTRAP" --frames-dir "$frames_dir" \
        --work-dir "$work_dir" ${WALL_BENCH_ARGS:-}
fi
replay_args=${REPLAY_BENCH_ARGS:---minutes 60 --fps 30 --seeks 100 --concurrent 30 --h264-seconds 60}
# shellcheck disable=SC2086
"$python" scripts/bench/replay.py "$KAFKA_BOOTSTRAP" "$PWD/target/release" $replay_args \
    | tee "$work_dir/replay.txt"
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD || commit="$commit with uncommitted changes"
{
    echo "# Replay seek latency and concurrent replays"
    echo
    echo "Measured by \`scripts/bench.sh\` at commit \`$commit\` on $(date -u +%F), release build,"
    echo "loopback, $(nproc) cores, a local broker. scripts/bench/replay.py: the request of"
    echo "\`/video_feed?at=T\` (T random in the topic) to the first whole frame, and of"
    echo "\`/snapshot.jpg?at=T\`; then (\`--concurrent\`) replay clients at different times beside"
    echo "live clients of a 30 fps camera publishing to the same topic (examples/mjpeg-clients),"
    echo "with the viewer's CPU and peak RSS. Why the numbers are what they are: docs/design.md,"
    echo "\"Replay\"."
    echo
    echo '```'
    echo "\$ scripts/bench/replay.py <broker> target/release $replay_args"
    cat "$work_dir/replay.txt"
    echo '```'
} > docs/benchmarks-replay.md

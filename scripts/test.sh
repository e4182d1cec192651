#!/usr/bin/env bash
# The project's test command: installs what is missing, builds, starts a real
# Kafka broker, runs formatting, lint, every test and the meson build, and
# stops what it started. Exits non-zero naming the failing step.
set -euo pipefail
cd "$(dirname "$0")/.."

step() {
    echo
    echo "==> $*"
}
fail() {
    echo "scripts/test.sh: FAILED at step: $current" >&2
}
trap fail ERR

current="setup"
step "$current"
scripts/setup.sh

broker_home=$(mktemp -d)
cleanup() {
    KAFKA_HOME=$broker_home scripts/kafka.sh stop || true
    rm -rf "$broker_home" "${meson_dir:-}" "${test_log:-}" "${test_log:+$test_log.sum}" "${fuzz_corpus:-}"
}
trap cleanup EXIT

current="Python peers"
step "$current"
GST_KAFKA_PYTHON=$(scripts/python-env.sh)
export GST_KAFKA_PYTHON

current="cargo fmt --check"
step "$current"
cargo fmt --all -- --check

current="cargo clippy"
step "$current"
cargo clippy --all-targets -- -D warnings

current="start a Kafka broker"
step "$current"
port=${KAFKA_PORT:-$((19092 + RANDOM % 1000))}
# Unlike stock Kafka, the tests' broker does not create topics on first use:
# a test that forgets to create its topic, or one about missing topics, is
# told. tests/tutorial.rs starts stock brokers of its own.
KAFKA_BOOTSTRAP=$(KAFKA_HOME=$broker_home KAFKA_PORT=$port KAFKA_AUTO_CREATE_TOPICS=false \
    scripts/kafka.sh start | tail -n 1)
export KAFKA_BOOTSTRAP
echo "broker at $KAFKA_BOOTSTRAP"

current="cargo build (the plugin library, loaded by gst-launch-1.0 in some tests)"
step "$current"
cargo build --lib

current="cargo test"
step "$current"
test_log=$(mktemp)
cargo test --all-targets 2>&1 | tee "$test_log"
# One closing line over every test binary.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "cargo test: %d passed, %d failed, %d ignored\n", passed, failed, ignored }' "$test_log" >"$test_log.sum"
rm -f "$test_log"

current="fuzz the record header decoder and the record engine (30 s each)"
step "$current"
# cargo-fuzz drives libFuzzer through nightly-only rustc flags; the stable
# compiler accepts them with RUSTC_BOOTSTRAP=1.
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version 0.13.2
for target in wireformat record_engine; do
    fuzz_corpus=$(mktemp -d)
    cp -r "fuzz/corpus/$target/." "$fuzz_corpus"
    # GLib keeps every caps name it parses until exit: not a leak of ours
    # (docs/reliability.md, "Hostile records").
    RUSTC_BOOTSTRAP=1 ASAN_OPTIONS=detect_leaks=0 cargo fuzz run "$target" "$fuzz_corpus" -- \
        -max_total_time=30 -max_len=4096 2>&1 | tail -n 3
    rm -rf "$fuzz_corpus"
done

current="meson build and install"
step "$current"
meson_dir=$(mktemp -d)
# A debug build reuses what cargo test just compiled.
meson setup "$meson_dir/build" --prefix="$meson_dir/prefix" --buildtype=debug >/dev/null
CARGO_TARGET_DIR=$PWD/target meson compile -C "$meson_dir/build"
meson install -C "$meson_dir/build" >/dev/null
plugin=$(find "$meson_dir/prefix" -name libgstkafka.so | head -n 1)
[ -n "$plugin" ] || { echo "meson install did not install libgstkafka.so" >&2; false; }
# The installed plugin must load and register all three elements.
elements=$(GST_PLUGIN_PATH=$(dirname "$plugin") GST_REGISTRY=$meson_dir/registry.bin \
    gst-inspect-1.0 kafka | grep -oE '^  (kafkasink|kafkasrc|mjpeghttpsink):' | sort -u | wc -l)
echo "installed $plugin with $elements element(s)"
[ "$elements" = 3 ] || { echo "the installed plugin registers $elements of its 3 elements" >&2; false; }

echo
echo "scripts/test.sh: all steps passed"
sed 's/^cargo test: //' "$test_log.sum"
rm -f "$test_log.sum"

#!/usr/bin/env bash
# The clean-room check: runs .ci/run (the README's test command) on a minimal
# Debian 12 root, as on a machine where nothing was ever installed by hand.
#
#   scripts/fresh-check.sh [REF]     (default HEAD; root, 20–30 minutes)
#
# The root is `mmdebstrap --variant=minbase` with git and ca-certificates.
# From this machine it gets only what every machine of its kind has: the
# Rust toolchain (bind-mounted read-only, with rustup's proxies and nothing
# installed with cargo since), the trust roots, the apt and pip settings. Everything else (Debian packages, crates, Kafka jars, Python
# packages) the project's own scripts must install. The root shares this
# machine's network, so it uses the ports the tests use (9092 for the
# tutorial's scripts): run it while no local broker or demo is running.
#
# Environment:
#   FRESH_KEEP=1   keep the root (its path is printed) instead of removing it
set -euo pipefail
cd "$(dirname "$0")/.."

ref=${1:-HEAD}
[ "$(id -u)" = 0 ] || { echo "fresh-check: needs root (mmdebstrap, chroot, mounts)" >&2; exit 1; }
rust_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")
[ -d "$rust_home" ] || { echo "fresh-check: no Rust toolchain at $rust_home" >&2; exit 1; }
command -v mmdebstrap >/dev/null || {
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap
}

root=$(mktemp -d /var/tmp/gst-kafka-fresh.XXXXXX)
mounts=()
bind() { # source target [ro]
    mkdir -p "$root$2"
    mount --bind "$1" "$root$2"
    [ "${3:-}" != ro ] || mount -o remount,bind,ro "$root$2"
    mounts+=("$root$2")
}
cleanup() {
    # Whatever the run left behind inside the root, by the root it runs in.
    local pid
    for pid in /proc/[0-9]*; do
        [ "$(readlink "$pid/root" 2>/dev/null)" = "$root" ] && kill -KILL "${pid#/proc/}" 2>/dev/null
    done
    sleep 1
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount -R "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null || true
    done
    if [ -n "${FRESH_KEEP:-}" ]; then
        echo "fresh-check: root kept at $root" >&2
    else
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT

started=$SECONDS
echo "fresh-check: a minimal Debian 12 root in $root" >&2
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=http://deb.debian.org/debian
mmdebstrap --quiet --variant=minbase --include=git,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
    bookworm "$root" "$sources"

# This machine's trust roots and pip settings, as every machine of its kind has them.
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$root" update-ca-certificates >/dev/null
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
# Name resolution as on any machine: a minbase root has no localhost entry.
cp /etc/resolv.conf /etc/hosts "$root/etc/"

bind /proc /proc
bind /sys /sys
bind /dev /dev
bind /dev/pts /dev/pts
mkdir -p "$root/dev/shm" && mount -t tmpfs tmpfs "$root/dev/shm" && mounts+=("$root/dev/shm")
bind "$rust_home" /root/.rustup ro
# rustup and its proxies (cargo, rustc, …), not the tools that were
# installed with cargo since (cargo-fuzz): the project installs those.
mkdir -p "$root/root/.cargo/bin"
cp "$cargo_bin/rustup" "$root/root/.cargo/bin/"
for tool in "$cargo_bin"/*; do
    [ "$(readlink "$tool")" = rustup ] && ln -s rustup "$root/root/.cargo/bin/$(basename "$tool")"
done
[ -n "${PIP_FIND_LINKS:-}" ] && [ -d "$PIP_FIND_LINKS" ] && bind "$PIP_FIND_LINKS" "$PIP_FIND_LINKS" ro

# A clean clone of the commit, with shared/ beside it, as CI lays them out.
mkdir -p "$root/work"
git clone --quiet --no-local "$PWD" "$root/work/main"
git -C "$root/work/main" checkout --quiet --detach "$(git rev-parse "$ref")"
if [ -d ../shared ]; then
    cp -r ../shared "$root/work/shared"
    chmod -R a-w "$root/work/shared"
fi

environment=(HOME=/root CI=true LANG=C.UTF-8 TERM=dumb
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
while IFS= read -r variable; do
    environment+=("$variable")
done < <(env | grep -E '^(PIP_[A-Z_]*|SSL_CERT_[A-Z]*|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|GIT_SSL_CAINFO|RUSTUP_[A-Z_]*)=' || true)

echo "fresh-check: running .ci/run at $(git rev-parse --short "$ref") in the root" >&2
run_started=$SECONDS
status=0
chroot "$root" /usr/bin/env -i "${environment[@]}" bash -c 'cd /work/main && bash .ci/run' </dev/null || status=$?
echo
if ((status == 0)); then
    echo "fresh-check: PASSED: .ci/run in a fresh Debian 12 root took $((SECONDS - run_started)) s ($((SECONDS - started)) s with making the root)"
else
    echo "fresh-check: FAILED: .ci/run exited $status after $((SECONDS - run_started)) s" >&2
fi
exit "$status"

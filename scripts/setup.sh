#!/usr/bin/env bash
# Installs what building, testing and the demo need, when it is missing:
# Debian packages (GStreamer, librdkafka's build tools, Java and Maven for the
# broker, kcat), then the Kafka broker jars. Safe to run again.
set -euo pipefail

PACKAGES=(
    build-essential pkg-config cmake meson ninja-build
    libssl-dev libsasl2-dev zlib1g-dev libzstd-dev libcurl4-openssl-dev
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-rtsp gstreamer1.0-plugins-base-apps
    python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
    openjdk-17-jre-headless maven kcat curl
    chromium ffmpeg python3-venv
)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "setup: Rust (cargo) is required; install it with rustup" >&2
    exit 1
fi

"$(dirname "$0")/kafka.sh" fetch >/dev/null

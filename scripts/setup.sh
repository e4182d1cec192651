#!/usr/bin/env bash
# Installs what building, testing and the demo need, when it is missing: the
# Debian packages of scripts/debian-packages.txt, then checks every element,
# command, library and Python module that list says they provide, then
# fetches the Kafka broker jars. Safe to run again; fails naming what is
# missing and the package that should provide it.
set -euo pipefail
cd "$(dirname "$0")/.."

list=scripts/debian-packages.txt
packages=()
while read -r package _; do
    packages+=("$package")
done < <(grep -vE '^\s*(#|$)' "$list")

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null ||
            { echo "setup: installing packages needs root: run as root, or install sudo" >&2; exit 1; }
        sudo=sudo
    fi
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

provides() {
    case $1 in
    element:*) gst-inspect-1.0 --exists "${1#element:}" ;;
    command:*) command -v "${1#command:}" >/dev/null ;;
    pkgconfig:*) pkg-config --exists "${1#pkgconfig:}" ;;
    python:*) /usr/bin/python3 -c "import ${1#python:}" 2>/dev/null ;;
    *)
        echo "setup: $list: unknown entry '$1'" >&2
        return 1
        ;;
    esac
}

absent=0
while read -r package entries; do
    for entry in $entries; do
        if ! provides "$entry"; then
            echo "setup: ${entry%%:*} '${entry#*:}' is missing although Debian package $package is installed" >&2
            absent=$((absent + 1))
        fi
    done
done < <(grep -vE '^\s*(#|$)' "$list")
if ((absent)); then
    echo "setup: $absent check(s) of $list failed" >&2
    exit 1
fi

if ! command -v cargo >/dev/null; then
    echo "setup: Rust (cargo) is required; install it with rustup" >&2
    exit 1
fi

scripts/kafka.sh fetch >/dev/null

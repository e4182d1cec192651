#!/usr/bin/env bash
# Makes (once) the virtual environment with the Python peers of the tests and
# benchmarks (scripts/python-requirements.txt) and prints its python's path.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${XDG_CACHE_HOME:-$HOME/.cache}/gst-kafka/python-venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s scripts/python-requirements.txt "$venv/requirements.txt"; then
    echo "python-env: installing the Python peers into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r scripts/python-requirements.txt >&2
    cp scripts/python-requirements.txt "$venv/requirements.txt"
fi
echo "$venv/bin/python"

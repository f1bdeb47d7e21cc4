#!/bin/sh
# Install what reseal needs on a Debian 12 machine (run as root): the Debian packages in
# scripts/apt-packages.txt, then a virtual environment at .venv with reseal installed.
# Safe to run again: it installs only what is missing.
set -eu
cd "$(dirname "$0")/.."
missing=""
for pkg in $(grep -v '^\s*#' scripts/apt-packages.txt | tr -s ' \n' ' '); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
stamp=.venv/.reseal-installed
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing reseal into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,cluster]'
    touch "$stamp"
fi

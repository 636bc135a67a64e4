#!/usr/bin/env bash
# Create .venv/ and install the pinned dependencies (re-run when a pyproject.toml changes).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
            || { echo "venv: python3 -m venv failed; install python3-venv, then retry" >&2; exit 1; }
        echo "venv: installing python3-venv from Debian's packages"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip "setuptools<81" wheel
# three distributions: the server (the root), the protocol it shares with agents, and the agent
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
    -e ./protocol -e ./agent -e ".[test]"
touch .venv/.installed
echo "venv: .venv ready"

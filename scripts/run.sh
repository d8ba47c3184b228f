#!/usr/bin/env bash
# Set up (a virtualenv in .venv with fchannel built) and run the main job: an
# agent on the local default configuration, examples/quickstart.properties
# (netcat on 127.0.0.1:44444 -> file channel under ./quickstart-data -> logger).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[agent]'
if ! .venv/bin/fchannel agent --help >/dev/null 2>&1; then
    echo "fchannel $(.venv/bin/fchannel --version): no agent runtime yet in this version;"
    echo "the library is installed in .venv (try: .venv/bin/python -c 'import fchannel')."
    exit 0
fi
exec .venv/bin/fchannel agent --conf-file examples/quickstart.properties --name a1 "$@"

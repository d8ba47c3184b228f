#!/usr/bin/env bash
# Set up (a virtualenv in .venv, the package built with its Cython extensions
# and test dependencies) and run the whole test suite, then the core and
# reliability tests again on the pure-Python twins.  Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,agent,s3,hdfs,formats,faust,quix]'
export FCHANNEL_REQUIRE_EXTENSIONS=1
.venv/bin/python -c 'import fchannel; assert fchannel.COMPILED, "compiled modules not loaded"'
echo "== lint (ruff) and types (mypy)"
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy fchannel
echo "== full suite, compiled build"
.venv/bin/python -m pytest "$@"
echo "== core and reliability suites, pure-Python twins (FCHANNEL_NO_EXTENSIONS=1)"
unset FCHANNEL_REQUIRE_EXTENSIONS
FCHANNEL_NO_EXTENSIONS=1 .venv/bin/python -m pytest tests/core tests/crash tests/corruption \
    tests/fuzz tests/diskfull "$@"

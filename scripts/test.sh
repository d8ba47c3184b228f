#!/usr/bin/env bash
# The README's test command.  Sets up .venv (the package built with its Cython
# extensions and every test dependency; skipped when nothing it is built from
# changed since the last run), then: ruff and mypy; the documentation site
# (mkdocs build --strict: a broken link fails); the packaging smoke test (sdist
# and wheel each installed in a fresh venv, scripts/package_smoke.sh); the
# whole suite on the compiled build; the core and reliability suites again on
# the pure-Python twins.  The suites run on all cores (pytest-xdist, one test
# file per worker at a time); extra arguments go to both pytest runs (e.g.
# -n 0 for one process, -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PY=${PYTHON:-python3}
EXTRAS=test,agent,s3,hdfs,formats,faust,kafka,confluent,aiokafka,quix
TEST_STAMP=.venv/.fchannel-test-stamp
start=$SECONDS
step() { echo "== $* ($((SECONDS - start)) s)"; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
want="$(build_inputs_hash .venv/bin/python) [$EXTRAS]"
if [ "$(cat "$TEST_STAMP" 2>/dev/null)" != "$want" ]; then
    step "install: fchannel[$EXTRAS] into .venv (log: .venv/install-test.log)"
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e ".[$EXTRAS]"; } >.venv/install-test.log 2>&1; then
        tail -n 40 .venv/install-test.log >&2
        exit 1
    fi
    echo "$want" >"$TEST_STAMP"
    build_inputs_hash .venv/bin/python >"$RUN_STAMP"   # what run.sh installs is a subset
else
    step "install: .venv is up to date"
fi
export FCHANNEL_REQUIRE_EXTENSIONS=1
.venv/bin/python -c 'import fchannel; assert fchannel.COMPILED, "compiled modules not loaded"'

step "lint (ruff) and types (mypy)"
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy fchannel

step "documentation site (mkdocs build --strict)"
site=$(mktemp -d "${TMPDIR:-/tmp}/fchannel-site.XXXXXX")
.venv/bin/python -m mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"

step "packaging: sdist and wheel, each installed in a fresh venv and smoke-tested"
./scripts/package_smoke.sh

step "full suite, compiled build"
.venv/bin/python -m pytest -n auto --dist loadfile "$@"

step "core and reliability suites, pure-Python twins (FCHANNEL_NO_EXTENSIONS=1)"
unset FCHANNEL_REQUIRE_EXTENSIONS
FCHANNEL_NO_EXTENSIONS=1 .venv/bin/python -m pytest -n auto --dist loadfile \
    tests/core tests/crash tests/corruption tests/fuzz tests/diskfull tests/stress "$@"
step "done"

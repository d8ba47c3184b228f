#!/usr/bin/env bash
# The README's test command.  Sets up .venv (the package built with its Cython
# extensions and every test dependency; skipped when nothing it is built from
# changed since the last run), then: ruff and mypy; the documentation site
# (mkdocs build --strict: a broken link fails); the packaging smoke test (sdist
# and wheel each installed in a fresh venv, scripts/package_smoke.sh) beside
# the whole suite on the compiled build; the core and reliability suites again on
# the pure-Python twins.  The suites run in parallel (pytest-xdist, one test
# file per worker at a time) with two workers per core: most tests spend their
# time waiting on brokers, agents and child processes, not on the CPU.
# FCHANNEL_TEST_WORKERS sets the number; extra arguments go to both pytest
# runs (e.g. -n 0 for one process, -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PY=${PYTHON:-python3}
EXTRAS=test,agent,s3,hdfs,formats,faust,kafka,confluent,aiokafka,quix
TEST_STAMP=.venv/.fchannel-test-stamp
WORKERS=${FCHANNEL_TEST_WORKERS:-$(( $(nproc) * 2 ))}
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

# The packaging test (mostly a C compiler's work) runs beside the full suite
# (mostly waiting); its output follows the suite's.
step "packaging: sdist and wheel, each installed in a fresh venv and smoke-tested (in the background)"
pkg_log=$(mktemp "${TMPDIR:-/tmp}/fchannel-package-log.XXXXXX")
./scripts/package_smoke.sh >"$pkg_log" 2>&1 &
pkg_pid=$!

step "full suite, compiled build"
suite_rc=0
.venv/bin/python -m pytest -n "$WORKERS" --dist loadfile "$@" || suite_rc=$?
step "packaging test (started before the suite)"
pkg_rc=0
wait "$pkg_pid" || pkg_rc=$?
cat "$pkg_log"
rm -f "$pkg_log"
if [ "$pkg_rc" -ne 0 ]; then echo "packaging test FAILED" >&2; exit "$pkg_rc"; fi
if [ "$suite_rc" -ne 0 ]; then exit "$suite_rc"; fi

step "core and reliability suites, pure-Python twins (FCHANNEL_NO_EXTENSIONS=1)"
unset FCHANNEL_REQUIRE_EXTENSIONS
# (the fault sweep fails every third call here: the compiled run sweeps them all)
FCHANNEL_NO_EXTENSIONS=1 FCHANNEL_FAULT_STRIDE=3 .venv/bin/python -m pytest -n "$WORKERS" \
    --dist loadfile tests/core tests/crash tests/corruption tests/fuzz tests/diskfull \
    tests/stress tests/hardening tests/faults "$@"
step "done"

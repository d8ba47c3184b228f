#!/usr/bin/env bash
# Packaging check: build the sdist and, from it, the wheel (`python -m build`),
# check what each holds (scripts/package_check.py), then install each into a
# fresh virtualenv outside the repository and run scripts/package_smoke.py
# there (import, COMPILED, `fchannel --version`, a durable put/take, an agent
# started on a free port, sent a line with `fchannel send` and stopped).
# Installing the sdist compiles the extensions from the .pyx again: that is
# the point.  pip's cache is used, so dependencies are not downloaded twice.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON_BUILD:-.venv/bin/python}
if ! "$PY" -c 'import build' 2>/dev/null; then
    echo "package smoke: $PY has no 'build' module: run ./scripts/test.sh (or pip install build)" >&2
    exit 2
fi
BASE=$("$PY" -c 'import sys; print(sys._base_executable)')
work=$(mktemp -d "${TMPDIR:-/tmp}/fchannel-package.XXXXXX")
trap 'rm -rf "$work"' EXIT

quiet() {  # run quietly; on failure show the log
    local log=$1; shift
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "package smoke: FAILED: $*" >&2
        exit 1
    fi
}

quiet "$work/build.log" "$PY" -m build --outdir "$work/dist" "$REPO"
if grep -iE "deprecat|SetuptoolsWarning" "$work/build.log" >&2; then
    echo "package smoke: FAILED: the build printed deprecation warnings (above)" >&2
    exit 1
fi
sdist=$(echo "$work"/dist/*.tar.gz)
wheel=$(echo "$work"/dist/*.whl)
"$PY" "$REPO/scripts/package_check.py" "$sdist" "$wheel"

for artifact in "$wheel" "$sdist"; do
    case $artifact in *.whl) kind=wheel ;; *) kind=sdist ;; esac
    venv="$work/venv-$kind"
    quiet "$work/venv-$kind.log" "$BASE" -m venv "$venv"
    quiet "$work/install-$kind.log" "$venv/bin/python" -m pip install "$artifact"
    (cd "$work" && "$venv/bin/python" -I "$REPO/scripts/package_smoke.py") \
        | sed "s/^/[$kind] /"
done

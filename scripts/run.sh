#!/usr/bin/env bash
# The main job: an agent on the local default configuration,
# examples/quickstart.properties: lines sent to 127.0.0.1:44444 go through a
# durable file channel under ./quickstart-data/ and are logged on stderr.
#
# The first start makes .venv and builds fchannel there (about a minute);
# later starts reinstall only if a build input changed since the last install
# (pyproject.toml, setup.py, the Cython sources: a hash kept in .venv, see
# scripts/lib.sh), so they are up in a second or two.  Python changes need no reinstall (the
# install is editable).  Arguments go to `fchannel agent`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CONF=examples/quickstart.properties
HOST=$(sed -n 's/^a1\.sources\.r1\.bind *= *//p' "$CONF")
PORT=$(sed -n 's/^a1\.sources\.r1\.port *= *//p' "$CONF")
. scripts/lib.sh

if [ -x .venv/bin/python ] && [ -x .venv/bin/fchannel ] && [ -f "$RUN_STAMP" ] &&
        [ "$(cat "$RUN_STAMP")" = "$(build_inputs_hash .venv/bin/python)" ]; then
    echo "run.sh: fchannel in .venv is up to date; starting the quickstart agent ($CONF)"
else
    echo "run.sh: installing fchannel into .venv and building its Cython extensions" \
         "(first start or changed sources, about a minute; log: .venv/install.log)"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e '.[agent]'; } >.venv/install.log 2>&1; then
        tail -n 30 .venv/install.log >&2
        echo "run.sh: the install failed; the whole log is in .venv/install.log" >&2
        exit 1
    fi
    build_inputs_hash .venv/bin/python >"$RUN_STAMP"
fi

# Once the source listens, say how to talk to it (a detached helper: the agent
# keeps the terminal, its signals and its exit status).
( .venv/bin/python - "$HOST" "$PORT" "$$" <<'PYEOF' &
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(0)
print(f"""
run.sh: the agent is up. Send it lines from another terminal with
    .venv/bin/fchannel send {host}:{port} "hello fchannel"
or type lines (Ctrl-D ends):  .venv/bin/fchannel send {host}:{port}
Each line is answered OK once stored in ./quickstart-data and then logged here.
Stop the agent with Ctrl-C (or: kill {sys.argv[3]}).
""", file=sys.stderr, flush=True)
PYEOF
)
exec .venv/bin/fchannel agent --conf-file "$CONF" --name a1 "$@"

"""Smoke test of an installed fchannel, run by scripts/package_smoke.sh inside a
fresh virtualenv, from a directory outside the repository.

Checks: the package imports from the venv (not from a source tree) with its
compiled extensions, ships no build inputs, `fchannel --version` runs, a
FileChannel keeps a committed put across a reopen, and `fchannel agent`
starts on a free port, takes a line sent with `fchannel send`, logs it and
stops on SIGTERM with status 0.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fchannel
from fchannel import Event, FileChannel

BIN = Path(sys.executable).parent


def check(cond: object, what: str) -> None:
    if not cond:
        raise SystemExit(f"smoke test FAILED: {what}")


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        check(time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


pkg = Path(fchannel.__file__).resolve().parent
check(str(pkg).startswith(sys.prefix), f"fchannel imported from {pkg}, not from the venv")
check(fchannel.COMPILED, "the compiled extensions are not loaded")
leftovers = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*")
                   if p.suffix in (".c", ".pyx", ".html"))
check(not leftovers, f"build inputs installed: {leftovers}")

version = subprocess.run([BIN / "fchannel", "--version"], capture_output=True, text=True,
                         timeout=60)
check(version.returncode == 0 and fchannel.__version__ in version.stdout,
      f"fchannel --version: {version.returncode} {version.stdout!r} {version.stderr!r}")

work = Path(tempfile.mkdtemp(prefix="fchannel-smoke-"))
ckpt, data = str(work / "ckpt"), [str(work / "data")]
with FileChannel(ckpt, data) as ch, ch.transaction() as tx:
    tx.put(Event(b"durable", {"k": "v"}))
with FileChannel(ckpt, data) as ch:
    with ch.transaction() as tx:
        got = tx.take_batch(10)
    check([(e.body, dict(e.headers)) for e in got] == [(b"durable", {"k": "v"})],
          f"reopened channel gave {got!r}")
with FileChannel(ckpt, data) as ch:
    check(ch.size == 0, f"a committed take came back: size {ch.size}")

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
conf = work / "agent.properties"
conf.write_text(
    "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
    f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = {port}\n"
    "a1.sources.r1.channels = c1\n"
    "a1.channels.c1.type = file\n"
    f"a1.channels.c1.checkpointDir = {work}/agent/ckpt\na1.channels.c1.dataDirs = {work}/agent/data\n"
    "a1.sinks.k1.type = logger\na1.sinks.k1.channel = c1\n")
log = work / "agent.log"
with open(log, "wb") as out:
    agent = subprocess.Popen([BIN / "fchannel", "agent", "-f", str(conf), "-n", "a1"],
                             stdout=out, stderr=subprocess.STDOUT, cwd=work)
try:
    wait_for(lambda: "agent 'a1' started" in log.read_text() or agent.poll() is not None,
             60, "the agent to start")
    check(agent.poll() is None, f"agent exited:\n{log.read_text()}")
    sent = subprocess.run([BIN / "fchannel", "send", f"127.0.0.1:{port}", "hello smoke"],
                          capture_output=True, text=True, timeout=60)
    check(sent.returncode == 0 and sent.stdout.strip() == "OK",
          f"fchannel send: {sent.returncode} {sent.stdout!r} {sent.stderr!r}")
    wait_for(lambda: "hello smoke" in log.read_text(), 30, "the line to be logged")
    agent.send_signal(signal.SIGTERM)
    rc = agent.wait(60)
    check(rc == 0, f"agent exit status {rc} on SIGTERM:\n{log.read_text()}")
finally:
    if agent.poll() is None:
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
print(f"smoke test passed: fchannel {fchannel.__version__} (compiled) from {pkg}")

"""Running real ``fchannel agent`` subprocesses in tests."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.helpers import free_port  # noqa: F401 - tests import it from here

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

# An agent a1 with a netcat source r1 on 127.0.0.1:{port} into channel c1 and a
# sink k1: add the lines of c1 and k1 (fill {port} with str.format or write_conf).
NETCAT_SOURCE = """
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = netcat
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = {port}
a1.sources.r1.channels = c1
"""


class AgentProcess:
    """A ``fchannel agent`` subprocess with its stderr in a file."""

    def __init__(self, conf: Path, name: str, cwd: Path, extra: list[str] | None = None,
                 ) -> None:
        self.conf = conf
        self.name = name
        self.cwd = cwd
        self.extra = extra or []
        self.log_path = cwd / f"agent-{name}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self, wait_started: bool = True) -> AgentProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fchannel", "agent", "--conf-file", str(self.conf),
             "--name", self.name, *self.extra],
            cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        if wait_started:
            wait_for(lambda: f"agent {self.name!r} started" in self.output()
                     or self.proc.poll() is not None, 30, what="the agent to start")
            if self.proc.poll() is not None:
                pytest.fail(f"agent exited with {self.proc.returncode}:\n{self.output()}")
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def kill9(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def agents():
    """Start agents with ``agents(conf, name, cwd)``; all are killed at the end."""
    started: list[AgentProcess] = []

    def start(conf: Path, name: str, cwd: Path, extra: list[str] | None = None,
              wait_started: bool = True) -> AgentProcess:
        a = AgentProcess(conf, name, cwd, extra)
        started.append(a)
        return a.start(wait_started)

    yield start
    for a in started:
        a.stop()


def write_conf(path: Path, text: str, **subs: object) -> Path:
    for k, v in subs.items():
        text = text.replace("{" + k + "}", str(v))
    path.write_text(text)
    return path


def send_lines(port: int, lines: list[bytes], timeout: float = 20) -> list[bytes]:
    """Send lines to a netcat source; return its replies (one per line)."""
    replies = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(line + b"\n" for line in lines))
        deadline = time.monotonic() + timeout
        while replies.count(b"\n") < len(lines) and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            replies += chunk
    return replies.splitlines()


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def http_get_json(port: int, path: str = "/metrics") -> dict:
    with _OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def http_get_text(port: int, path: str) -> str:
    with _OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def quickstart_text(memory: bool) -> str:
    """The quickstart example; with *memory*, its channel swapped for a memory one."""
    text = (EXAMPLES / "quickstart.properties").read_text()
    if memory:
        out = []
        for line in text.splitlines():
            if line.startswith("a1.channels.c1.") and ("checkpointDir" in line
                                                      or "dataDirs" in line):
                continue
            out.append(line.replace("a1.channels.c1.type = file",
                                    "a1.channels.c1.type = memory"))
        text = "\n".join(out) + "\n"
    return text

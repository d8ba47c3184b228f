"""Helpers for tests that run a FileChannel in a child process."""
from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Child:
    """A Python child process running *code*; read its lines with a deadline
    and kill it with SIGKILL."""

    def __init__(self, code: str, *args: str, env: dict | None = None) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=full_env)
        self._pending = b""

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """The next stdout line starting with *prefix* (other lines are
        skipped); fails after *timeout* seconds or if the child exits."""
        import select
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                text = line.decode()
                if text.startswith(prefix):
                    return text
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child said nothing starting with {prefix!r} in {timeout}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = self.proc.stderr.read()
                    raise AssertionError(f"child exited ({self.proc.wait()}) before "
                                         f"{prefix!r}:\n{err}")
                self._pending += chunk

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Close stdin, wait for exit; returns (code, stderr)."""
        try:
            self.proc.stdin.close()
            code = self.proc.wait(timeout)
            err = self.proc.stderr.read().decode(errors="replace")
        finally:
            self.kill()
        return code, err


class LoggedProcess:
    """A child process whose output goes to a log file per run, for the
    crash tests of the stream-processor apps (Faust, Quix). A subclass sets
    ``argv`` (``cwd``), ``env``, ``label`` (how failures name it) and the
    ``log`` path; ``runs`` counts the starts."""

    argv: list[str]
    env: dict[str, str]
    label: str
    cwd: str | None = None

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    @property
    def log(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        assert self.proc is None
        self.runs += 1
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def last_int(self, pattern) -> int:
        """The number the last match of *pattern* (a bytes regex with one
        group) in the current run's log reports; 0 before the first."""
        with open(self.log, "rb") as f:
            found = pattern.findall(f.read())
        return int(found[-1]) if found else 0

    def wait(self, predicate, timeout: float, what: str) -> None:
        import pytest
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"{self.label} exited ({self.proc.returncode}) while waiting for "
                            f"{what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what}:\n{self.tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then wait for a clean exit (SIGKILL and fail after *timeout*)."""
        import pytest
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.label} did not stop within {timeout}s:\n{self.tail()}")
        self.proc = None

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def tail(self, n: int = 40) -> str:
        try:
            with open(self.log, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return "(no log)"


# Ports for the tests' servers come from below the kernel's ephemeral range
# (32768 and up here), a block per pytest-xdist worker: a port found free
# cannot then be handed by the kernel to another worker's bind(port 0) or
# client socket before the test's server binds it.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
_PORTS = itertools.cycle(range(20000 + 1000 * (_WORKER % 12), 21000 + 1000 * (_WORKER % 12)))


def free_port() -> int:
    """A loopback TCP port nobody listens on, from this worker's block."""
    for _ in range(1000):
        port = next(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this worker's block")

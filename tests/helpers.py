"""Helpers for tests that run a FileChannel in a child process."""
from __future__ import annotations

import os
import signal
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

"""``exec``: runs a command and makes one event per line of its output.

Properties (Flume's): ``command`` (required), ``shell`` (e.g. ``/bin/sh -c``;
without it the command is split like a shell would, but not run by one),
``restart`` (false), ``restartThrottle`` (10000 ms), ``logStdErr`` (false:
the command's stderr is discarded; true: logged), ``batchSize`` (20),
``batchTimeout`` (3000 ms: a partial batch is sent after this long).

Lines read are put in batches; while the channel is full the batch is
retried with growing sleeps and the command's output waits in its pipe,
so nothing read is lost.
"""
from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import threading
import time

from fchannel.agent.component import EventDrivenSource
from fchannel.agent.properties import Context
from fchannel.event import Event

_EOF = object()


class ExecSource(EventDrivenSource):

    def configure(self, ctx: Context) -> None:
        self.command = ctx.string("command", required=True)
        self.shell = ctx.string("shell")
        self.restart = ctx.boolean("restart", False)
        self.restart_throttle = ctx.integer("restartThrottle", 10_000, minimum=0) / 1000.0
        self.log_stderr = ctx.boolean("logStdErr", False)
        self.batch_size = ctx.integer("batchSize", 20, minimum=1)
        self.batch_timeout = ctx.integer("batchTimeout", 3000, minimum=1) / 1000.0
        ctx.string("charset")  # bodies are the command's bytes, as written
        if self.command and not self.shell:
            try:
                shlex.split(self.command)
            except ValueError as exc:
                ctx.problem("command", f"cannot split into arguments ({exc}); "
                                       "set shell = /bin/sh -c")
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _argv(self) -> list[str]:
        assert self.command is not None
        if self.shell:
            return [*shlex.split(self.shell), self.command]
        return shlex.split(self.command)

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"exec-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            code = self._run_once()
            if self._stopping.is_set():
                break
            if not self.restart:
                self.log.info("command exited with status %s; not restarting "
                              "(restart = false)", code)
                break
            self.log.info("command exited with status %s; restarting in %.1fs",
                          code, self.restart_throttle)
            if self._stopping.wait(self.restart_throttle):
                break

    def _run_once(self) -> int | None:
        try:
            proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if self.log_stderr else subprocess.DEVNULL,
                start_new_session=True)  # its own process group, to stop its children too
        except OSError as exc:
            self.counter.add("GenericProcessingFail")
            self.log.error("cannot run %r: %s", self.command, exc)
            return None
        with self._lock:
            self._proc = proc
        self.log.info("running %r (pid %d)", self.command, proc.pid)
        lines: queue.Queue[object] = queue.Queue(maxsize=max(1000, 4 * self.batch_size))
        readers = [threading.Thread(target=self._read_stdout, args=(proc, lines),
                                    name=f"exec-{self.name}-out", daemon=True)]
        if self.log_stderr:
            readers.append(threading.Thread(target=self._read_stderr, args=(proc,),
                                            name=f"exec-{self.name}-err", daemon=True))
        for t in readers:
            t.start()
        batch: list[Event] = []
        deadline = time.monotonic() + self.batch_timeout
        eof = False
        while not eof:
            try:
                item = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _EOF:
                eof = True
            elif isinstance(item, bytes):
                batch.append(Event(item))
                self.counter.add("EventReceivedCount")
            if batch and (eof or len(batch) >= self.batch_size
                          or time.monotonic() >= deadline):
                if self.put_batch_retrying(batch):
                    self.counter.add("EventAcceptedCount", len(batch))
                else:
                    self.log.warning("stopping: %d line(s) read but not committed", len(batch))
                batch = []
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.batch_timeout
        for t in readers:
            t.join()
        code = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
        with self._lock:
            self._proc = None
        return code

    def _read_stdout(self, proc: subprocess.Popen[bytes], lines: queue.Queue[object]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.endswith(b"\r"):
                line = line[:-1]
            lines.put(line)
        lines.put(_EOF)

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            self.log.info("stderr: %s", raw.rstrip(b"\r\n").decode("utf-8", "replace"))

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
        if self._thread is not None:
            self._thread.join(10)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        # the command and whatever it started (a shell's children hold the pipe too)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

"""Runner threads: one per pollable source, one per sink (or sink group).

A runner calls ``process()`` in a loop.  BACKOFF (nothing to do: an empty
channel, no input, or a full channel for a source) makes it sleep, longer
each time up to a maximum; READY resets the sleep.  An exception is logged
and treated as a backoff.  ``stop()`` lets the call in progress finish (a
sink completes the batch in hand) and joins the thread.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from fchannel.agent.component import PollableSource, Sink, Status
from fchannel.agent.sinkgroups import SinkProcessor


class _PollingRunner:

    def __init__(self, name: str, log: logging.Logger, target: Any,
                 increment: float, maximum: float) -> None:
        self.name = name
        self.log = log
        self._target = target
        self.increment = increment
        self.maximum = maximum
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        backoffs = 0
        errors_in_row = 0
        while not self._stop.is_set():
            try:
                status = self._target.process()
                errors_in_row = 0
            except Exception as exc:
                errors_in_row += 1
                # first failure in a row with its traceback, then one line each
                if errors_in_row == 1:
                    self.log.error("process failed: %s", exc, exc_info=True)
                else:
                    self.log.error("process failed (%d in a row): %s", errors_in_row, exc)
                status = Status.BACKOFF
            if status is Status.BACKOFF:
                backoffs += 1
                self._stop.wait(min(self.maximum, backoffs * self.increment))
            else:
                backoffs = 0

    def failure(self) -> BaseException | None:
        """An error if the loop thread ended without being asked to."""
        t = self._thread
        if t is not None and not t.is_alive() and not self._stop.is_set():
            return RuntimeError(f"runner thread {self.name} ended unexpectedly")
        return None

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to end after the current call; True if it ended."""
        self._stop.set()
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()


class SourceRunner:
    """Starts a source; for a pollable one, runs its ``process`` loop."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self._poller: _PollingRunner | None = None
        if isinstance(source, PollableSource) or (
                hasattr(source, "process") and getattr(source, "pollable", False)):
            self._poller = _PollingRunner(
                f"source-{source.name}", source.log, source,
                getattr(source, "backoff_increment", 0.05), getattr(source, "max_backoff", 1.0))

    @property
    def name(self) -> str:
        return str(self.source.name)

    def start(self) -> None:
        stopping = getattr(self.source, "_stopping", None)
        if stopping is not None:
            stopping.clear()
        if hasattr(self.source, "clear_failure"):
            self.source.clear_failure()
        self.source.start()
        self.source.counter.started()
        if self._poller is not None:
            self._poller.start()

    def failure(self) -> BaseException | None:
        if self._poller is not None:
            exc = self._poller.failure()
            if exc is not None:
                return exc
        f = getattr(self.source, "failure", None)
        return f() if f is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        if hasattr(self.source, "request_stop"):
            self.source.request_stop()
        if self._poller is not None and not self._poller.stop(timeout):
            self.source.log.warning("runner did not stop within %.0fs", timeout)
        self.source.stop()
        self.source.counter.stopped()


class SinkRunner:
    """Drives a sink processor (a single sink or a group) in a thread."""

    def __init__(self, name: str, processor: SinkProcessor) -> None:
        self.name = name
        self.processor = processor
        inc = min((getattr(s, "backoff_increment", 0.05) for s in processor.sinks), default=0.05)
        mx = min((getattr(s, "max_backoff", 1.0) for s in processor.sinks), default=1.0)
        self._poller = _PollingRunner(f"sink-{name}", processor.log if len(
            processor.sinks) != 1 else processor.sinks[0].log, processor, inc, mx)

    @property
    def sinks(self) -> list[Sink]:
        return self.processor.sinks

    def start(self) -> None:
        for s in self.processor.sinks:
            if hasattr(s, "clear_failure"):
                s.clear_failure()
        self.processor.start()
        self._poller.start()

    def failure(self) -> BaseException | None:
        exc = self._poller.failure()
        if exc is not None:
            return exc
        for s in self.processor.sinks:
            f = getattr(s, "failure", None)
            exc = f() if f is not None else None
            if exc is not None:
                return exc
        return None

    def stop(self, timeout: float = 30.0) -> None:
        if not self._poller.stop(timeout):
            self.processor.log.warning("sink runner %r did not finish its batch within %.0fs",
                                       self.name, timeout)
        self.processor.stop()

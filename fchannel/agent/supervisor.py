"""The lifecycle supervisor: components that fail are restarted, the agent goes on.

Each source runner and sink runner (one sink or a sink group) is a
:class:`Supervised` unit.  A unit whose ``start()`` raises, or that dies
later (its runner thread ended, or the component reported a failure through
``Component.died``), is logged with its name, counted (``FailureCount`` in
its counter group, ``RestartCount`` once it runs again) and started again
after a backoff that doubles from ``initial`` up to ``maximum`` seconds, as
Flume's lifecycle supervisor keeps retrying a component.  The rest of the
agent keeps running meanwhile: a source that cannot bind its port does not
stop the sinks from draining the channel.  A ConfigError raised by the first
start is a configuration problem, not a failure: the agent reports it and
does not start (exit status 2).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fchannel.errors import ConfigError

INITIAL_BACKOFF = 0.5    # seconds before the first restart
MAX_BACKOFF = 30.0       # the longest wait between two restarts
CHECK_INTERVAL = 0.2     # how often the supervisor looks at its units


class Supervised:
    """One runner (a :class:`~fchannel.agent.runners.SourceRunner` or
    :class:`~fchannel.agent.runners.SinkRunner`) and its restart state."""

    def __init__(self, kind: str, name: str, runner: Any, counters: list[Any],
                 log: logging.Logger, initial: float = INITIAL_BACKOFF,
                 maximum: float = MAX_BACKOFF) -> None:
        self.kind = kind
        self.name = name
        self.runner = runner
        self.counters = counters
        self.log = log
        self.initial = initial
        self.maximum = maximum
        self.state = "new"          # new, running, failed, stopped
        self.failures = 0           # in a row; reset once it ran for `maximum` seconds
        self.next_try = 0.0
        self.started_at = 0.0
        self.last_error: BaseException | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def _count(self, counter: str) -> None:
        for c in self.counters:
            c.add(counter)

    def _failed(self, exc: BaseException, what: str) -> None:
        self.failures += 1
        self.last_error = exc
        self._count("FailureCount")
        wait = min(self.maximum, self.initial * (2 ** (self.failures - 1)))
        self.next_try = time.monotonic() + wait
        self.state = "failed"
        if isinstance(exc, PermissionError):
            what += " (permission problem)"
        if self.failures == 1:
            self.log.error("%s %s: %s; restarting in %.1fs", self.label, what, exc, wait,
                           exc_info=exc)
        else:
            self.log.error("%s %s (%d times in a row): %s; restarting in %.1fs", self.label,
                           what, self.failures, exc, wait)

    def try_start(self, first: bool = False) -> bool:
        """Start the runner; False if it failed.  On the *first* start a
        ConfigError (a problem only visible once the component runs, such as
        a channel of the wrong kind) is not retried: state ``misconfigured``."""
        again = self.state == "failed"
        try:
            self.runner.start()
        except ConfigError as exc:
            if not first:
                self._failed(exc, "failed to start")
                return False
            self.state = "misconfigured"
            self.last_error = exc
            self._count("FailureCount")
            return False
        except Exception as exc:
            self._failed(exc, "failed to start")
            return False
        self.state = "running"
        self.started_at = time.monotonic()
        if again:
            self._count("RestartCount")
            self.log.info("%s restarted after %d failure(s)", self.label, self.failures)
        return True

    def check(self, now: float) -> None:
        """Called by the supervisor thread: notice a death, retry when due."""
        if self.state == "running":
            exc = self.runner.failure()
            if exc is None:
                if self.failures and now - self.started_at >= self.maximum:
                    self.failures = 0
                return
            try:
                self.runner.stop()
            except Exception as stop_exc:
                self.log.warning("%s: error while stopping after a failure: %s", self.label,
                                 stop_exc)
            self._failed(exc, "died")
        elif self.state == "failed" and now >= self.next_try:
            self.try_start()

    def stop(self) -> None:
        if self.state == "running":
            self.runner.stop()
        self.state = "stopped"


class Supervisor:
    """Runs the checks of its units in one daemon thread."""

    def __init__(self, units: list[Supervised], interval: float = CHECK_INTERVAL) -> None:
        self.units = units
        self.interval = interval
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._halt.wait(self.interval):
            with self._lock:
                if self._halt.is_set():
                    return
                now = time.monotonic()
                for u in self.units:
                    try:
                        u.check(now)
                    except Exception:  # the supervisor itself must not die
                        u.log.exception("supervisor check of %s failed", u.label)

    def halt(self) -> None:
        """Stop restarting; after this returns no check runs any more."""
        self._halt.set()
        with self._lock:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def failed(self) -> list[Supervised]:
        return [u for u in self.units if u.state == "failed"]

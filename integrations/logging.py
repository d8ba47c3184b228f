"""A ``logging.Handler`` that stores log records durably in a channel.

Python's counterpart of Flume's Log4j appender and embedded agent: the
application hands its records to a :class:`ChannelHandler`, a background
committer puts them into a FileChannel in batches (one transaction each), and
something else ships them on (an in-process agent's sink, see
``examples/log_shipping.py``)::

    import logging
    from fchannel import FileChannel
    from fchannel.integrations.logging import ChannelHandler

    channel = FileChannel("/var/spool/logs/checkpoint", "/var/spool/logs/data")
    handler = ChannelHandler(channel, flush_interval=1.0)
    logging.getLogger().addHandler(handler)

or from :func:`logging.config.dictConfig`, where the handler opens (and on
``close()`` closes) a FileChannel under a directory of its own::

    "handlers": {"spool": {"class": "fchannel.integrations.logging.ChannelHandler",
                           "channel": "/var/spool/logs", "level": "INFO"}}

What a record becomes: an :class:`~fchannel.Event` whose body is a JSON
object (``time``, ``level``, ``logger``, ``message``, ``exc`` when there is
an exception, ``stack`` when there is stack info, ``module``, ``function``,
``line``, ``process``, ``thread``; ``formatted`` with the handler's formatter
when one is set) and whose headers are ``level``, ``logger``, ``host`` and
the handler's static *headers*.  The record is turned into an event in the
logging thread (its arguments are read once, there), then handed off.

Guarantees: a record whose logging call returned is in the channel, durably,
once :meth:`ChannelHandler.flush` has returned True after it, or at most
*flush_interval* seconds (plus the commit's time) later, committed by the
background thread; ``close()`` (called by ``logging.shutdown`` at exit)
flushes what is pending.  A kill -9 loses only records not yet committed (at
most *flush_interval* seconds of them, or *capacity* records).  A logging
call never blocks longer than *full_timeout* (unless ``on_full="block"``):
the hand-off between the application and the committer holds at most
*capacity* records; when it is full (because the channel is full or cannot
be written), the policy *on_full* applies: ``"drop"`` counts the record in
:attr:`ChannelHandler.dropped` and writes a warning to stderr (at most one per
*warn_interval* seconds), ``"raise"`` raises :class:`~fchannel.ChannelFullError`
from the logging call, ``"block"`` waits for room.  A failing channel put
(channel full, disk full) is retried with a growing delay, never skipped.
Records the committer thread logs itself (the channel's own warnings) never
wait: they are dropped when the hand-off is full.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fchannel.errors import ChannelClosedError, ChannelFullError, ConfigError
from fchannel.event import Event

__all__ = ["ChannelHandler", "record_body"]

_POLICIES = ("drop", "raise", "block")


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"ChannelHandler: {name} must be a number {bound}, got {value!r}")
    return float(value)


def record_body(record: logging.LogRecord, formatted: str | None = None) -> dict[str, Any]:
    """The JSON object stored for *record* (see the module docstring)."""
    body: dict[str, Any] = {
        "time": record.created,
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        body["exc"] = record.exc_text
    if record.stack_info:
        body["stack"] = record.stack_info
    body.update(module=record.module, function=record.funcName, line=record.lineno,
                process=record.process, thread=record.threadName)
    if formatted is not None:
        body["formatted"] = formatted
    return body


class ChannelHandler(logging.Handler):
    """Store log records in *channel* (see the module docstring).

    - *channel*: a channel (a FileChannel for durability; the handler does
      not close it), or a directory path: the handler opens
      ``FileChannel(<dir>/checkpoint, <dir>/data, **channel_options)`` and
      closes it in :meth:`close`.
    - *capacity*: records the hand-off holds; *batch_size*: records per
      channel transaction (at most the channel's ``transaction_capacity``).
    - *flush_interval*: the longest a handed-off record waits for its commit.
    - *on_full* (``"drop"``, ``"raise"`` or ``"block"``) and *full_timeout*
      (seconds a logging call waits for room before the policy applies).
    - *close_timeout*: how long :meth:`close` keeps trying to commit what is
      pending; what it cannot commit is counted as dropped.
    - *host*: the ``host`` header (default: this machine's name);
      *headers*: more static headers.
    - *serialize*: ``record -> bytes`` to replace the JSON body.
    """

    def __init__(self, channel: Any, *, level: int | str = logging.NOTSET,
                 capacity: int = 10_000, batch_size: int = 500,
                 flush_interval: float = 1.0, on_full: str = "drop",
                 full_timeout: float = 1.0, close_timeout: float = 10.0,
                 retry_backoff: tuple[float, float] = (0.05, 2.0),
                 warn_interval: float = 10.0, host: str | None = None,
                 headers: Mapping[str, str] | None = None,
                 serialize: Callable[[logging.LogRecord], bytes] | None = None,
                 channel_options: Mapping[str, Any] | None = None) -> None:
        if on_full not in _POLICIES:
            raise ConfigError(f"ChannelHandler: on_full must be one of {', '.join(_POLICIES)}, "
                              f"got {on_full!r}")
        for name, value in (("capacity", capacity), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ChannelHandler: {name} must be a positive int, "
                                  f"got {value!r}")
        self.flush_interval = _positive("flush_interval", flush_interval)
        self.full_timeout = _positive("full_timeout", full_timeout, allow_zero=True)
        self.close_timeout = _positive("close_timeout", close_timeout, allow_zero=True)
        self.warn_interval = _positive("warn_interval", warn_interval, allow_zero=True)
        if not (isinstance(retry_backoff, (tuple, list)) and len(retry_backoff) == 2 and
                all(isinstance(x, (int, float)) for x in retry_backoff) and
                0 < retry_backoff[0] <= retry_backoff[1]):
            raise ConfigError("ChannelHandler: retry_backoff must be (initial, maximum) with "
                              f"0 < initial <= maximum, got {retry_backoff!r}")
        hdrs = {"host": host if host is not None else socket.gethostname()}
        for k, v in (headers or {}).items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigError(f"ChannelHandler: headers must map str to str, got "
                                  f"{k!r}: {v!r}")
            hdrs[k] = v
        owns = False
        if isinstance(channel, (str, os.PathLike)):
            from fchannel.file.channel import FileChannel
            root = os.fspath(channel)
            channel = FileChannel(os.path.join(root, "checkpoint"), os.path.join(root, "data"),
                                  **dict(channel_options or {}))
            owns = True
        elif channel_options:
            raise ConfigError("ChannelHandler: channel_options apply only when channel is "
                              f"a directory, got a {type(channel).__name__}")
        if not hasattr(channel, "transaction"):
            raise ConfigError(f"ChannelHandler: channel must be a channel or a directory, "
                              f"got {channel!r}")
        cap = getattr(channel, "transaction_capacity", None)
        if cap is not None and batch_size > cap:
            batch_size = int(cap)
        # registered with logging (for logging.shutdown) only once it is valid
        super().__init__(level)
        self._owns_channel = owns
        self._headers = hdrs
        self.channel = channel
        self.capacity = capacity
        self.batch_size = batch_size
        self.on_full = on_full
        self._retry = (float(retry_backoff[0]), float(retry_backoff[1]))
        self._serialize = serialize

        self._cond = threading.Condition(threading.Lock())
        self._buf: collections.deque[Event] = collections.deque()
        self._arrived: collections.deque[float] = collections.deque()   # per pending record
        self._seq = 0                 # records handed off so far
        self._done = 0                # records committed (or given up) so far
        self._urgent = 0              # highest record a flush() waits for
        self._first_lost: int | None = None   # first handed-off record given up
        self._closing = False
        self._dead: BaseException | None = None   # the channel was closed under us
        self._last_warn = 0.0         # of the drop warning (under _cond)
        self._last_retry_warn = 0.0   # of the retry warning (committer thread only)
        self._unwarned = 0
        self.committed = 0            # records committed to the channel
        self.dropped = 0              # records given up (hand-off full, close, dead channel)
        self.failures = 0             # failed commit attempts (each retried)
        self._thread = threading.Thread(target=self._run, name="fchannel-log-committer",
                                        daemon=True)
        self._thread.start()

    # ---- the logging side --------------------------------------------------------------------
    def make_event(self, record: logging.LogRecord) -> Event:
        """The channel event for *record* (runs in the logging thread)."""
        if self._serialize is not None:
            body = self._serialize(record)
        else:
            formatted = self.format(record) if self.formatter is not None else None
            body = json.dumps(record_body(record, formatted), ensure_ascii=False,
                              default=str).encode("utf-8")
        headers = dict(self._headers)
        headers["level"] = record.levelname
        headers["logger"] = record.name
        return Event(body, headers)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = self.make_event(record)
        except Exception:
            self.handleError(record)
            return
        own = threading.current_thread() is self._thread
        with self._cond:
            if self._closing or self._dead is not None:
                self._drop(1, "the handler is closed" if self._closing else
                           f"the channel failed: {self._dead!r}")
                return
            if len(self._buf) >= self.capacity and not own:
                if self.on_full == "block":
                    while len(self._buf) >= self.capacity and not self._closing:
                        self._cond.wait(1.0)
                elif self.full_timeout > 0:
                    deadline = time.monotonic() + self.full_timeout
                    while len(self._buf) >= self.capacity and not self._closing:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
            if len(self._buf) >= self.capacity or self._closing:
                if self.on_full == "raise" and not own and not self._closing:
                    raise ChannelFullError(
                        f"ChannelHandler: {len(self._buf)} records wait for the channel "
                        f"(capacity={self.capacity}) after full_timeout={self.full_timeout}s; "
                        "the channel is full or failing")
                self._drop(1, "the hand-off is full (the channel is full or failing)")
                return
            self._buf.append(event)
            self._arrived.append(time.monotonic())
            self._seq += 1
            if len(self._buf) >= self.batch_size:
                self._cond.notify_all()

    def _drop(self, n: int, why: str) -> None:
        """Count *n* dropped records and warn on stderr (rate-limited); holds _cond."""
        self.dropped += n
        self._unwarned += n
        now = time.monotonic()
        if now - self._last_warn >= self.warn_interval:
            self._last_warn = now
            count, self._unwarned = self._unwarned, 0
            try:
                sys.stderr.write(f"fchannel ChannelHandler: dropped {count} log record(s): "
                                 f"{why} ({self.dropped} dropped in all)\n")
            except Exception:
                pass

    def _abandon(self, why: str) -> None:
        """Give up every handed-off record still pending; holds _cond."""
        n = len(self._buf)
        if not n:
            return
        if self._first_lost is None:
            self._first_lost = self._done + 1
        self._buf.clear()
        self._arrived.clear()
        self._done = self._seq
        self._last_warn = 0.0
        self._drop(n, why)
        self._cond.notify_all()

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter and emit *record* without the handler's lock: the hand-off
        has its own, and the lock must not be held while a logging call waits
        for room (``logging.shutdown`` holds it around flush and close)."""
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):   # Python >= 3.12: a filter may replace it
            record = rv
        if rv:
            self.emit(record)
        return rv

    @property
    def pending(self) -> int:
        """Records handed off and not yet committed."""
        with self._cond:
            return len(self._buf)

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Commit every record handed off before this call. Returns True when
        they are all in the channel; False after *timeout* seconds (default
        *close_timeout*) or if the channel failed (what is still pending stays
        pending)."""
        if timeout is None:
            timeout = self.close_timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._seq
            if self._done >= target:
                return True
            self._urgent = max(self._urgent, target)
            self._cond.notify_all()
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._dead is not None or not self._thread.is_alive():
                    return False
                self._cond.wait(min(left, 1.0))
            return self._first_lost is None or self._first_lost > target

    def close(self) -> None:
        """Flush what is pending (up to *close_timeout* seconds), stop the
        committer, close the channel if the handler opened it. Idempotent."""
        with self._cond:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
                self._urgent = self._seq
                self._cond.notify_all()
        if not already:
            self._thread.join(self.close_timeout + 1.0)
            with self._cond:
                self._abandon(f"not committed within close_timeout={self.close_timeout}s")
            if self._owns_channel:
                self.channel.close()
        super().close()

    # ---- the committer -----------------------------------------------------------------------
    def _run(self) -> None:
        delay = self._retry[0]
        close_deadline: float | None = None
        while True:
            with self._cond:
                while True:
                    if self._closing and close_deadline is None:
                        close_deadline = time.monotonic() + self.close_timeout
                    if not self._buf:
                        if self._closing:
                            return
                        self._cond.wait(self.flush_interval)
                        continue
                    if len(self._buf) >= self.batch_size or self._closing or \
                            self._urgent > self._done:
                        break
                    wait = self._arrived[0] + self.flush_interval - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                batch = list(itertools.islice(self._buf, self.batch_size))
            try:
                with self.channel.transaction() as tx:
                    tx.put_batch(batch)
            except ChannelClosedError as exc:
                with self._cond:
                    self._dead = exc
                    self._abandon(f"the channel was closed: {exc}")
                return
            except Exception as exc:
                self.failures += 1
                now = time.monotonic()
                if close_deadline is not None and now + delay >= close_deadline:
                    return          # close() counts what is left
                if now - self._last_retry_warn >= self.warn_interval:
                    self._last_retry_warn = now
                    try:
                        sys.stderr.write(f"fchannel ChannelHandler: storing {len(batch)} "
                                         f"log record(s) failed ({exc!r}); retrying\n")
                    except Exception:
                        pass
                with self._cond:
                    self._cond.wait(delay)
                delay = min(delay * 2, self._retry[1])
                continue
            delay = self._retry[0]
            with self._cond:
                for _ in range(len(batch)):
                    self._buf.popleft()
                    self._arrived.popleft()
                self._done += len(batch)
                self.committed += len(batch)
                self._cond.notify_all()

    def __repr__(self) -> str:
        return (f"<ChannelHandler {logging.getLevelName(self.level)} "
                f"channel={getattr(self.channel, 'name', self.channel)!r} "
                f"pending={len(self._buf)}>")

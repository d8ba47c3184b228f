"""MemoryChannel: Flume's fast, volatile channel.

Events live in a deque; nothing survives the process.  Semantics follow
Flume's MemoryChannel: a put's room is claimed at commit, waiting up to
``keep_alive`` seconds before :class:`ChannelFullError`; a take waits up to
``keep_alive`` seconds for an event; a slot taken by an open transaction stays
used until that transaction commits; a rolled-back take returns its events to
the head in their order.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from fchannel._config import Prop, as_float, as_int, kwargs_from_properties
from fchannel.channel import ChannelBase
from fchannel.errors import ChannelFullError, ConfigError
from fchannel.event import Event
from fchannel.transaction import Transaction

_PROPERTIES = {
    "capacity": Prop("capacity", lambda n, v: as_int(n, v, minimum=1)),
    "transactionCapacity": Prop("transaction_capacity", lambda n, v: as_int(n, v, minimum=1)),
    "keep-alive": Prop("keep_alive", lambda n, v: as_float(n, v, minimum=0)),
    "byteCapacity": Prop("byte_capacity", lambda n, v: as_int(n, v, minimum=1)),
    "byteCapacityBufferPercentage": Prop(
        "byte_capacity_buffer_percentage", lambda n, v: as_int(n, v, minimum=0, maximum=99)),
}


def _event_bytes(e: Event) -> int:
    # Flume counts the body (at least 1 byte); the buffer percentage covers headers.
    return len(e.body) or 1


class MemoryTransaction(Transaction):

    def __init__(self, channel: MemoryChannel) -> None:
        super().__init__(channel._transaction_capacity)
        self._channel = channel
        self._puts: list[Event] = []
        self._taken: list[Event] = []
        self._attempts = 0

    def _do_put(self, events: list[Event]) -> None:
        self._channel._check_open()
        self._attempts += len(events)
        self._puts.extend(events)

    def _do_take(self, n: int) -> list[Event]:
        self._attempts += 1
        got = self._channel._take(n)
        self._taken.extend(got)
        return got

    def _do_commit(self) -> None:
        ch = self._channel
        if self._puts:
            ch._commit_puts(self._puts, self._attempts)
        else:
            ch._commit_takes(self._taken, self._attempts)
        self._puts = []
        self._taken = []
        self._attempts = 0

    def _do_rollback(self) -> None:
        self._channel._rollback(self._puts, self._taken, self._attempts)
        self._puts = []
        self._taken = []
        self._attempts = 0


class MemoryChannel(ChannelBase):
    """A thread-safe in-memory channel with Flume's transaction semantics.

    ``byte_capacity`` (``None``: unlimited) bounds the total body bytes held,
    less ``byte_capacity_buffer_percentage`` percent kept for headers.
    """

    def __init__(self, capacity: int = 100, transaction_capacity: int = 100,
                 keep_alive: float = 3.0, byte_capacity: int | None = None,
                 byte_capacity_buffer_percentage: int = 20,
                 name: str = "memory-channel") -> None:
        self._capacity = as_int("capacity", capacity, minimum=1)
        self._transaction_capacity = as_int("transaction_capacity", transaction_capacity,
                                            minimum=1)
        if self._transaction_capacity > self._capacity:
            raise ConfigError(
                f"transaction_capacity ({transaction_capacity!r}) must not exceed "
                f"capacity ({capacity!r})")
        self._keep_alive = as_float("keep_alive", keep_alive, minimum=0)
        pct = as_int("byte_capacity_buffer_percentage", byte_capacity_buffer_percentage,
                     minimum=0, maximum=99)
        if byte_capacity is None:
            self._byte_capacity: int | None = None
        else:
            raw = as_int("byte_capacity", byte_capacity, minimum=1)
            self._byte_capacity = max(1, raw * (100 - pct) // 100)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"name must be a non-empty str, got {name!r}")
        self.name = name
        self._queue: deque[Event] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._slots_used = 0   # queued + taken by open transactions
        self._bytes_used = 0
        self._closed = False
        self._put_attempts = 0
        self._put_success = 0
        self._take_attempts = 0
        self._take_success = 0
        self._commits = 0
        self._rollbacks = 0

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], name: str = "memory-channel",
                        ) -> MemoryChannel:
        """Build from Flume's memory channel properties (``capacity``,
        ``transactionCapacity``, ``keep-alive`` in seconds, ``byteCapacity``,
        ``byteCapacityBufferPercentage``)."""
        kwargs = kwargs_from_properties("memory channel", props, _PROPERTIES,
                                        ignore=frozenset({"type"}))
        return cls(name=name, **kwargs)

    # ---- the channel face -------------------------------------------------
    def transaction(self) -> MemoryTransaction:
        self._check_open()
        return MemoryTransaction(self)

    @property
    def size(self) -> int:
        return len(self._queue)

    @property
    def counters(self) -> dict[str, Any]:
        with self._cond:
            return {
                "channel_size": len(self._queue),
                "channel_capacity": self._capacity,
                "channel_fill_percentage": 100.0 * self._slots_used / self._capacity,
                "channel_bytes": self._bytes_used,
                "event_put_attempt_count": self._put_attempts,
                "event_put_success_count": self._put_success,
                "event_take_attempt_count": self._take_attempts,
                "event_take_success_count": self._take_success,
                "commit_count": self._commits,
                "rollback_count": self._rollbacks,
            }

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __repr__(self) -> str:
        return f"<MemoryChannel {self.name!r} size={self.size}/{self._capacity}>"

    # ---- used by MemoryTransaction ------------------------------------------
    def _take(self, n: int) -> list[Event]:
        with self._cond:
            self._check_open()
            if not self._queue and self._keep_alive > 0:
                deadline = time.monotonic() + self._keep_alive
                while not self._queue and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
                self._check_open()
            q = self._queue
            k = min(n, len(q))
            return [q.popleft() for _ in range(k)]

    def _commit_puts(self, events: list[Event], attempts: int) -> None:
        n = len(events)
        nbytes = sum(map(_event_bytes, events)) if self._byte_capacity is not None else 0
        with self._cond:
            self._check_open()

            def room() -> bool:
                if self._slots_used + n > self._capacity:
                    return False
                bc = self._byte_capacity
                return bc is None or self._bytes_used + nbytes <= bc

            if not room():
                deadline = time.monotonic() + self._keep_alive
                while not room():
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed:
                        break
                    self._cond.wait(left)
                self._check_open()
                if not room():
                    if self._slots_used + n > self._capacity:
                        raise ChannelFullError(
                            f"channel {self.name!r} is full: no room for {n} event(s) within "
                            f"keep_alive={self._keep_alive}s (capacity={self._capacity}); "
                            "sinks are not keeping up with sources")
                    raise ChannelFullError(
                        f"channel {self.name!r} reached byte_capacity: no room for {nbytes} "
                        f"bytes within keep_alive={self._keep_alive}s")
            self._queue.extend(events)
            self._slots_used += n
            self._bytes_used += nbytes
            self._put_attempts += attempts
            self._put_success += n
            self._commits += 1
            self._cond.notify_all()

    def _commit_takes(self, events: list[Event], attempts: int) -> None:
        nbytes = sum(map(_event_bytes, events)) if self._byte_capacity is not None else 0
        with self._cond:
            self._slots_used -= len(events)
            self._bytes_used -= nbytes
            self._take_attempts += attempts
            self._take_success += len(events)
            self._commits += 1
            self._cond.notify_all()

    def _rollback(self, puts: list[Event], taken: list[Event], attempts: int) -> None:
        with self._cond:
            if taken:
                self._queue.extendleft(reversed(taken))
                self._take_attempts += attempts
                self._cond.notify_all()
            else:
                self._put_attempts += attempts
            self._rollbacks += 1

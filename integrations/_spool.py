"""The client-neutral half of the kafka-python, confluent-kafka and aiokafka
spoolers.

:class:`SpoolerBase` holds their common options (:class:`ThreadSpooler`
adds the loop of the two threaded ones); :class:`SpoolState` holds the batch
in hand and the offset bookkeeping that makes a spooler exactly once; the
client modules only poll, seek, pause and commit offsets with their own calls. Partitions are ``(topic, partition)``
tuples here (kafka-python's ``TopicPartition`` is one). The rules:

- each batch and a mark per partition (its next offset) go into the channel
  in one commit (:meth:`SpoolState.commit`); offsets go to Kafka after it;
- a newly assigned partition with a mark starts at the mark, or at the
  group's committed offset when that is further on (:meth:`SpoolState.position`);
- records in hand from revoked partitions are dropped (:meth:`SpoolState.revoke`);
- records below a partition's next offset are duplicates and dropped;
- a full channel keeps the batch in hand and retries with a growing delay.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fchannel.integrations._records import check_batch_size, mark_key, record_event

from fchannel.errors import ChannelFullError, ConfigError
from fchannel.event import Event

log = logging.getLogger("fchannel.integrations.spool")

TP = tuple[str, int]


def check_options(channel: Any, batch_size: Any, **seconds: Any) -> None:
    """ConfigError for a channel without marks or a bad batch size / duration."""
    if not hasattr(channel, "marks"):
        raise ConfigError(f"{type(channel).__name__} has no marks; a Kafka spooler "
                          "needs a FileChannel to spool exactly once")
    check_batch_size(batch_size, getattr(channel, "transaction_capacity", None))
    for name, value in seconds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")


class SpoolState:
    """The batch in hand of one spooler and what it knows about offsets.

    Thread-safe: rebalance callbacks may run on another thread than the
    spooling loop (they only call :meth:`revoke` and :meth:`position`, or
    hold :attr:`lock` for state of their own)."""

    def __init__(self, channel: Any, batch_size: int, batch_duration: float,
                 max_backoff: float) -> None:
        self.channel = channel
        self.batch_size = batch_size
        self.batch_duration = float(batch_duration)
        self.max_backoff = float(max_backoff)
        self.lock = threading.Lock()
        self.pending: list[tuple[TP, Event, int]] = []
        self.next: dict[TP, int] = {}
        self.catch_up: dict[TP, int] = {}       # Kafka commits owed after a restart
        self.first_at: float | None = None
        self.full_since: float | None = None
        self.backoff = 0.0
        self.retry_at = 0.0
        self.stats = {"events": 0, "batches": 0, "duplicates_dropped": 0, "full_waits": 0,
                      "revoked_dropped": 0, "kafka_commit_failures": 0}

    # ---- rebalances -------------------------------------------------------------------
    def revoke(self, tps: Iterable[TP]) -> None:
        revoked = set(tps)
        with self.lock:
            before = len(self.pending)
            self.pending = [p for p in self.pending if p[0] not in revoked]
            self.stats["revoked_dropped"] += before - len(self.pending)
            if not self.pending:   # nothing held: nothing waits for room any more
                self.first_at = None
                self._not_full()
            for tp in revoked:
                self.next.pop(tp, None)
                self.catch_up.pop(tp, None)

    def position(self, tp: TP, committed: int | None) -> int | None:
        """Where a newly assigned partition starts: its mark, or the group's
        *committed* offset when that is further on; None (no mark) means the
        client's own start (committed offset or reset policy)."""
        mark = self.channel.marks.get(mark_key(*tp))
        with self.lock:
            self.next.pop(tp, None)
            self.catch_up.pop(tp, None)
            if mark is None:
                return None
            pos = committed if committed is not None and committed > mark else mark
            self.next[tp] = pos
            if committed is None or committed < mark:
                self.catch_up[tp] = mark     # the crash came between the two commits
            return pos

    # ---- the batch in hand ------------------------------------------------------------
    @property
    def full(self) -> bool:
        return self.full_since is not None

    def room(self) -> int:
        if self.full_since is not None:
            return 0
        with self.lock:
            return max(0, self.batch_size - len(self.pending))

    def add(self, tp: TP, offset: int, make: Callable[[], Event]) -> bool:
        """Take a polled record into the batch in hand (a duplicate is
        dropped). False when there is no room: the caller seeks back to
        *offset* so the record is fetched again."""
        with self.lock:
            nxt = self.next.get(tp)
            if nxt is not None and offset < nxt:
                self.stats["duplicates_dropped"] += 1
                return True
            if self.full_since is not None or len(self.pending) >= self.batch_size:
                return False
            self.pending.append((tp, make(), offset))
            self.next[tp] = offset + 1
            if self.first_at is None:
                self.first_at = time.monotonic()
            return True

    def due(self) -> bool:
        with self.lock:
            if not self.pending:
                return False
            if self.full_since is not None:
                return time.monotonic() >= self.retry_at
            if len(self.pending) >= self.batch_size:
                return True
            assert self.first_at is not None
            return time.monotonic() - self.first_at >= self.batch_duration

    def wait_hint(self, poll_timeout: float) -> float:
        """How long the next poll may block."""
        if self.full_since is not None:
            return max(0.0, min(poll_timeout, self.retry_at - time.monotonic()))
        return poll_timeout

    def commit(self, transform: Callable[[list], list] | None = None
               ) -> tuple[int, dict[TP, int]] | None:
        """Commit the batch in hand with its marks to the channel (blocking:
        run it off an event loop). Returns (events, {tp: next offset}) or
        None when the channel is full (the batch stays in hand)."""
        with self.lock:
            batch = list(self.pending)
        if not batch:
            self._not_full()
            return 0, {}
        offsets: dict[TP, int] = {}
        for tp, _e, off in batch:
            offsets[tp] = off + 1
        events = [e for _tp, e, _off in batch]
        if transform is not None:
            events = transform(events)
        tx = self.channel.transaction()
        tx.begin()
        try:
            if events:
                tx.put_batch(events)
            for tp, nxt in offsets.items():
                tx.set_mark(mark_key(*tp), nxt)
            tx.commit()
        except ChannelFullError:
            tx.rollback()
            self._on_full()
            return None
        except BaseException:
            tx.rollback()
            raise
        finally:
            tx.close()
        with self.lock:
            done = {id(p) for p in batch}
            self.pending = [p for p in self.pending if id(p) not in done]
            self.first_at = time.monotonic() if self.pending else None
            for tp in offsets:
                self.catch_up.pop(tp, None)
            self.stats["events"] += len(batch)
            self.stats["batches"] += 1
        self._not_full()
        return len(batch), offsets

    def _not_full(self) -> None:
        self.full_since = None
        self.backoff = 0.0

    def _on_full(self) -> None:
        now = time.monotonic()
        if self.full_since is None:
            self.full_since = now
            log.warning("channel %s is full; holding %d polled records and retrying",
                        getattr(self.channel, "name", "?"), len(self.pending))
        self.stats["full_waits"] += 1
        self.backoff = min(self.max_backoff, max(0.01, self.backoff * 2))
        self.retry_at = now + self.backoff

    def add_records(self, tp: TP, records: Iterable[Any], make: Callable[[Any], Event],
                    seek: Callable[[int], None]) -> None:
        """:meth:`add` polled *records* (with an ``offset``) of partition *tp*;
        at the first without room, ``seek(offset)`` so it is fetched again."""
        for r in records:
            if not self.add(tp, r.offset, lambda r=r: make(r)):
                seek(r.offset)
                return

    def pop_catch_up(self) -> dict[TP, int]:
        with self.lock:
            owed = dict(self.catch_up)
            self.catch_up.clear()
        return owed


def check_topics(topics: Sequence[str] | str | None, pattern: str | None) -> list[str] | None:
    """The topics to subscribe to (one str is one topic); ConfigError for both
    topics and a pattern."""
    if topics is not None and pattern is not None:
        raise ConfigError("give topics or pattern, not both")
    if isinstance(topics, str):
        return [topics]
    return None if topics is None else list(topics)


class SpoolerBase:
    """The options every spooler takes, checked, and its :class:`SpoolState`.

    ``batch_size``, ``batch_duration`` and ``max_backoff`` are the state's
    (setting one takes effect at the next step)."""

    def __init__(self, consumer: Any, channel: Any, *, batch_size: int,
                 batch_duration: float, poll_timeout: float, set_topic_header: bool,
                 topic_header: str, copy_headers: bool, commit_kafka: bool,
                 max_backoff: float) -> None:
        check_options(channel, batch_size, batch_duration=batch_duration,
                      poll_timeout=poll_timeout, max_backoff=max_backoff)
        self.consumer = consumer
        self.channel = channel
        self.poll_timeout = float(poll_timeout)
        self.set_topic_header = set_topic_header
        self.topic_header = topic_header
        self.copy_headers = copy_headers
        self.commit_kafka = commit_kafka
        self._state = SpoolState(channel, batch_size, batch_duration, max_backoff)
        self.stats = self._state.stats
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask ``run()`` to finish its batch and return (thread-safe; returns
        at once; ``run()`` returns within about ``poll_timeout`` plus one
        commit)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def batch_size(self) -> int:
        return self._state.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._state.batch_size = value

    @property
    def batch_duration(self) -> float:
        return self._state.batch_duration

    @batch_duration.setter
    def batch_duration(self, value: float) -> None:
        self._state.batch_duration = float(value)

    @property
    def max_backoff(self) -> float:
        return self._state.max_backoff

    @max_backoff.setter
    def max_backoff(self, value: float) -> None:
        self._state.max_backoff = float(value)

    def _event(self, r: Any) -> Event:
        """The Event of a kafka-python / aiokafka ``ConsumerRecord``."""
        return record_event(topic=r.topic, partition=r.partition, offset=r.offset,
                            timestamp_ms=r.timestamp, key=r.key, value=r.value,
                            headers=r.headers if self.copy_headers else None,
                            topic_header=self.topic_header if self.set_topic_header else None,
                            value_hint="use no value_deserializer")

    def _transform(self, events: list) -> list:
        """The events of a batch as they go into the channel (a hook)."""
        return events


class ThreadSpooler(SpoolerBase):
    """A spooler driven by a thread (kafka-python, confluent-kafka): the
    client module gives ``step()`` (one poll), ``flush()`` and
    ``_commit_kafka()``."""

    def run(self) -> None:
        """Spool until :meth:`stop`; commits the batch in hand before returning."""
        while not self._stop.is_set():
            self.step()
        self.flush()

    def step(self) -> int:   # pragma: no cover - per client
        raise NotImplementedError

    def flush(self) -> int:   # pragma: no cover - per client
        raise NotImplementedError

    def _commit_kafka(self, offsets: dict) -> None:   # pragma: no cover - per client
        raise NotImplementedError

    def _commit_due(self) -> int:
        """After a poll: the Kafka commits owed since a restart, then the
        batch in hand if it is due. Returns the events committed."""
        st = self._state
        if st.catch_up and self.commit_kafka:
            self._commit_kafka(st.pop_catch_up())
        if st.due():
            return self.flush()
        return 0

"""The client-neutral part of the kafka-python and confluent-kafka
``SpooledProducer`` (:class:`SyncSpooledProducer`); the aiokafka one has the
same shape on asyncio and shares :class:`SpooledProducerBase`,
:func:`put_durably` and :func:`decode_records` with it.

``send`` writes the record into a FileChannel in its own transaction and
returns once it is committed (fsync'ed; concurrent senders share one
fdatasync through the channel's group commit). A background thread takes
batches in order, hands them to the real producer, waits until the broker
acknowledged every record of the batch, and only then commits the take; a
failure rolls the take back, so the batch is sent again, from the head of
the channel, after a growing pause.

Guarantees: every record whose ``send`` returned is delivered, also after
the process was killed (it is in the channel; the next SpooledProducer on
that channel sends it). At least once: a record is sent twice when the
process dies after the broker acknowledged a batch and before the take
committed, or when a batch failed part-way (the records of it that did
reach the broker are sent again with the rest). Per-partition order holds
when the real producer keeps order within a batch (idempotence, or one
request in flight per connection).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fchannel.integrations._drain import take_and_deliver
from fchannel.integrations._records import (
    SpooledRecord,
    check_batch_size,
    spool_event,
    spooled_record,
)

from fchannel.errors import ChannelError, ChannelFullError, ConfigError
from fchannel.event import Event

log = logging.getLogger("fchannel.integrations.producer")


def check_producer_options(channel: Any, batch_size: Any, send_timeout: Any,
                           max_backoff: Any) -> None:
    if not hasattr(channel, "transaction"):
        raise ConfigError(f"channel must be a channel (FileChannel), got {channel!r}")
    check_batch_size(batch_size, getattr(channel, "transaction_capacity", None))
    for name, value in (("send_timeout", send_timeout), ("max_backoff", max_backoff)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")


class SpooledProducerBase:
    """The options and state every SpooledProducer has (thread or asyncio):
    checked options, ``stats``, ``last_error``, and the Event of a record."""

    def __init__(self, producer: Any, channel: Any, *, batch_size: int,
                 send_timeout: float, max_backoff: float, key_serializer: Any,
                 value_serializer: Any) -> None:
        check_producer_options(channel, batch_size, send_timeout, max_backoff)
        self.producer = producer
        self.channel = channel
        self.batch_size = batch_size
        self.send_timeout = float(send_timeout)
        self.max_backoff = float(max_backoff)
        self.key_serializer = key_serializer
        self.value_serializer = value_serializer
        self._inflight = 0
        self._oldest: float | None = None   # spool time of the oldest record seen waiting
        self._closing = False
        self.last_error: BaseException | None = None
        self.stats = {"sent": 0, "delivered": 0, "batches": 0, "failed_batches": 0,
                      "full_waits": 0, "undecodable": 0}

    def _spool_event(self, topic: str, value: Any, key: Any, headers: Any,
                     partition: int | None, timestamp_ms: int | None) -> Event:
        """The Event :func:`spool_event` makes of a record, after the
        ``key_serializer`` / ``value_serializer``."""
        if self.key_serializer is not None and key is not None:
            key = self.key_serializer(key)
        if self.value_serializer is not None and value is not None:
            value = self.value_serializer(value)
        return spool_event(topic, value, key, headers, partition, timestamp_ms)


def put_durably(channel: Any, event: Event, send_timeout: float,
                stats: dict[str, int]) -> None:
    """Put *event* into *channel* in its own transaction (blocking), retrying
    while the channel is full; ChannelFullError after *send_timeout* seconds."""
    deadline = time.monotonic() + send_timeout
    while True:
        try:
            with channel.transaction() as tx:
                tx.put(event)
            return
        except ChannelFullError:
            stats["full_waits"] += 1
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def decode_records(events: list[Event], stats: dict[str, int]) -> list[SpooledRecord]:
    """The records a take holds; an event that is not one can never be sent:
    it is counted (``undecodable``), logged and dropped."""
    records = []
    for e in events:
        try:
            records.append(spooled_record(e))
        except (ValueError, KeyError) as exc:
            stats["undecodable"] += 1
            log.error("dropping an event that is not a spooled record (%s): %r", exc, e)
    return records


class SyncSpooledProducer(SpooledProducerBase):
    """A producer whose ``send`` is durable before it returns.

    - *channel*: a :class:`fchannel.FileChannel` used only by this producer
      (one SpooledProducer per channel; its capacity bounds the backlog).
    - ``batch_size``: records handed to the real producer per take.
    - ``send_timeout``: how long ``send`` waits for room in a full channel
      before it raises :class:`fchannel.ChannelFullError` (never a silent drop).
    - ``max_backoff``: the longest pause between failed delivery attempts.
    - ``key_serializer`` / ``value_serializer``: applied in ``send``; what is
      stored and sent must be bytes (or str, sent UTF-8).
    """

    def __init__(self, producer: Any, channel: Any, *, batch_size: int = 500,
                 send_timeout: float = 60.0, max_backoff: float = 2.0,
                 key_serializer: Any = None, value_serializer: Any = None,
                 start: bool = True) -> None:
        super().__init__(producer, channel, batch_size=batch_size,
                         send_timeout=send_timeout, max_backoff=max_backoff,
                         key_serializer=key_serializer, value_serializer=value_serializer)
        self._cond = threading.Condition()
        self._busy = False             # the drainer holds a take (in flight)
        self._closed = False
        self._thread = threading.Thread(target=self._drain_loop, daemon=True,
                                        name=f"spooled-producer-{getattr(channel, 'name', '')}")
        if start:
            self._thread.start()

    # ---- the sending side -------------------------------------------------------------
    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None,
             partition: int | None = None, timestamp_ms: int | None = None) -> None:
        """Store the record durably; returns once it is committed to the
        channel. Raises ChannelFullError when the channel stayed full for
        ``send_timeout`` seconds, ValueError/TypeError for a bad field."""
        if self._closing:
            raise ChannelError("this SpooledProducer is closed")
        event = self._spool_event(topic, value, key, headers, partition, timestamp_ms)
        put_durably(self.channel, event, self.send_timeout, self.stats)
        with self._cond:
            self.stats["sent"] += 1
            self._cond.notify_all()

    # ---- state ------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Records stored and not yet acknowledged by the broker."""
        with self._cond:
            return self.channel.size + self._inflight

    @property
    def oldest_age(self) -> float:
        """Seconds since the oldest record still waiting was sent (0 when
        nothing waits). Known from the drainer's current take: right after a
        restart it is the age of the first record taken."""
        with self._cond:
            if self._oldest is None or self.channel.size + self._inflight == 0:   # nothing waits
                return 0.0
            return max(0.0, time.time() - self._oldest)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every stored record is delivered, or *timeout* seconds.
        Returns the backlog left (0: all delivered)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy or self.channel.size > 0:
                if not self._thread.is_alive():
                    break
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    break
                self._cond.wait(left)
            return self.channel.size + self._inflight

    def close(self, timeout: float | None = None) -> int:
        """Flush for up to *timeout* seconds, then stop the drainer: it
        finishes the batch in flight (acknowledged, or failed after the
        client's delivery timeout, and then rolled back). What is left stays
        in the channel for the next run. Returns the backlog left. Does not
        close the channel."""
        if self._closed:
            return self.backlog
        left = self.flush(timeout) if self._thread.is_alive() else self.backlog
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            # the batch in flight settles within the client's delivery timeout
            self._thread.join()
        self._close_producer(1.0 if timeout is None else timeout)
        self._closed = True
        return left

    def __enter__(self) -> SyncSpooledProducer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- the draining side ------------------------------------------------------------
    def _deliver(self, records: list) -> None:   # pragma: no cover - per client
        raise NotImplementedError

    def _close_producer(self, timeout: float) -> None:
        pass

    def _drain_loop(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                if self._closing:
                    return
                self._busy = True
            try:
                delivered = self._drain_once()
            except BaseException as exc:
                delivered = -1
                self.last_error = exc
                self.stats["failed_batches"] += 1
                backoff = min(self.max_backoff, max(0.05, backoff * 2))
                log.warning("delivery failed (%s); retrying the batch in %.2fs",
                            exc, backoff)
            finally:
                with self._cond:
                    self._busy = False
                    self._inflight = 0
                    self._cond.notify_all()
            with self._cond:
                if delivered > 0:
                    backoff = 0.0
                    continue
                if self._closing:
                    return
                if delivered == 0:
                    self._oldest = None
                    if self.channel.size == 0:
                        self._cond.wait(0.2)      # woken by send
                else:
                    self._cond.wait(backoff)

    def _drain_once(self) -> int:
        records: list[SpooledRecord] = []

        def deliver(events: list[Event]) -> None:
            records.extend(decode_records(events, self.stats))
            with self._cond:
                self._inflight = len(events)
                if records:
                    self._oldest = records[0].spooled_at
            if records:
                self._deliver(records)

        taken = take_and_deliver(self.channel, self.batch_size, deliver)
        if taken:
            self.stats["delivered"] += len(records)
            self.stats["batches"] += 1
        return taken

"""aiokafka into a FileChannel exactly once, and out of it at least once, on
asyncio.

:class:`AioKafkaSpooler` reads an ``AIOKafkaConsumer`` and puts what it
fetches into a channel, one transaction per batch, with a mark per partition
(``kafka:<topic>:<partition> = next offset``) in the same commit; the
offsets go to Kafka only after it. Its ``ConsumerRebalanceListener`` seeks
every newly assigned partition to the channel's mark (or to the group's
committed offset when that is further on) and drops the records in hand of
revoked partitions. A full channel pauses fetching (``consumer.pause``) while
the loop keeps the consumer in its group. The channel's blocking work (commit
and fsync) runs in an executor, never on the event loop.

:func:`drain` takes a batch, awaits every ``send`` and commits the take only
then. :class:`SpooledProducer` has ``await send(...)`` return once the record
is on disk and delivers in a background task.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Any

from fchannel.integrations._drain import drain_target
from fchannel.integrations._producer import SpooledProducerBase, decode_records, put_durably
from fchannel.integrations._records import Route, mark_key
from fchannel.integrations._spool import SpoolerBase, check_topics

from fchannel.aio import atransaction
from fchannel.errors import ChannelError, ConfigError
from fchannel.event import Event

try:
    from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener
    from aiokafka.errors import KafkaError
    from aiokafka.structs import TopicPartition
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fchannel.integrations.aiokafka needs aiokafka: "
                      "pip install 'fchannel[aiokafka]'") from exc

__all__ = ["AioKafkaSpooler", "ProducerTarget", "SpooledProducer", "drain", "drain_all",
           "mark_key"]

log = logging.getLogger(__name__)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, spooler: AioKafkaSpooler, user: Any = None) -> None:
        self._spooler = spooler
        self._user = user

    async def on_partitions_revoked(self, revoked):
        await self._spooler._on_revoked(revoked)
        if self._user is not None:
            await self._user.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned):
        await self._spooler._on_assigned(assigned)
        if self._user is not None:
            await self._user.on_partitions_assigned(assigned)


class AioKafkaSpooler(SpoolerBase):
    """Fetches with *consumer* (an ``AIOKafkaConsumer`` with
    ``enable_auto_commit=False``, started before :meth:`run`) into *channel*,
    exactly once.

    The options and events are those of
    :class:`fchannel.integrations.kafka.KafkaSpooler`: ``topics`` or
    ``pattern`` (the spooler subscribes with its listener; ``listener`` is
    awaited after it), ``batch_size``, ``batch_duration``, ``poll_timeout``,
    ``set_topic_header``, ``topic_header``, ``copy_headers``, ``commit_kafka``,
    ``max_backoff``. ``executor``: where the channel's blocking calls run (the
    loop's default executor when None).

    Run it with ``await run()`` (until :meth:`stop`) or drive it with
    ``await step()``. It neither starts nor stops the consumer, nor closes
    the channel.
    """

    def __init__(self, consumer: Any, channel: Any, *, topics: Sequence[str] | None = None,
                 pattern: str | None = None, listener: Any = None, batch_size: int = 1000,
                 batch_duration: float = 1.0, poll_timeout: float = 0.1,
                 set_topic_header: bool = True, topic_header: str = "topic",
                 copy_headers: bool = True, commit_kafka: bool = True,
                 max_backoff: float = 1.0, executor: Executor | None = None) -> None:
        super().__init__(consumer, channel, batch_size=batch_size,
                         batch_duration=batch_duration, poll_timeout=poll_timeout,
                         set_topic_header=set_topic_header, topic_header=topic_header,
                         copy_headers=copy_headers, commit_kafka=commit_kafka,
                         max_backoff=max_backoff)
        topics = check_topics(topics, pattern)
        self.executor = executor
        self._commit_lock = asyncio.Lock()
        self._paused = False
        self._manual: set | None = None
        if topics is not None or pattern is not None:
            lst = _Listener(self, listener)
            if pattern is not None:
                consumer.subscribe(pattern=pattern, listener=lst)
            else:
                consumer.subscribe(topics=topics, listener=lst)
        elif consumer.subscription():
            consumer.subscribe(topics=sorted(consumer.subscription()),
                               listener=_Listener(self, listener))
        elif consumer.assignment():
            self._manual = set(consumer.assignment())   # positioned on the first step
        else:
            raise ConfigError("the consumer has neither a subscription nor an assignment; "
                              "pass topics= or pattern=")

    # ---- rebalances (awaited by the consumer's coordinator) --------------------------
    async def _on_revoked(self, revoked: Iterable[Any]) -> None:
        revoked = list(revoked)
        async with self._commit_lock:   # a channel commit in progress finishes first
            self._state.revoke((tp.topic, tp.partition) for tp in revoked)
        if revoked:
            log.info("partitions revoked: %s", sorted(revoked))

    async def _on_assigned(self, assigned: Iterable[Any]) -> None:
        assigned = list(assigned)
        marks = self.channel.marks
        for tp in assigned:
            committed = None
            if mark_key(tp.topic, tp.partition) in marks:
                try:
                    committed = await self.consumer.committed(tp)
                except KafkaError as exc:
                    log.warning("could not read the committed offset of %s (%s); starting "
                                "at the channel's mark", tp, exc)
            pos = self._state.position((tp.topic, tp.partition), committed)
            if pos is not None:
                self.consumer.seek(tp, pos)
        if self._paused and assigned:
            self.consumer.pause(*assigned)
        if assigned:
            log.info("partitions assigned: %s", sorted(assigned))

    # ---- the loop -------------------------------------------------------------------
    async def run(self) -> None:
        """Spool until :meth:`stop`; commits the batch in hand before returning."""
        while not self._stop.is_set():
            await self.step()
        await self.flush()

    async def step(self) -> int:
        """Fetch once and commit the batch in hand if it is due. Returns the
        number of events committed to the channel by this step."""
        st = self._state
        if self._manual is not None:
            manual, self._manual = self._manual, None
            await self._on_assigned(manual)
        if st.full and not self._paused:
            self._set_paused(True)
        room = st.room()
        data = await self.consumer.getmany(
            timeout_ms=int(st.wait_hint(self.poll_timeout) * 1000), max_records=max(room, 1))
        for tp, recs in data.items():
            # no room for a record: fetch it again later
            st.add_records((tp.topic, tp.partition), recs, self._event,
                           lambda offset, tp=tp: self.consumer.seek(tp, offset))
        if st.catch_up and self.commit_kafka:
            await self._commit_kafka(st.pop_catch_up())
        if st.due():
            return await self.flush()
        return 0

    async def flush(self) -> int:
        """Commit the batch in hand to the channel (with its marks; in the
        executor), then its offsets to Kafka. Returns the number of events
        committed (0 when the channel is full; the batch stays in hand)."""
        loop = asyncio.get_running_loop()
        async with self._commit_lock:
            done = await loop.run_in_executor(self.executor, self._state.commit,
                                              self._transform)
        if done is None:
            return 0
        n, offsets = done
        if self._paused:
            self._set_paused(False)
        if n and self.commit_kafka:
            await self._commit_kafka(offsets)
        return n

    def _set_paused(self, paused: bool) -> None:
        assigned = self.consumer.assignment()
        if assigned:
            (self.consumer.pause if paused else self.consumer.resume)(*assigned)
        self._paused = paused

    async def _commit_kafka(self, offsets: dict) -> None:
        if not offsets:
            return
        try:
            await self.consumer.commit({TopicPartition(t, p): o
                                        for (t, p), o in offsets.items()})
        except KafkaError as exc:
            self.stats["kafka_commit_failures"] += 1
            log.warning("Kafka offset commit failed (the channel has the batch): %s", exc)


# ---- out of the channel --------------------------------------------------------------
async def _send_all(producer: Any, records: Iterable[tuple[str, Any, Any, Any, Any, Any]]
                    ) -> None:
    """Send ``(topic, value, key, partition, headers, timestamp_ms)`` records
    and return once the broker acknowledged every one; raise the first
    failure (after every send already handed over has settled)."""
    futures = []
    failure: BaseException | None = None
    try:
        for topic, value, key, part, headers, ts in records:
            futures.append(await producer.send(topic, value=value, key=key, partition=part,
                                               timestamp_ms=ts, headers=headers))
    except Exception as exc:
        failure = exc
    results = await asyncio.gather(*futures, return_exceptions=True)
    if failure is not None:
        raise failure
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _acks(producer: Any) -> Any:
    return getattr(getattr(producer, "_sender", None), "_acks", None)


class ProducerTarget:
    """Sends a batch of events with an ``AIOKafkaProducer`` and returns once
    every send is acknowledged (awaitable). Routing is
    :class:`fchannel.integrations._records.Route`'s. The producer must use
    ``acks="all"`` unless ``require_acks_all=False``."""

    def __init__(self, producer: Any, topic: str | None = None, *,
                 require_acks_all: bool = True, **route: Any) -> None:
        acks = _acks(producer)
        if require_acks_all and acks is not None and acks not in (-1, "all"):
            raise ConfigError(f"the AIOKafkaProducer has acks={acks!r}; use acks='all' so a "
                              "committed take means the brokers have the records")
        self.producer = producer
        self.route = Route(topic, **route)

    async def __call__(self, events: Iterable[Event]) -> None:
        await _send_all(self.producer, self.route.records(events))


async def drain(channel: Any, target: Any, *, batch_size: int = 100, topic: str | None = None,
                executor: Executor | None = None, **target_options: Any) -> int:
    """Take up to *batch_size* events in one transaction and deliver them to
    *target*: an ``AIOKafkaProducer`` (wrapped in :class:`ProducerTarget`) or
    an async callable taking the list of events. The take commits only after
    every send was acknowledged; on any error it is rolled back and the error
    raised. The channel's blocking calls run in *executor*. Returns the number
    of events delivered."""
    target = drain_target(target, topic, target_options, AIOKafkaProducer, ProducerTarget,
                          "an AIOKafkaProducer", "an AIOKafkaProducer",
                          "an async callable")
    async with atransaction(channel, executor) as tx:
        events = await tx.take_batch(batch_size)
        if events:
            await target(events)
    return len(events)


async def drain_all(channel: Any, target: Any, *, batch_size: int = 100,
                    stop: Callable[[], bool] | None = None, **kw: Any) -> int:
    """Await :func:`drain` until the channel is empty (or *stop* returns true)."""
    total = 0
    while stop is None or not stop():
        n = await drain(channel, target, batch_size=batch_size, **kw)
        total += n
        if n == 0:
            break
    return total


# ---- a producer that never drops a record ---------------------------------------------
class SpooledProducer(SpooledProducerBase):
    """``await send(...)`` returns once the record is on disk in *channel*; a
    background task hands the records in order to *producer* (a started
    ``AIOKafkaProducer`` with ``acks="all"``) and commits each take only after
    every send of the batch was acknowledged.

    Start it with ``await start()`` (or ``async with``); ``await stop()``
    flushes up to a timeout and stops the task. Options as the kafka-python
    and confluent SpooledProducer: ``batch_size``, ``send_timeout`` (how long
    ``send`` waits for room in a full channel before ChannelFullError),
    ``max_backoff``, ``key_serializer``, ``value_serializer``; ``executor`` for
    the channel's blocking calls. ``backlog`` and ``oldest_age`` tell how far
    delivery is behind; ``await flush(timeout)`` waits for it to catch up.
    ``delivery_timeout``: a batch not acknowledged within it counts as failed
    and is sent again (also when the producer is not started yet).

    At least once, per-partition order kept (aiokafka sends one batch per
    partition at a time): see :mod:`fchannel.integrations._producer` for when a
    record can be delivered twice."""

    def __init__(self, producer: Any, channel: Any, *, batch_size: int = 500,
                 send_timeout: float = 60.0, max_backoff: float = 2.0,
                 key_serializer: Any = None, value_serializer: Any = None,
                 executor: Executor | None = None, require_acks_all: bool = True,
                 delivery_timeout: float = 120.0) -> None:
        super().__init__(producer, channel, batch_size=batch_size,
                         send_timeout=send_timeout, max_backoff=max_backoff,
                         key_serializer=key_serializer, value_serializer=value_serializer)
        if isinstance(delivery_timeout, bool) or not isinstance(delivery_timeout, (int, float)) \
                or delivery_timeout <= 0:
            raise ConfigError(f"delivery_timeout must be a positive number of seconds, got "
                              f"{delivery_timeout!r}")
        self.delivery_timeout = float(delivery_timeout)
        acks = _acks(producer)
        if require_acks_all and acks is not None and acks not in (-1, "all"):
            raise ConfigError(f"the AIOKafkaProducer has acks={acks!r}; use acks='all': the "
                              "channel forgets a record once the broker acknowledged it")
        self.executor = executor
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        """Start the background delivery task (once)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._idle = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._drain_loop())

    async def __aenter__(self) -> SpooledProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---- the sending side -------------------------------------------------------------
    async def send(self, topic: str, value: Any = None, key: Any = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> None:
        """Store the record durably (its commit runs in the executor, so
        concurrent senders share group commits); returns once committed.
        Raises ChannelFullError after ``send_timeout`` seconds of a full
        channel, ValueError/TypeError for a bad field."""
        if self._closing:
            raise ChannelError("this SpooledProducer is stopped")
        event = self._spool_event(topic, value, key, headers, partition, timestamp_ms)
        await asyncio.get_running_loop().run_in_executor(
            self.executor, put_durably, self.channel, event, self.send_timeout, self.stats)
        self.stats["sent"] += 1
        if self._wake is not None:
            self._wake.set()

    send_and_wait = send

    # ---- state ------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Records stored and not yet acknowledged by the broker."""
        return self.channel.size + self._inflight

    @property
    def oldest_age(self) -> float:
        """Seconds since the oldest record still waiting was sent (0 when
        nothing waits), as seen by the delivery task's current take."""
        if self._oldest is None or self.backlog == 0:   # nothing waits
            return 0.0
        return max(0.0, time.time() - self._oldest)

    async def flush(self, timeout: float | None = None) -> int:
        """Wait until every stored record is delivered, or *timeout* seconds.
        Returns the backlog left (0: all delivered)."""
        if self._task is None:
            raise ChannelError("start() the SpooledProducer first")
        deadline = None if timeout is None else time.monotonic() + timeout
        assert self._idle is not None and self._wake is not None
        while self.backlog > 0 or not self._idle.is_set():
            if self._task.done():
                break
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                break
            self._wake.set()
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self.backlog

    async def stop(self, timeout: float | None = None) -> int:
        """Flush for up to *timeout* seconds, then stop the delivery task
        (after the batch in flight). What is left stays in the channel for the
        next run. Returns the backlog left. Stops neither the producer nor the
        channel."""
        if self._task is None:
            return self.backlog
        left = await self.flush(timeout)
        self._closing = True
        assert self._wake is not None
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task),
                                   None if timeout is None else max(timeout, 1.0))
        except asyncio.TimeoutError:
            self._task.cancel()
        return left

    # ---- the delivery task ------------------------------------------------------------
    async def _drain_loop(self) -> None:
        assert self._wake is not None and self._idle is not None
        backoff = 0.0
        while not self._closing:
            try:
                n = await self._drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = exc
                self.stats["failed_batches"] += 1
                backoff = min(self.max_backoff, max(0.05, backoff * 2))
                log.warning("delivery failed (%s); retrying the batch in %.2fs", exc, backoff)
                self._wake.clear()
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if n == 0:
                self._oldest = None
                self._idle.set()
                self._wake.clear()
                if self.channel.size == 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), 0.2)
                    except asyncio.TimeoutError:
                        pass

    async def _drain_once(self) -> int:
        try:
            async with atransaction(self.channel, self.executor) as tx:
                events = await tx.take_batch(self.batch_size)
                if not events:
                    return 0
                records = decode_records(events, self.stats)
                self._inflight = len(events)
                if records:
                    self._oldest = records[0].spooled_at
                    await asyncio.wait_for(_send_all(self.producer, [
                        (r.topic, r.value, r.key, r.partition, r.headers, r.timestamp_ms)
                        for r in records]), self.delivery_timeout)
        finally:
            self._inflight = 0
        self.stats["delivered"] += len(records)
        self.stats["batches"] += 1
        return len(events)

"""confluent-kafka (librdkafka) into a FileChannel exactly once, and out of it
at least once.

:class:`ConfluentSpooler` reads a ``confluent_kafka.Consumer`` and puts what
it consumes into a channel, one transaction per batch, with a mark per
partition (``kafka:<topic>:<partition> = next offset``) in the same commit.
Only after the channel commit are the same offsets committed to Kafka. On
every assignment (``on_assign``) the spooler starts each partition at the
channel's mark (or at the group's committed offset when that is further on),
so a crash between the two commits neither duplicates nor skips a message.
The consumer must have ``enable.auto.commit = false``; the spooler stores
nothing in librdkafka's offset store.

:func:`drain` takes a batch from a channel, produces it with a
``confluent_kafka.Producer`` and commits the take only after ``flush()`` and a
successful delivery report for every record; any failed report rolls the
batch back. :class:`SpooledProducer` has ``produce()`` return once the record
is on disk and delivers in the background.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fchannel.integrations._drain import drain_target, drain_until_empty, take_and_deliver
from fchannel.integrations._producer import SyncSpooledProducer
from fchannel.integrations._records import Route, SpooledRecord, mark_key, record_event
from fchannel.integrations._spool import ThreadSpooler, check_topics

from fchannel.errors import ConfigError
from fchannel.event import Event

try:
    from confluent_kafka import (
        TIMESTAMP_NOT_AVAILABLE,
        KafkaError,
        KafkaException,
        Producer,
        TopicPartition,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fchannel.integrations.confluent needs confluent-kafka: "
                      "pip install 'fchannel[confluent]'") from exc

__all__ = ["ConfluentSpooler", "ProducerTarget", "SpooledProducer", "drain", "drain_all",
           "mark_key"]

log = logging.getLogger(__name__)


class ConfluentSpooler(ThreadSpooler):
    """Consumes with *consumer* (a ``confluent_kafka.Consumer`` with
    ``enable.auto.commit = false``) into *channel*, exactly once.

    - ``channel`` must support marks (:class:`fchannel.FileChannel`).
    - ``topics`` or ``pattern`` (a regex; librdkafka's ``^`` prefix is added
      when missing): the spooler subscribes with its own ``on_assign``,
      ``on_revoke`` and ``on_lost`` (``on_assign``/``on_revoke`` given here
      are called after its own). Without them the spooler expects a manual
      ``assign()``-ment it can read with ``consumer.assignment()``.
    - A batch is committed when it holds ``batch_size`` events or
      ``batch_duration`` seconds after its first record arrived.
    - Events are as :class:`fchannel.integrations.kafka.KafkaSpooler` makes
      them: the value as body, headers ``topic`` (named by ``topic_header``,
      omitted unless ``set_topic_header``), ``partition``, ``offset``,
      ``timestamp`` (ms), ``key`` (or ``key_base64``), plus the record's UTF-8
      headers when ``copy_headers``.
    - While the channel is full the batch stays in hand, fetching is paused
      (``consumer.pause``) while polling goes on, so the consumer stays in its
      group, and the commit is retried with a growing delay (``max_backoff``).

    Run it with :meth:`run` (until :meth:`stop`) or drive it with :meth:`step`.
    It does not close the consumer or the channel.
    """

    def __init__(self, consumer: Any, channel: Any, *, topics: Sequence[str] | None = None,
                 pattern: str | None = None, on_assign: Callable | None = None,
                 on_revoke: Callable | None = None, batch_size: int = 1000,
                 batch_duration: float = 1.0, poll_timeout: float = 0.1,
                 set_topic_header: bool = True, topic_header: str = "topic",
                 copy_headers: bool = True, commit_kafka: bool = True,
                 max_backoff: float = 1.0) -> None:
        super().__init__(consumer, channel, batch_size=batch_size,
                         batch_duration=batch_duration, poll_timeout=poll_timeout,
                         set_topic_header=set_topic_header, topic_header=topic_header,
                         copy_headers=copy_headers, commit_kafka=commit_kafka,
                         max_backoff=max_backoff)
        topics = check_topics(topics, pattern)
        self._user_assign = on_assign
        self._user_revoke = on_revoke
        self._paused = False
        if topics is not None or pattern is not None:
            if topics is not None:
                subs = topics
            else:
                assert pattern is not None
                subs = [pattern if pattern.startswith("^") else "^" + pattern]
            consumer.subscribe(subs, on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)
        else:
            assigned = consumer.assignment()
            if not assigned:
                raise ConfigError("the consumer has no assignment; pass topics= or pattern=")
            self._on_assign(consumer, assigned)

    # ---- rebalances (run inside consume(), on the spooling thread) -------------------
    def _on_assign(self, consumer: Any, partitions: list) -> None:
        marks = self.channel.marks
        with_mark = [TopicPartition(p.topic, p.partition) for p in partitions
                     if mark_key(p.topic, p.partition) in marks]
        committed: dict[tuple[str, int], int] = {}
        if with_mark:
            try:
                for c in consumer.committed(with_mark, timeout=30):
                    if c.error is None and c.offset >= 0:
                        committed[(c.topic, c.partition)] = c.offset
            except KafkaException as exc:
                log.warning("could not read the committed offsets (%s); starting at the "
                            "channel's marks", exc)
        for p in partitions:
            tp = (p.topic, p.partition)
            pos = self._state.position(tp, committed.get(tp))
            if pos is not None:
                p.offset = pos
        consumer.assign(partitions)
        if self._paused:
            consumer.pause(partitions)
        if partitions:
            log.info("partitions assigned: %s",
                     sorted(f"{p.topic}:{p.partition}@{p.offset}" for p in partitions))
        if self._user_assign is not None:
            self._user_assign(consumer, partitions)

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        self._state.revoke((p.topic, p.partition) for p in partitions)
        if partitions:
            log.info("partitions revoked: %s",
                     sorted(f"{p.topic}:{p.partition}" for p in partitions))
        if self._user_revoke is not None:
            self._user_revoke(consumer, partitions)
        consumer.unassign()

    def _on_lost(self, consumer: Any, partitions: list) -> None:
        self._on_revoke(consumer, partitions)

    # ---- the loop -------------------------------------------------------------------
    def step(self) -> int:
        """Consume once and commit the batch in hand if it is due. Returns the
        number of events committed to the channel by this step."""
        st = self._state
        if st.full and not self._paused:
            self._set_paused(True)
        room = st.room()
        msgs = self.consumer.consume(num_messages=max(room, 1),
                                     timeout=st.wait_hint(self.poll_timeout))
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error: %s", err)
                continue
            tp = (m.topic(), m.partition())
            if not st.add(tp, m.offset(), lambda m=m: self._event(m)):
                # no room in the batch in hand: fetch it again later
                self.consumer.seek(TopicPartition(tp[0], tp[1], m.offset()))
        return self._commit_due()

    def _event(self, m: Any) -> Event:
        ts_type, ts = m.timestamp()
        return record_event(topic=m.topic(), partition=m.partition(), offset=m.offset(),
                            timestamp_ms=None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts,
                            key=m.key(), value=m.value(),
                            headers=m.headers() if self.copy_headers else None,
                            topic_header=self.topic_header if self.set_topic_header else None,
                            value_hint="use a plain Consumer, not a DeserializingConsumer")

    def flush(self) -> int:
        """Commit the batch in hand to the channel (with its marks), then its
        offsets to Kafka. Returns the number of events committed (0 when the
        channel is full; the batch stays in hand)."""
        done = self._state.commit(self._transform)
        if done is None:
            return 0
        n, offsets = done
        if self._paused:
            self._set_paused(False)
        if n and self.commit_kafka:
            self._commit_kafka(offsets)
        return n

    def _set_paused(self, paused: bool) -> None:
        assigned = self.consumer.assignment()
        if assigned:
            (self.consumer.pause if paused else self.consumer.resume)(assigned)
        self._paused = paused

    def _commit_kafka(self, offsets: dict) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o)
                                          for (t, p), o in offsets.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            # the channel's marks already hold these offsets; the group's
            # offsets catch up with the next commit
            self.stats["kafka_commit_failures"] += 1
            log.warning("Kafka offset commit failed (the channel has the batch): %s", exc)


# ---- out of the channel --------------------------------------------------------------
def _produce_all(producer: Any, records: Iterable[tuple[str, Any, Any, int | None, Any, Any]],
                 timeout: float | None) -> None:
    """Produce ``(topic, value, key, partition, headers, timestamp_ms)`` records
    and return once every one has a successful delivery report; raise
    KafkaException for the first failed report, TimeoutError when *timeout*
    seconds pass first (None: wait for every report, which librdkafka gives
    within ``message.timeout.ms``)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    errors: list = []
    reported = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal reported
        reported += 1
        if err is not None:
            errors.append(err)

    sent = 0
    for topic, value, key, part, headers, ts in records:
        kw: dict[str, Any] = {"value": value, "key": key, "on_delivery": on_delivery}
        if part is not None:
            kw["partition"] = part
        if headers:
            kw["headers"] = headers
        if ts is not None:
            kw["timestamp"] = ts
        while True:
            try:
                producer.produce(topic, **kw)
                break
            except BufferError:       # librdkafka's queue is full: let it send
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("the producer's queue stayed full") from None
                producer.poll(0.1)
        sent += 1
    while reported < sent:
        left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
        if left <= 0:
            raise TimeoutError(f"{sent - reported} of {sent} records have no delivery "
                               f"report after {timeout}s")
        producer.flush(left)
    if errors:
        raise KafkaException(errors[0])


class ProducerTarget:
    """Produces a batch of events with a ``confluent_kafka.Producer`` and
    returns only when every record has a successful delivery report; raises
    otherwise. Routing (topic, key, partition, headers) is
    :class:`fchannel.integrations._records.Route`'s: *topic* or the
    ``topic`` header, the ``key`` header as key. The producer should have
    ``acks = all`` (the channel forgets a record once Kafka acknowledged it)."""

    def __init__(self, producer: Any, topic: str | None = None, *,
                 timeout: float | None = None, **route: Any) -> None:
        self.producer = producer
        self.route = Route(topic, **route)
        self.timeout = timeout

    def __call__(self, events: Iterable[Event]) -> None:
        _produce_all(self.producer, self.route.records(events), self.timeout)


def drain(channel: Any, target: Any, *, batch_size: int = 100, topic: str | None = None,
          **target_options: Any) -> int:
    """Take up to *batch_size* events in one transaction and deliver them to
    *target*: a ``confluent_kafka.Producer`` (wrapped in :class:`ProducerTarget`
    with *topic* and *target_options*) or a callable taking the list of events.
    The take commits only after every delivery succeeded; on any error it is
    rolled back (the events return to the head of the channel, in order) and
    the error raised. Returns the number of events delivered. At least once:
    a crash after delivery but before the commit delivers the batch again."""
    deliver = drain_target(target, topic, target_options, Producer, ProducerTarget,
                           "a Producer", "a confluent_kafka.Producer")
    return take_and_deliver(channel, batch_size, deliver)


def drain_all(channel: Any, target: Any, *, batch_size: int = 100,
              stop: Callable[[], bool] | None = None, **kw: Any) -> int:
    """Call :func:`drain` until the channel is empty (or *stop* returns true)."""
    return drain_until_empty(lambda: drain(channel, target, batch_size=batch_size, **kw),
                             stop)


# ---- a producer that never drops a record ---------------------------------------------
class SpooledProducer(SyncSpooledProducer):
    """``produce()`` returns once the record is on disk in *channel*; a
    background thread produces the records in order with *producer* (a
    ``confluent_kafka.Producer``, or its config dict: then it is made here
    with ``acks = all`` and ``max.in.flight.requests.per.connection = 1``
    unless the dict says otherwise) and commits each take only after every
    delivery report of the batch came back successful. See
    :class:`fchannel.integrations._producer.SyncSpooledProducer` for
    ``flush``, ``backlog``, ``oldest_age``, ``close`` and the guarantees.
    The Producer given should use ``acks = all`` and keep per-partition order
    on retries (``enable.idempotence = true`` or one request in flight)."""

    def __init__(self, producer: Any, channel: Any, *, delivery_timeout: float | None = None,
                 **options: Any) -> None:
        if isinstance(producer, dict):
            conf = {"acks": "all", "max.in.flight.requests.per.connection": 1}
            conf.update(producer)
            producer = Producer(conf)
            self._owns_producer = True
        elif not isinstance(producer, Producer):
            raise ConfigError(f"producer must be a confluent_kafka.Producer or its config "
                              f"dict, got {type(producer).__name__}")
        else:
            self._owns_producer = False
        self.delivery_timeout = delivery_timeout
        super().__init__(producer, channel, **options)

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1,
                on_delivery: Any = None, timestamp: int = 0, headers: Any = None,
                **kwargs: Any) -> None:
        """Like ``Producer.produce``, but returns once the record is durable
        in the channel. ``on_delivery``/``callback`` are not supported (the
        record may be delivered by another process after a restart)."""
        if on_delivery is not None or kwargs.get("callback") is not None:
            raise ConfigError("on_delivery is not supported by a SpooledProducer: a record "
                              "is delivered later, maybe by another run of the process")
        extra = set(kwargs) - {"callback"}
        if extra:
            raise TypeError(f"produce() got unexpected arguments {sorted(extra)}")
        self.send(topic, value=value, key=key, headers=headers,
                  partition=None if partition is None or partition < 0 else partition,
                  timestamp_ms=timestamp or None)

    def poll(self, timeout: float = 0) -> int:
        """Nothing to serve (delivery happens in the background); returns 0."""
        return 0

    def _deliver(self, records: list[SpooledRecord]) -> None:
        _produce_all(self.producer, [(r.topic, r.value, r.key, r.partition, r.headers,
                                      r.timestamp_ms) for r in records], self.delivery_timeout)

    def _close_producer(self, timeout: float) -> None:
        if self._owns_producer:
            self.producer.flush(timeout)


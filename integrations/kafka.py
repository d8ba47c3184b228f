"""Kafka into a FileChannel exactly once, and out of it at least once.

:class:`KafkaSpooler` reads a kafka-python ``KafkaConsumer`` and puts what it
polls into a channel, one transaction per batch. Each transaction also sets a
*mark* per partition, ``kafka:<topic>:<partition> = next offset``, in the
same commit record as the events, so the channel itself knows exactly how far
it has read. Only after the channel commit does the spooler commit the same
offsets to Kafka (which other members of the group rely on). On start and on
every partition assignment the spooler seeks to the channel's marks, so a
crash between the two commits neither duplicates nor skips a message::

    from kafka import KafkaConsumer
    from fchannel import FileChannel
    from fchannel.integrations.kafka import KafkaSpooler

    consumer = KafkaConsumer(bootstrap_servers="localhost:9092", group_id="spool",
                             enable_auto_commit=False, auto_offset_reset="earliest")
    with FileChannel("/var/spool/ckpt", "/var/spool/data") as ch:
        spooler = KafkaSpooler(consumer, ch, topics=["events"], batch_size=500)
        spooler.run()            # until spooler.stop() from another thread
    consumer.close()

:func:`drain` takes a batch from a channel in a transaction, hands it to a
callable or a ``KafkaProducer`` (every send acknowledged, see
:class:`ProducerTarget`) and commits the take only after that succeeded; any
error rolls the take back, so the events are delivered again later.

:class:`SpooledProducer` wraps a ``KafkaProducer``: ``send()`` returns once
the record is committed to a FileChannel, and a background thread delivers
it (see docs/kafka.md).

Offsets on assignment: the spooler positions a partition at the channel's
mark, unless the group's committed offset is further on (another member of the
group spooled the partition into its own channel meanwhile), in which case it
starts there. A deliberate reset of the group's offsets to an earlier point is
therefore overridden by the marks; clear them with a new channel.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fchannel.integrations._drain import drain_target, drain_until_empty, take_and_deliver
from fchannel.integrations._producer import SyncSpooledProducer
from fchannel.integrations._records import Route, SpooledRecord, mark_key
from fchannel.integrations._spool import ThreadSpooler, check_topics

from fchannel.errors import ConfigError
from fchannel.event import Event

try:
    from kafka import ConsumerRebalanceListener, KafkaProducer
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fchannel.integrations.kafka needs kafka-python: "
                      "pip install 'fchannel[kafka]'") from exc

__all__ = ["KafkaSpooler", "ProducerTarget", "SpooledProducer", "drain", "drain_all",
           "mark_key"]

log = logging.getLogger(__name__)

def _offset_and_metadata(offset: int) -> Any:
    # kafka-python >= 2.1 has (offset, metadata, leader_epoch); older ones two fields
    if len(OffsetAndMetadata._fields) == 3:
        return OffsetAndMetadata(offset, "", -1)
    return OffsetAndMetadata(offset, "")  # pragma: no cover


class _Listener(ConsumerRebalanceListener):
    """Forwards rebalance callbacks to the spooler (and to a user listener).

    With kafka-python 3 these run on the consumer's IO thread while the
    spooler's thread is inside ``poll()``: they only touch the spooler's
    in-memory state, never the consumer."""

    def __init__(self, spooler: KafkaSpooler, user: Any = None) -> None:
        self._spooler = spooler
        self._user = user

    def on_partitions_revoked(self, revoked):
        self._spooler._on_revoked(set(revoked))
        if self._user is not None:
            self._user.on_partitions_revoked(revoked)

    def on_partitions_assigned(self, assigned):
        self._spooler._on_assigned(set(assigned))
        if self._user is not None:
            self._user.on_partitions_assigned(assigned)


class KafkaSpooler(ThreadSpooler):
    """Polls *consumer* and puts the records into *channel*, exactly once.

    - ``channel`` must support marks (:class:`fchannel.FileChannel`).
    - ``topics`` or ``pattern``: the spooler subscribes the consumer with its
      own rebalance listener (``listener`` is called after it). Without them the
      consumer must already have a manual ``assign()``-ment, or a subscription
      to a list of topics, which the spooler renews with its listener.
    - A batch is committed when it holds ``batch_size`` events or
      ``batch_duration`` seconds after its first record arrived.
    - Each event's body is the record value (``b""`` for a null value); its
      headers are ``topic`` (named by ``topic_header``, omitted when
      ``set_topic_header`` is false), ``partition``, ``offset``, ``timestamp``
      (ms) and ``key`` (or ``key_base64`` when the key is not UTF-8), plus the
      record's own UTF-8 headers when ``copy_headers``.
    - While the channel is full the spooler keeps the batch in hand, pauses
      fetching (polling on, so the consumer stays in its group) and retries
      with a growing delay up to ``max_backoff`` seconds.
    - ``commit_kafka``: commit offsets to Kafka after each channel commit
      (the channel's marks are what the spooler trusts; Kafka's offsets are for
      the rest of the group and for tools).

    Run it with :meth:`run` (blocking, until :meth:`stop`) or drive it with
    :meth:`step`. It does not close the consumer or the channel.
    """

    def __init__(self, consumer: Any, channel: Any, *, topics: Sequence[str] | None = None,
                 pattern: str | None = None, listener: Any = None,
                 batch_size: int = 1000, batch_duration: float = 1.0,
                 poll_timeout: float = 0.1, set_topic_header: bool = True,
                 topic_header: str = "topic", copy_headers: bool = True,
                 commit_kafka: bool = True, max_backoff: float = 1.0) -> None:
        super().__init__(consumer, channel, batch_size=batch_size,
                         batch_duration=batch_duration, poll_timeout=poll_timeout,
                         set_topic_header=set_topic_header, topic_header=topic_header,
                         copy_headers=copy_headers, commit_kafka=commit_kafka,
                         max_backoff=max_backoff)
        topics = check_topics(topics, pattern)
        self._new: set = set()    # assigned, not positioned yet (under the state's lock)

        if topics is not None or pattern is not None:
            self._subscribe(topics, pattern, listener)
        else:
            sub = consumer.subscription()
            if sub:
                self._subscribe(sorted(sub), None, listener)
            elif consumer.assignment():
                self._on_assigned(set(consumer.assignment()))   # manual assignment
            else:
                raise ConfigError("the consumer has neither a subscription nor an assignment; "
                                  "pass topics= or pattern=")

    # ---- subscription and rebalances ------------------------------------------------
    def _subscribe(self, topics, pattern, listener) -> None:
        lst = _Listener(self, listener)
        if pattern is not None:
            self.consumer.subscribe(pattern=pattern, listener=lst)
        else:
            self.consumer.subscribe(topics=list(topics), listener=lst)

    def _on_revoked(self, revoked: set) -> None:
        # Records in hand from revoked partitions are not in the channel: drop
        # them, and their new owner reads them from the group's offset.
        self._state.revoke(revoked)
        with self._state.lock:
            self._new -= revoked
        if revoked:
            log.info("partitions revoked: %s", sorted(revoked))

    def _on_assigned(self, assigned: set) -> None:
        # Only note them: the seek happens in the spooling thread (_reconcile)
        # right after the poll that ran this callback, so the consumer is never
        # touched from kafka-python's IO thread.
        with self._state.lock:
            self._new |= assigned
        if assigned:
            log.info("partitions assigned: %s", sorted(assigned))

    def _reconcile(self) -> set:
        """Position newly assigned partitions that have a mark: at the mark,
        or at the group's committed offset when that is further on (another
        member spooled further into its own channel). Returns those
        partitions: records the last poll returned for them came from the
        old position and are dropped (they are fetched again)."""
        with self._state.lock:
            new = self._new
            self._new = set()
        if not new:
            return set()
        marks = self.channel.marks
        assignment = self.consumer.assignment()
        moved = set()
        for tp in new:
            if tp not in assignment:
                continue
            committed = None
            if mark_key(tp.topic, tp.partition) in marks:
                try:
                    committed = self.consumer.committed(tp)
                except KafkaError as exc:
                    log.warning("could not read the committed offset of %s (%s); "
                                "starting at the channel's mark", tp, exc)
            pos = self._state.position(tp, committed)
            if pos is not None:
                self.consumer.seek(tp, pos)
                moved.add(tp)
        return moved

    # ---- the loop -----------------------------------------------------------------
    def step(self) -> int:
        """Poll once and commit the batch in hand if it is due. Returns the
        number of events committed to the channel by this step."""
        st = self._state
        if st.full:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.pause(*assignment)
        # While the batch in hand waits for room, poll on (paused) to keep the
        # group membership; anything a new assignment still returns is sought
        # back below, never lost.
        records = self.consumer.poll(timeout_ms=int(st.wait_hint(self.poll_timeout) * 1000),
                                     max_records=max(st.room(), 1))
        moved = self._reconcile()
        for tp, recs in records.items():
            if tp not in moved:
                # no room for a record: fetch it again later
                st.add_records(tp, recs, self._event,
                               lambda offset, tp=tp: self.consumer.seek(tp, offset))
        return self._commit_due()

    def flush(self) -> int:
        """Commit the batch in hand to the channel (with its marks), then its
        offsets to Kafka. Returns the number of events committed (0 when the
        channel is full; the batch stays in hand)."""
        was_full = self._state.full
        done = self._state.commit(self._transform)
        if done is None or not done[0]:
            return 0
        n, offsets = done
        if was_full:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.resume(*assignment)
        if self.commit_kafka:
            self._commit_kafka(offsets)
        return n

    def _commit_kafka(self, offsets: Mapping[Any, int]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit({tp: _offset_and_metadata(o) for tp, o in offsets.items()})
        except KafkaError as exc:
            # The channel's marks already hold these offsets; the group's
            # offsets catch up with the next commit.
            self.stats["kafka_commit_failures"] += 1
            log.warning("Kafka offset commit failed (the channel has the batch): %s", exc)


# ---- out of the channel -----------------------------------------------------------
class ProducerTarget:
    """Sends a batch of events with a ``KafkaProducer`` and returns only when
    every record is acknowledged; raises on the first failure.

    The topic is ``topic``, or the event's ``topic_header`` when
    ``allow_topic_override`` and it is present. The key is the
    ``key_header`` header (UTF-8), the partition the ``partition_header``
    header (an int) if set, else ``default_partition`` (None: the producer's
    partitioner). Event headers are not forwarded unless
    ``forward_headers``. The producer should use ``acks='all'``; with
    ``require_acks_all`` (the default) anything else is a ``ConfigError``.
    """

    def __init__(self, producer: Any, topic: str | None = None, *,
                 allow_topic_override: bool = True, topic_header: str = "topic",
                 key_header: str | None = "key", partition_header: str | None = None,
                 forward_headers: bool = False, timeout: float = 30.0,
                 require_acks_all: bool = True, default_partition: int | None = None,
                 render_topic: Callable[[Event], str] | None = None) -> None:
        acks = getattr(producer, "config", {}).get("acks")
        if require_acks_all and acks not in (-1, "all"):
            raise ConfigError(f"the KafkaProducer has acks={acks!r}; use acks='all' so a "
                              "committed take means the brokers have the records")
        self.producer = producer
        self.route = Route(topic, allow_topic_override=allow_topic_override,
                           topic_header=topic_header, key_header=key_header,
                           partition_header=partition_header, forward_headers=forward_headers,
                           default_partition=default_partition, render_topic=render_topic)
        self.timeout = timeout

    def __call__(self, events: Iterable[Event]) -> None:
        futures = []
        for e in events:
            topic, key, part, headers = self.route(e)
            futures.append(self.producer.send(topic, value=e.body, key=key,
                                              partition=part, headers=headers))
        self.producer.flush(timeout=self.timeout)
        for f in futures:
            f.get(timeout=self.timeout)   # raises the send's error


def drain(channel: Any, target: Any, *, batch_size: int = 100, topic: str | None = None,
          **target_options: Any) -> int:
    """Take up to *batch_size* events in one transaction and deliver them.

    *target* is a callable taking the list of events (it must raise unless
    every event is safely delivered) or a ``KafkaProducer`` (wrapped in
    :class:`ProducerTarget` with *topic* and *target_options*). The take is
    committed only after delivery succeeded; on any error it is rolled back,
    the events return to the head of the channel in order, and the error is
    raised. Returns the number of events delivered (0 when the channel is
    empty). At least once: a crash after delivery but before the commit
    delivers the batch again.
    """
    deliver = drain_target(target, topic, target_options, KafkaProducer, ProducerTarget,
                           "a KafkaProducer", "a KafkaProducer")
    return take_and_deliver(channel, batch_size, deliver)


def drain_all(channel: Any, target: Any, *, batch_size: int = 100,
              stop: Callable[[], bool] | None = None, **kw: Any) -> int:
    """Call :func:`drain` until the channel is empty (or *stop* returns
    true). Returns the number of events delivered."""
    return drain_until_empty(lambda: drain(channel, target, batch_size=batch_size, **kw),
                             stop)


# ---- a producer that never drops a record ---------------------------------------------
class SpooledProducer(SyncSpooledProducer):
    """``send()`` returns once the record is on disk in *channel*; a background
    thread hands the records in order to *producer* (a ``KafkaProducer``) and
    commits each take only after the broker acknowledged every record of the
    batch. See :mod:`fchannel.integrations._producer` for ``flush``,
    ``backlog``, ``oldest_age``, ``close``, the options and the guarantees.

    The producer must use ``acks='all'`` and keep per-partition order on
    retries: ``enable_idempotence=True``, or
    ``max_in_flight_requests_per_connection=1``; and no key/value serializer
    (give them to the SpooledProducer: what is stored is bytes). Anything else
    is a ConfigError naming the setting. While the broker is unreachable,
    each batch fails after the producer's ``delivery_timeout_ms`` and is sent
    again after a pause.
    """

    def __init__(self, producer: Any, channel: Any, **options: Any) -> None:
        cfg = getattr(producer, "config", None)
        if not isinstance(producer, KafkaProducer) or cfg is None:
            raise ConfigError(f"producer must be a kafka.KafkaProducer, got "
                              f"{type(producer).__name__}")
        if cfg.get("acks") not in (-1, "all"):
            raise ConfigError(f"the KafkaProducer has acks={cfg.get('acks')!r}; use "
                              "acks='all': the channel forgets a record once the broker "
                              "acknowledged it")
        if not cfg.get("enable_idempotence") and \
                cfg.get("max_in_flight_requests_per_connection", 5) > 1:
            raise ConfigError(
                "the KafkaProducer may reorder records when a request fails: set "
                "enable_idempotence=True "
                "or max_in_flight_requests_per_connection=1 (now "
                f"{cfg.get('max_in_flight_requests_per_connection')})")
        for name in ("key_serializer", "value_serializer"):
            if cfg.get(name) is not None:
                raise ConfigError(f"the KafkaProducer has a {name}; give it to the "
                                  f"SpooledProducer instead ({name}=...)")
        super().__init__(producer, channel, **options)

    def _deliver(self, records: list[SpooledRecord]) -> None:
        futures = []
        try:
            for r in records:
                futures.append(self.producer.send(
                    r.topic, value=r.value, key=r.key, partition=r.partition,
                    timestamp_ms=r.timestamp_ms, headers=r.headers))
        finally:
            # every send handed over settles (acknowledged, or failed after
            # delivery_timeout_ms) before the take commits or rolls back
            self.producer.flush()
        for f in futures:
            if f.failed():
                raise f.exception

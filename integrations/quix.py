"""A FileChannel as a sink and as a source of a Quix Streams application.

:class:`FileChannelSink` is a Quix ``BatchingSink``: the app's checkpoint
calls its ``flush()`` before it commits the consumer offsets, and the sink
writes everything the checkpoint gathered in **one channel transaction** that
also sets a mark per source topic-partition, ``kafka:<topic>:<partition> =
highest stored offset + 1`` (the convention of the other Kafka integrations).
A record that Quix processes again after a crash (the offsets were not
committed yet) has an offset below its partition's mark and is dropped, so
the channel holds every record once::

    from quixstreams import Application
    from fchannel import FileChannel
    from fchannel.integrations.quix import FileChannelSink

    app = Application(broker_address="localhost:9092", consumer_group="spool")
    sdf = app.dataframe(app.topic("events"))
    channel = FileChannel("/var/spool/ckpt", "/var/spool/data")
    sdf.sink(FileChannelSink(channel))
    app.run()

When the channel has no room for the whole checkpoint, the sink stores what
fits (with its marks) and raises Quix's ``SinkBackpressureError`` with a
retry delay: the app pauses its partitions, seeks back to the checkpoint's
first offsets and tries again later; the replayed records that were stored
are dropped by the marks, the others are stored as room appears. Nothing is
lost, and a checkpoint larger than the channel's free room still advances.

:class:`FileChannelSource` is a Quix ``Source`` that feeds an app from a
channel: it takes a batch in a transaction, produces every event to the
source's topic, flushes the producer, and commits the take only after every
message was delivered (at least once: a crash between the delivery and the
take's commit produces that batch again)::

    from fchannel.integrations.quix import FileChannelSource

    source = FileChannelSource("spooled", "/var/spool/ckpt", "/var/spool/data")
    sdf = app.dataframe(source=source)

The source runs in a process of its own (Quix starts sources so), where it
opens the channel; the channel must not be open in another process.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fchannel.integrations._drain import take_and_deliver
from fchannel.integrations._records import MARK_PREFIX, header_key, record_event

from fchannel.errors import ChannelError, ChannelFullError, ConfigError
from fchannel.event import Event

try:
    from quixstreams.models.topics import Topic
    from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch
    from quixstreams.sources import Source
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fchannel.integrations.quix needs quixstreams: "
                      "pip install 'fchannel[quix]'") from exc

__all__ = ["FileChannelSink", "FileChannelSource", "to_bytes"]

log = logging.getLogger(__name__)


def to_bytes(value: Any) -> bytes:
    """The default serializer of sink values and keys: bytes as they are,
    str as UTF-8, None as empty, anything else as compact JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _number(who: str, name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not (value >= 0 if allow_zero else value > 0):
        raise ConfigError(f"{who}: {name} must be a number {'>= 0' if allow_zero else '> 0'}, "
                          f"got {value!r}")
    return float(value)


class FileChannelSink(BatchingSink):
    """Write what a Quix app sinks into *channel*, exactly once per source
    offset (see the module docstring).

    - *value_serializer*, *key_serializer*: ``object -> bytes`` (default
      :func:`to_bytes`); the key travels as the ``key`` header (or
      ``key_base64`` when it is not UTF-8).
    - *retry_after*: seconds Quix pauses the partitions when the channel is full.
    - *dedupe*: drop records below their partition's mark (needs a channel
      with marks, :class:`fchannel.FileChannel`).
    - *mark_prefix*: the marks' prefix, ``kafka`` by default; give two sinks
      writing into one channel from the same topics their own prefixes.
    - *topic_header*: the header that names the source topic (None: none);
      *copy_headers*: keep the record's own UTF-8 headers.

    Events carry the serialized value as body and the headers ``topic``,
    ``partition``, ``offset``, ``timestamp`` (ms) and ``key``.  A checkpoint
    larger than the channel's ``transaction_capacity`` is written in several
    transactions, each with the marks of what it holds (never splitting the
    records of one source offset), so it is exactly once all the same. With
    *dedupe* off a checkpoint is stored whole or not at all, so it must fit
    in the channel's free room.
    Counters: :attr:`stored`, :attr:`duplicates`, :attr:`transactions`,
    :attr:`backpressured`.
    """

    def __init__(self, channel: Any, *, value_serializer: Callable[[Any], bytes] = to_bytes,
                 key_serializer: Callable[[Any], bytes] = to_bytes, retry_after: float = 1.0,
                 dedupe: bool = True, mark_prefix: str = MARK_PREFIX,
                 topic_header: str | None = "topic", copy_headers: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not hasattr(channel, "transaction"):
            raise ConfigError(f"FileChannelSink: channel must be a channel, got {channel!r}")
        if dedupe and not hasattr(channel, "marks"):
            raise ConfigError(f"FileChannelSink: {type(channel).__name__} has no marks; "
                              "use a FileChannel or dedupe=False")
        if not isinstance(mark_prefix, str) or not mark_prefix or ":" in mark_prefix:
            raise ConfigError(f"FileChannelSink: mark_prefix must be a non-empty str without "
                              f"':', got {mark_prefix!r}")
        self.channel = channel
        self.retry_after = _number("FileChannelSink", "retry_after", retry_after)
        self.dedupe = dedupe
        self.mark_prefix = mark_prefix
        self.topic_header = topic_header
        self.copy_headers = copy_headers
        self._value = value_serializer
        self._key = key_serializer
        self.stored = 0          # events committed to the channel
        self.duplicates = 0      # records dropped because their offset was below the mark
        self.transactions = 0    # channel transactions committed
        self.backpressured = 0   # flushes refused because the channel was full

    def __repr__(self) -> str:
        return f"<FileChannelSink {getattr(self.channel, 'name', '?')!r}>"

    def mark(self, topic: str, partition: int) -> str:
        """The channel mark holding the next offset of *topic*/*partition*."""
        return f"{self.mark_prefix}:{topic}:{partition}"

    def setup(self) -> None:
        if getattr(self.channel, "closed", False):
            raise ChannelError(f"FileChannelSink: channel {self.channel!r} is closed")

    def write(self, batch: SinkBatch) -> None:
        """Store one topic-partition batch (``flush`` stores them all at once)."""
        self._store([batch])

    def flush(self) -> None:
        """Store every batch of the checkpoint in one transaction (or, past
        ``transaction_capacity``, consecutive ones) with its marks."""
        # take the batches out first: on a revocation Quix may run this flush
        # in a thread it then abandons, while the app goes on adding records
        batches, self._batches = self._batches, {}
        self._store(list(batches.values()))

    def _event(self, batch: SinkBatch, item: Any) -> Event:
        key = None if item.key is None else self._key(item.key)
        value = self._value(item.value)
        return record_event(topic=batch.topic, partition=batch.partition, offset=item.offset,
                            timestamp_ms=item.timestamp, key=key, value=value,
                            headers=item.headers if self.copy_headers else None,
                            topic_header=self.topic_header,
                            value_hint="give FileChannelSink a value_serializer returning bytes")

    def _groups(self, batch: SinkBatch, below: int) -> list[tuple[int, list[Event]]]:
        """The batch's records at or above offset *below*, as (offset, events)
        groups in order (an expanding dataframe sinks several per offset)."""
        groups: list[tuple[int, list[Event]]] = []
        cap = int(self.channel.transaction_capacity)
        for item in batch:
            if self.dedupe and item.offset < below:
                self.duplicates += 1
                continue
            if not groups or groups[-1][0] != item.offset:
                groups.append((item.offset, []))
            groups[-1][1].append(self._event(batch, item))
            if len(groups[-1][1]) > cap:
                raise ChannelError(
                    f"FileChannelSink: offset {item.offset} of {batch.topic}/{batch.partition} "
                    f"produced more records than the channel's transaction_capacity={cap}")
        return groups

    def _store(self, batches: Sequence[SinkBatch]) -> None:
        marks: Mapping[str, int] = self.channel.marks if self.dedupe else {}
        cap = int(self.channel.transaction_capacity)
        per_tp = []
        for batch in batches:
            mk = self.mark(batch.topic, batch.partition)
            groups = self._groups(batch, marks.get(mk, -1))
            if groups:
                per_tp.append((mk, groups))
        if not per_tp:
            return
        total = sum(len(evs) for _, groups in per_tp for _, evs in groups)
        room = self.channel.remaining
        if room < total and not self.dedupe:
            self._backpressure(f"{room} free slots for {total} events")
        if room < total:
            # store what fits, taking offsets from the partitions in turn; the
            # marks make Quix's replay of the checkpoint drop that part, so a
            # checkpoint larger than the free room still makes progress
            chosen = [0] * len(per_tp)
            used = 0
            progress = True
            while progress:
                progress = False
                for i, (_, groups) in enumerate(per_tp):
                    if chosen[i] < len(groups) and used + len(groups[chosen[i]][1]) <= room:
                        used += len(groups[chosen[i]][1])
                        chosen[i] += 1
                        progress = True
            per_tp = [(mk, groups[:k]) for (mk, groups), k in zip(per_tp, chosen) if k]
        # consecutive transactions of at most `cap` events, never splitting an offset
        chunks: list[tuple[list[Event], dict[str, int]]] = [([], {})]
        for mk, groups in per_tp:
            for offset, evs in groups:
                if len(chunks[-1][0]) + len(evs) > cap:
                    chunks.append(([], {}))
                chunks[-1][0].extend(evs)
                chunks[-1][1][mk] = offset + 1
        stored = 0
        for evs, mks in chunks:
            if not evs:
                continue
            try:
                with self.channel.transaction() as tx:
                    tx.put_batch(evs)
                    if self.dedupe:
                        for k, v in mks.items():
                            tx.set_mark(k, v)
            except ChannelFullError as exc:
                self._backpressure(str(exc))
            self.transactions += 1
            self.stored += len(evs)
            stored += len(evs)
        if stored < total:
            self._backpressure(f"stored {stored} of {total} events, "
                               f"{self.channel.remaining} free slots left")

    def _backpressure(self, why: str) -> None:
        self.backpressured += 1
        log.warning("fchannel Quix sink: channel %r is full (%s); pausing for %.1f s",
                    getattr(self.channel, "name", "?"), why, self.retry_after)
        raise SinkBackpressureError(retry_after=self.retry_after)


class FileChannelSource(Source):
    """Produce the events of a FileChannel to a Quix app's source topic, at
    least once (see the module docstring).

    - *name*: the source's name (Quix names its default topic after it).
    - *checkpoint_dir*, *data_dirs*, *channel_options*: the channel, opened in
      the source's process as ``FileChannel(checkpoint_dir, data_dirs,
      **channel_options)``.
    - *batch_size*: events per take transaction (at most the channel's
      ``transaction_capacity``); *idle*: seconds between
      polls of an empty channel; *flush_timeout*: how long the producer may
      take to deliver a batch before the take is rolled back and retried
      (after *backoff* seconds, doubled up to 30 s).
    - Each message: the event body as value, the ``key`` (or ``key_base64``)
      header as key, the ``timestamp`` header (ms) as timestamp, and with
      *copy_headers* every header as a message header.
    Counter: :attr:`delivered` (in the source's process).
    """

    def __init__(self, name: str, checkpoint_dir: str, data_dirs: Any, *,
                 batch_size: int = 500, idle: float = 0.1, flush_timeout: float = 30.0,
                 backoff: float = 0.5, copy_headers: bool = True,
                 channel_options: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"FileChannelSource: batch_size must be a positive int, "
                              f"got {batch_size!r}")
        self.idle = _number("FileChannelSource", "idle", idle)
        self.flush_timeout = _number("FileChannelSource", "flush_timeout", flush_timeout)
        self.backoff = _number("FileChannelSource", "backoff", backoff)
        self.checkpoint_dir = checkpoint_dir
        self.data_dirs = data_dirs
        self.channel_options = dict(channel_options or {})
        self.batch_size = batch_size
        self.copy_headers = copy_headers
        self.delivered = 0

    def default_topic(self) -> Topic:
        """A topic named after the source that carries the bodies as bytes."""
        return Topic(name=self.name, key_serializer="bytes", value_serializer="bytes",
                     key_deserializer="bytes", value_deserializer="bytes")

    def _message(self, event: Event) -> dict[str, Any]:
        h = event.headers
        ts = h.get("timestamp")
        return {"value": event.body, "key": header_key(h),
                "timestamp": int(ts) if ts is not None and ts.isdigit() else None,
                "headers": list(h.items()) if self.copy_headers and h else None}

    def run(self) -> None:
        from fchannel.file.channel import FileChannel
        channel = FileChannel(self.checkpoint_dir, self.data_dirs, **self.channel_options)
        delay = self.backoff
        try:
            while self.running:
                try:
                    n = self.deliver_once(channel)
                except ChannelError:
                    raise
                except Exception as exc:     # not delivered: rolled back, try again
                    log.warning("fchannel Quix source %r: delivery failed (%r); batch "
                                "rolled back, retrying in %.1f s", self.name, exc, delay)
                    self._sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                delay = self.backoff
                if n == 0:
                    self._sleep(self.idle)
        finally:
            channel.close()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.running and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def deliver_once(self, channel: Any) -> int:
        """One take transaction: produce its events, flush the producer, commit.
        Returns how many events went out (0: the channel was empty)."""
        def deliver(events: list[Event]) -> None:
            for e in events:
                self.produce(**self._message(e))
            self.flush(self.flush_timeout)     # raises unless all were delivered

        n = take_and_deliver(channel, min(self.batch_size, channel.transaction_capacity), deliver)
        self.delivered += n
        return n

"""A FileChannel as a durable buffer inside a Faust (faust-streaming) app.

Two pieces, registered in a few lines::

    import faust
    from fchannel import FileChannel
    from fchannel.integrations.faust import FaustDrainer, FaustSpool

    app = faust.App("buffer", broker="kafka://localhost:9092")
    events = app.topic("events", value_serializer="raw")
    channel = FileChannel("/var/spool/ckpt", "/var/spool/data")
    app.add_context(channel)                  # closed when the app has stopped

    spool = FaustSpool(channel, batch_size=500, within=0.5).attach(app)
    spool.agent(events)                       # an agent that spools the topic

    async def write(batch):                   # the slow destination
        ...
    FaustDrainer(channel, write, spool=spool).attach(app)

:class:`FaustSpool` (ingest) reads an agent's stream with acks disabled
(``stream.noack()``), gathers events into batches (``batch_size`` events or
``within`` seconds) and puts each batch into the channel in **one
transaction**. The same transaction sets a mark per partition,
``kafka:<topic>:<partition> = highest stored offset + 1`` (the convention of
:mod:`fchannel.integrations.kafka`), so an event that Faust delivers again
after a crash or a rebalance (offset below the mark) is recognised and
dropped: the channel holds each offset at most once. Only after the channel
commit are the events acked to Faust, so Faust never commits an offset the
channel has not stored. A failed put (channel full, disk full, I/O error) is
retried with exponential backoff, never skipped; while it is retried the
agent waits (back-pressure: at most ``max_pending`` events are held in
memory, then the agent stops taking from its stream and Faust stops
fetching). Pending events are flushed on ``on_partitions_revoked`` and on
shutdown (``on_before_shutdown``).

:class:`FaustDrainer` (egress) is an app task that takes a batch from the
channel in a transaction, hands it to an async (or plain, run in a thread)
callable or sends it to a Faust topic (:class:`TopicSink`: ``force=True``,
then the producer is flushed and every send's acknowledgement awaited), and
commits the take only after that succeeded. Any error rolls the take back:
the same events come back, in order, after a backoff. The sink may return a
mapping of marks, committed atomically with the take (a sink can keep its own
position in the channel, e.g. a file length, and become exactly-once).

On every partition assignment the spool compares the first offset Faust
delivers for a partition (its committed offset) with the partition's mark.
Behind the mark (the channel already holds those events: a crash before
Faust's commit, or offsets reset by hand) it seeks the consumer forward to the
mark, so they are neither stored again nor read again (``seeks``,
``skipped``); past the mark it logs a warning and counts the offsets in
``committed_past_marks``: they were committed without this channel storing
them (another worker stored them after a rebalance, or they were lost, as
when Faust commits offsets of events that were never acked).

Agents with ``concurrency > 1`` are refused (:class:`ConfigError`): their
actors add the events of one partition out of order, and the marks would then
drop events as duplicates. Use ``isolated_partitions=True`` (an actor per
partition) or more workers instead.

What this does not do: the drainer delivers *at least once* (a crash between
the sink's success and the take's commit delivers that batch again); the
marks stop duplicates inside one channel, not across the channels of several
workers (after a rebalance the new owner of a partition reads from Faust's
committed offset, which can be behind what the old owner stored).
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fchannel.integrations._records import (
    MARK_PREFIX,
    check_batch_size,
    header_key,
    mark_key,
    record_event,
)

from fchannel.errors import ConfigError
from fchannel.event import Event

try:
    from faust.types import TopicT
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fchannel.integrations.faust needs faust-streaming: "
                      "pip install 'fchannel[faust]'") from exc

__all__ = ["FaustDrainer", "FaustSpool", "TopicSink", "event_from_message", "mark_key"]

log = logging.getLogger(__name__)


Sink = Callable[[list[Event]], Any]


def event_from_message(message: Any, copy_headers: bool = True) -> Event:
    """A channel :class:`~fchannel.Event` from a Faust ``Message``: the raw
    value as body; headers ``topic``, ``partition``, ``offset``,
    ``timestamp`` (ms), ``key`` (or ``key_base64`` when not UTF-8) and, with
    *copy_headers*, the message's own UTF-8 headers."""
    headers = message.headers if copy_headers else None
    if isinstance(headers, Mapping):
        headers = headers.items()
    ts = message.timestamp   # Faust keeps seconds
    return record_event(topic=message.topic, partition=message.partition,
                        offset=message.offset, key=message.key, value=message.value,
                        timestamp_ms=None if ts is None or ts < 0 else int(ts * 1000),
                        headers=headers, value_hint="use value_serializer='raw'")


class _Backoff:
    """Exponential backoff: initial, doubled after each failure up to maximum."""

    def __init__(self, initial: float, maximum: float) -> None:
        if not 0 < initial <= maximum:
            raise ConfigError(f"backoff must be 0 < initial <= maximum, got "
                              f"({initial!r}, {maximum!r})")
        self.initial = initial
        self.maximum = maximum
        self.delay = initial

    def next(self) -> float:
        d = self.delay
        self.delay = min(self.delay * 2, self.maximum)
        return d

    def reset(self) -> None:
        self.delay = self.initial


async def _finish(aw: Awaitable[Any]) -> Any:
    """Await a step that runs in a worker thread; if the caller is cancelled
    meanwhile, let the step finish first (the thread cannot be stopped, and
    the transaction must not be rolled back under it), then re-raise."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)
        if not task.cancelled():
            task.exception()   # retrieved: the caller is cancelled, the outcome is moot
        raise


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait until *event* is set or *timeout* passes. (Not ``asyncio.wait_for``:
    before Python 3.12 it swallows a cancellation that arrives just as the
    event is set, and a task that ignores its cancellation never stops.)"""
    if event.is_set():
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


def _check_channel(channel: Any, batch_size: int, who: str) -> None:
    if not hasattr(channel, "atransaction"):
        raise ConfigError(f"{who}: channel {type(channel).__name__} has no atransaction()")
    cap = getattr(channel, "transaction_capacity", None)
    if cap is None:
        cap = getattr(channel, "_transaction_capacity", None)
    check_batch_size(batch_size, cap, who)


class FaustSpool:
    """Spool the events of a Faust agent's stream into *channel*.

    - *batch_size*: events per channel transaction (at most the channel's
      ``transaction_capacity``); *within*: seconds a partial batch may wait.
    - *max_pending*: events held in memory (default ``2 * batch_size``);
      :meth:`add` waits while that many are pending (back-pressure).
    - *backoff*: ``(initial, maximum)`` seconds between retries of a failed put.
    - *dedupe*: drop events below the partition's mark (needs a channel with
      marks, :class:`fchannel.FileChannel`).
    - *flush_timeout*: how long a flush on revocation or shutdown keeps
      retrying; what it cannot store stays unacked, so Faust delivers it again.
    - *convert*: ``faust Event -> fchannel Event`` (default
      :func:`event_from_message` on ``event.message``).
    """

    def __init__(self, channel: Any, *, batch_size: int = 500, within: float = 0.5,
                 max_pending: int | None = None, backoff: tuple[float, float] = (0.05, 5.0),
                 dedupe: bool = True, flush_timeout: float = 10.0,
                 convert: Callable[[Any], Event] | None = None,
                 copy_headers: bool = True) -> None:
        _check_channel(channel, batch_size, "FaustSpool")
        if dedupe and not hasattr(channel, "marks"):
            raise ConfigError(f"FaustSpool: {type(channel).__name__} has no marks; "
                              "use a FileChannel or dedupe=False")
        if not within > 0:
            raise ConfigError(f"FaustSpool: within must be > 0 seconds, got {within!r}")
        self.channel = channel
        self.batch_size = batch_size
        self.within = float(within)
        self.max_pending = max_pending if max_pending is not None else 2 * batch_size
        if self.max_pending < batch_size:
            raise ConfigError(f"FaustSpool: max_pending={self.max_pending} is below "
                              f"batch_size={batch_size}")
        self._backoff = backoff
        _Backoff(*backoff)   # validate
        self.dedupe = dedupe
        self.flush_timeout = flush_timeout
        self.copy_headers = copy_headers
        self._convert = convert or (lambda ev: event_from_message(ev.message,
                                                                  self.copy_headers))
        # next offset per mark key, as committed in the channel (only we write them)
        self._next: dict[str, int] = {}
        if dedupe:
            self._next = {k: v for k, v in channel.marks.items()
                          if k.startswith(MARK_PREFIX + ":")}
        self._pending: list[tuple[Any, Any]] = []   # (faust event, stream or None)
        self._first_at: float | None = None
        self._changed: asyncio.Event | None = None  # created in the loop
        self._lock: asyncio.Lock | None = None
        self._listeners: list[Callable[[], None]] = []
        self._deadline: float | None = None         # set while flushing on stop/revoke
        self.stored = 0              # events committed to the channel
        self.duplicates = 0          # redelivered events dropped by the marks
        self.batches = 0             # channel transactions committed
        self.failures = 0            # failed store attempts (each retried)
        self.seeks = 0               # assigned partitions moved forward to their marks
        self.skipped = 0             # offsets skipped that way (already in the channel)
        self.committed_past_marks = 0   # offsets committed that this channel never stored
        self._fresh: set[Any] = set()   # assigned partitions whose first event is not seen
        self._app: Any = None

    # ---- registration --------------------------------------------------------------------
    def attach(self, app: Any) -> FaustSpool:
        """Run the batch flusher as an app task, flush on
        ``on_partitions_revoked`` and ``on_before_shutdown``, and check the
        positions of newly assigned partitions against the marks
        (``on_partitions_assigned``)."""
        self._app = app
        app.task(self.run)

        async def _assigned(sender: Any, assigned: Any, **kw: Any) -> None:
            self.on_assigned(assigned)

        async def _revoked(sender: Any, revoked: Any, **kw: Any) -> None:
            await self.flush(self.flush_timeout)

        async def _shutdown(sender: Any, **kw: Any) -> None:
            await self.flush(self.flush_timeout)

        app.on_partitions_revoked.connect(_revoked, weak=False)
        app.on_partitions_assigned.connect(_assigned, weak=False)
        app.on_before_shutdown.connect(_shutdown, weak=False)
        self._receivers = (_revoked, _assigned, _shutdown)
        return self

    def on_assigned(self, assigned: Any) -> None:
        """Note newly assigned partitions: the first event of each is checked
        against its mark (see :meth:`add`). Runs inside Faust's rebalance, so
        it only touches memory."""
        self._fresh = set(assigned)

    def agent(self, topic: Any, *, name: str | None = None, **kwargs: Any) -> Any:
        """Register ``@app.agent(topic)`` that spools the topic (concurrency 1;
        ``isolated_partitions=True`` is fine)."""
        concurrency = kwargs.get("concurrency", 1)
        if concurrency not in (None, 1):
            raise ConfigError(f"FaustSpool.agent: concurrency must be 1, got {concurrency!r}: "
                              "concurrent actors add a partition's events out of order and "
                              "the marks would drop some as duplicates; use "
                              "isolated_partitions=True or more workers")
        app = topic.app

        async def spool_agent(stream: Any) -> None:
            await self.consume(stream)

        spool_agent.__name__ = spool_agent.__qualname__ = name or f"fchannel_spool_{id(self):x}"
        return app.agent(topic, name=name, **kwargs)(spool_agent)

    def on_stored(self, callback: Callable[[], None]) -> None:
        """Call *callback* (no arguments, in the loop) after each channel commit."""
        self._listeners.append(callback)

    # ---- ingest --------------------------------------------------------------------------
    def _sync(self) -> tuple[asyncio.Event, asyncio.Lock]:
        if self._changed is None or self._lock is None:
            self._changed = asyncio.Event()
            self._lock = asyncio.Lock()
        return self._changed, self._lock

    async def consume(self, stream: Any) -> None:
        """Agent body: ``async for`` over *stream* with acks off, adding every event."""
        if getattr(stream, "concurrency_index", None) is not None:
            raise ConfigError("FaustSpool: the agent has concurrency > 1; concurrent actors "
                              "add a partition's events out of order and the marks would drop "
                              "some as duplicates; use concurrency=1 (isolated_partitions=True "
                              "or more workers for parallelism)")
        s = stream.noack()
        async for event in s.events():
            await self.add(event, s)

    async def add(self, event: Any, stream: Any = None) -> None:
        """Hold a Faust event for the next batch; waits while ``max_pending``
        events are pending. The event is acked (through *stream* if given)
        after its batch is committed."""
        changed, _ = self._sync()
        if self._fresh and self.dedupe:
            await self._check_position(event.message)
        while len(self._pending) >= self.max_pending:
            changed.clear()
            await changed.wait()
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append((event, stream))
        if len(self._pending) >= self.batch_size:
            changed.set()

    async def _check_position(self, msg: Any) -> None:
        """The first event of a newly assigned partition: its offset is where
        Faust's committed offset put the consumer. Seek forward to the mark
        if that is behind it; report the offsets if it is past it."""
        tp = getattr(msg, "tp", None)
        if tp is None or tp not in self._fresh:
            return
        self._fresh.discard(tp)
        mark = self._next.get(mark_key(msg.topic, msg.partition))
        if mark is None:          # this channel never stored the partition
            return
        if msg.offset < mark:
            consumer = getattr(self._app, "consumer", None)
            if consumer is None:
                return            # not attached: the marks drop the redelivered events
            # Move the fetch position only (the consumer's ``_seek``), not
            # Faust's read offset: Faust then sees the jump from the last
            # offset it fetched to the mark and records it as a gap, which
            # lets it commit past the skipped offsets (its public ``seek``
            # would hide the jump, and Faust would never commit again).
            seek = getattr(consumer, "_seek", None) or consumer.seek
            await seek(tp, mark)
            self.seeks += 1
            self.skipped += mark - msg.offset
            log.info("fchannel spool: %s/%d starts at offset %d, behind the channel's mark "
                     "%d: seeking to the mark (%d events are already stored)",
                     msg.topic, msg.partition, msg.offset, mark, mark - msg.offset)
        elif msg.offset > mark:
            self.committed_past_marks += msg.offset - mark
            log.warning("fchannel spool: %s/%d starts at offset %d, past the channel's mark "
                        "%d: offsets %d..%d were committed without being stored in this "
                        "channel (another worker stored them, or they were lost)",
                        msg.topic, msg.partition, msg.offset, mark, mark, msg.offset - 1)

    @property
    def pending(self) -> int:
        """Events received and not yet committed to the channel."""
        return len(self._pending)

    async def run(self) -> None:
        """The flusher (an app task after :meth:`attach`): commit a batch when
        ``batch_size`` events are pending or the oldest waited ``within``."""
        changed, _ = self._sync()
        while True:
            if len(self._pending) >= self.batch_size:
                await self._flush_batch()
                continue
            if self._pending and self._first_at is not None:
                wait = self._first_at + self.within - time.monotonic()
                if wait <= 0:
                    await self._flush_batch()
                    continue
            else:
                wait = self.within
            changed.clear()
            await _wait(changed, wait)

    async def flush(self, timeout: float | None = None) -> bool:
        """Commit everything pending now. With *timeout*, stop retrying a
        failing put after that many seconds and return False (the events stay
        pending and unacked); True when nothing is pending."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if not await self._flush_batch(deadline):
                return False
        return True

    async def _flush_batch(self, deadline: float | None = None) -> bool:
        """Store the oldest pending batch, retrying until it is committed (or
        *deadline* passes: then False). Acks the batch after the commit."""
        changed, lock = self._sync()
        async with lock:
            batch = self._pending[:self.batch_size]
            if not batch:
                return True
            backoff = _Backoff(*self._backoff)
            while True:
                try:
                    await _finish(self._store([ev for ev, _ in batch]))
                    break
                except Exception as exc:
                    self.failures += 1
                    delay = backoff.next()
                    log.warning("fchannel spool: storing %d events failed (%r); "
                                "retrying in %.2f s", len(batch), exc, delay)
                    if deadline is not None and time.monotonic() + delay >= deadline:
                        return False
                    await asyncio.sleep(delay)
            del self._pending[:len(batch)]
            self._first_at = time.monotonic() if self._pending else None
            for ev, stream in batch:
                try:
                    if stream is not None:
                        await stream.ack(ev)
                    else:
                        ev.ack()
                except Exception:   # the consumer may be gone (stopping): Faust redelivers
                    log.debug("fchannel spool: ack failed", exc_info=True)
            changed.set()
        for cb in self._listeners:
            cb()
        return True

    async def _store(self, batch: Sequence[Any]) -> None:
        events: list[Event] = []
        new: dict[str, int] = {}
        dups = 0
        for ev in batch:
            msg = ev.message
            if self.dedupe:
                key = mark_key(msg.topic, msg.partition)
                nxt = new.get(key, self._next.get(key, -1))
                if msg.offset < nxt:
                    dups += 1
                    continue
                new[key] = msg.offset + 1
            events.append(self._convert(ev))
        if events or new:
            async with self.channel.atransaction() as tx:
                if events:
                    await tx.put_batch(events)
                for k, v in new.items():
                    tx.set_mark(k, v)
            self.batches += 1
        self._next.update(new)
        self.stored += len(events)
        self.duplicates += dups


class TopicSink:
    """Send a batch to a Faust topic: every event with ``force=True`` (not
    attached to a stream's ack), then flush the producer and wait for every
    send's acknowledgement; any failure raises (so the take rolls back).
    The ``key``/``key_base64`` header becomes the record key; with
    *copy_headers* the other headers travel as record headers."""

    def __init__(self, topic: Any, *, copy_headers: bool = True) -> None:
        self.topic = topic
        self.copy_headers = copy_headers

    async def __call__(self, events: list[Event]) -> None:
        futures = []
        for e in events:
            h = e.headers
            headers = [(k, v.encode("utf-8")) for k, v in h.items()] \
                if self.copy_headers else None
            futures.append(await self.topic.send(
                key=header_key(h), value=e.body, headers=headers, force=True,
                key_serializer="raw", value_serializer="raw"))
        await self.topic.app.producer.flush()
        await asyncio.gather(*futures)


class FaustDrainer:
    """Take batches from *channel* and deliver them to *sink* (an async
    callable, a plain callable run in a worker thread, or a Faust topic,
    wrapped in :class:`TopicSink`). The take commits only after the sink
    returned; an error rolls it back and the batch is retried after a
    backoff. If the sink returns a mapping ``{key: int}``, those marks are
    committed with the take. With *spool*, a commit of the spool wakes the
    drainer; otherwise it polls the empty channel every *idle* seconds."""

    def __init__(self, channel: Any, sink: Any, *, batch_size: int = 500,
                 idle: float = 0.2, backoff: tuple[float, float] = (0.05, 5.0),
                 spool: FaustSpool | None = None, stop_timeout: float = 10.0) -> None:
        _check_channel(channel, batch_size, "FaustDrainer")
        if isinstance(sink, TopicT):
            sink = TopicSink(sink)
        if not callable(sink):
            raise ConfigError(f"FaustDrainer: sink must be callable or a Faust topic, "
                              f"got {sink!r}")
        self.channel = channel
        self.sink = sink
        self.batch_size = batch_size
        self.idle = idle
        self.stop_timeout = stop_timeout
        self._backoff = _Backoff(*backoff)
        self._wake: asyncio.Event | None = None
        self._is_async = inspect.iscoroutinefunction(sink) or \
            inspect.iscoroutinefunction(type(sink).__call__)
        if spool is not None:
            spool.on_stored(self.wake)
        self.delivered = 0   # events whose take committed
        self.failures = 0    # failed attempts (each rolled back and retried)

    def attach(self, app: Any) -> FaustDrainer:
        """Run :meth:`run` as an app task (every worker drains its own channel)."""
        app.task(self.run)
        return self

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Drain until cancelled."""
        self._wake = asyncio.Event()
        while True:
            attempt = asyncio.ensure_future(self.drain_once())
            try:
                n = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # stopping: let the batch in hand finish (commit or roll back)
                # for up to stop_timeout seconds, then cancel it (rolls back)
                if not attempt.done():
                    await asyncio.wait({attempt}, timeout=self.stop_timeout)
                if not attempt.done():
                    attempt.cancel()
                    await asyncio.wait({attempt})
                if not attempt.cancelled():
                    attempt.exception()
                raise
            except Exception as exc:
                self.failures += 1
                delay = self._backoff.next()
                log.warning("fchannel drainer: delivery failed (%r); batch rolled back, "
                            "retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            if n == 0:
                self._wake.clear()
                await _wait(self._wake, self.idle)

    async def drain_once(self) -> int:
        """One take transaction: returns how many events were delivered
        (0: the channel was empty); raises what the sink raised, after the
        rollback."""
        tx = self.channel.atransaction()
        await tx.begin()
        try:
            events = await _finish(tx.take_batch(self.batch_size))
            if not events:
                await _finish(tx.commit())
                return 0
            if self._is_async:
                marks = await self.sink(events)
            else:
                marks = await _finish(asyncio.get_running_loop().run_in_executor(
                    None, self.sink, events))
                if inspect.isawaitable(marks):
                    marks = await marks
            if marks:
                for k, v in marks.items():
                    tx.set_mark(k, v)
            await _finish(tx.commit())
        except BaseException:
            if tx.state == "OPEN":
                await _finish(tx.rollback())
            raise
        finally:
            if tx.state != "CLOSED":
                await tx.close()
        self.delivered += len(events)
        return len(events)

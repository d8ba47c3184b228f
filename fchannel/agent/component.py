"""Base classes of the agent's components: sources, sinks, interceptors.

A component is built by its factory with its name, then ``configure(ctx)``
reads its properties from a :class:`~fchannel.agent.properties.Context`
(recording problems rather than raising), then ``start()``; ``stop()`` ends
it.  Sources are either *pollable* (a runner thread calls ``process()``) or
*event-driven* (they run their own threads and push events when they come).
"""
from __future__ import annotations

import enum
import logging
import threading
from typing import TYPE_CHECKING, Any

from fchannel.agent.counters import CounterGroup, sink_counters, source_counters
from fchannel.errors import ChannelError

if TYPE_CHECKING:
    from fchannel.agent.processor import ChannelProcessor
    from fchannel.agent.properties import Context


class Status(enum.Enum):
    READY = "READY"       # did work; call again at once
    BACKOFF = "BACKOFF"   # nothing to do (empty channel, no input, full channel): sleep


class EventDeliveryError(ChannelError):
    """A sink could not deliver a batch; its transaction was rolled back."""


def component_logger(kind: str, name: str) -> logging.Logger:
    return logging.getLogger(f"fchannel.{kind}.{name}")


class Component:
    kind = "component"

    def __init__(self, name: str) -> None:
        self.name = name
        self.log = component_logger(self.kind, name)
        self.type_name = type(self).__name__

    def configure(self, ctx: Context) -> None:
        """Read properties; record problems with ``ctx.problem``/typed getters."""

    def start(self) -> None:
        """Start; a start that raises must leave nothing running (the
        supervisor calls ``start`` again later, not ``stop``)."""

    def stop(self) -> None:
        pass

    def died(self, exc: BaseException) -> None:
        """Tell the supervisor this component stopped working (its own thread
        ended on an error, say): it is stopped and started again."""
        self._failure: BaseException | None = exc

    def failure(self) -> BaseException | None:
        """The error reported through :meth:`died` since the last start, or None."""
        return getattr(self, "_failure", None)

    def clear_failure(self) -> None:
        self._failure = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Source(Component):
    kind = "source"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.counter: CounterGroup = source_counters(name)
        self.channel_processor: ChannelProcessor | None = None
        self._stopping = threading.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def request_stop(self) -> None:
        self._stopping.set()

    def put_batch_retrying(self, events: list[Any], *, initial: float = 0.05,
                           maximum: float = 1.0) -> bool:
        """Put *events* through the channel processor, retrying with growing
        sleeps while a required channel refuses them (full, closed for a
        moment).  Returns False only if the source is stopping first (the
        events were then not all committed)."""
        assert self.channel_processor is not None
        step = self.channel_processor.max_batch or len(events) or 1
        for i in range(0, len(events), step):
            # chunks that fit one transaction: a retry repeats only the chunk refused
            chunk = events[i:i + step]
            delay = initial
            while True:
                try:
                    self.channel_processor.process_event_batch(chunk)
                except ChannelError as exc:
                    self.counter.add("ChannelWriteFail")
                    self.log.warning("channel refused %d event(s), retrying in %.2fs: %s",
                                     len(chunk), delay, exc)
                    if self._stopping.wait(delay):
                        return False
                    delay = min(maximum, delay * 2)
                    continue
                break
        return True


class Backoff:
    """Runner sleeps when there is nothing to do: they grow by
    ``backoffSleepIncrement`` up to ``maxBackoffSleep`` (properties in
    milliseconds, as in Flume)."""

    backoff_increment = 0.05
    max_backoff = 1.0

    def configure_backoff(self, ctx: Context) -> None:
        inc = ctx.integer("backoffSleepIncrement", None, minimum=1)
        mx = ctx.integer("maxBackoffSleep", None, minimum=1)
        if inc is not None:
            self.backoff_increment = inc / 1000.0
        if mx is not None:
            self.max_backoff = mx / 1000.0


class PollableSource(Backoff, Source):
    """A source whose runner calls ``process()`` in a loop.

    ``process`` returns READY when it put events and BACKOFF when it had
    nothing to read or the channel refused the batch; in the latter case it
    keeps what it read and offers the same events again on the next call.
    Runner sleeps grow by ``backoffSleepIncrement`` up to ``maxBackoffSleep``
    (milliseconds, as in Flume's pollable sources).
    """

    def process(self) -> Status:
        raise NotImplementedError

    def offer(self, events: list[Any]) -> bool:
        """Put *events* through the channel processor once: True when they
        were committed (and counted), False when a required channel refused
        them; the caller keeps them and offers them again after backing off."""
        assert self.channel_processor is not None
        try:
            self.channel_processor.process_event_batch(events)
        except ChannelError as exc:
            self.counter.add("ChannelWriteFail")
            self.log.debug("channel refused the batch, will retry: %s", exc)
            return False
        self.counter.add("EventAcceptedCount", len(events))
        self.counter.add("AppendBatchAcceptedCount")
        return True


class EventDrivenSource(Source):
    """A source that runs its own threads (``start``) and pushes events."""


class Sink(Backoff, Component):
    kind = "sink"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.counter: CounterGroup = sink_counters(name)
        self.channel: Any = None
        self.channel_name = ""

    def roll_back(self, tx: Any) -> None:
        """Roll *tx* back if it is still open (after a failed delivery)."""
        if tx.state == "OPEN":
            try:
                tx.rollback()
            except Exception as exc:  # the channel may be closing under us
                self.log.warning("rollback failed: %s", exc)

    @staticmethod
    def close_done(tx: Any) -> None:
        """Close *tx* once it is committed or rolled back."""
        if tx.state not in ("CLOSED", "OPEN"):
            tx.close()

    def process(self) -> Status:
        raise NotImplementedError


class BatchSink(Sink):
    """A sink that takes up to ``batch_size`` events in one transaction,
    delivers them with :meth:`deliver` and commits only after delivery.

    A failed delivery rolls the take back (the events return to the head of
    the channel) and raises :class:`EventDeliveryError`.
    """

    batch_size = 100

    def deliver(self, events: list[Any]) -> None:
        raise NotImplementedError

    def process(self) -> Status:
        ch = self.channel
        want = self.batch_size
        cap = getattr(ch, "transaction_capacity", None)
        if cap and cap < want:  # a transaction cannot take more than this
            want = cap
        tx = ch.transaction()
        tx.begin()
        try:
            try:
                events = tx.take_batch(want)
            except ChannelError:
                self.counter.add("ChannelReadFail")
                raise
            n = len(events)
            if n == 0:
                self.counter.add("BatchEmptyCount")
                tx.commit()
                return Status.BACKOFF
            self.counter.add("EventDrainAttemptCount", n)
            try:
                self.deliver(events)
            except Exception as exc:
                self.counter.add("EventWriteFail")
                raise EventDeliveryError(
                    f"sink {self.name!r} failed to deliver {n} event(s): {exc}") from exc
            tx.commit()
            self.counter.add("BatchCompleteCount" if n == want
                             else "BatchUnderflowCount")
            self.counter.add("EventDrainSuccessCount", n)
            return Status.READY
        except BaseException:
            self.roll_back(tx)
            raise
        finally:
            self.close_done(tx)


class Interceptor(Component):
    """Looks at (and may change or drop) events before the channel selector.

    ``intercept`` gets one event and returns it (changed or not) or None to
    drop it; ``intercept_batch`` maps it over a list.
    """

    kind = "interceptor"

    def intercept(self, event: Any) -> Any:
        return event

    def intercept_batch(self, events: list[Any]) -> list[Any]:
        out = []
        for e in events:
            r = self.intercept(e)
            if r is not None:
                out.append(r)
        return out

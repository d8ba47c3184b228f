"""``seq``: Flume's sequence generator source, for testing.

Emits events whose body is a counter (``0``, ``1``, ...) as text.
Properties: ``batchSize`` (1), ``totalEvents`` (unlimited).  A batch the
channel refuses is kept and offered again, so no number is skipped.
"""
from __future__ import annotations

from fchannel.agent.component import PollableSource, Status
from fchannel.agent.properties import Context
from fchannel.event import Event


class SequenceSource(PollableSource):

    def configure(self, ctx: Context) -> None:
        self.batch_size = ctx.integer("batchSize", 1, minimum=1)
        self.total = ctx.integer("totalEvents", None, minimum=0)
        self.configure_backoff(ctx)
        self._next = 0
        self._pending: list[Event] = []

    def process(self) -> Status:
        if not self._pending:
            stop = self._next + self.batch_size
            if self.total is not None:
                stop = min(stop, self.total)
            if stop <= self._next:
                return Status.BACKOFF  # all events sent
            self._pending = [Event(str(i).encode()) for i in range(self._next, stop)]
            self._next = stop
            n = len(self._pending)
            self.counter.add("EventReceivedCount", n)
            self.counter.add("AppendBatchReceivedCount")
        if not self.offer(self._pending):
            return Status.BACKOFF
        self._pending = []
        return Status.READY

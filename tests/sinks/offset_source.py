"""A test source that stands in for Kafka: events with ``topic``, ``partition``,
``offset`` and ``timestamp`` headers, put into a FileChannel exactly once (the
next offset of each partition is a channel mark committed with the put, as the
kafka spooler does), and, to imitate an at-least-once source, every
``repeatEvery``-th batch starts a few offsets back.

Properties: ``topic`` (t), ``partitions`` (3), ``count`` (offsets per partition),
``batchSize`` (25), ``repeatEvery`` (0: never), ``tsStep`` (ms of event time per
offset, 600), ``delayMs`` (pause after each batch, 0).
"""
from __future__ import annotations

import time

from fchannel.agent.component import PollableSource, Status
from fchannel.agent.properties import Context
from fchannel.event import Event

BASE_TS = 1_700_000_000_000


class OffsetSource(PollableSource):

    def configure(self, ctx: Context) -> None:
        self.topic = ctx.string("topic", "t") or "t"
        self.partitions = ctx.integer("partitions", 3, minimum=1)
        self.count = ctx.integer("count", 1000, minimum=1)
        self.batch = ctx.integer("batchSize", 25, minimum=1)
        self.repeat_every = ctx.integer("repeatEvery", 0, minimum=0)
        self.ts_step = ctx.integer("tsStep", 600, minimum=0)
        self.delay = ctx.integer("delayMs", 0, minimum=0) / 1000.0
        self.configure_backoff(ctx)
        self._turn = 0
        self._batches = 0

    def _channel(self):
        assert self.channel_processor is not None
        (ch,) = self.channel_processor.selector.channels.values()
        return ch

    def process(self) -> Status:
        ch = self._channel()
        marks = ch.marks
        for _ in range(self.partitions):
            p = self._turn % self.partitions
            self._turn += 1
            key = f"src:{self.topic}:{p}"
            nxt = marks.get(key, 0)
            if nxt >= self.count:
                continue
            self._batches += 1
            start = nxt
            if self.repeat_every and self._batches % self.repeat_every == 0:
                start = max(0, nxt - 3)
            stop = min(self.count, nxt + self.batch)
            events = [Event(f"{self.topic}-{p}-{o}".encode(),
                            {"topic": self.topic, "partition": str(p), "offset": str(o),
                             "timestamp": str(BASE_TS + o * self.ts_step)})
                      for o in range(start, stop)]
            with ch.transaction() as tx:
                tx.put_batch(events)
                tx.set_mark(key, stop)
            self.counter.add("EventAcceptedCount", len(events))
            if self.delay:
                time.sleep(self.delay)
            return Status.READY
        return Status.BACKOFF

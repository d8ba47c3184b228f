"""``null``: takes events in batches of ``batchSize`` (100) and discards them."""
from __future__ import annotations

from typing import Any

from fchannel.agent.component import BatchSink
from fchannel.agent.properties import Context


class NullSink(BatchSink):

    def configure(self, ctx: Context) -> None:
        self.batch_size = ctx.integer("batchSize", 100, minimum=1)
        self.configure_backoff(ctx)

    def deliver(self, events: list[Any]) -> None:
        pass

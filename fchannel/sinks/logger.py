"""``logger``: logs each event at INFO, as Flume's LoggerSink does.

Each line shows the headers and the first ``maxBytesToLog`` (16) bytes of
the body, in hex and as text::

    Event: { headers:{host=web-1} body: 68 65 6C 6C 6F  hello }

``batchSize`` (1, like Flume) events are taken per transaction.
"""
from __future__ import annotations

from typing import Any

from fchannel.agent.component import BatchSink
from fchannel.agent.properties import Context


def dump_event(event: Any, max_bytes: int) -> str:
    body = event.body[:max_bytes]
    hexpart = " ".join(f"{b:02X}" for b in body)
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in body)
    more = f" ... ({len(event.body)} bytes)" if len(event.body) > max_bytes else ""
    headers = ", ".join(f"{k}={v}" for k, v in event.headers.items())
    return f"Event: {{ headers:{{{headers}}} body: {hexpart}  {text}{more} }}"


class LoggerSink(BatchSink):

    def configure(self, ctx: Context) -> None:
        self.max_bytes = ctx.integer("maxBytesToLog", 16, minimum=0)
        self.batch_size = ctx.integer("batchSize", 1, minimum=1)
        self.configure_backoff(ctx)

    def deliver(self, events: list[Any]) -> None:
        for e in events:
            self.log.info("%s", dump_event(e, self.max_bytes))

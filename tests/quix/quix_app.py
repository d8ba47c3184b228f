"""A Quix Streams app that sinks a topic into a FileChannel (the process the
crash tests kill).

Environment: ``QX_BROKER`` (host:port), ``QX_TOPIC``, ``QX_DIR`` (the
channel and Quix's state dir live under it), ``QX_GROUP``, ``QX_COMMIT``
(the commit interval, seconds), ``QX_HOLD`` (seconds to wait after the sink's
flush, before Quix commits the offsets: a window for the test's SIGKILL).
After each sink flush it prints ``QX stored=<sum of the channel's partition
marks> dups=<records this process dropped as already stored>``.
"""
from __future__ import annotations

import os
import sys
import time

from fchannel.integrations.quix import FileChannelSink
from quixstreams import Application

from fchannel import FileChannel

DIR = os.environ["QX_DIR"]
HOLD = float(os.environ.get("QX_HOLD", "0"))


class ReportingSink(FileChannelSink):
    def flush(self) -> None:
        super().flush()
        stored = sum(v for k, v in self.channel.marks.items() if k.startswith("kafka:"))
        print(f"QX stored={stored} dups={self.duplicates}", flush=True)
        time.sleep(HOLD)


def main() -> None:
    app = Application(
        broker_address=os.environ["QX_BROKER"],
        consumer_group=os.environ["QX_GROUP"],
        auto_offset_reset="earliest",
        commit_interval=float(os.environ.get("QX_COMMIT", "0.3")),
        consumer_extra_config={"session.timeout.ms": 2000, "heartbeat.interval.ms": 500},
        state_dir=os.path.join(DIR, "state"),
        auto_create_topics=False,
        loglevel="INFO",
    )
    topic = app.topic(os.environ["QX_TOPIC"], key_deserializer="bytes",
                      value_deserializer="bytes")
    channel = FileChannel(os.path.join(DIR, "checkpoint"), os.path.join(DIR, "data"),
                          capacity=100_000, transaction_capacity=10_000)
    sdf = app.dataframe(topic)
    sdf.sink(ReportingSink(channel))
    try:
        app.run()
    finally:
        channel.close()
    print("QX stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

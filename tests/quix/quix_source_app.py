"""A Quix Streams app fed by a FileChannelSource (the process group the
source crash test kills).

Environment: ``QS_BROKER``, ``QS_TOPIC`` (the source's topic), ``QS_DIR``
(the channel: ``checkpoint`` and ``data`` under it), ``QS_GROUP``. The
source's process prints ``QS delivered=<n>`` after each committed take
(counting from its start) and ``QS empty`` when a take finds nothing.
"""
from __future__ import annotations

import os

from fchannel.integrations.quix import FileChannelSource
from quixstreams import Application

DIR = os.environ["QS_DIR"]


class ReportingSource(FileChannelSource):
    def deliver_once(self, channel):
        n = super().deliver_once(channel)
        print(f"QS delivered={self.delivered}" if n else "QS empty", flush=True)
        return n


def main() -> None:
    app = Application(broker_address=os.environ["QS_BROKER"],
                      consumer_group=os.environ["QS_GROUP"], auto_offset_reset="earliest",
                      consumer_extra_config={"session.timeout.ms": 2000,
                                             "heartbeat.interval.ms": 500},
                      state_dir=os.path.join(DIR, "state"), auto_create_topics=False,
                      loglevel="INFO")
    source = ReportingSource("spooled", os.path.join(DIR, "checkpoint"),
                             os.path.join(DIR, "data"), batch_size=100, idle=0.05,
                             flush_timeout=10.0)
    topic = app.topic(os.environ["QS_TOPIC"], key_deserializer="bytes",
                      value_deserializer="bytes", key_serializer="bytes",
                      value_serializer="bytes")
    app.dataframe(topic=topic, source=source)
    app.run()


if __name__ == "__main__":
    main()

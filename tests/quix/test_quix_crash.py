"""A real Quix Streams app (``tests/quix/quix_app.py``) with a FileChannelSink,
against the Tansu broker, SIGKILLed three times mid-stream: every message of
the topic ends up in the channel exactly once.

Each incarnation must store something new before it is killed, and is
killed as soon as it reports a sink flush: the app then waits QX_HOLD
seconds before Quix commits the offsets, so the kill falls between the
channel's commit and Kafka's and the next run is handed those records again
(the marks must drop them). The producer is held back until the kills are
done, so they are mid-stream.
"""
from __future__ import annotations

import os
import re
import sys
from collections import Counter

import pytest

from fchannel import FileChannel
from tests.helpers import ROOT, LoggedProcess
from tests.kafka_producer import Producer

pytestmark = pytest.mark.crash

APP = os.path.join(ROOT, "tests", "quix", "quix_app.py")
STORED = re.compile(rb"QX stored=(\d+)")
DUPS = re.compile(rb"QX stored=\d+ dups=(\d+)")


class App(LoggedProcess):
    """One ``quix_app.py`` process; its output goes to a log file per run."""

    argv = [sys.executable, APP]
    label = "the app"

    def __init__(self, kafka, topic: str, group: str, datadir, **env: str) -> None:
        super().__init__()
        self.datadir = str(datadir)
        os.makedirs(self.datadir, exist_ok=True)
        self.env = dict(os.environ, QX_BROKER=kafka.bootstrap, QX_TOPIC=topic, QX_GROUP=group,
                        QX_DIR=self.datadir,
                        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
        self.env.pop("PYTHONWARNINGS", None)

    @property
    def log(self) -> str:
        return os.path.join(self.datadir, f"app-{self.runs}.log")

    def flushes(self) -> int:
        """Sink flushes the current run has reported."""
        with open(self.log, "rb") as f:
            return len(STORED.findall(f.read()))

    def stored(self) -> int:
        return self.last_int(STORED)

    def duplicates(self) -> int:
        """Records the current run dropped as already stored, as last reported."""
        return self.last_int(DUPS)

    def channel_contents(self) -> tuple[list[tuple[int, int, bytes]], int]:
        """((partition, offset, body) of every event, sum of the partition marks)."""
        ch = FileChannel(os.path.join(self.datadir, "checkpoint"),
                         os.path.join(self.datadir, "data"))
        try:
            out = []
            for _ in range(10_000):
                with ch.transaction() as tx:
                    got = tx.take_batch(1000)
                if not got:
                    break
                out.extend((int(e.headers["partition"]), int(e.headers["offset"]), e.body)
                           for e in got)
            return out, sum(v for k, v in ch.marks.items() if k.startswith("kafka:"))
        finally:
            ch.close()


@pytest.fixture
def apps():
    started: list[App] = []
    yield started
    for a in started:
        a.ensure_dead()


def test_sigkill_three_times_mid_stream_stores_every_message_once(kafka, tmp_path, apps):
    n = int(os.environ.get("FCHANNEL_QUIX_KILL_N", "3000"))
    parts = 3
    topic = kafka.create_topic("qx-kill", partitions=parts)
    app = App(kafka, topic, kafka.name("qx-kill-group"), tmp_path / "app", QX_HOLD="0.3")
    apps.append(app)
    producer = Producer(kafka, topic, n, parts, rate=250, hold=n * 9 // 10)
    producer.start()
    kills = []
    dups = 0
    for _ in range(3):
        app.start()
        last = max([0] + [k[1] for k in kills])
        app.wait(lambda last=last: app.stored() >= last + 100, 90, "progress before SIGKILL")
        # one more flush, so the one before it was followed by an offset
        # commit (unless the producer is held: then no more records come)
        seen = app.flushes()
        app.wait(lambda seen=seen: app.flushes() > seen or producer.holding, 30,
                 "another sink flush")
        kills.append((producer.sent, app.stored()))
        app.kill()
        dups += app.duplicates()
    assert all(sent < n for sent, _ in kills), kills      # mid-stream
    producer.release()
    app.start()
    producer.finish()
    app.wait(lambda: app.stored() >= n, 120, f"{n} messages stored")
    dups += app.duplicates()
    app.stop()
    # the kills fell inside the window: records stored but not committed to
    # Kafka came again and were dropped by the marks
    assert dups > 0, kills
    events, marked = app.channel_contents()
    keys = [(p, o) for p, o, _ in events]
    dup = [k for k, c in Counter(keys).items() if c > 1]
    assert not dup, f"duplicates in the channel: {dup[:10]}"
    assert set(keys) == producer.expected() and len(keys) == n
    assert marked == n
    assert all(body == b"m%d" % (o * parts + p) for p, o, body in events)
    # each partition's events are in offset order in the channel
    for p in range(parts):
        offs = [o for q, o, _ in events if q == p]
        assert offs == sorted(offs)
    print(f"kills at (sent, stored): {kills}; {dups} redelivered records dropped")

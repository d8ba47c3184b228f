"""Quix Streams applications run in process against the Tansu broker.

- A FileChannelSink on a channel much smaller than the topic: the channel
  fills, the sink raises SinkBackpressureError, Quix pauses and replays, and
  a slow drainer empties the channel; every message goes through once, in
  offset order per partition.
- A FileChannelSource feeds an app from a channel: every event reaches the
  source's topic (value, key, timestamp, headers) and the channel is empty
  once the app stopped.
"""
from __future__ import annotations

import os
import threading
import time

from fchannel.integrations.quix import FileChannelSink, FileChannelSource
from quixstreams import Application

from fchannel import Event, FileChannel


def make_app(kafka, tmp_path, group: str) -> Application:
    return Application(
        broker_address=kafka.bootstrap, consumer_group=group, auto_offset_reset="earliest",
        commit_interval=0.2, state_dir=str(tmp_path / "state"), auto_create_topics=False,
        consumer_extra_config={"session.timeout.ms": 2000, "heartbeat.interval.ms": 500},
        loglevel="WARNING")


def run_until(app: Application, done, timeout: float) -> None:
    """Run *app* in this (the main) thread; a watcher thread stops it once
    *done()* is true or *timeout* passed. Returns whether done() held."""
    finished = threading.Event()

    def watch():
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
        finished.set()
        app.stop()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    app.run()
    t.join(30)
    assert finished.is_set()


def test_backpressure_pauses_the_app_and_loses_nothing(kafka, tmp_path):
    n, parts = 600, 2
    topic = kafka.create_topic("qx-bp", partitions=parts)
    kafka.produce(topic, [b"m%d" % i for i in range(n)], partitions=parts)
    app = make_app(kafka, tmp_path, kafka.name("qx-bp-group"))
    channel = FileChannel(str(tmp_path / "ckpt"), str(tmp_path / "data"), capacity=120,
                          transaction_capacity=120, keep_alive=0.0, checkpoint_interval=3600)
    sink = FileChannelSink(channel, retry_after=0.2)
    app.dataframe(app.topic(topic, value_deserializer="bytes")).sink(sink)
    got: list[Event] = []
    stop = threading.Event()

    def drain():                       # a slow consumer of the channel
        while not stop.is_set():
            with channel.transaction() as tx:
                got.extend(tx.take_batch(20))
            time.sleep(0.05)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    try:
        run_until(app, lambda: len(got) >= n, 120)
    finally:
        stop.set()
        drainer.join(10)
    with channel.transaction() as tx:
        got.extend(tx.take_batch(120))
    channel.close()
    assert sink.backpressured > 0, "the channel never filled"
    keys = [(int(e.headers["partition"]), int(e.headers["offset"])) for e in got]
    assert len(keys) == n and len(set(keys)) == n
    for p in range(parts):
        offs = [o for q, o in keys if q == p]
        assert offs == list(range(len(offs)))
    assert all(e.body == b"m%d" % (o * parts + p) for e, (p, o) in zip(got, keys))


def test_source_feeds_an_app_and_empties_the_channel(kafka, tmp_path):
    n = 300
    ckpt, data = str(tmp_path / "ckpt"), str(tmp_path / "data")
    with FileChannel(ckpt, data, transaction_capacity=1000) as ch, ch.transaction() as tx:
        tx.put_batch([Event(b"v%d" % i, {"key": f"k{i % 7}", "timestamp": str(1_700_000_000_000 + i),
                                         "origin": "spool"}) for i in range(n)])
    out = kafka.create_topic("qx-src", partitions=1)
    app = make_app(kafka, tmp_path, kafka.name("qx-src-group"))
    source = FileChannelSource("spooled", ckpt, data, batch_size=64, idle=0.05,
                               channel_options={"transaction_capacity": 1000})
    topic = app.topic(out, key_deserializer="bytes", value_deserializer="bytes",
                      key_serializer="bytes", value_serializer="bytes")
    seen: list[bytes] = []
    sdf = app.dataframe(topic=topic, source=source)
    sdf.update(lambda value: seen.append(value))
    run_until(app, lambda: len(seen) >= n, 120)
    records = kafka.read_all(out, n)
    assert [r.value for r in records] == [b"v%d" % i for i in range(n)]
    r = records[10]
    assert r.key == b"k3" and r.timestamp == 1_700_000_000_010
    assert ("origin", b"spool") in [(k, v) for k, v in r.headers]
    # the source process has stopped and closed the channel: every take committed
    with FileChannel(ckpt, data, transaction_capacity=1000) as ch:
        assert ch.size == 0
    assert os.path.exists(ckpt)

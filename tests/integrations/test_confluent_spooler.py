"""ConfluentSpooler and drain() for confluent-kafka against a real broker:
exactly once into the channel, marks and Kafka offsets after the channel
commit, restart from the marks, back-pressure from a full channel, and
at-least-once out of the channel with every delivery report checked."""
from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from fchannel.integrations.confluent import ConfluentSpooler, ProducerTarget, drain, drain_all

from fchannel import ConfigError, Event, FileChannel, MemoryChannel
from tests.conftest import wait_for


def consumer(kafka, group, **extra):
    conf = {"bootstrap.servers": kafka.bootstrap, "group.id": group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000, "heartbeat.interval.ms": 500}
    conf.update(extra)
    return Consumer(conf)


def open_channel(path, **kw):
    kw.setdefault("minimum_required_space", 0)
    kw.setdefault("checkpoint_interval", 60.0)
    return FileChannel(path / "ckpt", path / "data", **kw)


def take_all(ch, n=50):
    out = []
    while True:
        with ch.transaction() as tx:
            got = tx.take_batch(n)
        if not got:
            return out
        out.extend(got)


def spool_until(sp, ch, n, timeout=60):
    wait_for(lambda: sp.step() is not None and ch.size >= n, timeout, interval=0,
             what=f"{n} events in the channel")


def committed(kafka, group, topic, parts):
    c = consumer(kafka, group)
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(parts)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def check_restarted(kafka, group, topic, events):
    """The restart test's end: the 100 records spooled before the restart and
    the 40 after, each once, and the group's offsets brought up to the marks."""
    assert sorted(e.body for e in events) == sorted(
        [f"a{i}".encode() for i in range(100)] + [f"b{i}".encode() for i in range(40)])
    assert committed(kafka, group, topic, 2) == {0: 70, 1: 70}


def full_channel_topic(kafka, tmp_path, n):
    """A one-partition topic holding m0..m<n-1> and a channel of 50 events,
    too small for them: (topic, channel)."""
    topic = kafka.create_topic(partitions=1)
    kafka.produce(topic, [f"m{i}".encode() for i in range(n)], partitions=1)
    return topic, open_channel(tmp_path, capacity=50, transaction_capacity=50, keep_alive=0.0)


def test_spools_every_record_once_with_marks_and_offsets(kafka, tmp_path):
    topic = kafka.create_topic(partitions=3)
    n = 300
    kafka.produce(topic, [(i % 3, f"k{i}".encode(), f"v{i}".encode()) for i in range(n)])
    group = kafka.name("g")
    c = consumer(kafka, group)
    ch = open_channel(tmp_path)
    try:
        sp = ConfluentSpooler(c, ch, topics=[topic], batch_size=64, batch_duration=0.05)
        spool_until(sp, ch, n)
        assert sp.flush() == 0
        assert ch.marks == {f"kafka:{topic}:{p}": n // 3 for p in range(3)}
        events = take_all(ch)
    finally:
        c.close()
        ch.close()
    assert sorted(e.body for e in events) == sorted(f"v{i}".encode() for i in range(n))
    for e in events:
        assert e.headers["topic"] == topic
        assert e.headers["key"] == "k" + e.body[1:].decode()
        assert int(e.headers["timestamp"]) > 0
    for p in range(3):
        offs = [int(e.headers["offset"]) for e in events if e.headers["partition"] == str(p)]
        assert offs == list(range(n // 3))
    assert committed(kafka, group, topic, 3) == {p: n // 3 for p in range(3)}


def test_restart_starts_at_the_marks_not_the_group_offsets(kafka, tmp_path):
    """The group's offsets are behind the channel (a crash between the two
    commits): a new spooler starts at the marks, re-reads nothing, and
    brings the group's offsets up to the marks."""
    topic = kafka.create_topic(partitions=2)
    kafka.produce(topic, [f"a{i}".encode() for i in range(100)], partitions=2)
    group = kafka.name("g")
    c = consumer(kafka, group)
    ch = open_channel(tmp_path)
    try:
        sp = ConfluentSpooler(c, ch, topics=[topic], batch_size=50, batch_duration=0.05,
                              commit_kafka=False)
        spool_until(sp, ch, 100)
    finally:
        c.close()
    assert committed(kafka, group, topic, 2) == {0: -1001, 1: -1001}   # nothing committed
    kafka.produce(topic, [f"b{i}".encode() for i in range(40)], partitions=2)
    c = consumer(kafka, group)
    try:
        sp = ConfluentSpooler(c, ch, topics=[topic], batch_size=50, batch_duration=0.05)
        spool_until(sp, ch, 140)
        sp.flush()
        events = take_all(ch)
    finally:
        c.close()
        ch.close()
    assert len(events) == 140
    check_restarted(kafka, group, topic, events)


def test_full_channel_pauses_and_keeps_everything(kafka, tmp_path):
    n = 120
    topic, ch = full_channel_topic(kafka, tmp_path, n)
    c = consumer(kafka, kafka.name("g"))
    try:
        sp = ConfluentSpooler(c, ch, topics=[topic], batch_size=20, batch_duration=0.05,
                              max_backoff=0.05)
        got: list = []

        def spool_and_take():
            sp.step()
            if sp.stats["full_waits"] >= 3:    # the consumer stays paused while full
                with ch.transaction() as tx:
                    got.extend(tx.take_batch(10))
            return len(got) + ch.size >= n
        wait_for(spool_and_take, 60, interval=0, what="everything through a small channel")
        got.extend(take_all(ch))
        assert sp.stats["full_waits"] >= 3
    finally:
        c.close()
        ch.close()
    assert [e.body for e in got] == [f"m{i}".encode() for i in range(n)]


def test_needs_a_channel_with_marks_and_a_good_batch_size(kafka, tmp_path):
    c = consumer(kafka, kafka.name("g"))
    ch = open_channel(tmp_path)
    try:
        with pytest.raises(ConfigError, match="marks"):
            ConfluentSpooler(c, MemoryChannel(capacity=100), topics=["x"])
        with pytest.raises(ConfigError, match="batch_size must be a positive int, got 0"):
            ConfluentSpooler(c, ch, topics=["x"], batch_size=0)
        with pytest.raises(ConfigError, match="no assignment; pass topics= or pattern="):
            ConfluentSpooler(c, ch)
    finally:
        c.close()
        ch.close()


# ---- drain ------------------------------------------------------------------------------
def fill(ch, events):
    with ch.transaction() as tx:
        tx.put_batch(events)


def test_drain_delivers_everything_with_keys(kafka, tmp_path):
    out = kafka.create_topic("out", partitions=2)
    n = 250
    ch = open_channel(tmp_path)
    fill(ch, [Event(f"e{i}".encode(), {"key": f"k{i % 7}"}) for i in range(n)])
    p = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all"})
    try:
        assert drain_all(ch, p, batch_size=40, topic=out) == n
        assert ch.size == 0
    finally:
        ch.close()
    got = kafka.read_all(out, n)
    assert sorted(r.value for r in got) == sorted(f"e{i}".encode() for i in range(n))
    assert all(r.key == f"k{int(r.value[1:]) % 7}".encode() for r in got)


def test_failed_delivery_report_rolls_the_batch_back(kafka, tmp_path):
    """A record to a partition that does not exist gets a failed delivery
    report: the whole batch stays in the channel, in order."""
    out = kafka.create_topic("out", partitions=1)
    ch = open_channel(tmp_path)
    fill(ch, [Event(b"ok"), Event(b"bad", {"part": "7"}), Event(b"after")])
    p = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all",
                  "message.timeout.ms": 3000})
    try:
        target = ProducerTarget(p, out, partition_header="part")
        with pytest.raises(Exception, match="(?i)partition"):
            drain(ch, target, batch_size=10)
        assert ch.size == 3
        assert [e.body for e in take_all(ch)] == [b"ok", b"bad", b"after"]
    finally:
        ch.close()

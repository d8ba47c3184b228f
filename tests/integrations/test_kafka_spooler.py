"""KafkaSpooler and drain against a real broker, in process."""
from __future__ import annotations

import threading

import pytest
from fchannel.integrations.kafka import KafkaSpooler, mark_key
from kafka import TopicPartition  # noqa: E402

from fchannel import ConfigError, Event, FileChannel, MemoryChannel
from tests.conftest import wait_for


def _channel(tmp_path, **kw):
    kw.setdefault("minimum_required_space", 0)
    kw.setdefault("checkpoint_interval", 60.0)
    return FileChannel(tmp_path / "ckpt", tmp_path / "data", **kw)


def _take_all(ch):
    out = []
    while True:
        with ch.transaction() as tx:
            got = tx.take_batch(1000)
        if not got:
            return out
        out.extend(got)


def _spool_until(spooler, ch, n, timeout=30.0):
    def go():
        spooler.step()
        return ch.size >= n
    wait_for(go, timeout, interval=0, what=f"{n} events in the channel")


def test_spool_headers_order_marks_and_kafka_offsets(kafka, tmp_path):
    topic = kafka.create_topic(partitions=2)
    msgs = [(i % 2, f"k{i}".encode(), f"v{i}".encode()) for i in range(40)]
    kafka.produce(topic, msgs)
    group = kafka.name("g")
    consumer = kafka.consumer(group_id=group)
    try:
        with _channel(tmp_path) as ch:
            sp = KafkaSpooler(consumer, ch, topics=[topic], batch_size=7, batch_duration=0.2)
            _spool_until(sp, ch, 40)
            assert ch.marks == {mark_key(topic, 0): 20, mark_key(topic, 1): 20}
            events = _take_all(ch)
        assert consumer.committed(TopicPartition(topic, 0)) == 20
        assert consumer.committed(TopicPartition(topic, 1)) == 20
    finally:
        consumer.close()
    assert len(events) == 40
    for part in (0, 1):
        mine = [e for e in events if e.headers["partition"] == str(part)]
        assert [int(e.headers["offset"]) for e in mine] == list(range(20))
        for e in mine:
            i = int(e.body[1:])
            assert e.body == f"v{i}".encode() and i % 2 == part
            assert e.headers["key"] == f"k{i}"
            assert e.headers["topic"] == topic
            assert int(e.headers["timestamp"]) > 0
    assert sp.stats["batches"] >= 40 // 7


def test_batches_by_size_and_by_time(kafka, tmp_path):
    topic = kafka.create_topic(partitions=1)
    kafka.produce(topic, [b"x"] * 10, partitions=1)
    consumer = kafka.consumer(group_id=kafka.name("g"))
    try:
        with _channel(tmp_path) as ch:
            sp = KafkaSpooler(consumer, ch, topics=[topic], batch_size=4, batch_duration=3600)
            # by size: two full batches of 4; the last 2 wait for a full batch
            wait_for(lambda: (sp.step(), ch.size >= 8)[1], 30, interval=0, what="8 events")
            for _ in range(20):
                sp.step()
            assert ch.size == 8 and sp.stats["batches"] == 2
            # by time: a short duration commits the partial batch
            sp.batch_duration = 0.05
            wait_for(lambda: (sp.step(), ch.size == 10)[1], 10, interval=0, what="10 events")
            assert sp.stats["batches"] == 3
    finally:
        consumer.close()


def test_starts_at_the_channel_marks(kafka, tmp_path):
    """A channel whose marks are ahead of Kafka's committed offsets (a crash
    between the channel commit and the Kafka commit) reads on from its marks,
    and brings Kafka's offset up to date."""
    topic = kafka.create_topic(partitions=1)
    kafka.produce(topic, [f"m{i}".encode() for i in range(10)], partitions=1)
    group = kafka.name("g")
    with _channel(tmp_path) as ch:
        with ch.transaction() as tx:
            tx.set_mark(mark_key(topic, 0), 6)
        consumer = kafka.consumer(group_id=group)
        try:
            sp = KafkaSpooler(consumer, ch, topics=[topic], batch_size=100, batch_duration=0.05)
            _spool_until(sp, ch, 4)
            for _ in range(10):
                sp.step()
            assert [e.body for e in _take_all(ch)] == [b"m6", b"m7", b"m8", b"m9"]
            assert consumer.committed(TopicPartition(topic, 0)) == 10
        finally:
            consumer.close()


def test_group_offset_ahead_of_the_marks_wins(kafka, tmp_path):
    """When another member of the group spooled further (into its own
    channel), a stale mark does not make this spooler read it again."""
    topic = kafka.create_topic(partitions=1)
    kafka.produce(topic, [f"m{i}".encode() for i in range(10)], partitions=1)
    group = kafka.name("g")
    other = kafka.consumer(group_id=group)
    try:
        from kafka.structs import OffsetAndMetadata
        other.assign([TopicPartition(topic, 0)])
        other.commit({TopicPartition(topic, 0): OffsetAndMetadata(8, "", -1)})
    finally:
        other.close()
    with _channel(tmp_path) as ch:
        with ch.transaction() as tx:
            tx.set_mark(mark_key(topic, 0), 3)
        consumer = kafka.consumer(group_id=group)
        try:
            sp = KafkaSpooler(consumer, ch, topics=[topic], batch_size=100, batch_duration=0.05)
            _spool_until(sp, ch, 2)
            for _ in range(10):
                sp.step()
            assert [e.body for e in _take_all(ch)] == [b"m8", b"m9"]
            assert ch.marks[mark_key(topic, 0)] == 10
        finally:
            consumer.close()


def test_full_channel_backs_off_and_loses_nothing(kafka, tmp_path):
    topic = kafka.create_topic(partitions=2)
    n = 60
    kafka.produce(topic, [f"m{i}".encode() for i in range(n)], partitions=2)
    consumer = kafka.consumer(group_id=kafka.name("g"))
    got: list[Event] = []
    try:
        with _channel(tmp_path, capacity=10, transaction_capacity=10, keep_alive=0.05) as ch:
            sp = KafkaSpooler(consumer, ch, topics=[topic], batch_size=8, batch_duration=0.05,
                              max_backoff=0.1)
            t = threading.Thread(target=sp.run)
            t.start()
            try:
                # let the channel fill up and the spooler wait for room
                wait_for(lambda: sp.stats["full_waits"] >= 3, 30, what="the channel to be full")
                assert ch.size <= 10

                def drained():
                    with ch.transaction() as tx:
                        got.extend(tx.take_batch(3))
                    return len(got) >= n
                wait_for(drained, 60, interval=0.02, what="every message through a full channel")
            finally:
                sp.stop()
                t.join(30)
            assert not t.is_alive()
            assert ch.size == 0
    finally:
        consumer.close()
    for part in (0, 1):
        offs = [int(e.headers["offset"]) for e in got if e.headers["partition"] == str(part)]
        assert offs == list(range(n // 2))


def test_stop_commits_the_batch_in_hand(kafka, tmp_path):
    topic = kafka.create_topic(partitions=1)
    kafka.produce(topic, [b"a", b"b", b"c"], partitions=1)
    consumer = kafka.consumer(group_id=kafka.name("g"))
    try:
        with _channel(tmp_path) as ch:
            sp = KafkaSpooler(consumer, ch, topics=[topic], batch_size=100, batch_duration=3600)
            t = threading.Thread(target=sp.run)
            t.start()
            try:
                wait_for(lambda: len(sp._state.pending) == 3, 30, what="3 records in hand")
                assert ch.size == 0
            finally:
                sp.stop()
                t.join(30)
            assert not t.is_alive()
            assert ch.size == 3
            assert consumer.committed(TopicPartition(topic, 0)) == 3
    finally:
        consumer.close()


def test_config_errors(kafka, tmp_path):
    consumer = kafka.consumer(group_id=kafka.name("g"))
    try:
        with pytest.raises(ConfigError, match="marks"):
            KafkaSpooler(consumer, MemoryChannel(), topics=["x"])
        with _channel(tmp_path, transaction_capacity=10) as ch:
            with pytest.raises(ConfigError, match="transaction_capacity"):
                KafkaSpooler(consumer, ch, topics=["x"], batch_size=11)
            with pytest.raises(ConfigError, match="batch_duration"):
                KafkaSpooler(consumer, ch, topics=["x"], batch_size=5, batch_duration=0)
            with pytest.raises(ConfigError, match="neither"):
                KafkaSpooler(consumer, ch, batch_size=5)
    finally:
        consumer.close()

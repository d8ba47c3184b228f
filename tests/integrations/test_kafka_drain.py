"""drain(): out of the channel at least once, to a callable or a KafkaProducer."""
from __future__ import annotations

import pytest
from fchannel.integrations.kafka import ProducerTarget, drain, drain_all
from kafka import KafkaProducer

from fchannel import ConfigError, Event, FileChannel


@pytest.fixture
def channel(tmp_path):
    ch = FileChannel(tmp_path / "ckpt", tmp_path / "data", minimum_required_space=0,
                     checkpoint_interval=60.0)
    yield ch
    ch.close()


def _fill(ch, events):
    with ch.transaction() as tx:
        tx.put_batch(events)


def test_drain_to_a_topic_nothing_lost(kafka, channel):
    out = kafka.create_topic("out", partitions=2)
    n = 250
    _fill(channel, [Event(f"e{i}".encode(), {"key": f"k{i % 7}"}) for i in range(n)])
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    try:
        assert drain_all(channel, producer, batch_size=40, topic=out) == n
    finally:
        producer.close()
    assert channel.size == 0
    got = kafka.read_all(out, n)
    assert sorted(r.value for r in got) == sorted(f"e{i}".encode() for i in range(n))
    assert len(got) == n
    for r in got:   # the key header became the message key (and so picked the partition)
        assert r.key == f"k{int(r.value[1:]) % 7}".encode()


def test_topic_and_partition_from_headers(kafka, channel):
    a = kafka.create_topic("a", partitions=1)
    b = kafka.create_topic("b", partitions=3)
    _fill(channel, [Event(b"to-a", {"topic": a}), Event(b"to-b", {"topic": b, "part": "2"})])
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    try:
        target = ProducerTarget(producer, None, partition_header="part")
        assert drain(channel, target, batch_size=10) == 2
    finally:
        producer.close()
    assert [r.value for r in kafka.read_all(a, 1)] == [b"to-a"]
    [rb] = kafka.read_all(b, 1)
    assert (rb.value, rb.partition) == (b"to-b", 2)


def test_failed_delivery_rolls_back_in_order(channel):
    _fill(channel, [Event(str(i).encode()) for i in range(5)])
    delivered: list[bytes] = []

    def flaky(events):
        if len(delivered) == 0 and not getattr(flaky, "failed", False):
            flaky.failed = True
            raise OSError("destination down")
        delivered.extend(e.body for e in events)

    with pytest.raises(OSError, match="destination down"):
        drain(channel, flaky, batch_size=3)
    assert channel.size == 5                       # the take was rolled back
    assert drain(channel, flaky, batch_size=3) == 3
    assert drain_all(channel, flaky, batch_size=3) == 2
    assert delivered == [str(i).encode() for i in range(5)]   # in order, once each
    assert drain(channel, flaky) == 0


def test_send_error_rolls_back(kafka, channel):
    """A record the broker refuses (a partition that does not exist) fails
    the batch: nothing is taken."""
    out = kafka.create_topic("out", partitions=1)
    _fill(channel, [Event(b"ok"), Event(b"bad", {"part": "7"})])
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all",
                             max_block_ms=2000)
    try:
        with pytest.raises(Exception):   # noqa: B017 - kafka-python's error type for it varies
            drain(channel, producer, topic=out, partition_header="part", batch_size=10)
    finally:
        producer.close()
    assert channel.size == 2


def test_producer_must_wait_for_all_replicas(kafka, channel):
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks=1)
    try:
        with pytest.raises(ConfigError, match="acks"):
            drain(channel, producer, topic="x")
    finally:
        producer.close()

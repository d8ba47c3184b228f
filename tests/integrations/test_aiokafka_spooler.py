"""AioKafkaSpooler and drain() for aiokafka against a real broker: exactly
once into the channel, marks and Kafka offsets after the channel commit,
restart from the marks, back-pressure from a full channel (pause/resume),
and at-least-once out of the channel with every send awaited."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fchannel.integrations.aiokafka import AioKafkaSpooler, ProducerTarget, drain, drain_all

from fchannel import ConfigError, Event, MemoryChannel
from tests.integrations.test_confluent_spooler import (
    check_restarted,
    committed,
    fill,
    full_channel_topic,
    open_channel,
    take_all,
)


def consumer(kafka, group, **extra):
    kw = dict(bootstrap_servers=kafka.bootstrap, group_id=group, enable_auto_commit=False,
              auto_offset_reset="earliest", session_timeout_ms=2000,
              heartbeat_interval_ms=500)
    kw.update(extra)
    return AIOKafkaConsumer(**kw)


async def spool_until(sp, ch, n, timeout=60):
    deadline = time.monotonic() + timeout
    while ch.size < n:
        assert time.monotonic() < deadline, f"{ch.size} of {n} events after {timeout}s"
        await sp.step()


def test_spools_every_record_once_with_marks_and_offsets(kafka, tmp_path):
    topic = kafka.create_topic(partitions=3)
    n = 300
    kafka.produce(topic, [(i % 3, f"k{i}".encode(), f"v{i}".encode()) for i in range(n)])
    group = kafka.name("g")
    ch = open_channel(tmp_path)

    async def main():
        c = consumer(kafka, group)
        sp = AioKafkaSpooler(c, ch, topics=[topic], batch_size=64, batch_duration=0.05)
        await c.start()
        try:
            await spool_until(sp, ch, n)
            assert await sp.flush() == 0
        finally:
            await c.stop()
    try:
        asyncio.run(main())
        assert ch.marks == {f"kafka:{topic}:{p}": n // 3 for p in range(3)}
        events = take_all(ch)
    finally:
        ch.close()
    assert sorted(e.body for e in events) == sorted(f"v{i}".encode() for i in range(n))
    for p in range(3):
        evs = [e for e in events if e.headers["partition"] == str(p)]
        assert [int(e.headers["offset"]) for e in evs] == list(range(n // 3))
        assert all(e.headers["key"] == "k" + e.body[1:].decode() for e in evs)
    assert committed(kafka, group, topic, 3) == {p: n // 3 for p in range(3)}


def test_restart_starts_at_the_marks_not_the_group_offsets(kafka, tmp_path):
    topic = kafka.create_topic(partitions=2)
    kafka.produce(topic, [f"a{i}".encode() for i in range(100)], partitions=2)
    group = kafka.name("g")
    ch = open_channel(tmp_path)

    async def spool(n, commit_kafka):
        c = consumer(kafka, group)
        sp = AioKafkaSpooler(c, ch, topics=[topic], batch_size=50, batch_duration=0.05,
                             commit_kafka=commit_kafka)
        await c.start()
        try:
            await spool_until(sp, ch, n)
            await sp.flush()
        finally:
            await c.stop()
    try:
        asyncio.run(spool(100, False))
        assert committed(kafka, group, topic, 2) == {0: -1001, 1: -1001}
        kafka.produce(topic, [f"b{i}".encode() for i in range(40)], partitions=2)
        asyncio.run(spool(140, True))
        events = take_all(ch)
    finally:
        ch.close()
    check_restarted(kafka, group, topic, events)


def test_full_channel_pauses_and_keeps_everything(kafka, tmp_path):
    n = 120
    topic, ch = full_channel_topic(kafka, tmp_path, n)
    got: list = []
    paused_seen = []

    async def main():
        c = consumer(kafka, kafka.name("g"))
        sp = AioKafkaSpooler(c, ch, topics=[topic], batch_size=20, batch_duration=0.05,
                             max_backoff=0.05)
        await c.start()
        try:
            deadline = time.monotonic() + 60
            while len(got) + ch.size < n:
                assert time.monotonic() < deadline
                await sp.step()
                if sp.stats["full_waits"] >= 3:
                    paused_seen.append(bool(c.paused()))
                    with ch.transaction() as tx:
                        got.extend(tx.take_batch(10))
        finally:
            await c.stop()
    try:
        asyncio.run(main())
        got.extend(take_all(ch))
    finally:
        ch.close()
    assert any(paused_seen)                  # fetching was paused while full
    assert [e.body for e in got] == [f"m{i}".encode() for i in range(n)]


def test_config_errors(kafka, tmp_path):
    ch = open_channel(tmp_path)

    async def main():
        c = consumer(kafka, kafka.name("g"))
        p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks=1)
        try:
            with pytest.raises(ConfigError, match="marks"):
                AioKafkaSpooler(c, MemoryChannel(capacity=100), topics=["x"])
            with pytest.raises(ConfigError, match="batch_duration must be a positive number"):
                AioKafkaSpooler(c, ch, topics=["x"], batch_duration=0)
            with pytest.raises(ConfigError, match="acks"):
                ProducerTarget(p, "x")
        finally:
            await c.stop()
            await p.stop()
    try:
        asyncio.run(main())
    finally:
        ch.close()


def test_drain_delivers_everything_and_failures_roll_back(kafka, tmp_path):
    out = kafka.create_topic("out", partitions=2)
    n = 250
    ch = open_channel(tmp_path)
    fill(ch, [Event(f"e{i}".encode(), {"key": f"k{i % 7}"}) for i in range(n)])

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all",
                             request_timeout_ms=3000)
        await p.start()
        try:
            assert await drain_all(ch, p, batch_size=40, topic=out) == n
            fill(ch, [Event(b"ok"), Event(b"bad", {"part": "7"})])
            with pytest.raises(Exception):   # noqa: B017 - aiokafka's error for it varies
                await drain(ch, p, topic=out, partition_header="part", batch_size=10)
            assert ch.size == 2               # rolled back
        finally:
            await p.stop()
    try:
        asyncio.run(main())
        assert [e.body for e in take_all(ch)] == [b"ok", b"bad"]
    finally:
        ch.close()
    # "ok" may be there too: the failed batch was delivered in part (at least once)
    got = [r for r in kafka.read_all(out, n + 1, timeout=5) if r.value != b"ok"]
    assert sorted(r.value for r in got) == sorted(f"e{i}".encode() for i in range(n))
    assert all(r.key == f"k{int(r.value[1:]) % 7}".encode() for r in got)

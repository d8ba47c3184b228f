"""The ``kafka`` source and sink in a running agent: Kafka -> FileChannel -> Kafka."""
from __future__ import annotations

import pytest
from fchannel.integrations.kafka_agent import register

from fchannel.agent import Agent
from fchannel.agent.properties import parse_properties
from tests.conftest import wait_for

register()


def _conf(kafka, tmp_path, src_topic, out_topic, group, extra=""):
    return f"""
a1.sources = k
a1.channels = c1
a1.sinks = out
a1.sources.k.type = kafka
a1.sources.k.channels = c1
a1.sources.k.kafka.bootstrap.servers = {kafka.bootstrap}
a1.sources.k.kafka.topics = {src_topic}
a1.sources.k.kafka.consumer.group.id = {group}
a1.sources.k.kafka.consumer.auto.offset.reset = earliest
a1.sources.k.kafka.consumer.session.timeout.ms = 2000
a1.sources.k.kafka.consumer.heartbeat.interval.ms = 500
a1.sources.k.batchSize = 50
a1.sources.k.batchDurationMillis = 50
a1.sources.k.setTopicHeader = false
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {tmp_path}/ckpt
a1.channels.c1.dataDirs = {tmp_path}/data
a1.channels.c1.minimumRequiredSpace = 0
a1.sinks.out.type = kafka
a1.sinks.out.channel = c1
a1.sinks.out.kafka.bootstrap.servers = {kafka.bootstrap}
a1.sinks.out.kafka.topic = {out_topic}
a1.sinks.out.flumeBatchSize = 40
a1.sinks.out.kafka.producer.linger.ms = 2
{extra}"""


def test_kafka_source_to_kafka_sink(kafka, tmp_path):
    src = kafka.create_topic("in", partitions=3)
    out = kafka.create_topic("out", partitions=2)
    n = 300
    kafka.produce(src, [(i % 3, f"k{i}".encode(), f"m{i}".encode()) for i in range(n)])
    agent = Agent.from_properties(parse_properties(
        _conf(kafka, tmp_path, src, out, kafka.name("g"))), "a1")
    agent.start()
    try:
        got: list = []
        consumer = kafka.consumer(group_id=kafka.name("check"))
        consumer.subscribe([out])
        try:
            def all_out():
                for recs in consumer.poll(timeout_ms=200).values():
                    got.extend(recs)
                return len(got) >= n
            wait_for(all_out, 60, interval=0, what=f"{n} messages on the output topic")
        finally:
            consumer.close()
        ch = agent.channels["c1"]
        wait_for(lambda: ch.size == 0, 10, what="the channel to drain")
        assert sorted(ch.marks.values()) == [100, 100, 100]
    finally:
        agent.stop()
    assert sorted(r.value for r in got) == sorted(f"m{i}".encode() for i in range(n))
    assert all(r.key == b"k" + r.value[1:] for r in got)   # the key header became the key


def test_kafka_source_needs_one_file_channel(kafka, tmp_path):
    text = _conf(kafka, tmp_path, "x", "y", "g").replace(
        "a1.channels.c1.type = file", "a1.channels.c1.type = memory")
    text = "\n".join(line for line in text.splitlines()
                     if "checkpointDir" not in line and "dataDirs" not in line
                     and "minimumRequiredSpace" not in line)
    agent = Agent.from_properties(parse_properties(text), "a1")
    try:
        with pytest.raises(Exception, match="marks"):
            agent.start()
    finally:
        agent.stop()


def test_kafka_source_config_problems(kafka, tmp_path):
    text = _conf(kafka, tmp_path, "x", "y", "g").replace(
        "a1.sources.k.kafka.topics = x", "") + \
        "a1.sources.k.kafka.consumer.enable.auto.commit = true\n"
    with pytest.raises(Exception) as info:
        Agent.from_properties(parse_properties(text), "a1")
    msg = str(info.value)
    assert "kafka.topics" in msg and "enable.auto.commit" in msg

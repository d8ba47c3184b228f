"""The agent's kafka source and sink with ``kafka.client = confluent`` (and
kafka-python, the default), Flume's comma list in ``kafka.topics`` and
Flume's ``%{header}`` escapes in the sink's ``kafka.topic``."""
from __future__ import annotations

import pytest
from fchannel.integrations.kafka_agent import register
from kafka import KafkaProducer

from fchannel.agent import Agent
from fchannel.agent.properties import parse_properties
from tests.conftest import wait_for
from tests.integrations.test_kafka_agent import _conf

register()


@pytest.mark.parametrize("client", ["confluent", "kafka"])
def test_two_topics_in_and_topic_from_a_header_out(client, kafka, tmp_path):
    """Records of two topics (``kafka.topics = a,b``) with a ``kind`` header
    go through the agent to ``out-%{kind}``: every record lands on the topic
    its header names, once (the channel is empty and its marks at the end)."""
    in1 = kafka.create_topic("in", partitions=2)
    in2 = kafka.create_topic("in", partitions=1)
    base = kafka.name("out")
    outs = {k: f"{base}-{k}" for k in ("x", "y")}
    for t in outs.values():
        kafka_admin_topic(kafka, t)
    n = 120
    p = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    try:
        for i in range(n):
            kind = "x" if i % 3 else "y"
            p.send(in1 if i % 2 else in2, value=f"m{i}".encode(), key=f"k{i}".encode(),
                   headers=[("kind", kind.encode())])
        p.flush(30)
    finally:
        p.close()
    extra = (f"a1.sources.k.kafka.client = {client}\n"
             f"a1.sinks.out.kafka.client = {client}\n")
    text = _conf(kafka, tmp_path, f"{in1},{in2}", f"{base}-%{{kind}}", kafka.name("g"), extra)
    if client == "confluent":   # librdkafka's property names are Kafka's, as in Flume
        text = text.replace("kafka.producer.linger.ms = 2", "kafka.producer.linger.ms = 2\n"
                            "a1.sinks.out.kafka.producer.message.timeout.ms = 10000")
    agent = Agent.from_properties(parse_properties(text), "a1")
    agent.start()
    try:
        ch = agent.channels["c1"]
        wait_for(lambda: sum(ch.marks.values()) == n and ch.size == 0, 60, interval=0.05,
                 what="the agent to spool and send everything")
    finally:
        agent.stop()
    want_y = sorted(f"m{i}".encode() for i in range(n) if i % 3 == 0)
    want_x = sorted(f"m{i}".encode() for i in range(n) if i % 3)
    got_y = kafka.read_all(outs["y"], len(want_y))
    got_x = kafka.read_all(outs["x"], len(want_x))
    assert sorted(r.value for r in got_y) == want_y
    assert sorted(r.value for r in got_x) == want_x
    assert all(r.key == b"k" + r.value[1:] for r in got_x + got_y)


def kafka_admin_topic(kafka, name, partitions=2):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def test_client_and_topic_problems_are_named(kafka, tmp_path):
    text = _conf(kafka, tmp_path, "x", "out-%{kind", "g",
                 "a1.sources.k.kafka.client = librdkafka\n")
    with pytest.raises(Exception) as info:
        Agent.from_properties(parse_properties(text), "a1")
    msg = str(info.value)
    assert "kafka.client" in msg and "must be one of kafka, confluent" in msg
    assert "kafka.topic" in msg and "unterminated" in msg


@pytest.mark.parametrize("client", ["confluent", "kafka"])
def test_source_interceptors_and_counters(client, kafka, tmp_path):
    """The kafka source runs its interceptors on each batch before the
    channel commit (a static header is set; a regex filter drops records, and
    their offsets still count as spooled) and counts like Flume's source:
    every record received and accepted, in at least one batch."""
    topic = kafka.create_topic("in", partitions=1)
    n = 30
    values = [(b"drop-%d" if i % 3 == 0 else b"keep-%d") % i for i in range(n)]
    kafka.produce(topic, values, partitions=1)
    text = f"""
a1.sources = k
a1.channels = c1
a1.sources.k.type = kafka
a1.sources.k.channels = c1
a1.sources.k.kafka.client = {client}
a1.sources.k.kafka.bootstrap.servers = {kafka.bootstrap}
a1.sources.k.kafka.topics = {topic}
a1.sources.k.kafka.consumer.group.id = {kafka.name("g")}
a1.sources.k.kafka.consumer.auto.offset.reset = earliest
a1.sources.k.kafka.consumer.session.timeout.ms = 2000
a1.sources.k.kafka.consumer.heartbeat.interval.ms = 500
a1.sources.k.batchSize = 8
a1.sources.k.batchDurationMillis = 50
a1.sources.k.interceptors = st f
a1.sources.k.interceptors.st.type = static
a1.sources.k.interceptors.st.key = origin
a1.sources.k.interceptors.st.value = kafka
a1.sources.k.interceptors.f.type = regex_filter
a1.sources.k.interceptors.f.regex = ^drop
a1.sources.k.interceptors.f.excludeEvents = true
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {tmp_path}/ckpt
a1.channels.c1.dataDirs = {tmp_path}/data
a1.channels.c1.minimumRequiredSpace = 0
"""
    agent = Agent.from_properties(parse_properties(text), "a1")
    agent.start()
    try:
        ch = agent.channels["c1"]
        wait_for(lambda: sum(ch.marks.values()) == n, 60, interval=0.05,
                 what="the source to spool every record")
        counter = agent.sources["k"].counter
        assert counter.get("EventReceivedCount") == n
        assert counter.get("EventAcceptedCount") == n
        assert counter.get("AppendBatchAcceptedCount") >= n // 8
        with ch.transaction() as tx:
            got = tx.take_batch(n)
    finally:
        agent.stop()
    assert [e.body for e in got] == [v for v in values if v.startswith(b"keep")]
    assert all(e.headers["origin"] == "kafka" for e in got)

"""The Kafka-to-S3 bridge end to end: ``examples/kafka-to-s3.properties`` (kafka
source -> file channel -> exactly-once hdfs sink to s3://) as a real agent
subprocess against the Tansu broker and a moto S3 server on loopback, killed
with SIGKILL several times mid-stream: the committed objects hold every
message exactly once."""
from __future__ import annotations

import io
import random
import re

import fastavro  # the formats extra; missing, the test fails (never skips)
import pytest

from tests.agent.helpers import EXAMPLES, agents, write_conf  # noqa: F401
from tests.conftest import wait_for
from tests.sinks.conftest import s3_endpoint  # noqa: F401 - the fixture

NAME = re.compile(r"(?P<topic>[\w.-]+)\+(?P<p>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})\.avro$")


def bridge_conf(kafka, s3, topic: str, group: str, bucket: str) -> str:
    text = (EXAMPLES / "kafka-to-s3.properties").read_text()
    subs = {
        "localhost:9092": kafka.bootstrap,
        "kafka.topics = events": f"kafka.topics = {topic}",
        "group.id = kafka-to-s3": f"group.id = {group}",
        "s3://my-bucket/": f"s3://{bucket}/",
        "hdfs.rollCount = 100000": "hdfs.rollCount = 37",
        "hdfs.rollInterval = 300": "hdfs.rollInterval = 0.5",
        "hdfs.batchSize = 1000": "hdfs.batchSize = 25",
        "kafka.batchSize = 1000": "kafka.batchSize = 40",
        "batchDurationMillis = 1000": "batchDurationMillis = 50",
    }
    for old, new in subs.items():
        assert old in text, old
        text = text.replace(old, new)
    extra = [
        "bridge.sources.kafka.kafka.consumer.session.timeout.ms = 2000",
        "bridge.sources.kafka.kafka.consumer.heartbeat.interval.ms = 500",
        "bridge.channels.spool.minimumRequiredSpace = 0",
    ] + [f"bridge.sinks.s3.{k} = {v}" for k, v in s3.props().items()
         if k != "hdfs.fs.skip_instance_cache"]
    return text + "\n".join(extra) + "\n"


def stored(s3, bucket: str) -> list[tuple[int, int, int, list[dict], bytes]]:
    """(partition, first, last, records, name) of every committed object."""
    out = []
    for key in s3.keys(bucket):
        m = NAME.search(key)
        assert m, key   # nothing but committed objects, ever
        recs = list(fastavro.reader(io.BytesIO(s3.get(bucket, key))))
        out.append((int(m["p"]), int(m["first"]), int(m["last"]), recs, key))
    return out


def offsets(objs) -> dict[int, list[int]]:
    got: dict[int, list[int]] = {}
    for p, first, last, recs, key in objs:
        offs = [int(r["headers"]["offset"]) for r in recs]
        assert offs == sorted(offs) and offs[0] == first and offs[-1] == last, key
        assert all(int(r["headers"]["partition"]) == p for r in recs), key
        got.setdefault(p, []).extend(offs)
    return got


@pytest.mark.crash
def test_kafka_to_s3_exactly_once_through_kills(kafka, s3_endpoint, tmp_path, agents):  # noqa: F811
    topic = kafka.create_topic("bridge", partitions=3)
    bucket = s3_endpoint.bucket()
    conf = write_conf(tmp_path / "bridge.properties",
                      bridge_conf(kafka, s3_endpoint, topic, kafka.name("g"), bucket))
    rng = random.Random(8)
    n = 0

    def produce(count: int) -> None:
        nonlocal n
        kafka.produce(topic, [(i % 3, None, b"m%d" % i) for i in range(n, n + count)])
        n += count

    produce(600)
    kills = torn = 0
    for _ in range(3):
        target = len(s3_endpoint.keys(bucket)) + rng.randint(1, 3)
        a = agents(conf, "bridge", tmp_path)
        wait_for(lambda t=target: len(s3_endpoint.keys(bucket)) >= t, 60,
                 what="the bridge to commit objects")
        a.kill9()
        kills += 1
        upload = tmp_path / "kafka-to-s3" / "upload"   # objects still being written
        torn += bool(upload.is_dir() and list(upload.iterdir()))
        for vs in offsets(stored(s3_endpoint, bucket)).values():
            assert len(vs) == len(set(vs))
        produce(200)    # the stream goes on while the agent is down
    a = agents(conf, "bridge", tmp_path)
    wait_for(lambda: sum(len(v) for v in offsets(stored(s3_endpoint, bucket)).values()) >= n,
             90, interval=0.2, what=f"all {n} messages in committed objects")
    assert a.terminate() == 0
    objs = stored(s3_endpoint, bucket)
    got = offsets(objs)
    # every message once: offsets 0..k-1 of each partition, no repeats, no gaps
    assert {p: sorted(v) for p, v in got.items()} == {
        p: list(range(len(got[p]))) for p in got}
    assert all(len(v) == len(set(v)) for v in got.values())
    bodies = sorted(r["body"] for _, _, _, recs, _ in objs for r in recs)
    assert bodies == sorted(b"m%d" % i for i in range(n))
    assert kills == 3 and torn >= 1

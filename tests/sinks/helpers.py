"""Helpers for the storage sink tests."""
from __future__ import annotations

from pathlib import Path

from fchannel import Event, MemoryChannel
from fchannel.agent.properties import Context
from fchannel.sinks._serializers import read_back
from fchannel.sinks.hdfs import HDFSEventSink


def make_sink(channel, **props: str) -> HDFSEventSink:
    problems: list[str] = []
    s = HDFSEventSink("k1")
    s.configure(Context(props, "a1.sinks.k1.", problems))
    assert not problems, problems
    s.channel = channel
    s.start()
    return s


def problems_of(**props: str) -> list[str]:
    problems: list[str] = []
    HDFSEventSink("k1").configure(Context(props, "a1.sinks.k1.", problems))
    return problems


def channel(capacity: int = 10_000, tx: int = 100) -> MemoryChannel:
    return MemoryChannel(capacity=capacity, transaction_capacity=tx, keep_alive=0)


def put(ch, events) -> None:
    events = list(events)
    step = ch.transaction_capacity
    for i in range(0, len(events), step):
        with ch.transaction() as tx:
            tx.put_batch(events[i:i + step])


def drain(sink, limit: int = 10_000) -> None:
    """Call process() until the channel is empty (bounded)."""
    from fchannel.agent import Status
    for _ in range(limit):
        if sink.process() is Status.BACKOFF and sink.channel.size == 0:
            return
    raise AssertionError("the sink did not drain the channel")


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def bodies(paths, serializer: str = "text", codec: str = "none") -> list[bytes]:
    out: list[bytes] = []
    for p in paths:
        out.extend(b for _, b in read_back(Path(p).read_bytes(), serializer, codec))
    return out


def kafka_events(topic: str, partition: int, offsets, ts: int = 1_700_000_000_000):
    return [Event(f"{topic}-{partition}-{o}".encode(),
                  {"topic": topic, "partition": str(partition), "offset": str(o),
                   "timestamp": str(ts)}) for o in offsets]


OFFSET_AGENT_CONF = """
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = tests.sinks.offset_source:OffsetSource
a1.sources.r1.channels = c1
a1.sources.r1.partitions = {partitions}
a1.sources.r1.count = {count}
a1.sources.r1.batchSize = 40
a1.sources.r1.repeatEvery = 7
a1.sources.r1.delayMs = 3
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {dir}/checkpoint
a1.channels.c1.dataDirs = {dir}/data
a1.channels.c1.checkpointInterval = 1000
a1.sinks.k1.type = hdfs
a1.sinks.k1.channel = c1
a1.sinks.k1.hdfs.path = {hdfs_path}
a1.sinks.k1.hdfs.exactlyOnce = true
a1.sinks.k1.hdfs.rollCount = 97
a1.sinks.k1.hdfs.rollSize = 0
a1.sinks.k1.hdfs.rollInterval = 0.5
a1.sinks.k1.hdfs.batchSize = 50
"""


def offset_agent_conf(hdfs_path: str, more: str = "") -> str:
    """The crash tests' agent (tests.sinks.offset_source -> file channel ->
    exactly-once hdfs sink writing to *hdfs_path*) plus the lines *more*, a
    template for ``write_conf`` (``{dir}``, ``{partitions}``, ``{count}``)."""
    return OFFSET_AGENT_CONF.replace("{hdfs_path}", hdfs_path) + more

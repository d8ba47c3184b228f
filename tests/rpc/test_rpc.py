"""The grpc source and sink in one process: acknowledgement after commit,
error statuses, message size, deadlines, compression, TLS."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc  # the agent extra; missing, the tests fail (never skip)
import pytest

from fchannel import Event
from fchannel.agent import EventDeliveryError, Interceptor, Status
from fchannel.agent.agent import Agent
from fchannel.agent.config import build_agent
from fchannel.agent.properties import parse_properties
from fchannel.errors import ConfigError
from fchannel.rpc import _common
from fchannel.rpc import fchannel_rpc_pb2 as pb
from fchannel.rpc import fchannel_rpc_pb2_grpc as pb_grpc
from tests.agent.helpers import free_port


def collector_props(port: int, extra: str = "", capacity: int = 10_000,
                    keep_alive: float = 0) -> dict[str, str]:
    return parse_properties(f"""
col.sources = r1
col.channels = c1
col.sources.r1.type = grpc
col.sources.r1.bind = 127.0.0.1
col.sources.r1.port = {port}
col.sources.r1.channels = c1
col.channels.c1.type = memory
col.channels.c1.capacity = {capacity}
col.channels.c1.transactionCapacity = {min(capacity, 1000)}
col.channels.c1.keep-alive = {keep_alive}
""" + extra)


def leaf_parts(port: int, extra: str = ""):
    return build_agent(parse_properties(f"""
leaf.sinks = k1
leaf.channels = c1
leaf.channels.c1.type = memory
leaf.channels.c1.capacity = 10000
leaf.channels.c1.transactionCapacity = 1000
leaf.sinks.k1.type = grpc
leaf.sinks.k1.channel = c1
leaf.sinks.k1.hostname = 127.0.0.1
leaf.sinks.k1.port = {port}
leaf.sinks.k1.connect-timeout = 2000
leaf.sinks.k1.request-timeout = 5000
""" + extra), "leaf")


@pytest.fixture
def collector():
    started: list[Agent] = []

    def start(extra: str = "", **kw) -> tuple[Agent, int]:
        port = free_port()
        a = Agent.from_properties(collector_props(port, extra, **kw), "col")
        a.start()
        started.append(a)
        return a, port

    yield start
    for a in started:
        a.stop()


@pytest.fixture
def leaf():
    built = []

    def make(port: int, extra: str = ""):
        parts = leaf_parts(port, extra)
        built.append(parts)
        return parts, parts.sinks["k1"], parts.channels["c1"]

    yield make
    for parts in built:
        for s in parts.sinks.values():
            s.stop()
        for ch in parts.channels.values():
            ch.close()


def fill(ch, bodies: list[bytes], headers: dict[str, str] | None = None) -> None:
    with ch.transaction() as tx:
        tx.put_batch([Event(b, headers or {}) for b in bodies])


def drain(ch) -> list[Event]:
    out: list[Event] = []
    while True:
        with ch.transaction() as tx:
            got = tx.take_batch(min(1000, ch.transaction_capacity))
        if not got:
            return out
        out.extend(got)


def test_sink_delivers_a_batch_and_commits_after_the_ack(collector, leaf):
    col, port = collector()
    parts, sink, ch = leaf(port, "leaf.sinks.k1.batch-size = 50\n")
    bodies = [f"e{i}".encode() for i in range(120)]
    fill(ch, bodies, {"host": "leaf"})
    assert sink.process() is Status.READY
    assert sink.process() is Status.READY
    assert sink.process() is Status.READY       # 50 + 50 + 20
    assert sink.process() is Status.BACKOFF     # empty
    assert ch.size == 0
    got = drain(col.channels["c1"])
    assert [e.body for e in got] == bodies
    assert all(e.headers == {"host": "leaf"} for e in got)
    assert col.sources["r1"].counter.get("EventAcceptedCount") == 120
    assert sink.counter.get("EventDrainSuccessCount") == 120


def test_sink_without_a_collector_fails_within_connect_timeout_and_keeps_events(leaf):
    port = free_port()   # nobody listens
    parts, sink, ch = leaf(port, "leaf.sinks.k1.connect-timeout = 300\n")
    fill(ch, [b"a", b"b"])
    with pytest.raises(EventDeliveryError, match="connect-timeout=300ms"):
        sink.process()
    assert ch.size == 2
    assert sink.counter.get("ConnectionFailedCount") == 1


def test_full_collector_channel_is_resource_exhausted_and_the_take_rolls_back(collector, leaf):
    col, port = collector(capacity=10)
    parts, sink, ch = leaf(port, "leaf.sinks.k1.batch-size = 8\n")
    fill(ch, [str(i).encode() for i in range(16)])
    assert sink.process() is Status.READY        # 8 fit in the collector's 10
    with pytest.raises(EventDeliveryError, match="RESOURCE_EXHAUSTED"):
        sink.process()                           # 8 more do not
    assert ch.size == 8                          # rolled back, in order at the head
    assert col.sources["r1"].counter.get("ChannelWriteFail") == 1
    assert [e.body for e in drain(col.channels["c1"])] == [str(i).encode() for i in range(8)]
    assert sink.process() is Status.READY        # room again: the same 8 go
    assert [e.body for e in drain(col.channels["c1"])] == [str(i).encode()
                                                          for i in range(8, 16)]


def test_request_timeout_is_the_deadline(collector, leaf):
    # the collector's full channel waits keep-alive=3s for room: longer than the deadline
    col, port = collector(capacity=5, keep_alive=3)
    fill(col.channels["c1"], [b"x"] * 5)
    parts, sink, ch = leaf(port, "leaf.sinks.k1.request-timeout = 300\n")
    fill(ch, [b"y"])
    with pytest.raises(EventDeliveryError, match="DEADLINE_EXCEEDED"):
        sink.process()
    assert ch.size == 1


def direct_stub(port: int):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                    options=[("grpc.enable_http_proxy", 0)])
    return channel, pb_grpc.EventServiceStub(channel)


def test_source_refuses_a_batch_over_max_batch_size(collector):
    col, port = collector("col.sources.r1.maxBatchSize = 3\n")
    channel, stub = direct_stub(port)
    with channel:
        req = _common.to_request([Event(b"x")] * 4)
        with pytest.raises(grpc.RpcError) as info:
            stub.Append(req, timeout=5)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "maxBatchSize=3" in info.value.details()
        assert stub.Append(_common.to_request([Event(b"x")] * 3), timeout=5).committed == 3
        assert stub.Ping(pb.PingRequest(), timeout=5).source == "r1"
    assert col.channels["c1"].size == 3


def test_source_refuses_a_message_over_max_message_size(collector):
    col, port = collector("col.sources.r1.maxMessageSize = 4096\n")
    channel, stub = direct_stub(port)
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            stub.Append(_common.to_request([Event(b"x" * 5000)]), timeout=5)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert col.channels["c1"].size == 0


def test_sink_cuts_a_batch_to_fit_max_message_size(collector, leaf):
    col, port = collector("col.sources.r1.maxMessageSize = 4096\n")
    parts, sink, ch = leaf(port, "leaf.sinks.k1.maxMessageSize = 4096\n")
    bodies = [bytes([65 + i % 26]) * 1000 for i in range(10)]   # ~10 KB: 3+ requests
    fill(ch, bodies)
    assert sink.process() is Status.READY
    assert ch.size == 0
    assert [e.body for e in drain(col.channels["c1"])] == bodies
    assert col.sources["r1"].counter.get("AppendBatchAcceptedCount") >= 3
    # one event alone over the limit can never go: it stays, with an error naming it
    fill(ch, [b"z" * 5000])
    with pytest.raises(EventDeliveryError, match="maxMessageSize=4096"):
        sink.process()
    assert ch.size == 1


@pytest.mark.parametrize("kind", ["gzip", "deflate"])
def test_compression(collector, leaf, kind):
    col, port = collector(f"col.sources.r1.compression-type = {kind}\n")
    parts, sink, ch = leaf(port, f"leaf.sinks.k1.compression-type = {kind}\n")
    bodies = [b"compressible " * 20 + str(i).encode() for i in range(100)]
    fill(ch, bodies)
    assert sink.process() is Status.READY
    assert [e.body for e in drain(col.channels["c1"])] == bodies


def test_bad_properties_are_reported_together():
    with pytest.raises(ConfigError) as info:
        build_agent(parse_properties("""
a.sources = r1
a.sinks = k1
a.channels = c1
a.channels.c1.type = memory
a.sources.r1.type = grpc
a.sources.r1.channels = c1
a.sources.r1.bind = 127.0.0.1
a.sources.r1.port = 70000
a.sources.r1.ssl = true
a.sinks.k1.type = grpc
a.sinks.k1.channel = c1
a.sinks.k1.port = 4141
a.sinks.k1.compression-type = lz4
a.sinks.k1.ssl.ca = /nonexistent.pem
"""), "a")
    text = str(info.value)
    for needle in ("a.sources.r1.port must be <= 65535, got '70000'", "a.sources.r1.ssl.cert is missing",
                   "a.sources.r1.ssl.key is missing", "a.sinks.k1.hostname is missing",
                   "a.sinks.k1.compression-type = 'lz4'",
                   "a.sinks.k1.ssl.ca = '/nonexistent.pem': set but ssl is not true"):
        assert needle in text, text


# ---- TLS ------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, made with the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=fchannel test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "extendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key",
                 "-out", f"{who}.csr", "-subj", f"/CN=fchannel test {who}", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{who}.pem", "-days", "2",
                 "-extfile", f"{who}.ext", cwd=d)
    # a second CA whose certificates the server does not trust
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key",
             "-out", "rogue.pem", "-days", "2", "-subj", "/CN=rogue", cwd=d)
    return d


def test_tls_server_certificate(collector, leaf, certs):
    col, port = collector(f"""
col.sources.r1.ssl = true
col.sources.r1.ssl.cert = {certs}/server.pem
col.sources.r1.ssl.key = {certs}/server.key
""")
    parts, sink, ch = leaf(port, f"""
leaf.sinks.k1.ssl = true
leaf.sinks.k1.ssl.ca = {certs}/ca.pem
""")
    fill(ch, [b"secret"])
    assert sink.process() is Status.READY
    assert [e.body for e in drain(col.channels["c1"])] == [b"secret"]


def test_tls_sink_refuses_a_server_it_does_not_trust(collector, leaf, certs):
    col, port = collector(f"""
col.sources.r1.ssl = true
col.sources.r1.ssl.cert = {certs}/server.pem
col.sources.r1.ssl.key = {certs}/server.key
""")
    parts, sink, ch = leaf(port, f"""
leaf.sinks.k1.ssl = true
leaf.sinks.k1.ssl.ca = {certs}/rogue.pem
leaf.sinks.k1.connect-timeout = 500
""")
    fill(ch, [b"secret"])
    with pytest.raises(EventDeliveryError):
        sink.process()
    assert ch.size == 1 and col.channels["c1"].size == 0


def test_mutual_tls(collector, leaf, certs):
    col, port = collector(f"""
col.sources.r1.ssl = true
col.sources.r1.ssl.cert = {certs}/server.pem
col.sources.r1.ssl.key = {certs}/server.key
col.sources.r1.ssl.ca = {certs}/ca.pem
""")
    # without a client certificate: refused
    parts, anon, ch1 = leaf(port, f"""
leaf.sinks.k1.ssl = true
leaf.sinks.k1.ssl.ca = {certs}/ca.pem
leaf.sinks.k1.connect-timeout = 500
""")
    fill(ch1, [b"anonymous"])
    with pytest.raises(EventDeliveryError):
        anon.process()
    assert ch1.size == 1
    # with one signed by the CA the server trusts: delivered
    parts, sink, ch2 = leaf(port, f"""
leaf.sinks.k1.ssl = true
leaf.sinks.k1.ssl.ca = {certs}/ca.pem
leaf.sinks.k1.ssl.cert = {certs}/client.pem
leaf.sinks.k1.ssl.key = {certs}/client.key
""")
    fill(ch2, [b"mutual"])
    assert sink.process() is Status.READY
    assert [e.body for e in drain(col.channels["c1"])] == [b"mutual"]


class Exploding(Interceptor):
    """An interceptor with a bug."""

    def intercept(self, event):
        raise ZeroDivisionError("bug in an interceptor")

    def intercept_batch(self, events):
        raise ZeroDivisionError("bug in an interceptor")


def test_a_closed_required_channel_is_unavailable(collector):
    col, port = collector()
    col.channels["c1"].close()
    channel, stub = direct_stub(port)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.Append(_common.to_request([Event(b"x")]), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "channel failure" in info.value.details()


def test_an_unexpected_error_is_internal(collector):
    col, port = collector("col.sources.r1.interceptors = i1\n"
                          "col.sources.r1.interceptors.i1.type = tests.rpc.test_rpc.Exploding\n")
    channel, stub = direct_stub(port)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.Append(_common.to_request([Event(b"x")]), timeout=5)
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert "ZeroDivisionError" in info.value.details()
    assert col.channels["c1"].size == 0


def test_grpc_is_imported_only_by_agents_that_use_it():
    code = """
import sys
from fchannel.agent.config import build_agent
from fchannel.agent.properties import parse_properties
parts = build_agent(parse_properties('''
a.sources = r1
a.sinks = k1
a.channels = c1
a.channels.c1.type = memory
a.sources.r1.type = seq
a.sources.r1.channels = c1
a.sinks.k1.type = null
a.sinks.k1.channel = c1
'''), 'a')
assert 'grpc' not in sys.modules, 'grpc imported by an agent without grpc components'
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   cwd=Path(__file__).resolve().parents[2])

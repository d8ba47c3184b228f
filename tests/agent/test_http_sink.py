"""The http sink against a real loopback HTTP server: the take commits only when
the status says so (Flume's defaults and per-code / per-class overrides),
backoff and metrics as configured, nothing lost when the server fails."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fchannel import Event, MemoryChannel
from fchannel.agent import EventDeliveryError, Status
from fchannel.agent.properties import Context
from fchannel.sinks.http import HttpSink, decide
from tests.agent.helpers import NETCAT_SOURCE, free_port, send_lines, write_conf
from tests.conftest import wait_for


class Server:
    """Answers POSTs with the next status of ``script`` (then ``then``), recording bodies."""

    def __init__(self, script: list[int] | None = None, then: int = 200) -> None:
        self.script = list(script or [])
        self.then = then
        self.received: list[tuple[bytes, int, dict]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    code = outer.script.pop(0) if outer.script else outer.then
                    outer.received.append((body, code, dict(self.headers)))
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    servers: list[Server] = []

    def make(*a, **kw) -> Server:
        s = Server(*a, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def make_sink(ch, port: int, **props: str) -> HttpSink:
    problems: list[str] = []
    s = HttpSink("k1")
    s.configure(Context({"endpoint": f"http://127.0.0.1:{port}/in?x=1", **props},
                        "a1.sinks.k1.", problems))
    assert not problems, problems
    s.channel = ch
    s.start()
    return s


def fill(ch, *bodies: bytes) -> None:
    with ch.transaction() as tx:
        tx.put_batch([Event(b) for b in bodies])


def test_decide_exact_code_then_class_then_default():
    o = {"5XX": False, "503": True}
    assert decide(o, True, 503) is True
    assert decide(o, True, 500) is False
    assert decide(o, True, 404) is True


def test_flumes_defaults_roll_back_even_a_200(server):
    srv = server([200])
    ch = MemoryChannel(capacity=10, transaction_capacity=10, keep_alive=0)
    fill(ch, b"a")
    sink = make_sink(ch, srv.port)
    assert sink.process() is Status.BACKOFF
    assert ch.size == 1 and srv.received[0][0] == b"a"
    assert sink.counter.get("EventDrainSuccessCount") == 0
    sink.stop()


def test_per_status_rollback_backoff_and_metrics(server):
    srv = server([503, 200, 404, 500, 201])
    ch = MemoryChannel(capacity=10, transaction_capacity=10, keep_alive=0)
    fill(ch, b"one", b"two", b"three")
    sink = make_sink(ch, srv.port, **{
        "rollback.2XX": "false", "backoff.2XX": "false", "incrementMetrics.2XX": "true",
        "rollback.4XX": "false", "incrementMetrics.404": "true",
        "rollback.5XX": "true", "backoff.503": "true",
        "contentTypeHeader": "application/octet-stream", "acceptHeader": "*/*"})
    assert sink.process() is Status.BACKOFF      # 503: rolled back, backs off
    assert ch.size == 3
    assert sink.process() is Status.READY        # 200: committed
    assert ch.size == 2
    assert sink.process() is Status.BACKOFF      # 404: committed (dropped by choice), backoff
    assert ch.size == 1
    assert sink.process() is Status.BACKOFF      # 500: rolled back
    assert sink.process() is Status.READY        # 201: committed
    assert ch.size == 0
    assert [(b, c) for b, c, _ in srv.received] == [
        (b"one", 503), (b"one", 200), (b"two", 404), (b"three", 500), (b"three", 201)]
    h = srv.received[0][2]
    assert h["Content-Type"] == "application/octet-stream" and h["Accept"] == "*/*"
    assert sink.counter.get("EventDrainSuccessCount") == 3     # the 2XX and the 404
    assert sink.counter.get("EventDrainAttemptCount") == 5
    assert sink.counter.get("ConnectionCreatedCount") == 1     # one kept-alive connection
    assert sink.process() is Status.BACKOFF                    # empty channel
    sink.stop()


def test_an_unreachable_endpoint_rolls_back(server):
    ch = MemoryChannel(capacity=10, transaction_capacity=10, keep_alive=0)
    fill(ch, b"kept")
    sink = make_sink(ch, free_port(), **{"rollback.2XX": "false", "connectTimeout": "500"})
    with pytest.raises(EventDeliveryError, match="POST to http://127.0.0.1"):
        sink.process()
    assert ch.size == 1 and sink.counter.get("ConnectionFailedCount") == 1
    sink.stop()


def test_bad_properties_are_named():
    problems: list[str] = []
    HttpSink("k1").configure(Context({"endpoint": "ftp://x", "rollback.2YY": "false"},
                                     "a1.sinks.k1.", problems))
    assert "a1.sinks.k1.endpoint = 'ftp://x': must be an http:// or https:// URL" in problems
    assert any("a1.sinks.k1.rollback.2YY" in p for p in problems)


def test_http_sink_end_to_end_loses_nothing_through_server_errors(agents, tmp_path, server):
    srv = server([503, 503, 500], then=200)
    port = free_port()
    conf = write_conf(tmp_path / "h.properties", NETCAT_SOURCE.format(port=port) + f"""\
a1.channels.c1.type = memory
a1.sinks.k1.type = http
a1.sinks.k1.channel = c1
a1.sinks.k1.endpoint = http://127.0.0.1:{srv.port}/events
a1.sinks.k1.rollback.2XX = false
a1.sinks.k1.backoff.2XX = false
a1.sinks.k1.incrementMetrics.2XX = true
a1.sinks.k1.maxBackoffSleep = 100
""")
    agent = agents(conf, "a1", tmp_path)
    lines = [f"line {i}".encode() for i in range(20)]
    assert send_lines(port, lines) == [b"OK"] * 20
    wait_for(lambda: len([r for r in srv.received if r[1] == 200]) == 20, 30,
             what="every line delivered with a 200")
    delivered = [b for b, c, _ in srv.received if c == 200]
    assert delivered == lines                     # in order, none lost, none twice
    assert agent.terminate() == 0

"""The http source against slow, idle and TLS clients: idle connections cost
no thread, time out and are closed, the number of connections is bounded, and
a normal client is served promptly all the while; TLS from PEM files."""
from __future__ import annotations

import datetime
import http.client
import json
import socket
import ssl
import time
import urllib.request

import pytest

from fchannel import ConfigError
from fchannel.agent.agent import Agent
from fchannel.agent.properties import parse_properties
from tests.agent.helpers import free_port
from tests.conftest import wait_for

ONE = json.dumps([{"headers": {"h": "1"}, "body": "hello"}]).encode()


def http_agent(port: int, extra: str = "") -> Agent:
    agent = Agent.from_properties(parse_properties(f"""
a1.sources = r1
a1.channels = c1
a1.sources.r1.type = http
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = {port}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 1000
{extra}
"""), "a1")
    return agent


def post(url: str, data: bytes = ONE, context: ssl.SSLContext | None = None,
         timeout: float = 10) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with opener.open(req, timeout=timeout) as r:
        return int(r.status)


def read_all(s: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    got = b""
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            return got + b"<closed>"
        got += chunk
    return got


def test_idle_connections_do_not_keep_a_normal_client_waiting(tmp_path):
    port = free_port()
    agent = http_agent(port, "a1.sources.r1.readTimeout = 2000\n"
                             "a1.sources.r1.maxConnections = 400\n")
    agent.start()
    idle: list[socket.socket] = []
    try:
        for _ in range(300):   # each sends half a request, then nothing
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")
            idle.append(s)
        wait_for(lambda: agent.sources["r1"].counter.get("OpenConnectionCount") == 300, 20,
                 what="300 idle connections open")
        t0 = time.monotonic()
        assert post(f"http://127.0.0.1:{port}/") == 200
        assert time.monotonic() - t0 < 1.5       # served at once, not after the idle ones
        assert agent.channels["c1"].size == 1
        # the idle ones are answered 408 and closed once readTimeout has passed
        deadline = time.monotonic() + 15
        answers = [read_all(s, deadline) for s in idle]
        assert all(a.startswith(b"HTTP/1.1 408") and a.endswith(b"<closed>") for a in answers)
        wait_for(lambda: agent.sources["r1"].counter.get("OpenConnectionCount") == 0, 10,
                 what="every connection closed")
    finally:
        for s in idle:
            s.close()
        agent.stop()


def test_connections_beyond_max_connections_are_refused_at_once():
    port = free_port()
    agent = http_agent(port, "a1.sources.r1.maxConnections = 5\n")
    agent.start()
    held: list[socket.socket] = []
    try:
        for _ in range(5):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        wait_for(lambda: agent.sources["r1"].counter.get("OpenConnectionCount") == 5, 10,
                 what="5 connections open")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            answer = read_all(extra, time.monotonic() + 5)
        assert answer.startswith(b"HTTP/1.1 503") and b"maxConnections" in answer
        held.pop().close()
        wait_for(lambda: agent.sources["r1"].counter.get("OpenConnectionCount") == 4, 10,
                 what="a slot freed")
        assert post(f"http://127.0.0.1:{port}/") == 200
    finally:
        for s in held:
            s.close()
        agent.stop()


def test_keep_alive_serves_several_requests_on_one_connection():
    port = free_port()
    agent = http_agent(port)
    agent.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            req = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: " + str(len(ONE)).encode() + b"\r\n\r\n" + ONE)
            s.sendall(req + req)
            got = b""
            while got.count(b"HTTP/1.1 200") < 2:
                chunk = s.recv(4096)
                assert chunk, got
                got += chunk
        wait_for(lambda: agent.channels["c1"].size == 2, 5, what="two batches")
    finally:
        agent.stop()


def make_cert(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_from_pem_files(tmp_path):
    cert, key = make_cert(tmp_path)
    port = free_port()
    agent = http_agent(port, f"a1.sources.r1.ssl = true\na1.sources.r1.ssl.cert = {cert}\n"
                             f"a1.sources.r1.ssl.key = {key}\n")
    agent.start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        assert post(f"https://localhost:{port}/", context=ctx) == 200
        assert agent.channels["c1"].size == 1
        with pytest.raises((OSError, http.client.HTTPException)):   # plain HTTP: nowhere
            post(f"http://127.0.0.1:{port}/", timeout=3)
        assert agent.channels["c1"].size == 1
    finally:
        agent.stop()


def test_java_keystores_are_reported_as_unsupported(tmp_path):
    with pytest.raises(ConfigError) as info:
        http_agent(free_port(), "a1.sources.r1.ssl = true\n"
                                "a1.sources.r1.keystore = /etc/flume/ks.jks\n"
                                "a1.sources.r1.keystorePassword = secret\n")
    msg = str(info.value)
    assert "a1.sources.r1.keystore = '/etc/flume/ks.jks': Java keystores are not supported" \
        in msg
    assert "a1.sources.r1.ssl.cert is missing" in msg
    with pytest.raises(ConfigError, match="cannot read"):
        http_agent(free_port(), f"a1.sources.r1.ssl = true\n"
                                f"a1.sources.r1.ssl.cert = {tmp_path}/nope.pem\n"
                                f"a1.sources.r1.ssl.key = {tmp_path}/nope.key\n")

"""Syslog sources: RFC 3164 and 5424 parsing with Flume's headers, octet-counted
and newline framing, keepFields, client headers, malformed messages kept as
Invalid; a property test that no input makes the parser or the framer fail;
the three sources end to end through ``fchannel agent``."""
from __future__ import annotations

import calendar
import json
import socket
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from fchannel.sources.syslog import Framer, keep_fields, parse_frame, parse_message
from tests.agent.helpers import free_port, write_conf
from tests.conftest import wait_for

RFC5424 = (b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
           b"BOM'su root' failed for lonvick on /dev/pts/8")
RFC3164 = b"<13>Oct  1 22:14:15 web-1 sshd[42]: accepted publickey"


# ---- parsing ----------------------------------------------------------------------------

def test_rfc5424_headers_and_body():
    e = parse_message(RFC5424)
    assert e.headers == {"Facility": "4", "Severity": "2", "priority": "34", "version": "1",
                         "timestamp": str(calendar.timegm((2003, 10, 11, 22, 14, 15)) * 1000
                                          + 3),
                         "host": "mymachine.example.com"}
    assert e.body == b"su - ID47 - BOM'su root' failed for lonvick on /dev/pts/8"


def test_rfc5424_offsets_and_nil_values():
    e = parse_message(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - x")
    assert int(e.headers["timestamp"]) == \
        calendar.timegm((2003, 8, 24, 12, 14, 15)) * 1000
    e = parse_message(b"<165>1 - - app - - - hello")
    assert "timestamp" not in e.headers and "host" not in e.headers
    assert e.body == b"app - - - hello" and e.headers["Facility"] == "20"


def test_rfc3164_headers_and_body():
    now = time.mktime((2026, 10, 20, 12, 0, 0, 0, 0, -1))
    e = parse_message(RFC3164, now=now)
    assert e.headers["Facility"] == "1" and e.headers["Severity"] == "5"
    assert e.headers["host"] == "web-1"
    assert int(e.headers["timestamp"]) == int(time.mktime((2026, 10, 1, 22, 14, 15, 0, 0, -1))
                                              * 1000)
    assert e.body == b"sshd[42]: accepted publickey"
    # a date more than a month ahead is last year's
    jan = time.mktime((2026, 1, 5, 12, 0, 0, 0, 0, -1))
    dec = parse_message(b"<13>Dec 31 23:59:59 h m", now=jan)
    assert time.localtime(int(dec.headers["timestamp"]) / 1000).tm_year == 2025


def test_keep_fields():
    assert parse_message(RFC5424, keep_fields("all")).body == RFC5424
    assert parse_message(RFC3164, keep_fields("true")).body == RFC3164
    e = parse_message(RFC3164, keep_fields("priority hostname"))
    assert e.body == b"<13>web-1 sshd[42]: accepted publickey"
    e = parse_message(RFC5424, keep_fields("version,timestamp"))
    assert e.body.startswith(b"1 2003-10-11T22:14:15.003Z su - ID47")
    assert keep_fields("priority bogus") is None


def test_malformed_messages_are_kept_whole_and_marked_invalid():
    for raw in (b"no priority at all", b"<999>too big", b"<13", b"<>x", b"<013>leading zero",
                b"<34>1 not-a-time host app", b"<34>1 2003-13-45T99:99:99Z h x", b"<34>1 "):
        e = parse_message(raw)
        assert e.headers["flume.syslog.status"] == "Invalid", raw
        assert e.body == raw


def test_a_message_without_a_3164_header_keeps_its_text():
    e = parse_message(b"<14>just some text")
    assert e.body == b"just some text" and "flume.syslog.status" not in e.headers
    assert e.headers["Severity"] == "6"


# ---- framing -----------------------------------------------------------------------------

def frames_of(chunks: list[bytes], size: int = 2500) -> list[tuple[bytes, bool]]:
    f = Framer(size)
    out = []
    for c in chunks:
        out.extend(f.feed(c))
    return out + f.flush()


def test_newline_and_octet_counted_framing_mixed_and_split_anywhere():
    a, b = RFC3164, RFC5424
    stream = a + b"\r\n" + f"{len(b)} ".encode() + b + b"\n" + f"{len(a)} ".encode() + a
    want = [(a, False), (b, False), (a, False)]
    for cut in range(1, len(stream)):
        assert frames_of([stream[:cut], stream[cut:]]) == want, cut
    # a message may itself hold a newline when it is octet counted
    assert frames_of([b"6 <1>a\nb"]) == [(b"<1>a\nb", False)]


def test_oversized_messages_come_out_in_pieces_first_incomplete():
    got = frames_of([b"<13>" + b"x" * 20 + b"\nnext\n"], size=10)
    assert b"".join(f for f, _ in got[:3]) == b"<13>" + b"x" * 20
    assert [inc for _, inc in got] == [True, True, True, False]
    assert got[-1] == (b"next", False)
    e = parse_frame(got[0][0], got[0][1], frozenset())
    assert e.headers["flume.syslog.status"] == "Incomplete"
    assert frames_of([b"12 <13>abcdefgh"], size=10) == [(b"<13>abcdef", True), (b"gh", True)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=8), st.integers(1, 40),
       st.sampled_from(["none", "all", "priority timestamp"]))
def test_no_input_makes_the_framer_or_the_parser_fail(chunks, size, keep):
    f = Framer(size)
    total_in = sum(len(c) for c in chunks)
    total_out = 0
    for raw, inc in [x for c in chunks for x in f.feed(c)] + f.flush():
        assert len(raw) <= max(size, 1) or not inc
        e = parse_frame(raw, inc, keep_fields(keep))
        if e.headers.get("flume.syslog.status") == "Invalid":
            assert e.body == raw          # kept whole
        total_out += len(raw)
    assert total_out <= total_in


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b
                                                          and not b.endswith(b"\r")
                                                          and not b[:1].isdigit()),
                max_size=6), st.integers(1, 30))
def test_lines_come_out_as_sent_however_the_stream_is_cut(lines, cut):
    stream = b"".join(x + b"\n" for x in lines)
    chunks = [stream[i:i + cut] for i in range(0, len(stream), cut)]
    assert [m for m, _ in frames_of(chunks)] == lines


# ---- end to end --------------------------------------------------------------------------

def agent_conf(tmp_path, source: str) -> str:
    return f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.channels = c1
{source}
a1.channels.c1.type = memory
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {tmp_path}/out
a1.sinks.k1.sink.serializer = JSON
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.batchSize = 1
"""


def written(tmp_path) -> list[dict]:
    out = tmp_path / "out"
    if not out.is_dir():
        return []
    docs = []
    for p in sorted(out.iterdir()):
        docs.extend(json.loads(line) for line in p.read_text().splitlines() if line)
    return docs


def test_syslogtcp_end_to_end_with_garbage_in_between(agents, tmp_path):
    port = free_port()
    conf = write_conf(tmp_path / "s.properties", agent_conf(tmp_path, f"""
a1.sources.r1.type = syslogtcp
a1.sources.r1.host = 127.0.0.1
a1.sources.r1.port = {port}
a1.sources.r1.eventSize = 200
a1.sources.r1.clientIPHeader = client_ip
a1.sources.r1.clientHostnameHeader = client_host
"""))
    agent = agents(conf, "a1", tmp_path)
    garbage = bytes(range(256)).replace(b"\n", b"")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(RFC3164 + b"\n" + garbage[:100] + b"\n"
                  + f"{len(RFC5424)} ".encode() + RFC5424 + b"<13>" + b"y" * 300 + b"\n")
    wait_for(lambda: len(written(tmp_path)) == 5, 20, what="five events written")
    docs = written(tmp_path)
    assert docs[0]["headers"]["host"] == "web-1" and docs[0]["body"].startswith("sshd[42]")
    assert docs[0]["headers"]["client_ip"] == "127.0.0.1" and docs[0]["headers"]["client_host"]
    assert docs[1]["headers"]["flume.syslog.status"] == "Invalid"
    assert docs[2]["headers"]["host"] == "mymachine.example.com"
    assert docs[3]["headers"]["flume.syslog.status"] == "Incomplete"
    assert agent.proc.poll() is None
    assert agent.terminate() == 0


def test_syslogudp_and_multiport_end_to_end(agents, tmp_path):
    uport = free_port()
    conf = write_conf(tmp_path / "u.properties", agent_conf(tmp_path, f"""
a1.sources.r1.type = syslogudp
a1.sources.r1.host = 127.0.0.1
a1.sources.r1.port = {uport}
a1.sources.r1.keepFields = true
"""))
    agent = agents(conf, "a1", tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(RFC5424 + b"\n", ("127.0.0.1", uport))
        s.sendto(b"\xff\xfe not syslog", ("127.0.0.1", uport))
    wait_for(lambda: len(written(tmp_path)) == 2, 20, what="two datagrams written")
    docs = sorted(written(tmp_path), key=lambda d: "flume.syslog.status" in d["headers"])
    assert docs[0]["body"] == RFC5424.decode() and docs[0]["headers"]["Severity"] == "2"
    assert docs[1]["headers"]["flume.syslog.status"] == "Invalid"
    assert agent.terminate() == 0

    p1, p2 = free_port(), free_port()
    tmp2 = tmp_path / "multi"
    tmp2.mkdir()
    conf = write_conf(tmp2 / "m.properties", agent_conf(tmp2, f"""
a1.sources.r1.type = multiport_syslogtcp
a1.sources.r1.host = 127.0.0.1
a1.sources.r1.ports = {p1} {p2}
a1.sources.r1.portHeader = port
a1.sources.r1.charset.default = UTF-8
"""))
    agent = agents(conf, "a1", tmp2)
    for p in (p1, p2):
        with socket.create_connection(("127.0.0.1", p), timeout=10) as s:
            s.sendall(RFC3164 + b"\n")
    wait_for(lambda: len(written(tmp2)) == 2, 20, what="one event per port")
    assert sorted(d["headers"]["port"] for d in written(tmp2)) == sorted([str(p1), str(p2)])
    assert agent.terminate() == 0


def test_syslogtcp_over_tls_from_pem_files(agents, tmp_path):
    import ssl

    from tests.agent.test_http_source import make_cert
    cert, key = make_cert(tmp_path)
    port = free_port()
    conf = write_conf(tmp_path / "t.properties", agent_conf(tmp_path, f"""
a1.sources.r1.type = syslogtcp
a1.sources.r1.host = 127.0.0.1
a1.sources.r1.port = {port}
a1.sources.r1.ssl = true
a1.sources.r1.ssl.cert = {cert}
a1.sources.r1.ssl.key = {key}
"""))
    agent = agents(conf, "a1", tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"{len(RFC5424)} ".encode() + RFC5424)
    wait_for(lambda: len(written(tmp_path)) == 1, 20, what="the message written")
    assert written(tmp_path)[0]["headers"]["host"] == "mymachine.example.com"
    assert agent.terminate() == 0


def test_syslog_tls_problems_are_named(tmp_path):
    import pytest

    from fchannel import ConfigError
    from fchannel.agent.config import build_agent
    from fchannel.agent.properties import parse_properties
    text = agent_conf(tmp_path, """
a1.sources.r1.type = syslogtcp
a1.sources.r1.host = 127.0.0.1
a1.sources.r1.port = 0
a1.sources.r1.ssl = true
a1.sources.r1.keystore = /etc/flume/ks.jks
""")
    with pytest.raises(ConfigError) as info:
        build_agent(parse_properties(text), "a1")
    assert "a1.sources.r1.keystore = '/etc/flume/ks.jks': Java keystores are not supported" \
        in str(info.value)
    with pytest.raises(ConfigError, match="TLS needs a stream"):
        build_agent(parse_properties(text.replace("type = syslogtcp", "type = syslogudp")
                                     .replace("a1.sources.r1.keystore = /etc/flume/ks.jks\n",
                                              "")), "a1")

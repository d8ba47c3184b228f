"""Sources in a real (in-process) agent, against real sockets, processes and files."""
from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request

import pytest

from fchannel.agent.agent import Agent
from fchannel.agent.properties import parse_properties
from tests.agent.helpers import free_port
from tests.conftest import wait_for

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def channel_only(source_props: str, capacity: int = 1000, tx: int = 100) -> str:
    """An agent with source r1 into memory channel c1 and no sink: tests drain c1."""
    return f"""
a1.sources = r1
a1.channels = c1
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = {capacity}
a1.channels.c1.transactionCapacity = {tx}
a1.channels.c1.keep-alive = 0
""" + source_props


@pytest.fixture
def run_agent():
    started: list[Agent] = []

    def start(text: str) -> Agent:
        agent = Agent.from_properties(parse_properties(text), "a1")
        agent.start()
        started.append(agent)
        return agent

    yield start
    for a in started:
        a.stop()


def drain(agent: Agent, n: int | None = None) -> list:
    ch = agent.channels["c1"]
    with ch.transaction() as tx:
        return tx.take_batch(n or ch.transaction_capacity)


def bodies(agent: Agent) -> list[bytes]:
    return [e.body for e in drain(agent)]


# ---- http --------------------------------------------------------------------------------

def post(port: int, data: bytes, method: str = "POST") -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode()


def test_http_source_status_codes(run_agent):
    port = free_port()
    agent = run_agent(channel_only(f"a1.sources.r1.type = http\na1.sources.r1.bind = 127.0.0.1\n"
                                   f"a1.sources.r1.port = {port}\n", capacity=5, tx=5))
    three = json.dumps([{"headers": {"n": str(i)}, "body": f"e{i}"} for i in range(3)]).encode()
    # 200 only after the commit: the events are in the channel when the answer comes
    assert post(port, three)[0] == 200
    assert agent.channels["c1"].size == 3
    # 503 when the channel is full; nothing of the batch is committed
    code, text = post(port, three)
    assert code == 503 and "full" in text
    assert agent.channels["c1"].size == 3
    # 400 for bodies that are not a JSON array of events; nothing is put
    for bad in (b"not json", b"[1, 2]", b'[{"body": 5}]', b'[{"headers": {"a": 1}}]',
                b'{"body": "an object, not an array"}'):
        assert post(port, bad)[0] == 400, bad
    assert post(port, b"", method="GET")[0] == 405
    got = drain(agent)
    assert [(e.body, e.headers) for e in got] == [(f"e{i}".encode(), {"n": str(i)})
                                                  for i in range(3)]
    assert post(port, three)[0] == 200      # room again: the client's retry succeeds
    c = agent.sources["r1"].counter
    assert c.get("EventAcceptedCount") == 6 and c.get("ChannelWriteFail") == 1


def test_http_source_reads_the_charset_of_the_request(run_agent):
    port = free_port()
    agent = run_agent(channel_only(f"a1.sources.r1.type = http\na1.sources.r1.bind = 127.0.0.1\n"
                                   f"a1.sources.r1.port = {port}\n"))
    data = json.dumps([{"body": "d\u00e9j\u00e0"}], ensure_ascii=False).encode("latin-1")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=data, method="POST",
                                 headers={"Content-Type": "application/json; charset=ISO-8859-1"})
    with _OPENER.open(req, timeout=10) as r:
        assert r.status == 200
    assert bodies(agent) == ["d\u00e9j\u00e0".encode("latin-1")]


# ---- netcat ------------------------------------------------------------------------------

def test_netcat_acks_each_line_and_rejects_overlong_lines(run_agent):
    port = free_port()
    agent = run_agent(channel_only(
        f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\n"
        f"a1.sources.r1.port = {port}\na1.sources.r1.max-line-length = 10\n"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"short\r\n" + b"x" * 30 + b"\nok\n")
        replies = b""
        while replies.count(b"\n") < 3:
            chunk = s.recv(1024)
            assert chunk, replies
            replies += chunk
    assert replies.splitlines() == [
        b"OK", b"FAILED: Event exceeds the maximum length (10 chars, including newline)", b"OK"]
    assert bodies(agent) == [b"short", b"ok"]


def test_netcat_holds_lines_while_the_channel_is_full_and_loses_none(run_agent):
    port = free_port()
    agent = run_agent(channel_only(
        f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\n"
        f"a1.sources.r1.port = {port}\n", capacity=4, tx=2))
    lines = [f"line {i}".encode() for i in range(10)]
    got: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"".join(ln + b"\n" for ln in lines))
        replies = b""
        s.settimeout(0.05)
        for _ in range(2000):  # bounded: drain while the source waits for room
            if replies.count(b"\n") >= 10:
                break
            got.extend(bodies(agent))
            try:
                chunk = s.recv(1024)
            except TimeoutError:
                continue
            assert chunk
            replies += chunk
    for _ in range(10):  # the channel holds at most 4: empty it
        got.extend(bodies(agent))
    assert replies.splitlines() == [b"OK"] * 10
    assert got == lines  # in order, none lost, none repeated
    assert agent.sources["r1"].counter.get("ChannelWriteFail") >= 1


# ---- exec --------------------------------------------------------------------------------

def test_exec_source_reads_command_output_lines(run_agent):
    agent = run_agent(channel_only(
        "a1.sources.r1.type = exec\na1.sources.r1.shell = /bin/sh -c\n"
        "a1.sources.r1.command = printf 'a\\nb\\nc\\n'; echo err >&2\n"
        "a1.sources.r1.batchSize = 2\na1.sources.r1.batchTimeout = 100\n"
        "a1.sources.r1.logStdErr = true\n"))
    got: list[bytes] = []
    wait_for(lambda: got.extend(bodies(agent)) or len(got) >= 3, 10, what="3 lines")
    assert got == [b"a", b"b", b"c"]


def test_exec_source_restarts_the_command_with_throttle(run_agent, tmp_path):
    counter = tmp_path / "runs"
    script = tmp_path / "once.py"
    script.write_text(
        "import sys\n"
        f"p = {str(counter)!r}\n"
        "n = int(open(p).read()) + 1 if __import__('os').path.exists(p) else 1\n"
        "open(p, 'w').write(str(n))\n"
        "print(f'run {n}')\n")
    agent = run_agent(channel_only(
        f"a1.sources.r1.type = exec\na1.sources.r1.command = {sys.executable} {script}\n"
        "a1.sources.r1.restart = true\na1.sources.r1.restartThrottle = 50\n"
        "a1.sources.r1.batchTimeout = 50\n"))
    got: list[bytes] = []
    wait_for(lambda: got.extend(bodies(agent)) or len(got) >= 3, 20, what="three runs")
    assert got[:3] == [b"run 1", b"run 2", b"run 3"]


def test_exec_source_stops_a_long_running_command(run_agent, tmp_path):
    agent = run_agent(channel_only(
        "a1.sources.r1.type = exec\na1.sources.r1.shell = /bin/sh -c\n"
        "a1.sources.r1.command = while true; do echo tick; sleep 0.05; done\n"
        "a1.sources.r1.batchTimeout = 50\n"))
    wait_for(lambda: agent.channels["c1"].size > 0, 10, what="output")
    src = agent.sources["r1"]
    proc = src._proc
    agent.stop()
    assert proc is not None and proc.poll() is not None


# ---- seq ---------------------------------------------------------------------------------

def test_seq_source_with_total_events_and_a_full_channel(run_agent):
    agent = run_agent(channel_only("a1.sources.r1.type = seq\na1.sources.r1.batchSize = 3\n"
                                   "a1.sources.r1.totalEvents = 20\n"
                                   "a1.sources.r1.backoffSleepIncrement = 5\n"
                                   "a1.sources.r1.maxBackoffSleep = 20\n", capacity=6, tx=3))
    got: list[bytes] = []
    wait_for(lambda: got.extend(bodies(agent)) or len(got) >= 20, 20, what="20 events")
    assert got == [str(i).encode() for i in range(20)]


def test_netcat_without_acks_answers_nothing(run_agent):
    port = free_port()
    agent = run_agent(channel_only(
        f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\n"
        f"a1.sources.r1.port = {port}\na1.sources.r1.ack-every-event = false\n"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"quiet\n")
        wait_for(lambda: agent.channels["c1"].size == 1, 10, what="the line committed")
        s.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s.recv(16)
    assert bodies(agent) == [b"quiet"]

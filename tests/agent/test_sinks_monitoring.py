"""Sinks (file_roll, logger), runner backoff, monitoring and the agent's lifecycle."""
from __future__ import annotations

import json
import signal
import time

import pytest

from fchannel import Event, MemoryChannel
from fchannel.agent import EventDeliveryError, Status
from fchannel.agent.agent import Agent
from fchannel.agent.properties import Context, parse_properties
from fchannel.sinks.file_roll import RollingFileSink
from fchannel.sinks.logger import dump_event
from tests.agent.helpers import free_port, http_get_json, http_get_text, write_conf
from tests.conftest import wait_for


def roll_sink(channel, **props: str) -> RollingFileSink:
    problems: list[str] = []
    s = RollingFileSink("k1")
    s.configure(Context(props, "a1.sinks.k1.", problems))
    assert not problems, problems
    s.channel = channel
    return s


def put(ch, *events: Event) -> None:
    with ch.transaction() as tx:
        tx.put_batch(list(events))


def test_file_roll_writes_text_and_rolls_by_interval(tmp_path):
    ch = MemoryChannel(capacity=100, transaction_capacity=10, keep_alive=0)
    sink = roll_sink(ch, **{"sink.directory": str(tmp_path / "out"),
                            "sink.rollInterval": "0.2", "sink.pathManager.prefix": "ev-",
                            "sink.pathManager.extension": "txt"})
    put(ch, Event(b"one"), Event(b"two"))
    assert sink.process() is Status.READY
    first = sink.current_path
    wait_for(lambda: sink.process() is Status.BACKOFF and sink._file is None, 5,
             what="the file to be rolled after 0.2 s")
    put(ch, Event(b"three"))
    sink.process()
    sink.stop()
    files = sorted((tmp_path / "out").iterdir())
    assert [p.name.startswith("ev-") and p.suffix == ".txt" for p in files] == [True, True]
    assert str(files[0]) == first
    assert files[0].read_bytes() == b"one\ntwo\n" and files[1].read_bytes() == b"three\n"


def test_file_roll_json_lines_serializer(tmp_path):
    ch = MemoryChannel(capacity=100, transaction_capacity=10, keep_alive=0)
    sink = roll_sink(ch, **{"sink.directory": str(tmp_path), "sink.serializer": "json",
                            "sink.rollInterval": "0"})
    put(ch, Event(b"caf\xc3\xa9", {"h": "1"}), Event(b"\xff\x00", {}))
    sink.process()
    sink.stop()
    (f,) = tmp_path.iterdir()
    docs = [json.loads(line) for line in f.read_text().splitlines()]
    assert docs == [{"headers": {"h": "1"}, "body": "caf\u00e9"},
                    {"headers": {}, "body_base64": "/wA="}]


def test_file_roll_commits_the_take_only_after_writing(tmp_path):
    ch = MemoryChannel(capacity=100, transaction_capacity=10, keep_alive=0)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("x")
    sink = roll_sink(ch, **{"sink.directory": str(blocked / "out")})
    put(ch, Event(b"a"), Event(b"b"))
    with pytest.raises(EventDeliveryError):
        sink.process()
    assert ch.size == 2                       # rolled back: still in the channel, in order
    blocked.unlink()
    blocked.mkdir()
    assert sink.process() is Status.READY
    sink.stop()
    (f,) = (blocked / "out").iterdir()
    assert f.read_bytes() == b"a\nb\n" and ch.size == 0


def test_logger_sink_line_shows_headers_and_body():
    line = dump_event(Event(b"hello\x01 world, long body", {"host": "web-1"}), 16)
    assert line == ("Event: { headers:{host=web-1} body: 68 65 6C 6C 6F 01 20 77 6F 72 6C 64 "
                    "2C 20 6C 6F  hello. world, lo ... (23 bytes) }")


def agent_from(text: str) -> Agent:
    return Agent.from_properties(parse_properties(text), "a1")


def test_sink_runner_backs_off_on_an_empty_channel():
    agent = agent_from("""
a1.channels = c1
a1.sinks = k1
a1.channels.c1.type = memory
a1.channels.c1.keep-alive = 0
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
a1.sinks.k1.maxBackoffSleep = 200
""")
    agent.start()
    try:
        c = agent.sinks["k1"].counter
        wait_for(lambda: c.get("BatchEmptyCount") >= 3, 10, what="empty polls")
        t0, n0 = time.monotonic(), c.get("BatchEmptyCount")
        # once backed off to the 200 ms maximum, it polls about 5 times a second
        wait_for(lambda: time.monotonic() - t0 >= 1.0, 5, what="a second")
        assert c.get("BatchEmptyCount") - n0 <= 10
        put(agent.channels["c1"], Event(b"x"))
        wait_for(lambda: c.get("EventDrainSuccessCount") == 1, 5, what="the event drained")
    finally:
        agent.stop()


MONITORED = """
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = 25
a1.sources.r1.batchSize = 5
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
"""


def test_monitoring_json_and_prometheus_in_process():
    from prometheus_client.parser import text_string_to_metric_families
    agent = agent_from(MONITORED)
    port = agent.start_monitoring("127.0.0.1", 0)
    agent.start()
    try:
        wait_for(lambda: http_get_json(port)["SINK.k1"]["EventDrainSuccessCount"] == "25", 10,
                 what="25 events drained")
        m = http_get_json(port)
        assert m["SOURCE.r1"]["Type"] == "SOURCE"
        assert m["SOURCE.r1"]["EventReceivedCount"] == "25"
        assert m["SOURCE.r1"]["EventAcceptedCount"] == "25"
        assert m["CHANNEL.c1"]["EventPutSuccessCount"] == "25"
        assert m["CHANNEL.c1"]["EventTakeSuccessCount"] == "25"
        assert m["CHANNEL.c1"]["ChannelSize"] == "0"
        assert m["CHANNEL.c1"]["ChannelCapacity"] == "100"
        assert float(m["CHANNEL.c1"]["ChannelFillPercentage"]) == 0.0
        assert m["SINK.k1"]["ConnectionFailedCount"] == "0"
        assert int(m["SINK.k1"]["StartTime"]) > 0
        families = {f.name: f for f in
                    text_string_to_metric_families(http_get_text(port, "/prometheus"))}
        drained = families["fchannel_sink_event_drain_success"]
        assert drained.type == "counter"
        (sample,) = [s for s in drained.samples if s.name.endswith("_total")]
        assert sample.value == 25 and sample.labels == {"agent": "a1", "component": "k1"}
        assert families["fchannel_channel_size"].type == "gauge"
    finally:
        agent.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_agent_process_stops_cleanly_on_signal_with_flume_monitoring_flags(agents, tmp_path,
                                                                            sig):
    port = free_port()
    conf = write_conf(tmp_path / "m.properties", MONITORED)
    agent = agents(conf, "a1", tmp_path, ["-Dflume.monitoring.type=http",
                                          f"-Dflume.monitoring.port={port}"])
    wait_for(lambda: http_get_json(port)["SINK.k1"]["EventDrainSuccessCount"] == "25", 10,
             what="25 events drained")
    agent.proc.send_signal(sig)
    assert agent.proc.wait(30) == 0
    out = agent.output()
    # stop order: sources, then sinks, then channels
    i_src = out.index("[source.r1] stopped")
    i_sink = out.index("[sink.k1] stopped")
    i_ch = out.index("[channel.c1] closed")
    assert i_src < i_sink < i_ch
    # every line of the log names its component
    for line in out.splitlines():
        if line[:4].isdigit():
            assert "[" in line and "]" in line, line
    agent.stop()

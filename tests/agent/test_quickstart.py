"""The README's main command: the quickstart agent, as a real subprocess."""
from __future__ import annotations

import pytest

from tests.agent.helpers import (
    EXAMPLES,
    free_port,
    http_get_json,
    quickstart_text,
    send_lines,
    write_conf,
)
from tests.conftest import wait_for


def _run_quickstart(agents, tmp_path, memory: bool) -> None:
    port, mport = free_port(), free_port()
    conf = write_conf(tmp_path / "quickstart.properties",
                      quickstart_text(memory).replace("44444", str(port)))
    agent = agents(conf, "a1", tmp_path, ["--monitoring", "http", "--port", str(mport)])
    lines = [b"hello fchannel", b"second line", b"third: \xc3\xa9t\xc3\xa9"]
    assert send_lines(port, lines) == [b"OK"] * 3
    for text in ("hello fchannel", "second line", "third: ..t.."):
        wait_for(lambda t=text: t in agent.output(), 20, what=f"{text!r} logged")
    # every logged event names the sink that logged it
    event_lines = [ln for ln in agent.output().splitlines() if "Event: {" in ln]
    assert len(event_lines) == 3 and all("[sink.k1]" in ln for ln in event_lines)
    metrics = http_get_json(mport)
    assert metrics["SOURCE.r1"]["EventAcceptedCount"] == "3"
    wait_for(lambda: http_get_json(mport)["SINK.k1"]["EventDrainSuccessCount"] == "3", 10,
             what="the sink's drain counter")
    assert agent.terminate() == 0
    assert "agent 'a1' stopped" in agent.output()


def test_quickstart_memory_variant_logs_lines_and_exits_0_on_sigterm(agents, tmp_path):
    _run_quickstart(agents, tmp_path, memory=True)


def test_quickstart_example_with_file_channel(agents, tmp_path):
    _run_quickstart(agents, tmp_path, memory=False)
    assert (tmp_path / "quickstart-data" / "checkpoint").is_dir()
    assert (tmp_path / "quickstart-data" / "data").is_dir()


def test_quickstart_example_uses_the_documented_settings():
    text = (EXAMPLES / "quickstart.properties").read_text()
    from fchannel.agent.properties import parse_properties
    props = parse_properties(text)
    assert props["a1.sources.r1.type"] == "netcat"
    assert props["a1.sources.r1.bind"] == "127.0.0.1"
    assert props["a1.sources.r1.port"] == "44444"
    assert props["a1.channels.c1.type"] == "file"
    assert props["a1.channels.c1.checkpointDir"].startswith("./quickstart-data/")
    assert props["a1.sinks.k1.type"] == "logger"


@pytest.mark.parametrize("flag", ["--conf-file", "-f"])
def test_bad_config_exits_2_naming_the_key(agents, tmp_path, flag):
    conf = write_conf(tmp_path / "bad.properties",
                      "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
                      "a1.sources.r1.type = nosuchsource\na1.sources.r1.channels = c1\n"
                      "a1.channels.c1.type = memory\n"
                      "a1.sinks.k1.type = logger\na1.sinks.k1.channel = c9\n")
    agent = agents(conf, "a1", tmp_path, wait_started=False)
    assert agent.proc.wait(30) == 2
    out = agent.output()
    assert "a1.sources.r1.type = 'nosuchsource'" in out
    assert "a1.sinks.k1.channel = 'c9'" in out
    agent.stop()


def test_missing_config_file_is_named(agents, tmp_path):
    agent = agents(tmp_path / "nope.properties", "a1", tmp_path, wait_started=False)
    assert agent.proc.wait(30) == 2
    assert "cannot read configuration file" in agent.output()
    assert "nope.properties" in agent.output()
    agent.stop()

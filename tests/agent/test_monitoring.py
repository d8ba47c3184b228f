"""Monitoring as Flume users expect it: Flume's port by default, gauges as
gauges and counters as counters in /prometheus with plain names, and every
log line tagged with its component, the file channel's too."""
from __future__ import annotations

import io
import logging

from prometheus_client.parser import text_string_to_metric_families

from fchannel.agent.command import DEFAULT_MONITORING_PORT, _ComponentFilter
from fchannel.agent.monitoring import is_counter, metric_name
from tests.agent.helpers import (
    NETCAT_SOURCE,
    free_port,
    http_get_json,
    http_get_text,
    send_lines,
    write_conf,
)
from tests.conftest import wait_for

FILE_AGENT = NETCAT_SOURCE + """\
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = ./cp
a1.channels.c1.dataDirs = ./data
a1.channels.c1.minimumRequiredSpace = 0
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
"""


def test_prometheus_types_and_names_of_a_file_channel_agent(agents, tmp_path):
    port, mport = free_port(), free_port()
    conf = write_conf(tmp_path / "a.properties", FILE_AGENT, port=port)
    agent = agents(conf, "a1", tmp_path, ["--monitoring", "http", "--port", str(mport),
                                          "--monitoring-host", "127.0.0.1"])
    assert send_lines(port, [b"one", b"two"]) == [b"OK", b"OK"]
    wait_for(lambda: http_get_json(mport)["SINK.k1"]["EventDrainSuccessCount"] == "2", 20,
             what="two events drained")
    families = {f.name: f for f in
                text_string_to_metric_families(http_get_text(mport, "/prometheus"))}
    for gauge in ("fchannel_channel_size", "fchannel_channel_capacity",
                  "fchannel_channel_fill_percentage", "fchannel_channel_log_files",
                  "fchannel_channel_open_seconds", "fchannel_source_open_connections",
                  "fchannel_sink_start_time"):
        assert families[gauge].type == "gauge", gauge
    for counter in ("fchannel_channel_event_put_success", "fchannel_channel_event_take_success",
                    "fchannel_source_event_accepted", "fchannel_sink_event_drain_success",
                    "fchannel_sink_failure"):
        assert families[counter].type == "counter", counter
    assert families["fchannel_source_event_accepted"].samples[0].value == 2
    for name, fam in families.items():
        words = name.split("_")
        assert all(a != b for a, b in zip(words, words[1:])), name   # no repeated word
        assert not (fam.type == "counter" and name.endswith("_count")), name
    assert agent.terminate() == 0
    out = agent.output()
    assert "[file]" not in out


def test_names_and_kinds():
    assert metric_name("CHANNEL", "ChannelSize") == "fchannel_channel_size"
    assert metric_name("SINK", "EventDrainSuccessCount") == "fchannel_sink_event_drain_success"
    assert metric_name("SOURCE", "ChannelWriteFail") == "fchannel_source_channel_write_fail"
    assert is_counter("EventPutSuccessCount") and is_counter("LogBytesWritten")
    assert not is_counter("OpenConnectionCount") and not is_counter("ChannelBytes")
    assert not is_counter("LogFiles") and not is_counter("OpenSeconds")


def test_monitoring_default_port_is_flumes():
    assert DEFAULT_MONITORING_PORT == 41414


def test_file_channel_lines_are_tagged_with_the_channel():
    from fchannel.agent.command import FORMAT
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_ComponentFilter())
    logger = logging.getLogger("fchannel.file")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        logger.info("%s: deleted %d log file(s): %s", "c1", 1, "log-1")
        logging.getLogger("fchannel.source.r1").addHandler(handler)
        logging.getLogger("fchannel.source.r1").warning("plain")
    finally:
        logger.removeHandler(handler)
        logging.getLogger("fchannel.source.r1").removeHandler(handler)
        logger.setLevel(old)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("[channel.c1] deleted 1 log file(s): log-1"), lines[0]
    assert lines[1].endswith("[source.r1] plain"), lines[1]

"""Flume configurations as Flume users write them: comma lists, ${env:X} and
${sys:X}, documented Flume properties that have no effect here, "did you
mean", nothing on disk before the configuration is good, and problems
reported as what they are (configuration, permission, missing extra)."""
from __future__ import annotations

import pytest

from fchannel import ConfigError
from fchannel.agent.config import ChannelOpenError, build_agent
from fchannel.agent.properties import Context, parse_properties
from tests.agent.helpers import NETCAT_SOURCE, free_port, send_lines, write_conf
from tests.conftest import wait_for

NETCAT = NETCAT_SOURCE + """\
a1.channels.c1.type = memory
a1.sinks.k1.type = logger
a1.sinks.k1.channel = c1
"""


def problems_of(text: str, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        build_agent(parse_properties(text), "a1", **kw)
    return str(info.value)


def close(parts) -> None:
    for ch in parts.channels.values():
        ch.close()


def file_channel(tmp_path, extra: str = "") -> str:
    return NETCAT.format(port=0).replace(
        "a1.channels.c1.type = memory",
        f"a1.channels.c1.type = file\n"
        f"a1.channels.c1.checkpointDir = {tmp_path}/cp\n"
        f"a1.channels.c1.dataDirs = {tmp_path}/d1,{tmp_path}/d2\n" + extra)


# ---- comma lists ----------------------------------------------------------------------

def test_names_accept_commas_as_flume_list_properties_do():
    ctx = Context({"kafka.topics": "orders,payments", "b": " x , y  z,,"}, "a1.sources.k.")
    assert ctx.names("kafka.topics") == ["orders", "payments"]
    assert ctx.names("b") == ["x", "y", "z"]


def test_comma_separated_channels_of_a_source_end_to_end(agents, tmp_path):
    port = free_port()
    text = NETCAT.format(port=port).replace("a1.channels = c1", "a1.channels = c1,c2") \
        .replace("a1.sources.r1.channels = c1", "a1.sources.r1.channels = c1, c2") \
        + "a1.channels.c2.type = memory\na1.sinks = k1 k2\n" \
          "a1.sinks.k2.type = logger\na1.sinks.k2.channel = c2\n"
    agent = agents(write_conf(tmp_path / "a.properties", text), "a1", tmp_path)
    assert send_lines(port, [b"to both"]) == [b"OK"]
    wait_for(lambda: agent.output().count("to both") == 2, 20,
             what="the line logged by both sinks")
    assert agent.terminate() == 0


# ---- ${env:X} and ${sys:X} ----------------------------------------------------------------

def test_env_and_sys_lookups_end_to_end(agents, tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("NC_PORT", str(port))
    text = NETCAT.format(port="${env:NC_PORT}").replace(
        "a1.sources.r1.bind = 127.0.0.1", "a1.sources.r1.bind = ${sys:nc.bind}")
    agent = agents(write_conf(tmp_path / "a.properties", text), "a1", tmp_path,
                   ["-Dnc.bind=127.0.0.1"])
    assert send_lines(port, [b"via lookups"]) == [b"OK"]
    assert agent.terminate() == 0


def test_lookup_defaults_and_unset_names():
    parts = build_agent(parse_properties(NETCAT.format(port="${env:NOPE_PORT:-0}")), "a1",
                        environ={})
    assert parts.sources["r1"].port == 0
    close(parts)
    msg = problems_of(NETCAT.format(port="${env:NOPE_PORT}").replace(
        "bind = 127.0.0.1", "bind = ${sys:nope.bind}"), environ={})
    assert "a1.sources.r1.port = '${env:NOPE_PORT}': environment variable NOPE_PORT is " \
           "not set" in msg
    assert "a1.sources.r1.bind = '${sys:nope.bind}': system property" in msg
    # another agent's unresolved lookups are not this agent's problem
    close(build_agent(parse_properties(NETCAT.format(port=0) + "b1.x = ${env:NOPE}\n"), "a1",
                      environ={}))


# ---- documented Flume properties, typos ------------------------------------------------------

def test_documented_flume_file_channel_properties_warn_once_and_run(agents, tmp_path):
    port = free_port()
    text = file_channel(tmp_path, "a1.channels.c1.use-log-replay-v1 = false\n"
                                  "a1.channels.c1.compressBackupCheckpoint = false\n") \
        .replace("port = 0", f"port = {port}")
    agent = agents(write_conf(tmp_path / "a.properties", text), "a1", tmp_path)
    assert send_lines(port, [b"kept"]) == [b"OK"]
    assert agent.terminate() == 0
    out = agent.output()
    assert out.count("a1.channels.c1.use-log-replay-v1 = 'false': a Flume file channel "
                     "property that has no effect") == 1
    assert out.count("compressBackupCheckpoint") == 1


def test_a_misspelt_file_channel_property_is_an_error_with_a_hint(tmp_path):
    msg = problems_of(file_channel(tmp_path, "a1.channels.c1.checkpointInterva = 100\n"))
    assert "checkpointInterva" in msg
    assert "did you mean a1.channels.c1.checkpointInterval?" in msg
    assert not (tmp_path / "cp").exists()


def test_encryption_properties_reach_the_file_channel_unchanged(tmp_path, monkeypatch):
    import fchannel
    seen = {}
    real = fchannel.FileChannel.from_properties.__func__

    def spy(cls, props, name="file-channel"):
        seen.update(props)
        return real(cls, props, name=name)

    monkeypatch.setattr(fchannel.FileChannel, "from_properties", classmethod(spy))
    text = file_channel(tmp_path, "a1.channels.c1.encryption.activeKey = key-1\n"
                                  "a1.channels.c1.encryption.keyProvider = JCEKSFILE\n")
    try:
        close(build_agent(parse_properties(text), "a1"))
    except ConfigError as exc:  # Java keystores are refused, naming the property
        assert "encryption.keyProvider = 'JCEKSFILE'" in str(exc)
        assert "encryption.keyProvider.keys.<alias>.keyFile" in str(exc)
    assert seen["encryption.activeKey"] == "key-1"
    assert seen["encryption.keyProvider"] == "JCEKSFILE"


def test_did_you_mean_for_missing_and_unread_keys_and_types():
    msg = problems_of(NETCAT.format(port=0).replace("r1.bind", "r1.bnd")
                      .replace("type = logger", "type = loger"))
    assert "a1.sources.r1.bind is missing (required by source 'r1'); did you mean " \
           "a1.sources.r1.bnd?" in msg
    assert "unknown sink type 'loger'" in msg and "did you mean logger?" in msg
    parts = build_agent(parse_properties(NETCAT.format(port=0)
                                         + "a1.sources.r1.max-line-lenght = 10\n"
                                         + "a1.sink.k1.x = 1\n"), "a1")
    close(parts)
    assert any("max-line-lenght" in w and "did you mean a1.sources.r1.max-line-length?" in w
               for w in parts.warnings), parts.warnings
    assert any("a1.sink.k1.x" in w and "did you mean a1.sinks?" in w for w in parts.warnings)


# ---- nothing on disk before the configuration is good ------------------------------------

def test_a_bad_configuration_touches_no_disk(agents, tmp_path):
    text = file_channel(tmp_path).replace("a1.sinks.k1.channel = c1",
                                          "a1.sinks.k1.channel = c1\na1.sinks.k1.maxBytesToLog = x")
    conf = write_conf(tmp_path / "bad.properties", text)
    agent = agents(conf, "a1", tmp_path, wait_started=False)
    assert agent.proc.wait(30) == 2
    out = agent.output()
    assert "configuration problem" in out and "maxBytesToLog" in out
    assert "deleted" not in out
    assert not (tmp_path / "cp").exists() and not (tmp_path / "d1").exists()


def test_batch_size_over_transaction_capacity_is_found_before_opening(tmp_path):
    msg = problems_of(file_channel(tmp_path, "a1.channels.c1.transactionCapacity = 10\n")
                      .replace("a1.sources.r1.type = netcat", "a1.sources.r1.type = seq")
                      + "a1.sources.r1.batchSize = 50\n")
    assert "batch size 50 exceeds transactionCapacity 10 of channel 'c1'" in msg
    assert not (tmp_path / "cp").exists()


# ---- problems reported as what they are -----------------------------------------------------

def test_a_permission_problem_is_not_a_configuration_problem(agents, tmp_path):
    # /sys refuses new directories even to root
    text = NETCAT.format(port=0).replace(
        "a1.channels.c1.type = memory",
        "a1.channels.c1.type = file\n"
        "a1.channels.c1.checkpointDir = /sys/fchannel-test-nope/cp\n"
        "a1.channels.c1.dataDirs = /sys/fchannel-test-nope/data\n")
    with pytest.raises(ChannelOpenError, match="permission problem"):
        build_agent(parse_properties(text), "a1")
    agent = agents(write_conf(tmp_path / "p.properties", text), "a1", tmp_path,
                   wait_started=False)
    assert agent.proc.wait(30) == 1
    out = agent.output()
    assert "cannot open channel 'c1': permission problem" in out
    assert "configuration problem" not in out and "Traceback" not in out


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    from fchannel.agent import registry
    monkeypatch.setitem(registry._registry["source"], "needs-grpc",
                        "fchannel_test_not_installed_grpc:Source")
    monkeypatch.setitem(registry.EXTRAS, "fchannel_test_not_installed_grpc", "agent")
    msg = problems_of(NETCAT.format(port=0).replace("type = netcat", "type = needs-grpc"))
    assert "source needs-grpc needs `pip install 'fchannel[agent]'`" in msg
    assert "Traceback" not in msg


def test_monitoring_defaults_to_flumes_port():
    import argparse

    from fchannel.agent.command import _monitoring
    ns = argparse.Namespace(monitoring=None, port=None, defines=["flume.monitoring.type=http"])
    assert _monitoring(ns) == ("http", 41414)


def test_documented_source_and_sink_properties_without_effect_are_named_so(tmp_path):
    text = NETCAT.format(port=0).replace("a1.sources.r1.type = netcat",
                                         "a1.sources.r1.type = http") \
        .replace("a1.sinks.k1.type = logger",
                 f"a1.sinks.k1.type = org.apache.flume.sink.hdfs.HDFSEventSink\n"
                 f"a1.sinks.k1.hdfs.path = {tmp_path}/out\n"
                 f"a1.sinks.k1.hdfs.kerberosPrincipal = flume/_HOST@EXAMPLE.COM\n") \
        + "a1.sources.r1.QueuedThreadPool.minThreads = 4\n"
    parts = build_agent(parse_properties(text), "a1")
    close(parts)
    assert any("a1.sinks.k1.hdfs.kerberosPrincipal" in w and "has no effect in fchannel" in w
               for w in parts.warnings), parts.warnings
    assert any("a1.sources.r1.QueuedThreadPool.minThreads" in w and "has no effect" in w
               for w in parts.warnings), parts.warnings


def _run_agent_blocking(tmp_path, conf_text: str, blocked: str, extra: list[str]):
    """``fchannel agent`` in a subprocess where importing *blocked* fails, as
    when its extra is not installed."""
    import os
    import subprocess
    import sys

    from tests.agent.helpers import REPO
    conf = write_conf(tmp_path / "x.properties", conf_text)
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "from fchannel.cli import main\n"
            f"sys.exit(main(['agent', '-f', {str(conf)!r}, '-n', 'a1', *{extra!r}]))")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_missing_extras_end_to_end_are_one_line(tmp_path):
    r = _run_agent_blocking(tmp_path, NETCAT.format(port=0).replace(
        "a1.sources.r1.type = netcat", "a1.sources.r1.type = grpc"), "grpc", [])
    assert r.returncode == 2
    assert "source grpc needs `pip install 'fchannel[agent]'`" in r.stderr
    assert "Traceback" not in r.stderr
    r = _run_agent_blocking(tmp_path, NETCAT.format(port=0), "prometheus_client",
                            ["--monitoring", "http", "--monitoring-host", "127.0.0.1"])
    assert r.returncode == 2
    assert "monitoring http needs `pip install 'fchannel[agent]'`" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_channel_held_by_another_process_is_reported_as_in_use(agents, tmp_path):
    from fchannel import FileChannel
    text = file_channel(tmp_path)
    holder = FileChannel(tmp_path / "cp", [tmp_path / "d1", tmp_path / "d2"])
    try:
        agent = agents(write_conf(tmp_path / "a.properties", text), "a1", tmp_path,
                       wait_started=False)
        assert agent.proc.wait(30) == 1
        out = agent.output()
        assert "cannot open channel 'c1': in use" in out
        assert "configuration problem" not in out and "Traceback" not in out
    finally:
        holder.close()


def test_kafka_topics_as_flumes_comma_list(tmp_path):
    text = file_channel(tmp_path).replace(
        "a1.sources.r1.type = netcat\n", "a1.sources.r1.type = kafka\n"
        "a1.sources.r1.kafka.bootstrap.servers = 127.0.0.1:9\n"
        "a1.sources.r1.kafka.topics = orders,payments\n") \
        .replace("a1.sources.r1.bind = 127.0.0.1\n", "").replace("a1.sources.r1.port = 0\n", "")
    parts = build_agent(parse_properties(text), "a1")
    close(parts)
    assert parts.sources["r1"].topics == ["orders", "payments"]

"""Flume properties parsing and configuration validation."""
from __future__ import annotations

import pytest

from fchannel import ConfigError
from fchannel.agent import Sink, register_source
from fchannel.agent.config import build_agent
from fchannel.agent.properties import Context, parse_properties
from fchannel.agent.registry import lookup

GOOD = """
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
"""


def props(text: str) -> dict[str, str]:
    return parse_properties(text)


def problems_of(text: str, agent: str = "a1") -> str:
    with pytest.raises(ConfigError) as info:
        build_agent(props(text), agent)
    return str(info.value)


def close(parts) -> None:
    for ch in parts.channels.values():
        ch.close()


# ---- the file format ----------------------------------------------------------------

def test_properties_separators_comments_and_continuations():
    p = parse_properties(
        "# comment\n! also a comment\n"
        "a = 1\nb:2\nc 3\n   d   =   spaced value  \n"
        "e = first \\\n    second\n"
        "f = tab\\there\\u00e9\n"
        "g\\ key = escaped space in key\n"
        "a = last wins\n")
    assert p == {"a": "last wins", "b": "2", "c": "3", "d": "spaced value  ",
                 "e": "first second", "f": "tab\there\u00e9", "g key": "escaped space in key"}


def test_properties_regex_backslashes_as_flume_reads_them():
    p = parse_properties(r"a1.sources.r1.interceptors.i1.regex = ^(\\d+)\\s")
    assert p["a1.sources.r1.interceptors.i1.regex"] == r"^(\d+)\s"


def test_context_typed_getters_record_problems_with_key_and_value():
    problems: list[str] = []
    ctx = Context({"port": "abc", "batchSize": "0", "ok": "true"}, "a1.sources.r1.",
                  problems, owner="source 'r1'")
    assert ctx.integer("port", required=True) is None
    assert ctx.integer("batchSize", 100, minimum=1) == 100
    assert ctx.boolean("ok") is True
    assert ctx.string("bind", required=True) is None
    assert problems == [
        "a1.sources.r1.port must be an integer, got 'abc'",
        "a1.sources.r1.batchSize must be >= 1, got '0'",
        "a1.sources.r1.bind is missing (required by source 'r1')",
    ]


# ---- validation ---------------------------------------------------------------------

def test_a_good_configuration_builds():
    parts = build_agent(props(GOOD), "a1")
    assert set(parts.sources) == {"r1"} and set(parts.sinks) == {"k1"}
    assert parts.sinks["k1"].channel is parts.channels["c1"]
    close(parts)


def test_every_problem_is_reported_at_once_naming_key_and_value():
    msg = problems_of("""
a1.sources = r1 r2
a1.channels = c1 c2 c3
a1.sinks = k1 k2 k3
a1.sources.r1.type = nosuch
a1.sources.r1.channels = c1
a1.sources.r2.type = netcat
a1.sources.r2.bind = 127.0.0.1
a1.sources.r2.port = eighty
a1.sources.r2.channels = c1 c9
a1.channels.c1.type = memory
a1.channels.c2.type = memory
a1.channels.c2.capacity = lots
a1.channels.c3.type = memory
a1.sinks.k1.type = logger
a1.sinks.k2.type = null
a1.sinks.k2.channel = c1
a1.sinks.k3.channel = c2
""")
    expected = [
        "a1.sources.r1.type = 'nosuch': unknown source type 'nosuch'",
        "a1.sources.r2.port must be an integer, got 'eighty'",
        "a1.sources.r2.channels = 'c1 c9': channel 'c9' is not defined in a1.channels",
        "capacity must be an integer, got 'lots'",
        "a1.sinks.k1.channel is missing (required by sink 'k1')",
        "a1.sinks.k3.type is missing (required by sink 'k3')",
        "a1.channels.c3: channel 'c3' is not used by any source or sink",
    ]
    for e in expected:
        assert e in msg, f"{e!r} not in:\n{msg}"
    assert "has 7 problems" in msg


def test_missing_required_property_names_the_key_and_the_type():
    msg = problems_of(GOOD.replace("a1.sources.r1.type = seq",
                                   "a1.sources.r1.type = netcat\na1.sources.r1.bind = x"))
    assert "a1.sources.r1.port is missing (required by source 'r1')" in msg


def test_unsupported_flume_class_is_named():
    msg = problems_of(GOOD.replace("a1.sinks.k1.type = null",
                                   "a1.sinks.k1.type = org.apache.flume.sink.hdfs.HDFSEventSink"))
    assert ("a1.sinks.k1.type = 'org.apache.flume.sink.hdfs.HDFSEventSink': unsupported "
            "Flume sink type") in msg


def test_flume_class_names_of_supported_types_are_accepted():
    text = (GOOD.replace("type = seq", "type = org.apache.flume.source.SequenceGeneratorSource")
            .replace("type = null", "type = org.apache.flume.sink.NullSink")
            .replace("type = memory", "type = org.apache.flume.channel.MemoryChannel"))
    close(build_agent(props(text), "a1"))


def test_types_are_case_insensitive_like_flume_aliases():
    close(build_agent(props(GOOD.replace("type = seq", "type = SEQ")
                            .replace("type = null", "type = NULL")), "a1"))


def test_unknown_agent_name_lists_the_agents_in_the_file():
    with pytest.raises(ConfigError, match="no properties for agent 'a2'.*agents in the file: a1"):
        build_agent(props(GOOD), "a2")


def test_unknown_interceptor_and_selector_types():
    msg = problems_of(GOOD + """
a1.sources.r1.interceptors = i1 i2
a1.sources.r1.interceptors.i1.type = nosuch
a1.sources.r1.selector.type = bogus
""")
    assert "a1.sources.r1.interceptors.i1.type = 'nosuch': unknown interceptor type" in msg
    assert "a1.sources.r1.interceptors.i2.type is missing" in msg
    assert "a1.sources.r1.selector.type = 'bogus': unknown selector type" in msg


def test_selector_must_name_the_sources_channels():
    msg = problems_of(GOOD + """
a1.sources.r1.selector.type = multiplexing
a1.sources.r1.selector.header = h
a1.sources.r1.selector.mapping.A = c7
""")
    assert "a1.sources.r1.selector.mapping.A = 'c7': channel 'c7' is not one of the " \
           "source's channels" in msg


def test_sink_group_problems():
    msg = problems_of(GOOD + """
a1.sinkgroups = g1 g2
a1.sinkgroups.g1.sinks = k1 k9
a1.sinkgroups.g1.processor.type = failover
a1.sinkgroups.g1.processor.maxpenalty = soon
a1.sinkgroups.g2.sinks = k1
a1.sinkgroups.g2.processor.type = load_balance
a1.sinkgroups.g2.processor.selector = fastest
""")
    assert "a1.sinkgroups.g1.sinks = 'k1 k9': sink 'k9' is not defined in a1.sinks" in msg
    assert "a1.sinkgroups.g1.processor.maxpenalty must be an integer, got 'soon'" in msg
    assert "a1.sinkgroups.g2.sinks = 'k1': sink 'k1' is already in sink group 'g1'" in msg
    assert "a1.sinkgroups.g2.processor.selector = 'fastest': unknown load_balance selector" \
        in msg


def test_unused_properties_are_warnings_not_errors():
    parts = build_agent(props(GOOD + "a1.sources.r1.batchSise = 10\n"
                                     "a1.sources.r9.type = seq\n"), "a1")
    close(parts)
    assert any("a1.sources.r1.batchSise = '10' is not a property of source 'r1'" in w
               for w in parts.warnings)
    assert any("'r9' is not listed in a1.sources" in w for w in parts.warnings)


def test_other_agents_in_the_same_file_are_ignored():
    close(build_agent(props(GOOD + "b1.sources = x\nb1.sources.x.type = nosuch\n"), "a1"))


# ---- the registry ---------------------------------------------------------------------

class CollectingSink(Sink):
    """A custom sink, found by its dotted path."""

    def configure(self, ctx):
        self.tag = ctx.string("tag", required=True)


def test_a_dotted_python_path_is_a_type():
    text = GOOD.replace("a1.sinks.k1.type = null",
                        "a1.sinks.k1.type = tests.agent.test_config.CollectingSink\n"
                        "a1.sinks.k1.tag = x")
    parts = build_agent(props(text), "a1")
    assert isinstance(parts.sinks["k1"], CollectingSink) and parts.sinks["k1"].tag == "x"
    close(parts)
    msg = problems_of(GOOD.replace("type = null", "type = tests.agent.nosuch.Sink"))
    assert "a1.sinks.k1.type = 'tests.agent.nosuch.Sink': unknown sink type" in msg


def test_integrations_register_new_types():
    from fchannel.sources.seq import SequenceSource

    class KafkaLikeSource(SequenceSource):
        pass

    register_source("kafka-test", KafkaLikeSource)
    assert lookup("source", "KAFKA-TEST") is KafkaLikeSource
    parts = build_agent(props(GOOD.replace("type = seq", "type = kafka-test")), "a1")
    assert isinstance(parts.sources["r1"], KafkaLikeSource)
    close(parts)


def test_file_channel_properties_are_validated_with_the_rest(tmp_path):
    import fchannel
    text = GOOD.replace("a1.channels.c1.type = memory",
                        f"a1.channels.c1.type = file\n"
                        f"a1.channels.c1.checkpointDir = {tmp_path}/cp\n"
                        f"a1.channels.c1.dataDirs = {tmp_path}/data\n"
                        f"a1.channels.c1.capacity = lots\n") + "a1.sinks.k1.batchSize = -1\n"
    msg = problems_of(text)
    assert "a1.sinks.k1.batchSize must be >= 1, got '-1'" in msg
    if hasattr(fchannel, "FileChannel"):
        assert "a1.channels.c1: " in msg and "capacity" in msg and "'lots'" in msg
    else:
        assert "a1.channels.c1" in msg and "FileChannel" in msg


def test_environment_variables_with_flumes_resolver_flag(agents, tmp_path, monkeypatch):
    from tests.agent.helpers import free_port, send_lines
    port = free_port()
    monkeypatch.setenv("NC_PORT", str(port))
    conf = tmp_path / "env.properties"
    conf.write_text("a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
                    "a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\n"
                    "a1.sources.r1.port = ${NC_PORT}\na1.sources.r1.channels = c1\n"
                    "a1.channels.c1.type = memory\n"
                    "a1.sinks.k1.type = logger\na1.sinks.k1.channel = c1\n")
    agent = agents(conf, "a1", tmp_path, [
        "-DpropertiesImplementation=org.apache.flume.node.EnvVarResolverProperties"])
    assert send_lines(port, [b"via env"]) == [b"OK"]
    assert agent.terminate() == 0


def test_unset_environment_variable_is_named():
    from fchannel.agent.properties import resolve_env
    with pytest.raises(ConfigError, match=r"a1.sources.r1.port = '\$\{NOPE\}': environment "
                                          "variable NOPE is not set"):
        resolve_env({"a1.sources.r1.port": "${NOPE}"}, {})
    assert resolve_env({"k": "x${A}y"}, {"A": "1"}) == {"k": "x1y"}


def test_a_dotted_path_to_something_else_is_reported():
    msg = problems_of(GOOD.replace("a1.sinks.k1.type = null",
                                   "a1.sinks.k1.type = collections.Counter"))
    assert ("a1.sinks.k1.type = 'collections.Counter': builds a Counter, which is "
            "not a sink (subclass fchannel.agent.Sink)") in msg

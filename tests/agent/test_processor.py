"""The channel processor: selectors, required and optional channels, interceptors."""
from __future__ import annotations

import logging

import pytest

from fchannel import ChannelError, ChannelFullError, Event, MemoryChannel
from fchannel.agent.interceptors import INTERCEPTORS
from fchannel.agent.processor import ChannelProcessor
from fchannel.agent.properties import Context
from fchannel.agent.selectors import MultiplexingSelector, ReplicatingSelector


def mem(name: str, capacity: int = 100) -> MemoryChannel:
    return MemoryChannel(capacity=capacity, transaction_capacity=min(capacity, 100),
                         keep_alive=0.0, name=name)


def drain(ch: MemoryChannel) -> list[bytes]:
    with ch.transaction() as tx:
        return [e.body for e in tx.take_batch(ch.transaction_capacity)]


def selector(cls, channels, **props):
    problems: list[str] = []
    s = cls("r1", channels)
    s.configure(Context(props, "a1.sources.r1.selector.", problems))
    assert not problems, problems
    return s


def events(*bodies: str, **headers: str) -> list[Event]:
    return [Event(b.encode(), dict(headers)) for b in bodies]


def test_replicating_copies_to_every_channel():
    chans = {"c1": mem("c1"), "c2": mem("c2")}
    p = ChannelProcessor("r1", selector(ReplicatingSelector, chans))
    p.process_event_batch(events("a", "b"))
    assert drain(chans["c1"]) == [b"a", b"b"] and drain(chans["c2"]) == [b"a", b"b"]


def test_failure_on_a_required_channel_raises_and_rolls_that_channel_back():
    chans = {"c1": mem("c1", capacity=2), "c2": mem("c2")}
    with chans["c1"].transaction() as tx:
        tx.put(Event(b"already there"))
    p = ChannelProcessor("r1", selector(ReplicatingSelector, chans))
    with pytest.raises(ChannelFullError):
        p.process_event_batch(events("a", "b"))   # one transaction: all or nothing
    assert drain(chans["c1"]) == [b"already there"]
    assert chans["c1"].counters["rollback_count"] == 1


def test_failure_on_an_optional_channel_is_only_logged(caplog):
    chans = {"c1": mem("c1"), "c2": mem("c2", capacity=2)}
    with chans["c2"].transaction() as tx:
        tx.put(Event(b"already there"))
    p = ChannelProcessor("r1", selector(ReplicatingSelector, chans, optional="c2"))
    with caplog.at_level(logging.WARNING):
        p.process_event_batch(events("a", "b"))
    assert drain(chans["c1"]) == [b"a", b"b"]
    assert drain(chans["c2"]) == [b"already there"]
    assert "optional channel 'c2' refused 2 event(s)" in caplog.text


def test_optional_channels_are_tried_after_the_required_ones_succeed():
    chans = {"c1": mem("c1", capacity=2), "c2": mem("c2")}
    p = ChannelProcessor("r1", selector(ReplicatingSelector, chans, optional="c2"))
    p.process_event_batch(events("a", "b"))
    assert drain(chans["c2"]) == [b"a", b"b"]
    with pytest.raises(ChannelError):
        p.process_event_batch(events("c", "d", "e"))
        p.process_event_batch(events("a", "b"))
    assert chans["c2"].size == 0  # the required failure came first: nothing went anywhere


def test_multiplexing_routes_by_header_with_default_and_optional():
    chans = {n: mem(n) for n in ("c1", "c2", "c3", "c4")}
    sel = selector(MultiplexingSelector, chans, header="state",
                   **{"mapping.CA": "c1", "mapping.AZ": "c2 c3", "optional.CA": "c4 c1",
                      "default": "c4"})
    p = ChannelProcessor("r1", sel)
    p.process_event_batch(events("ca", state="CA") + events("az", state="AZ")
                          + events("ny", state="NY") + events("none"))
    assert drain(chans["c1"]) == [b"ca"]
    assert drain(chans["c2"]) == [b"az"] and drain(chans["c3"]) == [b"az"]
    # c4: the default for NY and no header (required, put first), then the
    # optional copy of CA (optional channels are tried after the required ones)
    assert drain(chans["c4"]) == [b"ny", b"none", b"ca"]


def test_multiplexing_required_and_optional_semantics():
    chans = {"c1": mem("c1", capacity=2), "c2": mem("c2", capacity=2)}
    sel = selector(MultiplexingSelector, chans, header="h",
                   **{"mapping.x": "c1", "optional.y": "c2", "mapping.y": "c1"})
    p = ChannelProcessor("r1", sel)
    p.process_event_batch(events("0", h="x"))
    with pytest.raises(ChannelFullError):
        p.process_event_batch(events("1", "2", h="x"))   # c1 is required for x
    assert drain(chans["c1"]) == [b"0"] and chans["c2"].size == 0
    p.process_event_batch(events("1", h="y"))
    p.process_event_batch(events("2", h="y")[:0])            # empty batch: nothing to do
    assert drain(chans["c1"]) == [b"1"] and drain(chans["c2"]) == [b"1"]


def icp(type_name: str, **props: str):
    problems: list[str] = []
    i = INTERCEPTORS[type_name]("i1")
    i.configure(Context(props, "a1.sources.r1.interceptors.i1.", problems))
    assert not problems, problems
    return i


def test_interceptor_chain_runs_before_the_selector():
    chans = {"c1": mem("c1"), "c2": mem("c2")}
    sel = selector(MultiplexingSelector, chans, header="kind",
                   **{"mapping.err": "c1", "default": "c2"})
    chain = [icp("regex_filter", regex="^DEBUG", excludeEvents="true"),
             icp("regex_extractor", regex=r"^(\w+):", serializers="s1",
                 **{"serializers.s1.name": "kind"}),
             icp("static", key="dc", value="eu-1")]
    p = ChannelProcessor("r1", sel, chain)
    p.process_event_batch(events("err: disk", "DEBUG: noise", "info: ok"))
    with chans["c1"].transaction() as tx:
        got = tx.take_batch(10)
    assert [(e.body, e.headers) for e in got] == [(b"err: disk", {"kind": "err", "dc": "eu-1"})]
    assert drain(chans["c2"]) == [b"info: ok"]


def one(i, body: bytes = b"x", **headers: str):
    return i.intercept(Event(body, dict(headers)))


def test_timestamp_interceptor():
    e = one(icp("timestamp"))
    assert e.headers["timestamp"].isdigit() and len(e.headers["timestamp"]) >= 13
    assert one(icp("timestamp", preserveExisting="true"), timestamp="1").headers == {
        "timestamp": "1"}
    assert "ts" in one(icp("timestamp", headerName="ts")).headers


def test_host_interceptor():
    e = one(icp("host", useIP="false", hostHeader="hostname"))
    assert e.headers["hostname"]
    assert one(icp("host", preserveExisting="true"), host="keep").headers["host"] == "keep"


def test_static_interceptor_preserves_by_default():
    assert one(icp("static", key="k", value="v")).headers == {"k": "v"}
    assert one(icp("static", key="k", value="v"), k="old").headers == {"k": "old"}
    assert one(icp("static", key="k", value="v", preserveExisting="false"),
               k="old").headers == {"k": "v"}


def test_remove_header_interceptor():
    i = icp("remove_header", withName="a", fromList="b, c", matching="tmp.*")
    assert one(i, a="1", b="2", c="3", tmpx="4", keep="5").headers == {"keep": "5"}


def test_uuid_interceptor():
    i = icp("uuid", prefix="ev-")
    a, b = one(i).headers["id"], one(i).headers["id"]
    assert a.startswith("ev-") and a != b
    assert one(i, id="mine").headers["id"] == "mine"


def test_regex_filter_keeps_or_excludes_matches():
    keep = icp("regex_filter", regex="error")
    assert one(keep, b"an error here") is not None and one(keep, b"fine") is None
    drop = icp("regex_filter", regex="error", excludeEvents="true")
    assert one(drop, b"an error here") is None and one(drop, b"fine") is not None


def test_regex_extractor_with_millis_serializer():
    i = icp("regex_extractor", regex=r"^(\d\d\d\d-\d\d-\d\d \d\d:\d\d) (\w+)",
            serializers="s1 s2",
            **{"serializers.s1.type": "org.apache.flume.interceptor."
                                      "RegexExtractorInterceptorMillisSerializer",
               "serializers.s1.name": "timestamp",
               "serializers.s1.pattern": "yyyy-MM-dd HH:mm",
               "serializers.s2.name": "level"})
    e = one(i, b"2024-01-02 03:04 WARN something")
    import time
    expected = int(time.mktime(time.strptime("2024-01-02 03:04", "%Y-%m-%d %H:%M")) * 1000)
    assert e.headers == {"timestamp": str(expected), "level": "WARN"}
    assert one(i, b"no match").headers == {}


def test_search_replace_with_java_group_references():
    i = icp("search_replace", searchPattern=r"(\d{4})-(\d{4})", replaceString="$2/$1")
    assert one(i, b"card 1234-5678 used").body == b"card 5678/1234 used"
    mask = icp("search_replace", searchPattern=r"password=\S+", replaceString="password=***")
    assert one(mask, b"login password=hunter2 ok").body == b"login password=*** ok"

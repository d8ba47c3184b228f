"""The one mapping between Kafka records and Events: a spooled record comes
back exactly as it was sent; bad fields are refused at send time with the
field and the value named, so nothing undeliverable reaches the channel."""
from __future__ import annotations

import pytest
from fchannel.integrations._records import Route, spool_event, spooled_record

from fchannel import ConfigError, Event


def test_spooled_record_round_trip():
    e = spool_event("orders", b"\x00body", b"\xffkey", [("a", b"1"), ("a", "2"), ("b", b"")],
                    2, 1_700_000_000_123, now=12.5)
    r = spooled_record(Event(bytes(e.body), dict(e.headers)))
    assert (r.topic, r.value, r.key, r.partition, r.timestamp_ms, r.spooled_at) == \
        ("orders", b"\x00body", b"\xffkey", 2, 1_700_000_000_123, 12.5)
    assert r.headers == [("a", b"1"), ("a", b"2"), ("b", b"")]   # order and repeats kept
    tomb = spooled_record(spool_event("t", None, "k"))
    assert (tomb.value, tomb.key, tomb.partition, tomb.headers) == (None, b"k", None, None)
    assert spooled_record(spool_event("t", b"")).value == b""       # empty is not null


@pytest.mark.parametrize("kw, msg", [
    (dict(topic=""), "topic must be a non-empty str, got ''"),
    (dict(partition=-1), "partition must be None or an int >= 0, got -1"),
    (dict(timestamp_ms="now"), "timestamp_ms must be None or an int >= 0, got 'now'"),
    (dict(value=3), "value for topic 't' is a int"),
    (dict(key=object()), "key for topic 't' is a object"),
    (dict(headers=[("h", None)]), "header 'h' for topic 't' has no value"),
    (dict(headers=[(1, b"x")]), "header name must be a str, got 1"),
    (dict(headers=["xy z"]), "headers must be .str, bytes. pairs"),
])
def test_bad_fields_are_refused_by_name(kw, msg):
    args = dict(topic="t", value=b"v")
    args.update(kw)
    with pytest.raises((TypeError, ValueError), match=msg):
        spool_event(**args)


def test_route_picks_topic_key_and_partition():
    route = Route("default", partition_header="p")
    assert route(Event(b"x", {"topic": "t1", "key": "k", "p": "3"})) == ("t1", b"k", 3, None)
    assert route(Event(b"x", {"key_base64": "/w=="})) == ("default", b"\xff", None, None)
    with pytest.raises(ConfigError, match="header p='x' is not a partition number"):
        route(Event(b"x", {"p": "x"}))
    with pytest.raises(ConfigError, match="no 'topic' header"):
        Route(None)(Event(b"x"))
    fwd = Route("d", forward_headers=True, key_header=None)
    assert fwd(Event(b"x", {"a": "1"})) == ("d", None, None, [("a", b"1")])

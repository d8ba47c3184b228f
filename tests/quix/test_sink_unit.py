"""FileChannelSink in process, driven as a Quix checkpoint drives it
(``add`` per record, then ``flush``): one transaction per flush with a mark
per topic-partition, replays dropped, records of one offset kept together,
a full channel turned into SinkBackpressureError, clear errors."""
from __future__ import annotations

import json

import pytest
from fchannel.integrations.quix import FileChannelSink, to_bytes
from quixstreams.sinks import SinkBackpressureError

from fchannel import ChannelError, ConfigError, Event, MemoryChannel
from tests.channels import open_channel, take_all


def add(sink, topic, partition, offsets, value=lambda o: b"v%d" % o, key=None, headers=None):
    for o in offsets:
        sink.add(value=value(o), key=key, timestamp=1_700_000_000_000 + o,
                 headers=headers or [], topic=topic, partition=partition, offset=o)


def test_flush_is_one_transaction_with_a_mark_per_partition(tmp_path):
    with open_channel(tmp_path) as ch:
        sink = FileChannelSink(ch)
        add(sink, "orders", 0, range(5), key=b"k", headers=[("trace", b"t1")])
        add(sink, "orders", 1, range(3))
        add(sink, "payments", 0, [7, 8])
        sink.flush()
        assert sink.transactions == 1 and sink.stored == 10
        assert ch.marks == {"kafka:orders:0": 5, "kafka:orders:1": 3, "kafka:payments:0": 9}
        events = take_all(ch)
    first = events[0]
    assert first.body == b"v0"
    assert first.headers == {"trace": "t1", "topic": "orders", "partition": "0",
                             "offset": "0", "timestamp": "1700000000000", "key": "k"}
    assert [(e.headers["topic"], e.headers["partition"], e.headers["offset"])
            for e in events] == [("orders", "0", str(o)) for o in range(5)] + \
        [("orders", "1", str(o)) for o in range(3)] + [("payments", "0", "7"),
                                                       ("payments", "0", "8")]


def test_replayed_records_are_dropped_also_after_a_reopen(tmp_path):
    with open_channel(tmp_path) as ch:
        sink = FileChannelSink(ch)
        add(sink, "t", 0, range(10))
        sink.flush()
        # the app crashed before committing its offsets: the same records again, and more
        add(sink, "t", 0, range(4, 15))
        sink.flush()
        assert sink.duplicates == 6 and sink.stored == 15
    with open_channel(tmp_path) as ch:
        sink = FileChannelSink(ch)
        add(sink, "t", 0, range(12, 20))
        sink.flush()
        assert sink.duplicates == 3
        assert [int(e.headers["offset"]) for e in take_all(ch)] == list(range(20))
        assert ch.marks["kafka:t:0"] == 20


def test_records_of_one_offset_stay_together(tmp_path):
    # an expanding dataframe sinks several records per source offset
    with open_channel(tmp_path, transaction_capacity=5) as ch:
        sink = FileChannelSink(ch)
        for o in range(4):
            add(sink, "t", 0, [o, o, o])          # 3 records per offset
        sink.flush()
        # 12 records, at most 5 per transaction, never splitting an offset: 4 transactions
        assert sink.transactions == 4 and sink.stored == 12
        assert ch.marks["kafka:t:0"] == 4
        for o in range(2, 5):                     # replay of 2..3 dropped whole, 4 kept
            add(sink, "t", 0, [o, o, o])
        sink.flush()
        assert sink.duplicates == 6 and sink.stored == 15
        offs = [int(e.headers["offset"]) for e in take_all(ch)]
    assert offs == [o for o in range(5) for _ in range(3)]


def test_an_offset_larger_than_a_transaction_is_refused(tmp_path):
    with open_channel(tmp_path, transaction_capacity=2) as ch:
        sink = FileChannelSink(ch)
        add(sink, "t", 3, [9, 9, 9])
        with pytest.raises(ChannelError, match="offset 9 of t/3 produced more records than "
                                               ".*transaction_capacity=2"):
            sink.flush()
        assert ch.size == 0 and "kafka:t:3" not in ch.marks


def test_full_channel_raises_backpressure_after_storing_what_fits(tmp_path):
    with open_channel(tmp_path, capacity=10, keep_alive=0.0) as ch:
        sink = FileChannelSink(ch, retry_after=2.5)
        with ch.transaction() as tx:
            tx.put_batch([Event(b"x")] * 8)
        add(sink, "t", 0, range(5))
        with pytest.raises(SinkBackpressureError) as info:
            sink.flush()
        assert info.value.retry_after == 2.5 and sink.backpressured == 1
        assert ch.size == 10 and ch.marks["kafka:t:0"] == 2   # offsets 0 and 1 fitted
        with pytest.raises(SinkBackpressureError):            # still full: nothing more
            add(sink, "t", 0, range(5))
            sink.flush()
        assert ch.size == 10 and ch.marks["kafka:t:0"] == 2
        got = take_all(ch)
        add(sink, "t", 0, range(5))               # Quix replays from the checkpoint's start
        sink.flush()
        got += take_all(ch)
        assert [int(e.headers["offset"]) for e in got if "offset" in e.headers] == \
            list(range(5))


def test_a_checkpoint_larger_than_the_free_room_still_advances(tmp_path):
    with open_channel(tmp_path, capacity=10, keep_alive=0.0) as ch:
        sink = FileChannelSink(ch)
        got = []
        for _ in range(20):                       # Quix replays the checkpoint each time
            add(sink, "a", 0, range(12))
            add(sink, "b", 1, range(6))
            try:
                sink.flush()
                break
            except SinkBackpressureError:
                got.extend(take_all(ch))          # a consumer makes room meanwhile
        got.extend(take_all(ch))
        assert sink.backpressured >= 1
    keys = [(e.headers["topic"], int(e.headers["offset"])) for e in got]
    assert sorted(keys) == sorted([("a", o) for o in range(12)] + [("b", o) for o in range(6)])
    assert [o for t, o in keys if t == "a"] == list(range(12))
    # the first store took from both partitions in turn
    assert {t for t, _ in keys[:10]} == {"a", "b"}


def test_without_dedupe_a_checkpoint_is_stored_whole_or_not_at_all(tmp_path):
    with open_channel(tmp_path, capacity=10, keep_alive=0.0) as ch:
        sink = FileChannelSink(ch, dedupe=False)
        add(sink, "a", 0, range(12))
        with pytest.raises(SinkBackpressureError):
            sink.flush()
        assert ch.size == 0


def test_serializers(tmp_path):
    with open_channel(tmp_path) as ch:
        sink = FileChannelSink(ch)
        add(sink, "t", 0, [0], value=lambda o: {"id": o, "name": "é"}, key="user-1")
        add(sink, "t", 0, [1], value=lambda o: "text", key=b"\xff\x00")
        add(sink, "t", 0, [2], value=lambda o: None)
        sink.flush()
        a, b, c = take_all(ch)
        assert json.loads(a.body) == {"id": 0, "name": "é"} and a.headers["key"] == "user-1"
        assert b.body == b"text" and b.headers["key_base64"] == "/wA="
        assert c.body == b"" and "key" not in c.headers
        bad = FileChannelSink(ch, value_serializer=lambda v: 42)
        add(bad, "t", 0, [3])
        with pytest.raises(TypeError, match="value_serializer"):
            bad.flush()
    assert to_bytes([1, 2]) == b"[1,2]"


def test_memory_channel_needs_dedupe_off():
    with pytest.raises(ConfigError, match="no marks"):
        FileChannelSink(MemoryChannel())
    ch = MemoryChannel()
    sink = FileChannelSink(ch, dedupe=False)
    add(sink, "t", 0, [0, 0])
    sink.flush()
    assert ch.size == 2


@pytest.mark.parametrize("kw, field", [({"retry_after": 0}, "retry_after"),
                                       ({"mark_prefix": "a:b"}, "mark_prefix"),
                                       ({"mark_prefix": ""}, "mark_prefix")])
def test_bad_settings_name_the_field(tmp_path, kw, field):
    with open_channel(tmp_path) as ch, pytest.raises(ConfigError, match=field):
        FileChannelSink(ch, **kw)


def test_not_a_channel():
    with pytest.raises(ConfigError, match="channel must be"):
        FileChannelSink("/tmp/x")

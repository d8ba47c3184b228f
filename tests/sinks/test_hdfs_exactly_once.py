"""Exactly-once mode on a local target: names, restart, replays, buckets."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fchannel import Event
from fchannel.agent import EventDeliveryError
from tests.sinks.helpers import bodies, channel, drain, files, kafka_events, make_sink, put

NAME = re.compile(r"^(?P<topic>[\w.-]+)\+(?P<p>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})$")


def eo_props(root: Path, **kw: str) -> dict[str, str]:
    props = {"hdfs.path": f"file://{root}/%{{topic}}/p%{{partition}}",
             "hdfs.exactlyOnce": "true", "hdfs.rollInterval": "0", "hdfs.rollSize": "0",
             "hdfs.rollCount": "10", "hdfs.batchSize": "7", "hdfs.timeZone": "UTC"}
    props.update(kw)
    return props


def committed(root: Path) -> dict[tuple[str, int], list[tuple[int, int, list[bytes]]]]:
    """(topic, partition) -> [(first, last, bodies)] from the committed names."""
    out: dict[tuple[str, int], list[tuple[int, int, list[bytes]]]] = {}
    for p in files(root):
        m = NAME.match(p.name)
        if not m:
            continue
        out.setdefault((m["topic"], int(m["p"])), []).append(
            (int(m["first"]), int(m["last"]), bodies([p])))
    for v in out.values():
        v.sort()
    return out


def assert_exactly_once(root: Path, expect: dict[tuple[str, int], range]) -> None:
    got = committed(root)
    assert sorted(got) == sorted(expect)
    for tp, rng in expect.items():
        seen = [b for _, _, bs in got[tp] for b in bs]
        assert seen == [f"{tp[0]}-{tp[1]}-{o}".encode() for o in rng], tp
        for first, last, bs in got[tp]:  # the name tells the truth
            assert bs[0] == f"{tp[0]}-{tp[1]}-{first}".encode()
            assert bs[-1] == f"{tp[0]}-{tp[1]}-{last}".encode()


def test_files_are_named_by_topic_partition_and_offsets(tmp_path):
    ch = channel()
    s = make_sink(ch, **eo_props(tmp_path))
    assert s.held_mode
    evs = []
    for o in range(25):
        evs += kafka_events("orders", 0, [o]) + kafka_events("orders", 1, [100 + o])
    put(ch, evs)
    drain(s)
    # full files are committed, the rest is open and its takes held
    assert len(s._held) > 0
    s.stop()
    assert not s._held and ch.size == 0
    got = committed(tmp_path)
    assert [(f, last) for f, last, _ in got[("orders", 0)]] == [(0, 9), (10, 19), (20, 24)]
    assert [(f, last) for f, last, _ in got[("orders", 1)]] == \
        [(100, 109), (110, 119), (120, 124)]
    assert_exactly_once(tmp_path, {("orders", 0): range(25), ("orders", 1): range(100, 125)})
    assert all(p.parent.name in ("p0", "p1") and p.parent.parent.name == "orders"
               for p in files(tmp_path))


def test_restart_drops_what_is_stored_and_repeats(tmp_path):
    ch = channel()
    s = make_sink(ch, **eo_props(tmp_path))
    put(ch, kafka_events("t", 0, range(0, 30)))
    drain(s)
    s.stop()
    # the source sends some again (a replay from an older offset) and goes on
    s2 = make_sink(ch, **eo_props(tmp_path))
    put(ch, kafka_events("t", 0, range(15, 45)))
    drain(s2)
    s2.stop()
    assert_exactly_once(tmp_path, {("t", 0): range(45)})
    assert s2.counter.get("EventDrainSuccessCount") == 30


def test_crash_with_held_takes_then_restart_stores_every_offset_once(tmp_path):
    ch = channel()
    s = make_sink(ch, **eo_props(tmp_path, **{"hdfs.rollCount": "8"}))
    put(ch, kafka_events("t", 0, range(20)) + kafka_events("t", 3, range(20)))
    for _ in range(3):
        s.process()
    assert s._held and any(p.name.endswith(".tmp") for p in files(tmp_path))
    # crash: the process dies; the channel gives back every uncommitted take
    for f in s._files.values():
        f.handle.raw.close()
    for held in reversed(list(s._held.values())):
        held.tx.rollback()
        held.tx.close()
    assert ch.size > 0
    s2 = make_sink(ch, **eo_props(tmp_path, **{"hdfs.rollCount": "8"}))
    drain(s2)
    s2.stop()
    assert not any(p.name.endswith(".tmp") for p in files(tmp_path))
    assert_exactly_once(tmp_path, {("t", 0): range(20), ("t", 3): range(20)})


def test_repeats_within_a_run_are_dropped(tmp_path):
    ch = channel()
    s = make_sink(ch, **eo_props(tmp_path))
    put(ch, kafka_events("t", 0, [0, 1, 2, 1, 2, 3, 0, 4]))
    drain(s)
    s.stop()
    assert_exactly_once(tmp_path, {("t", 0): range(5)})


def test_one_open_file_per_partition_across_buckets(tmp_path):
    ch = channel()
    s = make_sink(ch, **eo_props(tmp_path, **{"hdfs.path": f"{tmp_path}/%{{topic}}/%H"}))
    hour = 3_600_000
    evs = []
    for o in range(12):   # timestamps alternate between two hours every 3 offsets
        ts = 1_700_000_000_000 + (hour if (o // 3) % 2 else 0)
        evs += kafka_events("t", 0, [o], ts=ts)
    put(ch, evs)
    drain(s)
    s.stop()
    spans = sorted((int(m["first"]), int(m["last"]), p.parent.name) for p in files(tmp_path)
                   if (m := NAME.match(p.name)))
    assert spans == [(0, 2, "22"), (3, 5, "23"), (6, 8, "22"), (9, 11, "23")]


def test_a_rival_copy_of_the_same_range_is_not_written_twice(tmp_path, caplog):
    ch = channel()
    s = make_sink(ch, **eo_props(tmp_path))
    put(ch, kafka_events("t", 0, range(10)))
    drain(s)
    (f,) = files(tmp_path)   # full: committed at the end of the batch
    assert f.name == "t+0+%020d+%020d" % (0, 9)
    # another writer (or an earlier attempt whose answer was lost) already stored 10..19
    rival = f.parent / f.name.replace("+00000000000000000000+00000000000000000009",
                                      "+00000000000000000010+00000000000000000019")
    put(ch, kafka_events("t", 0, range(10, 20)))
    s._seen[("t", 0)] = 9
    rival.write_bytes(b"".join(b"t-0-%d\n" % o for o in range(10, 20)))
    drain(s)
    s.stop()
    assert "exists already" in caplog.text
    assert_exactly_once(tmp_path, {("t", 0): range(20)})


def test_events_without_kafka_headers_are_refused(tmp_path):
    ch = channel()
    s = make_sink(ch, **eo_props(tmp_path))
    put(ch, [Event(b"x", {"topic": "t", "partition": "0"})])
    with pytest.raises(EventDeliveryError, match="'offset'"):
        s.process()
    assert ch.size == 1


def test_header_names_are_configurable(tmp_path):
    ch = channel()
    s = make_sink(ch, **eo_props(tmp_path, **{
        "hdfs.path": f"{tmp_path}/out", "hdfs.exactlyOnce.topicHeader": "kafka.topic",
        "hdfs.exactlyOnce.partitionHeader": "kafka.partition",
        "hdfs.exactlyOnce.offsetHeader": "kafka.offset", "hdfs.filePrefix": "part-"}))
    put(ch, [Event(b"x%d" % o, {"kafka.topic": "a.b_c-d", "kafka.partition": "2",
                                 "kafka.offset": str(o)}) for o in range(3)])
    drain(s)
    s.stop()
    (f,) = files(tmp_path)
    assert f.name == "part-a.b_c-d+2+%020d+%020d" % (0, 2)
    # a new sink learns the stored offsets through the prefix
    s2 = make_sink(ch, **eo_props(tmp_path, **{
        "hdfs.path": f"{tmp_path}/out", "hdfs.exactlyOnce.topicHeader": "kafka.topic",
        "hdfs.exactlyOnce.partitionHeader": "kafka.partition",
        "hdfs.exactlyOnce.offsetHeader": "kafka.offset", "hdfs.filePrefix": "part-"}))
    s2.process()
    assert s2._committed == {("a.b_c-d", 2): 2}
    s2.stop()

"""The ``hdfs`` sink on a local target: escapes, rolling, codecs, serializers,
commit-after-durable and failures."""
from __future__ import annotations

import errno
import os

import pytest

from fchannel import Event
from fchannel.agent import EventDeliveryError, Status
from fchannel.agent.registry import lookup
from fchannel.sinks import _targets
from fchannel.sinks.hdfs import HDFSEventSink
from tests.conftest import wait_for
from tests.sinks.helpers import bodies, channel, drain, files, make_sink, problems_of, put

TS = "1700000000123"   # 2023-11-14 22:13:20 UTC


def evs(n, start=0, **headers):
    h = {"timestamp": TS, **headers}
    return [Event(b"e%d" % i, dict(h)) for i in range(start, start + n)]


def base(tmp_path, **kw):
    props = {"hdfs.path": f"file://{tmp_path}/out", "hdfs.rollInterval": "0",
             "hdfs.rollSize": "0", "hdfs.rollCount": "0", "hdfs.timeZone": "UTC"}
    props.update(kw)
    return props


def test_registered_by_name_and_flume_class_name():
    assert lookup("sink", "hdfs") is HDFSEventSink
    assert lookup("sink", "org.apache.flume.sink.hdfs.HDFSEventSink") is HDFSEventSink


def test_escapes_build_the_directory_and_prefix(tmp_path):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, **{
        "hdfs.path": f"{tmp_path}/out/%{{host}}/%Y/%m/%d/%H",
        "hdfs.filePrefix": "ev-%M", "hdfs.fileSuffix": ".log"}))
    put(ch, evs(3, host="a") + evs(2, host="b"))
    drain(s)
    # open files are in use: FlumeData-like names with the in-use suffix
    assert all(p.name.endswith(".log.tmp") for p in files(tmp_path))
    s.stop()
    got = files(tmp_path)
    assert [p.relative_to(tmp_path / "out").parent.as_posix() for p in got] == \
        ["a/2023/11/14/22", "b/2023/11/14/22"]
    assert all(p.name.startswith("ev-13.") and p.name.endswith(".log") for p in got)
    assert bodies(got) == [b"e0", b"e1", b"e2", b"e0", b"e1"]


def test_missing_timestamp_is_a_delivery_error_and_local_timestamp_fixes_it(tmp_path):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, **{"hdfs.path": f"{tmp_path}/out/%Y"}))
    put(ch, [Event(b"x")])
    with pytest.raises(EventDeliveryError, match="timestamp"):
        s.process()
    assert ch.size == 1   # rolled back
    s2 = make_sink(ch, **base(tmp_path, **{"hdfs.path": f"{tmp_path}/out/%Y",
                                           "hdfs.useLocalTimeStamp": "true"}))
    drain(s2)
    s2.stop()
    assert bodies(files(tmp_path)) == [b"x"]


def test_roll_by_count(tmp_path):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, **{"hdfs.rollCount": "10", "hdfs.batchSize": "7"}))
    put(ch, evs(25))
    drain(s)
    done = [p for p in files(tmp_path) if not p.name.endswith(".tmp")]
    assert [len(bodies([p])) for p in done] == [10, 10]
    s.stop()
    got = files(tmp_path)
    assert [len(bodies([p])) for p in got] == [10, 10, 5]
    assert bodies(got) == [b"e%d" % i for i in range(25)]


def test_roll_by_size_counts_body_bytes(tmp_path):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, **{"hdfs.rollSize": "10"}))
    put(ch, [Event(b"abcd", {"timestamp": TS}) for _ in range(7)])
    drain(s)
    s.stop()
    assert [len(bodies([p])) for p in files(tmp_path)] == [3, 3, 1]


def test_roll_by_interval_and_idle_timeout(tmp_path):
    for prop in ("hdfs.rollInterval", "hdfs.idleTimeout"):
        out = tmp_path / prop
        ch = channel()
        s = make_sink(ch, **base(out, **{prop: "0.2"}))
        put(ch, evs(3))
        assert s.process() is Status.READY
        assert [p.name.endswith(".tmp") for p in files(out)] == [True]
        wait_for(lambda s=s: s.process() is Status.BACKOFF and not s._files, 5,
                 what=f"{prop} to close the file")
        (f,) = files(out)
        assert not f.name.endswith(".tmp") and bodies([f]) == [b"e0", b"e1", b"e2"]
        s.stop()


def test_max_open_files_closes_the_least_recently_written(tmp_path):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, **{"hdfs.path": f"{tmp_path}/out/%{{k}}",
                                          "hdfs.maxOpenFiles": "2", "hdfs.batchSize": "1"}))
    put(ch, evs(1, k="a") + evs(1, k="b") + evs(1, k="c"))
    drain(s)
    assert sorted(s._files) == [(f"{tmp_path}/out/b", "FlumeData"),
                                (f"{tmp_path}/out/c", "FlumeData")]
    assert [p.parent.name for p in files(tmp_path) if not p.name.endswith(".tmp")] == ["a"]
    s.stop()


@pytest.mark.parametrize("codec,ext", [("gzip", ".gz"), ("bzip2", ".bz2"), ("zstd", ".zst")])
def test_compressed_stream_every_batch_is_a_readable_member(tmp_path, codec, ext):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, **{"hdfs.codeC": codec, "hdfs.batchSize": "4"}))
    put(ch, evs(10))
    drain(s)
    (tmp,) = files(tmp_path)
    # still open: the batches so far are complete members that decode
    assert bodies([tmp], "text", codec) == [b"e%d" % i for i in range(10)]
    s.stop()
    (f,) = files(tmp_path)
    assert f.name.endswith(ext)
    assert bodies([f], "text", codec) == [b"e%d" % i for i in range(10)]


@pytest.mark.parametrize("serializer", ["text", "header_and_text", "json", "avro_event",
                                        "parquet"])
def test_each_serializer_reads_back(tmp_path, serializer):
    from fchannel.sinks._serializers import read_back
    ch = channel()
    s = make_sink(ch, **base(tmp_path, serializer=serializer, **{"hdfs.rollCount": "6"}))
    events = [Event(b"body %d" % i, {"timestamp": TS, "k": str(i)}) for i in range(9)]
    if serializer not in ("text", "header_and_text"):
        events.append(Event(b"\xff\x00bin", {"timestamp": TS}))
    put(ch, events)
    drain(s)
    s.stop()
    got = []
    for p in files(tmp_path):
        got.extend(read_back(p.read_bytes(), serializer))
    if serializer == "header_and_text":
        assert got[0][1] == b"{timestamp=1700000000123, k=0} body 0"
        assert len(got) == 9
    elif serializer == "text":
        assert [b for _, b in got] == [e.body for e in events]
    else:
        assert got == [(e.headers, e.body) for e in events]
    ext = {"avro_event": ".avro", "parquet": ".parquet"}.get(serializer, "")
    assert all(p.name.endswith(ext) for p in files(tmp_path))


@pytest.mark.parametrize("serializer,codec", [("avro_event", "zstd"), ("avro_event", "gzip"),
                                              ("parquet", "zstd"), ("parquet", "gzip")])
def test_container_codecs(tmp_path, serializer, codec):
    from fchannel.sinks._serializers import read_back
    ch = channel()
    s = make_sink(ch, **base(tmp_path, serializer=serializer, **{"hdfs.codeC": codec}))
    put(ch, evs(20))
    drain(s)
    s.stop()
    (f,) = files(tmp_path)
    assert [b for _, b in read_back(f.read_bytes(), serializer)] == \
        [b"e%d" % i for i in range(20)]


def test_avro_flushed_blocks_are_readable_before_close(tmp_path):
    from fchannel.sinks._serializers import read_back
    ch = channel()
    s = make_sink(ch, **base(tmp_path, serializer="avro_event", **{"hdfs.batchSize": "5"}))
    put(ch, evs(12))
    drain(s)
    (tmp,) = files(tmp_path)
    assert tmp.name.endswith(".avro.tmp")
    assert len(read_back(tmp.read_bytes(), "avro_event")) == 12
    s.stop()


def test_config_problems_name_the_property():
    probs = problems_of(**{"hdfs.path": "/x/%Q", "hdfs.fileType": "SequenceFile",
                           "serializer": "xml", "hdfs.round": "true",
                           "hdfs.roundUnit": "minute", "hdfs.roundValue": "7"})
    text = "\n".join(probs)
    assert "a1.sinks.k1.hdfs.path = '/x/%Q'" in text and "unknown escape %Q" in text
    assert "hdfs.fileType = 'SequenceFile'" in text and "SequenceFile" in text
    assert "serializer = 'xml'" in text
    assert "hdfs.roundValue = '7'" in text
    assert problems_of() == ["a1.sinks.k1.hdfs.path is missing"]
    assert any("CompressedStream" in p for p in problems_of(
        **{"hdfs.path": "/x", "hdfs.codeC": "gzip", "hdfs.fileType": "DataStream"}))
    assert any("unknown codec" in p for p in problems_of(
        **{"hdfs.path": "/x", "hdfs.codeC": "lzo9"}))
    assert any("fsspec" in p or "package" in p for p in problems_of(
        **{"hdfs.path": "nosuchfs://x/y"}))


# ---- commit after durable ---------------------------------------------------------------

def test_take_commits_only_after_fsync_and_a_failing_disk_loses_nothing(tmp_path, monkeypatch):
    ch = channel(tx=10)
    s = make_sink(ch, **base(tmp_path, **{"hdfs.batchSize": "10"}))
    put(ch, evs(30))
    assert s.process() is Status.READY
    synced = []
    real = os.fsync

    def failing(fd):
        synced.append(fd)
        raise OSError(errno.EIO, "injected I/O error")
    monkeypatch.setattr(_targets.os, "fsync", failing)
    with pytest.raises(EventDeliveryError, match="injected"):
        s.process()
    assert synced and ch.size == 20          # the failed batch went back to the channel
    with pytest.raises(EventDeliveryError):
        s.process()
    assert ch.size == 20
    monkeypatch.setattr(_targets.os, "fsync", real)
    drain(s)
    s.stop()
    got = bodies(files(tmp_path))
    # at least once: every event is there; the failed batch may be partly repeated
    assert set(got) == {b"e%d" % i for i in range(30)}
    assert got[:10] == [b"e%d" % i for i in range(10)]


def test_a_commit_failure_is_retried_and_data_stays_durable(tmp_path, monkeypatch):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, **{"hdfs.rollCount": "5", "hdfs.retryInterval": "0"}))
    real = os.link
    fail = {"on": True}

    def link(a, b):
        if fail["on"]:
            raise OSError(errno.EIO, "injected link failure")
        return real(a, b)
    monkeypatch.setattr(_targets.os, "link", link)
    put(ch, evs(5))
    assert s.process() is Status.READY        # written, fsynced, take committed
    assert ch.size == 0 and s._pending
    assert s.process() is Status.BACKOFF      # retrying the rename, not taking
    fail["on"] = False
    drain(s)
    s.stop()
    (f,) = files(tmp_path)
    assert not f.name.endswith(".tmp") and bodies([f]) == [b"e%d" % i for i in range(5)]


def test_held_mode_parquet_rolls_back_when_the_commit_fails(tmp_path, monkeypatch):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, serializer="parquet", **{"hdfs.rollCount": "10",
                                                                "hdfs.batchSize": "15"}))
    assert s.held_mode   # Parquet has no readable prefix: takes wait for the commit
    put(ch, evs(15))
    assert s.process() is Status.READY
    # e0..e9 are in a committed file; e10..e14 in an open one; the take is held
    assert [p.name.endswith(".tmp") for p in files(tmp_path)] == [False, True]
    assert ch.size == 0 and len(s._held) == 1

    def link(a, b):
        raise OSError(errno.ENOSPC, "injected: no space")
    monkeypatch.setattr(_targets.os, "link", link)
    s.stop()   # cannot commit the open file: discards it and rolls the take back
    assert ch.size == 15 and not s._held
    with ch.transaction() as tx:   # back at the head, in order (at least once: e0..e9 again)
        assert [e.body for e in tx.take_batch(20)] == [b"e%d" % i for i in range(15)]
        tx.rollback()
    assert [p.name.endswith(".tmp") for p in files(tmp_path)] == [False]


def test_held_mode_write_failure_rolls_back_every_held_take(tmp_path, monkeypatch):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, serializer="parquet", **{"hdfs.batchSize": "4"}))
    put(ch, evs(10))
    assert s.process() is Status.READY and s.process() is Status.READY
    assert ch.size == 2 and len(s._held) == 2

    def boom(self, events):
        raise OSError(errno.EIO, "injected write failure")
    monkeypatch.setattr(type(next(iter(s._files.values())).writer), "write", boom)
    with pytest.raises(EventDeliveryError, match="injected write failure"):
        s.process()
    assert ch.size == 10 and not s._held and files(tmp_path) == []
    monkeypatch.undo()
    drain(s)
    s.stop()
    assert bodies(files(tmp_path), "parquet") == [b"e%d" % i for i in range(10)]


def test_held_takes_are_capped_at_half_the_channel(tmp_path):
    ch = channel(capacity=40, tx=10)
    s = make_sink(ch, **base(tmp_path, serializer="parquet", **{"hdfs.batchSize": "10"}))
    assert s.max_held == 20
    put(ch, evs(30))
    assert s.process() is Status.READY and len(s._held) == 1 and not files(tmp_path)[0].name \
        .endswith(".parquet")
    assert s.process() is Status.READY   # 20 held: every open file is committed
    assert not s._held and [p.name.endswith(".parquet") for p in files(tmp_path)] == [True]
    s.stop()


def test_empty_in_use_suffix_and_in_use_prefix(tmp_path):
    ch = channel()
    s = make_sink(ch, **base(tmp_path, **{"hdfs.emptyInUseSuffix": "true",
                                          "hdfs.inUsePrefix": "_"}))
    put(ch, evs(2))
    drain(s)
    (f,) = files(tmp_path)
    assert f.name.startswith("_FlumeData.") and "." not in f.name[len("_FlumeData."):]
    s.stop()
    (f,) = files(tmp_path)
    assert f.name.startswith("FlumeData.")

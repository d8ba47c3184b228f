"""Log format version 2 (docs/FORMAT.md): framing that damage cannot turn
into records, compact take commits, and the reader of version 1 (issues 14
and 15)."""
from __future__ import annotations

import importlib
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fchannel import ChannelError, Event, FileChannel
from fchannel.file import format as F
from fchannel.file.log import list_logs
from tests.channels import take_all
from tests.logbytes import log_bytes

DATA = Path(__file__).resolve().parent.parent / "data"
EXAMPLES = int(os.environ.get("FCHANNEL_FUZZ_EXAMPLES", "60"))


def _codecs():
    out = [pytest.param(importlib.import_module("fchannel.file._codec_py"), id="pure")]
    if not os.environ.get("FCHANNEL_NO_EXTENSIONS"):
        out.insert(0, pytest.param(importlib.import_module("fchannel.file._codec"),
                                   id="compiled"))
    return out


def _event_class(codec):
    if codec.__name__.endswith("_py"):
        return codec._event.Event
    return importlib.import_module("fchannel._event").Event


# ---- damage never makes a body a record ------------------------------------------------
@st.composite
def nested_logs(draw, codec):
    """A log whose events carry other logs in their bodies (a channel can
    carry another channel's files), some of them spanning blocks."""
    Ev = _event_class(codec)
    inner = bytearray()
    for i in range(draw(st.integers(1, 60))):
        codec.encode_put(inner, 9, Ev(b"inner-%d" % i, {"n": str(i)}))
    codec.encode_commit(inner, 9, F.COMMIT_PUTS, 1)
    inner_log = log_bytes(codec, inner, 1, 1)   # same file id as the outer log
    buf = bytearray()
    for txn in range(draw(st.integers(1, 6))):
        n = draw(st.integers(1, 5))
        for _ in range(n):
            cut = draw(st.integers(0, len(inner_log)))
            copies = draw(st.integers(1, 3))
            codec.encode_put(buf, txn, Ev(inner_log[cut:] * copies))
        codec.encode_commit(buf, txn, F.COMMIT_PUTS, n)
    return log_bytes(codec, buf, 1, 1)


def _rows(recs):
    return {(recs[k], recs[k + F.REC_WOID], recs[k + F.REC_OFFSET])
            for k in range(0, len(recs), F.REC_FIELDS)}


def _own_bytes(codec, pos: int, data: bytes) -> set[int]:
    """The file offsets of a record's own bytes (block headers not)."""
    length = int.from_bytes(data[pos + 4:pos + 8], "little")
    out: set[int] = set()
    p, left = pos, length
    while left > 0:
        n = min(left, F.BLOCK_SIZE - p % F.BLOCK_SIZE)
        out.update(range(p, p + n))
        left -= n
        p += n
        if left:
            p += F.BLOCK_HEADER_SIZE
    return out


@pytest.mark.parametrize("codec", _codecs())
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_damaged_byte_never_makes_a_body_a_record_nor_loses_an_intact_record(codec, data):
    log = data.draw(nested_logs(codec))
    real, _end, damage = codec.scan(log, F.LOG_HEADER_SIZE, -1, 1)
    assert not damage
    rows = _rows(real)
    last = max(off for _t, _w, off in rows)
    at = data.draw(st.integers(F.LOG_HEADER_SIZE, len(log) - 1))
    hurt = bytearray(log)
    hurt[at] ^= data.draw(st.integers(1, 255))
    recs, _end, _damage = codec.scan(bytes(hurt), F.LOG_HEADER_SIZE, -1, 1, last)
    got = _rows(recs)
    assert got <= rows, "a record was read that the writer never wrote"
    for rtype, woid, off in rows:
        if at not in _own_bytes(codec, off, log):
            assert (rtype, woid, off) in got, f"intact record at {off} lost (damage at {at})"


@pytest.mark.parametrize("codec", _codecs())
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_lost_pages_never_make_a_body_a_record(codec, data):
    log = data.draw(nested_logs(codec))
    real, _end, _damage = codec.scan(log, F.LOG_HEADER_SIZE, -1, 1)
    rows = _rows(real)
    hurt = bytearray(log)
    for _ in range(data.draw(st.integers(1, 3))):
        page = data.draw(st.integers(0, len(log) // 4096)) * 4096
        hurt[page:page + 4096] = bytes(len(hurt[page:page + 4096]))
        if data.draw(st.booleans()):   # or garbage instead of zeros
            chunk = data.draw(st.binary(min_size=1, max_size=64))
            hurt[page:page + len(chunk)] = chunk[:len(hurt) - page]
    recs, _end, _damage = codec.scan(bytes(hurt), F.LOG_HEADER_SIZE, -1, 1,
                                     max(off for _t, _w, off in rows))
    assert _rows(recs) <= rows


def test_a_channel_survives_a_flipped_bit_in_an_event_that_carries_log_records(tmp_path):
    # the reproduction of issue 14, point 6: an event whose body holds validly
    # framed records (another channel's log), one bit flipped in it
    src = FileChannel(tmp_path / "sck", [tmp_path / "sd"], capacity=100,
                      transaction_capacity=10, minimum_required_space=0)
    with src.transaction() as tx:
        tx.put_batch([Event(b"foreign-%d" % i) for i in range(5)])
    src.close()
    (_f, _d, foreign_log), *_ = list_logs([str(tmp_path / "sd")])
    body = Path(foreign_log).read_bytes()
    kw = dict(capacity=100, transaction_capacity=10, minimum_required_space=0,
              checkpoint_on_close=False)
    ch = FileChannel(tmp_path / "ck", [tmp_path / "d"], **kw)
    with ch.transaction() as tx:
        tx.put(Event(b"before"))
    with ch.transaction() as tx:
        tx.put(Event(body))
    with ch.transaction() as tx:
        tx.put(Event(b"after"))
    ch.close()
    (_f, _d, path), = [x for x in list_logs([str(tmp_path / "d")])]
    data = bytearray(Path(path).read_bytes())
    at = data.find(b"foreign-2") - 60    # inside the carried log's records
    data[at] ^= 0x10
    Path(path).write_bytes(bytes(data))
    for name in ("checkpoint", "checkpoint.meta", "inflightputs", "inflighttakes"):
        (tmp_path / "ck" / name).unlink(missing_ok=True)   # replay every record
    ch = FileChannel(tmp_path / "ck", [tmp_path / "d"], **kw)
    try:
        bodies = [e.body for e in take_all(ch)]
    finally:
        ch.close()
    # the damaged event is dropped; the intact ones stay; nothing foreign appears
    assert bodies == [b"before", b"after"]


# ---- compact take commits -------------------------------------------------------------
def test_a_take_commit_is_one_small_record_however_many_events_it_took(tmp_path):
    ch = FileChannel(tmp_path / "ck", [tmp_path / "d"], capacity=1000,
                     transaction_capacity=500, minimum_required_space=0)
    try:
        with ch.transaction() as tx:
            tx.put_batch([Event(b"x" * 256) for _ in range(500)])
        before = ch.counters["log_bytes_written"]
        with ch.transaction() as tx:
            assert len(tx.take_batch(500)) == 500
        written = ch.counters["log_bytes_written"] - before
        # one 36-byte header, 12 bytes of counts, a first pointer and a few runs
        # of equal steps (the step changes where a block header lies between
        # two events); version 1 wrote 500 take records of 36 bytes
        assert written <= F.RECORD_HEADER_SIZE + 12 + 48, written
    finally:
        ch.close()


# ---- the reader of version 1 -----------------------------------------------------------------
def _v1(tmp_path) -> Path:
    with tarfile.open(DATA / "v1-channel.tar.gz") as t:
        t.extractall(tmp_path, filter="data")
    return tmp_path / "channel"


def _open_v1(root: Path, **kw) -> FileChannel:
    return FileChannel(root / "checkpoint", [root / "data1", root / "data2"], capacity=1000,
                       transaction_capacity=100, max_file_size=16384,
                       minimum_required_space=0, checkpoint_interval=3600, name="v1", **kw)


def _v1_event(i: int) -> tuple[bytes, dict[str, str]]:
    return b"v1-%04d" % i + b"x" * (i % 300), {"i": str(i), "h\u00e9": "v"}


def _full_replay(root: Path) -> None:
    for name in ("checkpoint", "checkpoint.meta", "inflightputs", "inflighttakes"):
        (root / "checkpoint" / name).unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["checkpoint", "full replay"])
def test_a_channel_written_in_log_format_1_opens_with_its_events_and_marks(tmp_path, how):
    root = _v1(tmp_path)
    if how == "full replay":
        _full_replay(root)
    ch = _open_v1(root)
    try:
        assert ch.size == 260 and ch.marks == {"kafka:orders:0": 300, "taken": 40}
        assert ch.counters["open_corrupt_records"] == 0
        # new records go to version 2 files beside the old ones; a take commit
        # of version 2 names events of version 1 files
        with ch.transaction() as tx:
            tx.put_batch([Event(b"v2-%d" % i) for i in range(10)])
        with ch.transaction() as tx:
            got = tx.take_batch(100)
            tx.set_mark("taken", 140)
        assert [(e.body, e.headers) for e in got] == [_v1_event(i) for i in range(40, 140)]
    finally:
        ch.close()
    for _round in ("after a clean close", "after a full replay of both versions"):
        ch = _open_v1(root, checkpoint_on_close=False)
        try:
            with ch.transaction() as tx:
                events = tx.take_batch(100)
                tx.rollback()
            assert ch.size == 170
            assert [(e.body, e.headers) for e in events] == [_v1_event(i) for i in range(140, 240)]
            assert ch.marks["taken"] == 140
        finally:
            ch.close()
        _full_replay(root)
    ch = _open_v1(root)
    try:
        events = take_all(ch)
        assert [(e.body, e.headers) for e in events[:160]] == \
            [_v1_event(i) for i in range(140, 300)]
        assert [e.body for e in events[160:]] == [b"v2-%d" % i for i in range(10)]
    finally:
        ch.close()


def test_an_event_too_big_for_a_log_with_its_block_headers_is_refused_at_put(tmp_path):
    # a record of 65,500 bytes fits in a 65,536-byte file's 65,504 bytes after
    # the header, but not with the block header it spans: refused when put,
    # not at commit (where the transaction could only be rolled back)
    ch = FileChannel(tmp_path / "ck", [tmp_path / "d"], capacity=10, transaction_capacity=10,
                     max_file_size=65536, minimum_required_space=0)
    try:
        with ch.transaction() as tx:
            with pytest.raises(ChannelError, match="max_file_size=65536"):
                tx.put(Event(b"b" * (65500 - F.RECORD_HEADER_SIZE - 8)))
            tx.put(Event(b"small"))
        with ch.transaction() as tx:
            assert [e.body for e in tx.take_batch(10)] == [b"small"]
    finally:
        ch.close()

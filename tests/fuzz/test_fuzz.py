"""Fuzzing of every decoder, compiled and pure (DESIGN §5, guarantee 4).

Arbitrary and mutated bytes go into the record scanner and decoder, the
event reader, the framed-protobuf (meta) reader, the log header decoder, the
checkpoint loader, the event queue's ``load`` and ``ring_refs``.  Each may
only return or raise the library's errors (CorruptionError, ValueError);
never crash the interpreter or read outside its buffer.  Differential tests
check that the compiled modules and their pure twins give identical bytes
and results.

``FCHANNEL_FUZZ_EXAMPLES`` sets hypothesis' examples per test (default 150).
"""
from __future__ import annotations

import importlib
import os
import struct
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fchannel import CorruptionError
from fchannel.file import fchannel_pb2 as pb
from fchannel.file import format as F
from tests.logbytes import log_bytes, reseal_header

EXAMPLES = int(os.environ.get("FCHANNEL_FUZZ_EXAMPLES", "150"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _modules(kind: str):
    pure = importlib.import_module(f"fchannel.file._{kind}_py")
    out = [pytest.param(pure, id="pure")]
    if not os.environ.get("FCHANNEL_NO_EXTENSIONS"):
        try:
            out.insert(0, pytest.param(importlib.import_module(f"fchannel.file._{kind}"),
                                       id="compiled"))
        except ImportError:  # pragma: no cover - the package test fails then
            pass
    return out


CODECS = _modules("codec")
QUEUES = _modules("queue")
PURE_CODEC = importlib.import_module("fchannel.file._codec_py")
PURE_QUEUE = importlib.import_module("fchannel.file._queue_py")
COMPILED_CODEC = next((p.values[0] for p in CODECS if p.id == "compiled"), None)
COMPILED_QUEUE = next((p.values[0] for p in QUEUES if p.id == "compiled"), None)
needs_compiled = pytest.mark.skipif(COMPILED_CODEC is None, reason="compiled modules not loaded")

# ---- strategies ------------------------------------------------------------------------
texts = st.text(max_size=12)                      # may hold surrogates: not encodable
utf8_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
events = st.builds(lambda body, headers: (body, headers), st.binary(max_size=300),
                   st.dictionaries(utf8_texts, utf8_texts, max_size=4))
marks = st.dictionaries(utf8_texts.filter(bool), st.integers(-(1 << 63), (1 << 63) - 1),
                        max_size=3)


def _event(codec, body, headers):
    # each codec decodes into its own Event class; encode from the matching one
    ev_mod = (PURE_CODEC._event if codec is PURE_CODEC
              else importlib.import_module("fchannel._event"))
    return ev_mod.Event(body, headers)


@st.composite
def record_buffers(draw):
    """Records (puts, sealed puts, commits of puts and of takes, rollbacks)
    for one log file; a big event now and then, so records span blocks."""
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("put"), events),
        st.tuples(st.just("big"), st.integers(1, 3 * F.BLOCK_SIZE)),
        st.tuples(st.just("sealed"), st.binary(max_size=80)),
        st.tuples(st.just("commit"), st.tuples(st.just(F.COMMIT_PUTS),
                                               st.integers(0, (1 << 32) - 1), marks)),
        st.tuples(st.just("takes"), st.tuples(
            st.lists(st.integers(0, (1 << 62)), max_size=40), marks)),
        st.tuples(st.just("rollback"), st.none())), max_size=8))
    txn = draw(st.integers(0, (1 << 64) - 1))
    woid = draw(st.integers(1, (1 << 63) - 100))
    fid = draw(st.integers(1, 1000))
    return ops, txn, woid, fid


def encode(codec, ops, txn, woid, fid=1) -> bytes:
    """A whole log file (header and blocks) holding *ops*' records."""
    buf = bytearray()
    for op, arg in ops:
        if op == "put":
            codec.encode_put(buf, txn, _event(codec, *arg))
        elif op == "big":
            codec.encode_put(buf, txn, _event(codec, bytes([arg % 251]) * arg, {}))
        elif op == "sealed":
            codec.encode_sealed(buf, txn, arg)
        elif op == "commit":
            codec.encode_commit(buf, txn, arg[0], arg[1], arg[2])
        elif op == "takes":
            codec.encode_commit(buf, txn, F.COMMIT_TAKES, len(arg[0]), arg[1], arg[0])
        else:
            codec.encode_rollback(buf, txn)
    return log_bytes(codec, buf, fid, woid)


#: log files of format version 1 (the old reader is fuzzed on their mutations)
V1_LOGS = []
with tarfile.open(os.path.join(os.path.dirname(__file__), "..", "data",
                               "v1-channel.tar.gz")) as _tar:
    for _m in _tar.getmembers():
        if os.path.basename(_m.name).startswith("log-") and not _m.name.endswith(".meta"):
            V1_LOGS.append(_tar.extractfile(_m).read())   # type: ignore[union-attr]


def _mutate(draw, data: bytearray) -> bytes:
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["flip", "cut", "insert", "garbage", "length", "zeros"]))
        at = draw(st.integers(0, max(len(data), 1) - 1)) if data else 0
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif how == "garbage" and data:
            chunk = draw(st.binary(min_size=1, max_size=40))
            data[at:at + len(chunk)] = chunk
        elif how == "zeros" and data:   # a lost page
            page = at - at % 4096
            data[page:page + 4096] = bytes(len(data[page:page + 4096]))
        elif how == "length" and len(data) >= F.LOG_HEADER_SIZE + 8:
            # a record whose length field lies (the classic out-of-bounds read),
            # with its header crc made to match half the time
            pos = F.LOG_HEADER_SIZE
            struct.pack_into("<I", data, pos + 4, draw(st.sampled_from(
                [0, 1, 27, 28, 29, 35, 36, 37, len(data) + 1, 0xFFFFFFFF, 0x7FFFFFFF])))
            if draw(st.booleans()) and len(data) >= pos + F.RECORD_HEADER_SIZE:
                reseal_header(data, pos)
    return bytes(data)


@st.composite
def mutated(draw):
    """Valid log files with some bytes flipped, cut, inserted or replaced."""
    ops, txn, woid, fid = draw(record_buffers())
    return _mutate(draw, bytearray(encode(PURE_CODEC, ops, txn, woid, fid)))


@st.composite
def mutated_v1(draw):
    return _mutate(draw, bytearray(draw(st.sampled_from(V1_LOGS))))


any_bytes = st.one_of(st.binary(max_size=600), mutated())
any_bytes_v1 = st.one_of(st.binary(max_size=600), mutated_v1())


def _norm_scan(res):
    recs, good_end, damage = res
    return list(recs), good_end, [tuple(d) for d in damage]


def _outcome(fn, *args):
    """A comparable outcome: ('ok', value) or ('err', exception class)."""
    try:
        value = fn(*args)
    except (CorruptionError, ValueError, OverflowError) as exc:
        return ("err", type(exc).__name__)
    return ("ok", value)


def _ev_tuple(e):
    return None if e is None else (e.body, dict(e.headers))


def _rec_tuple(r):
    rtype, txn, woid, length, value = r
    if rtype == F.REC_PUT:
        value = _ev_tuple(value)
    elif rtype == F.REC_COMMIT:
        value = (value[0], value[1], dict(value[2]), *([list(value[3])] if len(value) > 3 else []))
    return rtype, txn, woid, length, value


def _opener(sealed, aad, pointer):
    """Opens the fuzzed "sealed" payloads: a valid one is a put payload."""
    return bytes(sealed)


_PAYLOAD = PURE_CODEC.put_payload(PURE_CODEC._event.Event(b"opened", {"k": "v"}))


def _any_opener(sealed, aad, pointer):
    """Opens every sealed payload to one valid event (the framing is under test)."""
    return _PAYLOAD


# ---- the decoders never crash --------------------------------------------------------------
@pytest.mark.parametrize("codec", CODECS)
@fuzz
@given(data=any_bytes, start=st.integers(-5, 4 * F.BLOCK_SIZE), end=st.integers(-5, 5 * F.BLOCK_SIZE),
       fid=st.integers(0, 1000), hint=st.integers(-1, 4 * F.BLOCK_SIZE))
def test_scan_never_crashes_and_stays_in_bounds(codec, data, start, end, fid, hint):
    recs, good_end, damage = codec.scan(data, start, end, fid, hint)
    size = len(data)
    stop = size if end < 0 or end > size else end
    lo = max(start, F.LOG_HEADER_SIZE)
    assert len(recs) % 5 == 0
    for k in range(0, len(recs), 5):
        off = recs[k + 3]
        assert lo <= off < stop
        assert recs[k] in F.RECORD_TYPES
        if recs[k] == F.REC_TAKE:
            continue   # named by the commit at the same offset
        # every record scan accepts decodes, and fits in the range
        rtype, _t, _w, extent, _v = codec.decode_record(data[:stop], off, _any_opener, fid)
        assert rtype == recs[k] and off + extent <= stop
    for a, b, kind in damage:
        assert lo <= a <= b <= max(stop, lo) and kind in ("corrupt", "tail")


@pytest.mark.parametrize("codec", CODECS)
@fuzz
@given(data=any_bytes, pos=st.integers(-3, 3 * F.BLOCK_SIZE), fid=st.integers(0, 1000))
def test_decode_record_raises_only_corruption(codec, data, pos, fid):
    try:
        rtype, _txn, _woid, extent, _value = codec.decode_record(data, pos, _opener, fid)
    except CorruptionError:
        return
    assert rtype in F.RECORD_TYPES and pos >= 0 and pos + extent <= len(data)


@pytest.mark.parametrize("codec", CODECS)
@fuzz
@given(data=any_bytes, offsets=st.lists(st.integers(0, 3 * F.BLOCK_SIZE), max_size=6))
def test_read_events_on_garbage_files(codec, data, offsets, tmp_path_factory):
    path = tmp_path_factory.mktemp("re") / "log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            got = codec.read_events(fd, offsets, _opener)
        except CorruptionError:   # a "sealed" payload that opens to a malformed event
            return
    finally:
        os.close(fd)
    assert len(got) == len(offsets)
    for off, e in zip(offsets, got):
        if e is not None:   # only a valid put record gives an event
            assert codec.decode_record(data, off, _opener)[0] == F.REC_PUT


@pytest.mark.parametrize("codec", CODECS)
@fuzz
@given(data=any_bytes_v1, start=st.integers(-5, 700), end=st.integers(-5, 20000),
       pos=st.integers(-3, 20000), offsets=st.lists(st.integers(0, 20000), max_size=6))
def test_the_version_1_reader_never_crashes(codec, data, start, end, pos, offsets,
                                            tmp_path_factory):
    recs, _good_end, damage = codec.scan_v1(data, start, end)
    stop = len(data) if end < 0 or end > len(data) else end
    for k in range(0, len(recs), 5):
        off = recs[k + 3]
        rtype, _t, _w, length, _v = codec.decode_record_v1(data[:stop], off)
        assert rtype == recs[k] and off + length <= stop
    for a, b, kind in damage:
        assert a <= b and kind in ("corrupt", "tail")
    try:
        codec.decode_record_v1(data, pos)
    except CorruptionError:
        pass
    path = tmp_path_factory.mktemp("v1") / "log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert len(codec.read_events_v1(fd, offsets)) == len(offsets)
    finally:
        os.close(fd)


@fuzz
@given(data=any_bytes, magic=st.sampled_from([F.LOG_META_MAGIC, F.CHECKPOINT_META_MAGIC,
                                              F.INFLIGHT_PUTS_MAGIC]))
def test_framed_and_meta_readers_raise_corruption(data, magic, tmp_path_factory):
    from fchannel.file.log import read_framed, read_log_meta
    d = tmp_path_factory.mktemp("fr")
    path = d / "log-3.meta"
    # half the time a valid frame around garbage, so the protobuf parser is reached
    for payload in (data, F.FRAME.pack(magic, len(data), PURE_CODEC.crc(data)) + data):
        path.write_bytes(payload)
        for typ in (pb.LogMeta, pb.CheckpointMeta, pb.Inflight):
            try:
                read_framed(str(path), magic, typ)
            except CorruptionError:
                pass
        try:
            read_log_meta(str(d / "log-3"), 3)
        except CorruptionError:
            pass


@fuzz
@given(data=st.binary(max_size=64))
def test_log_header_decoder_raises_corruption(data):
    from fchannel.file.log import decode_log_header, encode_log_header
    try:
        decode_log_header(data, "log-1")
    except CorruptionError:
        pass
    good = encode_log_header(5, 77)
    assert decode_log_header(good) == (5, 77)


@st.composite
def checkpoint_dirs(draw):
    """Checkpoint files: garbage, or valid ones with fields and bytes changed."""
    capacity = draw(st.integers(1, 40))
    head = draw(st.integers(-2, capacity + 2))
    size = draw(st.integers(-2, capacity + 2))
    return capacity, head, size, draw(st.binary(max_size=200)), draw(st.integers(0, 5))


@fuzz
@given(case=checkpoint_dirs())
def test_checkpoint_loader_raises_corruption(case, tmp_path_factory):
    from fchannel.file.checkpoint import CheckpointStore
    capacity, head, size, junk, mode = case
    d = str(tmp_path_factory.mktemp("ck"))
    store = CheckpointStore(d, capacity)
    store.create()
    store.begin()
    h = max(0, min(head, capacity - 1))
    n = max(0, min(size, capacity))
    store.finish(9, h, n, {"k": 1}, {}, [], {1: [5]}, {}, 2)
    store.complete()
    store.close()
    path = os.path.join(d, [F.CHECKPOINT_FILE, F.CHECKPOINT_META_FILE, F.INFLIGHT_PUTS_FILE,
                            F.INFLIGHT_TAKES_FILE, F.CHECKPOINT_FILE, "none"][mode])
    if mode == 4:   # lie about head and size in a header with a valid crc
        from fchannel.file.checkpoint import _header_crc
        with open(path, "r+b") as f:
            hdr = bytearray(f.read(F.CHECKPOINT_HEADER_SIZE))
            struct.pack_into("<QQ", hdr, 24, size & (2**64 - 1), head & (2**64 - 1))
            struct.pack_into("<I", hdr, 52, _header_crc(hdr))
            f.seek(0)
            f.write(hdr)
    elif mode < 4 and junk:
        with open(path, "r+b") as f:
            f.seek(min(len(junk), os.path.getsize(path)))
            f.write(junk)
    loader = CheckpointStore(d, capacity)
    try:
        loaded = loader.load()
    except CorruptionError:
        return
    finally:
        loader.close()
    assert 0 <= loaded.head < capacity and 0 <= loaded.size <= capacity


@pytest.mark.parametrize("queue", QUEUES)
@fuzz
@given(capacity=st.integers(1, 50), head=st.integers(-3, 60), size=st.integers(-3, 60),
       slots=st.integers(0, 55))
def test_event_queue_load_and_ring_refs_reject_bad_geometry(queue, capacity, head, size, slots):
    from array import array
    ring = array("q", range(slots))
    q = queue.EventQueue(capacity)
    try:
        q.load(ring, head, size)
    except ValueError:
        pass
    else:
        assert slots == capacity and 0 <= head < capacity and 0 <= size <= capacity
        assert q.to_list() == [ring[(head + i) % capacity] for i in range(size)]
    try:
        refs = queue.ring_refs(ring, head, size)
    except ValueError:
        return
    assert sum(refs.values()) == size


# ---- compiled and pure agree ---------------------------------------------------------------
@needs_compiled
@fuzz
@given(case=record_buffers())
def test_compiled_and_pure_encode_identical_bytes(case):
    ops, txn, woid, fid = case
    a = encode(COMPILED_CODEC, ops, txn, woid, fid)
    b = encode(PURE_CODEC, ops, txn, woid, fid)
    assert a == b
    recs, end, damage = COMPILED_CODEC.scan(a, 0, -1, fid)
    assert end == len(a) and damage == []
    takes = sum(len(arg[0]) for op, arg in ops if op == "takes")
    assert len(recs) == 5 * (len(ops) + takes)


@needs_compiled
@fuzz
@given(body=st.binary(max_size=50), headers=st.dictionaries(texts, texts, max_size=3))
def test_unencodable_headers_fail_the_same_way(body, headers):
    outs = []
    for codec in (COMPILED_CODEC, PURE_CODEC):
        buf = bytearray()
        # an Event refuses such headers when made; its dict can still be
        # changed in place afterwards, and the codec must refuse them then
        event = _event(codec, body, {})
        event.headers.update(headers)
        try:
            codec.encode_put(buf, 1, event)
            outs.append(("ok", bytes(buf)))
        except ValueError as exc:   # not UTF-8: a clear error naming the header
            assert "Event header" in str(exc)
            outs.append(("err", len(buf), str(exc)))
    assert outs[0] == outs[1]


@needs_compiled
@fuzz
@given(data=any_bytes, start=st.integers(-5, 4 * F.BLOCK_SIZE), end=st.integers(-5, 5 * F.BLOCK_SIZE),
       fid=st.integers(0, 1000), hint=st.integers(-1, 4 * F.BLOCK_SIZE))
def test_compiled_and_pure_scan_agree(data, start, end, fid, hint):
    a = _norm_scan(COMPILED_CODEC.scan(data, start, end, fid, hint))
    b = _norm_scan(PURE_CODEC.scan(data, start, end, fid, hint))
    assert a == b


@needs_compiled
@fuzz
@given(data=any_bytes_v1, start=st.integers(-5, 700), end=st.integers(-5, 20000))
def test_compiled_and_pure_version_1_scan_agree(data, start, end):
    assert _norm_scan(COMPILED_CODEC.scan_v1(data, start, end)) == \
        _norm_scan(PURE_CODEC.scan_v1(data, start, end))


@needs_compiled
@fuzz
@given(data=any_bytes, pos=st.integers(-3, 3 * F.BLOCK_SIZE), fid=st.integers(0, 1000))
def test_compiled_and_pure_decode_agree(data, pos, fid):
    a = _outcome(COMPILED_CODEC.decode_record, data, pos, _opener, fid)
    b = _outcome(PURE_CODEC.decode_record, data, pos, _opener, fid)
    if a[0] == "ok":
        a = ("ok", _rec_tuple(a[1]))
    if b[0] == "ok":
        b = ("ok", _rec_tuple(b[1]))
    assert a == b


@needs_compiled
@fuzz
@given(data=any_bytes, offsets=st.lists(st.integers(0, 3 * F.BLOCK_SIZE), max_size=6))
def test_compiled_and_pure_read_events_agree(data, offsets):
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        a = _outcome(lambda: [_ev_tuple(e) for e in
                              COMPILED_CODEC.read_events(f.fileno(), offsets, _opener)])
        b = _outcome(lambda: [_ev_tuple(e) for e in
                              PURE_CODEC.read_events(f.fileno(), offsets, _opener)])
    assert a == b


@needs_compiled
@fuzz
@given(data=any_bytes_v1, offsets=st.lists(st.integers(0, 20000), max_size=6))
def test_compiled_and_pure_version_1_read_events_agree(data, offsets):
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        a = [_ev_tuple(e) for e in COMPILED_CODEC.read_events_v1(f.fileno(), offsets)]
        b = [_ev_tuple(e) for e in PURE_CODEC.read_events_v1(f.fileno(), offsets)]
    assert a == b


@needs_compiled
@fuzz
@given(ops=st.lists(st.tuples(st.sampled_from(["tail", "head", "pop", "remove", "ckpt"]),
                              st.lists(st.integers(-(1 << 40), 1 << 40), max_size=5)),
                    max_size=30), capacity=st.integers(1, 20))
def test_compiled_and_pure_queues_agree(ops, capacity):
    from array import array
    qs = [COMPILED_QUEUE.EventQueue(capacity), PURE_QUEUE.EventQueue(capacity)]
    rings = [array("q", bytes(8 * capacity)), array("q", bytes(8 * capacity))]
    for op, arg in ops:
        outs = []
        for q, ring in zip(qs, rings):
            if op == "tail":
                outs.append(_outcome(q.add_tail, arg))
            elif op == "head":
                outs.append(_outcome(q.add_head, arg))
            elif op == "pop":
                outs.append(_outcome(q.pop_head, len(arg)))
            elif op == "remove":
                outs.append(_outcome(q.remove, arg[0] if arg else 0))
            else:
                outs.append(q.write_dirty(ring) >= 0)
        assert outs[0] == outs[1], op
        assert qs[0].to_list() == qs[1].to_list()
        assert (qs[0].head, qs[0].size) == (qs[1].head, qs[1].size)
        assert qs[0].refs() == qs[1].refs()
    assert list(rings[0]) == list(rings[1])


@needs_compiled
@fuzz
@given(data=st.binary(max_size=2000), start=st.integers(0, 15), seed=st.integers(0, (1 << 32) - 1))
def test_the_compiled_crc_is_zlibs(data, start, seed):
    # the compiled codec folds with carry-less multiplication where the CPU
    # can; the checksum on disk must stay zlib's CRC-32 for every length and
    # alignment (the pure twin and older files use zlib's)
    import zlib
    view = memoryview(data)[start:]
    assert COMPILED_CODEC.crc(view, seed) == zlib.crc32(view, seed)
    assert COMPILED_CODEC.crc(view) == zlib.crc32(view)

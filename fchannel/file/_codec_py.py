"""Pure-Python twin of ``_codec.pyx``: the record codec and log-file I/O,
written for clarity.  It must produce the same bytes and the same results as
the compiled module (tests check both, and check them against each other)."""
from __future__ import annotations

import array
import errno
import os
import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from fchannel._compat import _event_source
from fchannel.errors import CorruptionError
from fchannel.file import format as F

HDR = F.RECORD_HEADER_SIZE
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_HEAD = F.RECORD_HEADER
#: Event and its header rules, from ``_event.py`` run as Python (the pure form)
_event: Any = _event_source()


def crc(data, value: int = 0) -> int:
    return zlib.crc32(data, value)


def _record_crc(rec) -> int:
    return zlib.crc32(rec[F.CRC_END:], zlib.crc32(rec[:F.CRC_OFFSET]))


def _header(rtype: int, length: int, txn_id: int) -> bytes:
    return _HEAD.pack(F.RECORD_MAGIC, rtype, 0, length, 0, txn_id, 0)


def encode_put(buf: bytearray, txn_id: int, event) -> int:
    parts = [_U32.pack(len(event.headers))]
    for k, v in event.headers.items():
        try:  # headers is a mutable dict: it may have changed since the Event was made
            kb, vb = k.encode("utf-8"), v.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            _event.check_headers(event.headers)   # raises, naming the header
            raise
        parts += [_U32.pack(len(kb)), kb, _U32.pack(len(vb)), vb]
    parts += [_U32.pack(len(event.body)), event.body]
    payload = b"".join(parts)
    n = HDR + len(payload)
    if n > F.MAX_RECORD_SIZE:
        raise ValueError(f"event of {n} bytes is larger than a record can be")
    start = len(buf)
    buf += _header(F.REC_PUT, n, txn_id)
    buf += payload
    return start


def encode_puts(buf: bytearray, txn_id: int, events: list, starts: list) -> None:
    for e in events:
        starts.append(encode_put(buf, txn_id, e))


def encode_take(buf: bytearray, txn_id: int, pointer: int) -> int:
    start = len(buf)
    buf += _header(F.REC_TAKE, HDR + 8, txn_id)
    buf += _I64.pack(pointer)
    return start


def encode_takes(buf: bytearray, txn_id: int, pointers: Iterable[int]) -> None:
    for p in pointers:
        encode_take(buf, txn_id, p)


def encode_commit(buf: bytearray, txn_id: int, kind: int, count: int,
                  marks: Mapping[str, int] | None = None) -> int:
    m = dict(marks) if marks else {}
    body = [bytes([kind, 0, 0, 0]), _U32.pack(count), _U32.pack(len(m))]
    for k, v in m.items():
        kb = k.encode("utf-8")
        body += [_U32.pack(len(kb)), kb, _I64.pack(v)]
    payload = b"".join(body)
    start = len(buf)
    buf += _header(F.REC_COMMIT, HDR + len(payload), txn_id)
    buf += payload
    return start


def encode_rollback(buf: bytearray, txn_id: int) -> int:
    start = len(buf)
    buf += _header(F.REC_ROLLBACK, HDR, txn_id)
    return start


def finalize(buf: bytearray, start: int, first_woid: int) -> int:
    pos, end, woid = start, len(buf), first_woid
    while pos + HDR <= end:
        length = _U32.unpack_from(buf, pos + 4)[0]
        if length < HDR or pos + length > end:
            break
        _U64.pack_into(buf, pos + F.WOID_OFFSET, woid)
        _U32.pack_into(buf, pos + F.CRC_OFFSET, _record_crc(memoryview(buf)[pos:pos + length]))
        woid += 1
        pos += length
    if pos != end:
        raise ValueError(f"record buffer is malformed at offset {pos}")
    return woid


def _check_put_body(rec, length: int) -> bool:
    q = HDR
    if q + 4 > length:
        return False
    nh = _U32.unpack_from(rec, q)[0]
    q += 4
    for _ in range(nh):
        for _part in range(2):
            if q + 4 > length:
                return False
            k = _U32.unpack_from(rec, q)[0]
            if length - q - 4 < k:
                return False
            q += 4 + k
    if q + 4 > length:
        return False
    return _U32.unpack_from(rec, q)[0] == length - q - 4


def _check_commit_body(rec, length: int) -> bool:
    q = HDR + 12
    if q > length:
        return False
    nm = _U32.unpack_from(rec, HDR + 8)[0]
    for _ in range(nm):
        if q + 4 > length:
            return False
        k = _U32.unpack_from(rec, q)[0]
        if length - q - 4 < k + 8:
            return False
        q += 12 + k
    return q == length


def _valid_at(data, pos: int, end: int) -> int:
    """Length of the valid record at *pos*; -1 damaged; -2 runs past *end*."""
    if end - pos < HDR:
        return -2
    magic, rtype, flags, length, crc_, _txn, _woid = _HEAD.unpack_from(data, pos)
    if magic != F.RECORD_MAGIC or not (F.REC_PUT <= rtype <= F.REC_ROLLBACK) or flags:
        return -1
    if length < HDR:
        return -1
    if length > end - pos:
        return -2
    rec = memoryview(data)[pos:pos + length]
    if crc_ != _record_crc(rec):
        return -1
    if rtype == F.REC_PUT:
        ok = _check_put_body(rec, length)
    elif rtype == F.REC_TAKE:
        ok = length == HDR + 8
    elif rtype == F.REC_COMMIT:
        ok = _check_commit_body(rec, length)
    else:
        ok = length == HDR
    return length if ok else -1


def _utf8(b) -> str:
    try:
        return bytes(b).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptionError("header text is not valid UTF-8") from None


def _decode_put(rec, length: int):
    q = HDR + 4
    headers = {}
    for _ in range(_U32.unpack_from(rec, HDR)[0]):
        ks = _U32.unpack_from(rec, q)[0]
        key = _utf8(rec[q + 4:q + 4 + ks])
        q += 4 + ks
        vs = _U32.unpack_from(rec, q)[0]
        headers[key] = _utf8(rec[q + 4:q + 4 + vs])
        q += 4 + vs
    bs = _U32.unpack_from(rec, q)[0]
    e = _event.Event.__new__(_event.Event)
    e._body = bytes(rec[q + 4:q + 4 + bs])
    e._headers = headers
    return e


def _decode_marks(rec) -> dict[str, int]:
    q = HDR + 12
    marks = {}
    for _ in range(_U32.unpack_from(rec, HDR + 8)[0]):
        ks = _U32.unpack_from(rec, q)[0]
        marks[_utf8(rec[q + 4:q + 4 + ks])] = _I64.unpack_from(rec, q + 4 + ks)[0]
        q += 12 + ks
    return marks


def decode_record(data, pos: int = 0):
    mv = memoryview(data).cast("B")
    end = len(mv)
    if pos < 0 or pos > end:
        raise CorruptionError(f"offset {pos} is outside the buffer of {end} bytes")
    if end == 0:
        raise CorruptionError("incomplete record at offset 0")
    length = _valid_at(mv, pos, end)
    if length == -2:
        raise CorruptionError(f"incomplete record at offset {pos}")
    if length < 0:
        raise CorruptionError(f"damaged record at offset {pos}")
    rec = mv[pos:pos + length]
    _m, rtype, _f, _l, _c, txn, woid = _HEAD.unpack_from(rec, 0)
    if rtype == F.REC_PUT:
        value = _decode_put(rec, length)
    elif rtype == F.REC_TAKE:
        value = _I64.unpack_from(rec, HDR)[0]
    elif rtype == F.REC_COMMIT:
        value = (rec[HDR], _U32.unpack_from(rec, HDR + 4)[0], _decode_marks(rec))
    else:
        value = None
    return rtype, txn, woid, length, value


def scan(data, start: int, end: int = -1):
    mv = memoryview(data).cast("B")
    size = len(mv)
    if end < 0 or end > size:
        end = size
    start = max(start, 0)
    out = array.array("q")
    damage: list[tuple[int, int, str]] = []
    pos = good_end = start
    while pos < end:
        length = _valid_at(mv, pos, end)
        if length > 0:
            rtype = mv[pos + 2]
            txn = _U64.unpack_from(mv, pos + 12)[0]
            woid = _U64.unpack_from(mv, pos + 20)[0]
            if rtype == F.REC_TAKE:
                aux = _I64.unpack_from(mv, pos + HDR)[0]
            elif rtype == F.REC_COMMIT:
                aux = (mv[pos + HDR] | ((_U32.unpack_from(mv, pos + HDR + 8)[0] != 0) << 8)
                       | (_U32.unpack_from(mv, pos + HDR + 4)[0] << 16))
            else:
                aux = 0
            out.extend((rtype, _as_i64(txn), _as_i64(woid), pos, aux))
            pos += length
            good_end = pos
            continue
        if mv[pos] == 0 and not any(mv[pos:end]):
            break   # zeros to the end: preallocated space, the clean end of the log
        q = pos + 1
        found = False
        while q + HDR <= end:
            if mv[q] == 0xFC and mv[q + 1] == 0x1A and _valid_at(mv, q, end) > 0:
                found = True
                break
            q += 1
        if found:
            damage.append((pos, q, "corrupt"))
            pos = q
        else:
            damage.append((pos, end, "tail"))
            break
    return out, good_end, damage


def _as_i64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def pwrite_all(fd: int, data, offset: int) -> int:
    with memoryview(data).cast("B") as mv:   # released even when pwrite raises
        done = 0
        while done < len(mv):
            with mv[done:] as rest:
                n = os.pwrite(fd, rest, offset + done)
            if n == 0:   # no progress and no error: never spin on it
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            done += n
        return done


def fdatasync(fd: int) -> None:
    os.fdatasync(fd)


def _pread_full(fd: int, n: int, offset: int) -> bytes:
    chunks = []
    got = 0
    while got < n:
        b = os.pread(fd, n - got, offset + got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _read_one(fd: int, offset: int):
    small = _pread_full(fd, 4096, offset)
    length = _valid_at(small, 0, len(small))
    if length > 0:
        return _decode_put(memoryview(small), length) if small[2] == F.REC_PUT else None
    if length == -1 or len(small) < HDR:
        return None
    length = _U32.unpack_from(small, 4)[0]
    if length > os.fstat(fd).st_size - offset:   # a damaged length: never read what is not there
        return None
    big = _pread_full(fd, length, offset)
    length = _valid_at(big, 0, len(big))
    if length > 0 and big[2] == F.REC_PUT:
        return _decode_put(memoryview(big), length)
    return None


def read_events(fd: int, pointers) -> list:
    offs = [p & 0xFFFFFFFF for p in pointers]
    out: list = [None] * len(offs)
    if not offs:
        return out
    lo, hi = min(offs), max(offs)
    if hi - lo <= F.SPAN_LIMIT:
        buf = _pread_full(fd, hi - lo + F.READ_AHEAD, lo)
        mv = memoryview(buf)
        for i, off in enumerate(offs):
            rel = off - lo
            length = _valid_at(mv, rel, len(buf))
            if length > 0:
                out[i] = _decode_put(mv[rel:rel + length], length) if buf[rel + 2] == F.REC_PUT else None
            elif length == -2:
                out[i] = _read_one(fd, off)
    else:
        for i, off in enumerate(offs):
            out[i] = _read_one(fd, off)
    return out

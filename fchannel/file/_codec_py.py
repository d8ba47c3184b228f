"""Pure-Python twin of ``_codec.pyx``: the record codec and log-file I/O,
written for clarity.  It must produce the same bytes and the same results as
the compiled module (tests check both, and check them against each other).

Log format version 2 is written and read; version 1 (the ``*_v1``
functions at the end) is only read.  Positions are file offsets: block
boundaries lie at multiples of BLOCK_SIZE from the start of the file."""
from __future__ import annotations

import array
import errno
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from fchannel._compat import _event_source
from fchannel.errors import CorruptionError
from fchannel.file import format as F

HDR = F.RECORD_HEADER_SIZE
HDR1 = F.RECORD_HEADER_SIZE_V1
B = F.BLOCK_SIZE
BH = F.BLOCK_HEADER_SIZE
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_HEAD = F.RECORD_HEADER
_HEAD1 = F.RECORD_HEADER_V1
_AAD = struct.Struct("<BQ")
#: Event and its header rules, from ``_event.py`` run as Python (the pure form)
_event: Any = _event_source()


def crc(data, value: int = 0) -> int:
    return zlib.crc32(data, value)


def _utf8(b) -> str:
    try:
        return bytes(b).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptionError("header text is not valid UTF-8") from None


def _as_i64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v



def sealed_aad(txn_id: int) -> bytes:
    """The associated data a sealed put's payload is bound to: its type and
    transaction id."""
    return _AAD.pack(F.REC_PUT, txn_id)


# ---- varints (unsigned LEB128) ------------------------------------------------------
def _varint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _read_varint(rec, q: int, end: int) -> tuple[int, int]:
    """(value, next position); (-1, q) when malformed or past *end*."""
    v = 0
    shift = 0
    while q < end and shift < 7 * F.VARINT_MAX:
        b = rec[q]
        q += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return (v, q) if v < (1 << 63) else (-1, q)
        shift += 7
    return -1, q


# ---- encoding -----------------------------------------------------------------
def _header(rtype: int, length: int, txn_id: int, flags: int = 0) -> bytes:
    return _HEAD.pack(F.RECORD_MAGIC, rtype, flags, length, 0, txn_id, 0, 0, 0)


def put_payload(event) -> bytes:
    """The payload of *event*'s put record (what a sealed put encrypts)."""
    parts = [_U32.pack(len(event.headers))]
    for k, v in event.headers.items():
        try:  # headers is a mutable dict: it may have changed since the Event was made
            kb, vb = k.encode("utf-8"), v.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            _event.check_headers(event.headers)   # raises, naming the header
            raise
        parts += [_U32.pack(len(kb)), kb, _U32.pack(len(vb)), vb]
    parts += [_U32.pack(len(event.body)), event.body]
    return b"".join(parts)


def _append(buf: bytearray, rtype: int, txn_id: int, payload, flags: int = 0) -> int:
    n = HDR + len(payload)
    if n > F.MAX_RECORD_SIZE:
        raise ValueError(f"record of {n} bytes is larger than a record can be")
    start = len(buf)
    buf += _header(rtype, n, txn_id, flags)
    buf += payload
    return start


def encode_put(buf: bytearray, txn_id: int, event) -> int:
    """Append a put record (ids and crcs left for ``finalize``); return its
    offset in *buf*."""
    return _append(buf, F.REC_PUT, txn_id, put_payload(event))


def encode_puts(buf: bytearray, txn_id: int, events: list, starts: list) -> None:
    for e in events:
        starts.append(encode_put(buf, txn_id, e))


def encode_sealed(buf: bytearray, txn_id: int, sealed) -> int:
    """Append a put record whose payload is *sealed* (an encrypted put payload)."""
    return _append(buf, F.REC_PUT, txn_id, sealed, F.FLAG_SEALED)


def encode_commit(buf: bytearray, txn_id: int, kind: int, count: int,
                  marks: Mapping[str, int] | None = None, pointers=None) -> int:
    """Append a commit record.  A commit of takes names the pointers it took
    (sorted, as runs of equal steps: first pointer, then (step, repeat) pairs,
    all varints), so it is one record however many events it took."""
    m = dict(marks) if marks else {}
    body = bytearray(bytes([kind, 0, 0, 0]) + _U32.pack(count) + _U32.pack(len(m)))
    for k, v in m.items():
        kb = k.encode("utf-8")
        body += _U32.pack(len(kb)) + kb + _I64.pack(v)
    if kind == F.COMMIT_TAKES:
        ptrs = sorted(pointers or ())
        if len(ptrs) != count:
            raise ValueError(f"a commit of {count} takes names {len(ptrs)} pointers")
        if ptrs:
            if ptrs[0] < 0:
                raise ValueError(f"pointer {ptrs[0]} is negative")
            _varint(body, ptrs[0])
            i = 1
            while i < len(ptrs):
                step = ptrs[i] - ptrs[i - 1]
                j = i + 1
                while j < len(ptrs) and ptrs[j] - ptrs[j - 1] == step:
                    j += 1
                _varint(body, step)
                _varint(body, j - i)
                i = j
    elif pointers:
        raise ValueError("only a commit of takes names pointers")
    return _append(buf, F.REC_COMMIT, txn_id, body)


def encode_rollback(buf: bytearray, txn_id: int) -> int:
    return _append(buf, F.REC_ROLLBACK, txn_id, b"")


def finalize(buf: bytearray, start: int, first_woid: int) -> int:
    """Give the records in ``buf[start:]`` consecutive write-order ids from
    *first_woid* and fill in their payload crcs (``frame`` fills in the rest
    of the header).  Returns the next free id."""
    pos, end, woid = start, len(buf), first_woid
    mv = memoryview(buf)
    try:
        while pos + HDR <= end:
            length = _U32.unpack_from(buf, pos + 4)[0]
            if length < HDR or pos + length > end:
                break
            _U64.pack_into(buf, pos + F.WOID_OFFSET, woid)
            _U32.pack_into(buf, pos + F.BODY_CRC_OFFSET, zlib.crc32(mv[pos + HDR:pos + length]))
            woid += 1
            pos += length
    finally:
        mv.release()
    if pos != end:
        raise ValueError(f"record buffer is malformed at offset {pos}")
    return woid


# ---- blocks ---------------------------------------------------------------------
def _block_header(file_id: int, index: int, cont: int) -> bytes:
    c = zlib.crc32(F.BLOCK_CRC_INPUT.pack(F.BLOCK_MAGIC, cont, file_id, index))
    return F.BLOCK_HEADER.pack(F.BLOCK_MAGIC, cont, c)


def _block_cont(mv, base: int, pos: int, file_id: int) -> int:
    """The continuation of the valid block header at file offset *pos*, or -1."""
    magic, cont, c = F.BLOCK_HEADER.unpack_from(mv, pos - base)
    if magic != F.BLOCK_MAGIC or cont > B - BH:
        return -1
    if zlib.crc32(F.BLOCK_CRC_INPUT.pack(magic, cont, file_id, pos // B)) != c:
        return -1
    return cont


def phys_end(pos: int, length: int) -> int:
    """Where a record of *length* bytes starting at file offset *pos* ends,
    counting the block headers it spans."""
    room = B - pos % B
    if length <= room:
        return pos + length
    m, r = divmod(length - room, B - BH)
    nb = pos - pos % B + B
    return nb + m * B + BH + r if r else nb + m * B


def _segments(pos: int, length: int):
    """``(file offset, n)`` of the pieces of a record between block headers."""
    n = min(length, B - pos % B)
    yield pos, n
    length -= n
    pos += n
    while length > 0:
        pos += BH
        n = min(length, B - BH)
        yield pos, n
        length -= n
        pos += n


def _gather(mv, base: int, pos: int, length: int):
    if length <= B - pos % B:
        return mv[pos - base:pos - base + length]
    return b"".join(bytes(mv[s - base:s - base + n]) for s, n in _segments(pos, length))


def frame(buf, pos: int, offset: int, limit: int, file_id: int, prev: int, starts,
          si: int, pointers: list) -> tuple[bytearray, int, int, int, int]:
    """Lay out the finalized records of ``buf[pos:]`` for writing at file
    offset *offset* of log *file_id*, whose last record starts at *prev* (0:
    none yet): each header gets its distance back to the previous record and
    its crc; a block header goes at every block boundary and zero padding
    where fewer than a record header's bytes are left in a block.  Only
    whole records that end by *limit* are taken.  The pointers of the put
    records at ``starts[si:]`` taken are appended to *pointers*.  Returns
    ``(bytes to write, end of what was taken in buf, records taken, where the
    last one starts, next si)``."""
    out = bytearray()
    p = offset
    total = len(buf)
    count = 0
    while pos + HDR <= total:
        length = _U32.unpack_from(buf, pos + 4)[0]
        start = next_start(p)
        if phys_end(start, length) > limit:
            break
        if start > p:   # padding to the block boundary at start - BH, its block header
            out += bytes(start - BH - p)
            out += _block_header(file_id, start // B, 0)
        head = bytearray(buf[pos:pos + HDR])
        _U32.pack_into(head, F.PREV_OFFSET, start - prev if prev else 0)
        _U32.pack_into(head, F.HEADER_CRC_OFFSET, zlib.crc32(head[:F.HEADER_CRC_OFFSET]))
        rec = bytes(head) + bytes(buf[pos + HDR:pos + length])
        done = 0
        for s, n in _segments(start, length):
            if done:
                out += _block_header(file_id, s // B, n)
            out += rec[done:done + n]
            done += n
        if si < len(starts) and starts[si] == pos:
            pointers.append(F.make_pointer(file_id, start))
            si += 1
        prev = start
        p = phys_end(start, length)
        pos += length
        count += 1
    return out, pos, count, prev, si


def next_start(p: int) -> int:
    """Where a record written at file offset *p* starts: after the padding
    of a block with too little room left and after a block header."""
    if p % B and B - p % B < HDR:
        p += B - p % B
    if p % B == 0 and p:
        p += BH
    return p


def _check_commit_body(rec, length: int) -> int:
    """The number of take pointers named (0 for other kinds), -1 if malformed."""
    q = _marks_end(rec, HDR, length)
    if q < 0:
        return -1
    kind = rec[HDR]
    count = _U32.unpack_from(rec, HDR + 4)[0]
    if kind == F.COMMIT_PUTS:
        return 0 if q == length else -1
    if kind != F.COMMIT_TAKES:
        return -1
    ptrs = _take_pointers(rec, q, length, count)
    return -1 if ptrs is None else count


def _take_pointers(rec, q: int, length: int, count: int) -> list[int] | None:
    out: list[int] = []
    if count == 0:
        return out if q == length else None
    p, q = _read_varint(rec, q, length)
    if p < 0:
        return None
    out.append(p)
    while len(out) < count:
        step, q = _read_varint(rec, q, length)
        rep, q = _read_varint(rec, q, length)
        if step < 0 or rep < 1 or rep > count - len(out):
            return None
        for _ in range(rep):
            p += step
            if p >= 1 << 63:
                return None
            out.append(p)
    return out if q == length else None


def _marks_end(rec, h: int, length: int) -> int:
    """Where the marks of a commit whose header is *h* bytes end; -1 if they
    run past *length*."""
    q = h + 12
    if q > length:
        return -1
    for _ in range(_U32.unpack_from(rec, h + 8)[0]):
        if q + 4 > length:
            return -1
        k = _U32.unpack_from(rec, q)[0]
        if length - q - 4 < k + 8:
            return -1
        q += 12 + k
    return q


def _head_at(mv, base: int, pos: int, end: int) -> int:
    """Length of the record whose header at *pos* is valid; -1 damaged; -2
    the header runs past *end*."""
    if end - pos < HDR:
        return -2
    i = pos - base
    magic, rtype, flags, length, _p, _t, _w, _bc, hc = _HEAD.unpack_from(mv, i)
    if magic != F.RECORD_MAGIC or zlib.crc32(mv[i:i + F.HEADER_CRC_OFFSET]) != hc:
        return -1
    if rtype == F.REC_PUT:
        ok = not flags & ~F.FLAG_SEALED and length >= HDR + (0 if flags else 8)
    elif rtype == F.REC_COMMIT:
        ok = not flags and length >= HDR + 12
    elif rtype == F.REC_ROLLBACK:
        ok = not flags and length == HDR
    else:
        ok = False
    return length if ok else -1


def _record(mv, base: int, pos: int, end: int):
    """``(length, record bytes)`` of the valid record at *pos*; ``(-1, None)``
    damaged (a valid header: skip it by its length); ``(-2, None)`` incomplete."""
    length = _head_at(mv, base, pos, end)
    if length < 0:
        return length, None
    if phys_end(pos, length) > end:
        return -2, None
    rec = _gather(mv, base, pos, length)
    if zlib.crc32(rec[HDR:length]) != _U32.unpack_from(rec, F.BODY_CRC_OFFSET)[0]:
        return -1, None
    rtype = rec[2]
    if rtype == F.REC_PUT and not rec[3] & F.FLAG_SEALED:
        if not _check_put_body(rec, length):
            return -1, None
    elif rtype == F.REC_COMMIT and _check_commit_body(rec, length) < 0:
        return -1, None
    return length, rec


def _check_put_body(rec, length: int, q: int = HDR) -> bool:
    """The put payload at *q* has inner lengths that end exactly at *length*."""
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


def _decode_payload(rec, q: int):
    headers = {}
    nh = _U32.unpack_from(rec, q)[0]
    q += 4
    for _ in range(nh):
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


def _open_put(rec, length: int, opener: Callable | None, pointer: int):
    """The Event of a valid put record (a sealed one opened with *opener*)."""
    if not rec[3] & F.FLAG_SEALED:
        return _decode_payload(rec, HDR)
    if opener is None:
        raise CorruptionError(f"the put at log-{pointer >> 32} offset {pointer & 0xFFFFFFFF} "
                              "is encrypted and no key was given")
    txn = _U64.unpack_from(rec, F.TXN_OFFSET)[0]
    plain = opener(bytes(rec[HDR:length]), sealed_aad(txn), pointer)
    if not _check_put_body(b"\0" * HDR + plain, HDR + len(plain)):
        raise CorruptionError(f"the put at log-{pointer >> 32} offset {pointer & 0xFFFFFFFF} "
                              "opened to a malformed event")
    return _decode_payload(plain, 0)


def decode_record(data, pos: int, opener: Callable | None = None, file_id: int = 0):
    """Decode the record at file offset *pos* of *data* (a whole log file):
    ``(type, txn_id, woid, extent, value)``, extent its bytes in the file
    (block headers included), value the Event (put; a sealed one needs
    *opener*), ``(kind, count, marks, pointers)`` (commit) or None
    (rollback).  Raises CorruptionError when it is damaged or incomplete."""
    mv = memoryview(data).cast("B")
    end = len(mv)
    if pos < F.LOG_HEADER_SIZE or pos > end:
        raise CorruptionError(f"offset {pos} is not a record position in {end} bytes")
    length, rec = _record(mv, 0, pos, end)
    if length == -2:
        raise CorruptionError(f"incomplete record at offset {pos}")
    if length < 0:
        raise CorruptionError(f"damaged record at offset {pos}")
    _m, rtype, _f, _l, _p, txn, woid, _bc, _hc = _HEAD.unpack_from(rec, 0)
    if rtype == F.REC_PUT:
        value = _open_put(rec, length, opener, F.make_pointer(file_id, pos))
    elif rtype == F.REC_COMMIT:
        count = _U32.unpack_from(rec, HDR + 4)[0]
        ptrs = (_take_pointers(rec, _marks_end(rec, HDR, length), length, count)
                if rec[HDR] == F.COMMIT_TAKES else [])
        value = (rec[HDR], count, _decode_marks(rec), ptrs)
    else:
        value = None
    return rtype, txn, woid, phys_end(pos, length) - pos, value


def _decode_marks(rec, h: int = HDR) -> dict[str, int]:
    q = h + 12
    marks = {}
    for _ in range(_U32.unpack_from(rec, h + 8)[0]):
        ks = _U32.unpack_from(rec, q)[0]
        marks[_utf8(rec[q + 4:q + 4 + ks])] = _I64.unpack_from(rec, q + 4 + ks)[0]
        q += 12 + ks
    return marks


# ---- scanning a whole log (replay, check) ------------------------------------------
def _zero_from(mv, pos: int, end: int) -> bool:
    return not any(mv[pos:end])


def _anchor(mv, pos: int, end: int, file_id: int) -> int:
    """The first record start after *pos* that a block header vouches for;
    *end* if there is none."""
    b = pos - pos % B + B
    while b + BH <= end:
        cont = _block_cont(mv, 0, b, file_id)
        if cont >= 0:
            s = b + BH + cont
            if s % B and B - s % B >= HDR:
                return s
        b += B
    return end


def _recover(mv, pos: int, end: int, file_id: int, hint: int) -> int:
    """Where scanning goes on after the damaged header at *pos*: the earliest
    record after it that is certainly real.  From the next block anchor (or
    *hint*, a record start the .meta knows, when no anchor follows) the
    records' ``prev`` links lead back towards the damage; each step is
    checked (a valid header that ends where the next record starts).  Never a
    guess inside a body."""
    top = _anchor(mv, pos, end, file_id)
    if top >= end:
        if not pos < hint < end:
            return end
        top = hint
    if _head_at(mv, 0, top, end) < 0:
        return top   # the anchor's own record is damaged: go on from there
    q = top
    while True:
        prev = _U32.unpack_from(mv, q + F.PREV_OFFSET)[0]
        r = q - prev
        if not prev or r <= pos or next_start(r) != r:
            return q
        length = _head_at(mv, 0, r, end)
        if length < 0 or next_start(phys_end(r, length)) != q:
            return q
        q = r


def scan(data, start: int, end: int = -1, file_id: int = 0, hint: int = 0):
    """Walk the records of log *file_id* (``data`` is the whole file) from
    file offset *start* to *end*.

    Returns ``(records, good_end, damage)``: *records* an ``array('q')``,
    F.REC_FIELDS numbers per record (see format.py); *good_end* the offset
    after the last valid record (zero bytes from there to the end are
    preallocated space, the clean end); *damage* a list of ``(start, end,
    kind)``, kind ``"corrupt"`` (valid records follow) or ``"tail"`` (none
    does).  A record whose header is valid and whose payload is damaged is
    skipped by its length; after a damaged header scanning resumes at a
    record found from the next block anchor (or *hint*, see ``_recover``)."""
    mv = memoryview(data).cast("B")
    size = len(mv)
    if end < 0 or end > size:
        end = size
    pos = max(start, F.LOG_HEADER_SIZE)
    out = array.array("q")
    damage: list[list] = []

    def hurt(a: int, b: int) -> None:
        if damage and damage[-1][1] == a:
            damage[-1][1] = b
        else:
            damage.append([a, b])

    good_end = pos
    while pos < end:
        off = pos % B
        if off == 0:
            if _zero_from(mv, pos, end):
                break
            if end - pos < BH:
                hurt(pos, end)
                break
            if _block_cont(mv, 0, pos, file_id) != 0:   # damaged, or not at a record start
                hurt(pos, pos + BH)
            pos += BH
            continue
        if B - off < HDR:   # padding: the next record starts in the next block
            pos += B - off
            continue
        length, rec = _record(mv, 0, pos, end)
        if rec is None:
            if _zero_from(mv, pos, end):
                break
            head = _head_at(mv, 0, pos, end)
            if head > 0:   # a valid header: skip the damaged payload by its length
                nxt = phys_end(pos, head) if length == -1 else end
            else:
                nxt = _recover(mv, pos, end, file_id, hint)
            hurt(pos, min(nxt, end))
            pos = nxt
            continue
        rtype = rec[2]
        _m, _t, flags, _l, _p, txn, woid, _bc, _hc = _HEAD.unpack_from(rec, 0)
        txn, woid = _as_i64(txn), _as_i64(woid)
        pe = phys_end(pos, length)
        if length > B - pos % B:   # it spans blocks: the block headers inside it
            for s, _n in list(_segments(pos, length))[1:]:
                if _block_cont(mv, 0, s - BH, file_id) < 0:
                    hurt(s - BH, s)
        if rtype == F.REC_COMMIT:
            kind = rec[HDR]
            count = _U32.unpack_from(rec, HDR + 4)[0]
            if kind == F.COMMIT_TAKES:
                for p in _take_pointers(rec, _marks_end(rec, HDR, length), length, count) or ():
                    out.extend((F.REC_TAKE, txn, woid, pos, p))
            aux = kind | ((_U32.unpack_from(rec, HDR + 8)[0] != 0) << 8) | (count << 16)
        elif rtype == F.REC_PUT:
            aux = flags
        else:
            aux = 0
        out.extend((rtype, txn, woid, pos, aux))
        pos = pe
        good_end = pe
    result = []
    for a, b in damage:
        if a >= good_end:   # nothing valid after it: the tail
            result.append((a, end, "tail"))
            break
        result.append((a, b, "corrupt"))
    return out, good_end, result


# ---- reading events by pointer -----------------------------------------------------------
def _event_at(mv, base: int, pos: int, end: int, opener, pointer: int):
    """The Event at *pos*; None if damaged or not a put; -2 if it runs past *end*."""
    if pos < F.LOG_HEADER_SIZE or next_start(pos) != pos:
        return None   # not a position a record can start at
    length, rec = _record(mv, base, pos, end)
    if length == -2:
        return -2
    if rec is None or rec[2] != F.REC_PUT:
        return None
    return _open_put(rec, length, opener, pointer)


def _read_one(fd: int, pointer: int, opener):
    offset = pointer & 0xFFFFFFFF
    small = _pread_full(fd, 4096, offset)
    mv = memoryview(small)
    got = _event_at(mv, offset, offset, offset + len(small), opener, pointer)
    if got != -2:
        return got
    length = _head_at(mv, offset, offset, offset + len(small))
    if length < 0:
        return None
    extent = phys_end(offset, length) - offset
    if extent > os.fstat(fd).st_size - offset:   # a damaged length: never read what is not there
        return None
    big = _pread_full(fd, extent, offset)
    got = _event_at(memoryview(big), offset, offset, offset + len(big), opener, pointer)
    return None if got == -2 else got


def read_events(fd: int, pointers, opener: Callable | None = None) -> list:
    """The Events at *pointers* of the open log *fd* (only their offsets, the
    low 32 bits, are used to read); None where a record is damaged or is not
    a put.  Sealed puts are opened with ``opener(sealed, aad, pointer)``.
    Records close together are fetched with one pread."""
    return _read_events(fd, pointers, _event_at, _read_one, opener)


def _read_events(fd: int, pointers, event_at, read_one, opener) -> list:
    """read_events of either version: *event_at* decodes one from a span
    read at once, *read_one* reads one by itself."""
    ptrs = list(pointers)
    out: list = [None] * len(ptrs)
    if not ptrs:
        return out
    offs = [p & 0xFFFFFFFF for p in ptrs]
    lo, hi = min(offs), max(offs)
    if hi - lo <= F.SPAN_LIMIT:
        buf = _pread_full(fd, hi - lo + F.READ_AHEAD, lo)
        mv = memoryview(buf)
        for i, off in enumerate(offs):
            got = event_at(mv, lo, off, lo + len(buf), opener, ptrs[i])
            out[i] = read_one(fd, ptrs[i], opener) if got == -2 else got
    else:
        for i, p in enumerate(ptrs):
            out[i] = read_one(fd, p, opener)
    return out


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



# ---- version 1 (read only) ---------------------------------------------------------
def _record_crc_v1(rec) -> int:
    return zlib.crc32(rec[F.CRC_END_V1:], zlib.crc32(rec[:F.CRC_OFFSET_V1]))


def _check_put_body_v1(rec, length: int) -> bool:
    return _check_put_body(rec, length, HDR1)


def _check_commit_body_v1(rec, length: int) -> bool:
    return _marks_end(rec, HDR1, length) == length


def _valid_at_v1(data, pos: int, end: int) -> int:
    """Length of the valid record at *pos*; -1 damaged; -2 runs past *end*."""
    if end - pos < HDR1:
        return -2
    magic, rtype, flags, length, crc_, _txn, _woid = _HEAD1.unpack_from(data, pos)
    if magic != F.RECORD_MAGIC or not (F.REC_PUT <= rtype <= F.REC_ROLLBACK) or flags:
        return -1
    if length < HDR1:
        return -1
    if length > end - pos:
        return -2
    rec = memoryview(data)[pos:pos + length]
    if crc_ != _record_crc_v1(rec):
        return -1
    if rtype == F.REC_PUT:
        ok = _check_put_body_v1(rec, length)
    elif rtype == F.REC_TAKE:
        ok = length == HDR1 + 8
    elif rtype == F.REC_COMMIT:
        ok = _check_commit_body_v1(rec, length)
    else:
        ok = length == HDR1
    return length if ok else -1


def _decode_put_v1(rec, length: int):
    return _decode_payload(rec, HDR1)


def decode_record_v1(data, pos: int = 0):
    mv = memoryview(data).cast("B")
    end = len(mv)
    if pos < 0 or pos > end:
        raise CorruptionError(f"offset {pos} is outside the buffer of {end} bytes")
    if end == 0:
        raise CorruptionError("incomplete record at offset 0")
    length = _valid_at_v1(mv, pos, end)
    if length == -2:
        raise CorruptionError(f"incomplete record at offset {pos}")
    if length < 0:
        raise CorruptionError(f"damaged record at offset {pos}")
    rec = mv[pos:pos + length]
    _m, rtype, _f, _l, _c, txn, woid = _HEAD1.unpack_from(rec, 0)
    if rtype == F.REC_PUT:
        value = _decode_put_v1(rec, length)
    elif rtype == F.REC_TAKE:
        value = _I64.unpack_from(rec, HDR1)[0]
    elif rtype == F.REC_COMMIT:
        value = (rec[HDR1], _U32.unpack_from(rec, HDR1 + 4)[0], _decode_marks(rec, HDR1))
    else:
        value = None
    return rtype, txn, woid, length, value


def scan_v1(data, start: int, end: int = -1):
    mv = memoryview(data).cast("B")
    size = len(mv)
    if end < 0 or end > size:
        end = size
    start = max(start, 0)
    out = array.array("q")
    damage: list[tuple[int, int, str]] = []
    pos = good_end = start
    while pos < end:
        length = _valid_at_v1(mv, pos, end)
        if length > 0:
            rtype = mv[pos + 2]
            txn = _U64.unpack_from(mv, pos + 12)[0]
            woid = _U64.unpack_from(mv, pos + 20)[0]
            if rtype == F.REC_TAKE:
                aux = _I64.unpack_from(mv, pos + HDR1)[0]
            elif rtype == F.REC_COMMIT:
                aux = (mv[pos + HDR1] | ((_U32.unpack_from(mv, pos + HDR1 + 8)[0] != 0) << 8)
                       | (_U32.unpack_from(mv, pos + HDR1 + 4)[0] << 16))
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
        while q + HDR1 <= end:
            if mv[q] == 0xFC and mv[q + 1] == 0x1A and _valid_at_v1(mv, q, end) > 0:
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


def _read_one_v1(fd: int, offset: int):
    small = _pread_full(fd, 4096, offset)
    length = _valid_at_v1(small, 0, len(small))
    if length > 0:
        return _decode_put_v1(memoryview(small), length) if small[2] == F.REC_PUT else None
    if length == -1 or len(small) < HDR1:
        return None
    length = _U32.unpack_from(small, 4)[0]
    if length > os.fstat(fd).st_size - offset:   # a damaged length: never read what is not there
        return None
    big = _pread_full(fd, length, offset)
    length = _valid_at_v1(big, 0, len(big))
    if length > 0 and big[2] == F.REC_PUT:
        return _decode_put_v1(memoryview(big), length)
    return None


def _event_at_v1(mv, base: int, pos: int, end: int, _opener, _pointer):
    """The Event at *pos* of a version 1 log; None if damaged or not a put;
    -2 if it runs past *end*."""
    rel = pos - base
    length = _valid_at_v1(mv, rel, end - base)
    if length > 0:
        return _decode_put_v1(mv[rel:rel + length], length) if mv[rel + 2] == F.REC_PUT else None
    return -2 if length == -2 else None


def read_events_v1(fd: int, pointers) -> list:
    """read_events of a version 1 log."""
    return _read_events(fd, pointers, _event_at_v1,
                        lambda fd, p, _opener: _read_one_v1(fd, p & 0xFFFFFFFF), None)

# cython: language_level=3, embedsignature=True
"""Compiled record codec and log-file I/O of the FileChannel (log format
version 2 written and read, version 1 read: the ``*_v1`` functions).

The byte layout is defined once in ``fchannel/file/format.py`` and written
down in docs/FORMAT.md; ``_codec_py.py`` is the pure-Python twin and the
executable specification.  Everything that parses bytes goes through
``_Reader``-style bounds checks: a length field is never trusted to stay
inside the buffer.
"""
cimport cython
from cpython cimport array
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.errno cimport EINTR, EIO, errno
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from fchannel._event cimport Event
from fchannel._event import check_headers

import array as _pyarray
import os

from fchannel.errors import CorruptionError
from fchannel.file import format as F


cdef extern from "_crc32.h":
    # zlib's CRC-32, folded with carry-less multiplication where the CPU can
    uint32_t fc_crc32(uint32_t crc, const uint8_t* buf, size_t len) nogil
    void fc_crc32_init()

cdef extern from "unistd.h" nogil:
    ssize_t c_pread "pread" (int fd, void *buf, size_t count, long offset)
    ssize_t c_pwrite "pwrite" (int fd, const void *buf, size_t count, long offset)
    int c_fdatasync "fdatasync" (int fd)

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL


fc_crc32_init()   # the tables for short buffers, filled once before any use

# constants taken from the one definition of the format
cdef uint16_t RECORD_MAGIC = F.RECORD_MAGIC
cdef int REC_PUT = F.REC_PUT
cdef int REC_TAKE = F.REC_TAKE
cdef int REC_COMMIT = F.REC_COMMIT
cdef int REC_ROLLBACK = F.REC_ROLLBACK
cdef Py_ssize_t HDR = F.RECORD_HEADER_SIZE
cdef Py_ssize_t PREV_OFFSET = F.PREV_OFFSET
cdef Py_ssize_t TXN_OFFSET = F.TXN_OFFSET
cdef Py_ssize_t WOID_OFFSET = F.WOID_OFFSET
cdef Py_ssize_t BODY_CRC_OFFSET = F.BODY_CRC_OFFSET
cdef Py_ssize_t HEADER_CRC_OFFSET = F.HEADER_CRC_OFFSET
cdef int FLAG_SEALED = F.FLAG_SEALED
cdef int COMMIT_PUTS = F.COMMIT_PUTS
cdef int COMMIT_TAKES = F.COMMIT_TAKES
cdef int64_t B = F.BLOCK_SIZE
cdef int64_t BH = F.BLOCK_HEADER_SIZE
cdef uint16_t BLOCK_MAGIC = F.BLOCK_MAGIC
cdef Py_ssize_t LOG_HEADER_SIZE = F.LOG_HEADER_SIZE
# version 1 (read only)
cdef Py_ssize_t HDR1 = F.RECORD_HEADER_SIZE_V1
cdef Py_ssize_t CRC_OFFSET1 = F.CRC_OFFSET_V1
cdef Py_ssize_t CRC_END1 = F.CRC_END_V1
cdef Py_ssize_t SPAN_LIMIT = F.SPAN_LIMIT
cdef Py_ssize_t READ_AHEAD = F.READ_AHEAD
#: records scan walks per release of the GIL
cdef Py_ssize_t SCAN_CHUNK = 4096
cdef int F_VARINT_MAX = F.VARINT_MAX


# ---- little-endian helpers ----------------------------------------------------
cdef inline void _w16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF

cdef inline void _w32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF

cdef inline void _w64(uint8_t* p, uint64_t v) noexcept nogil:
    _w32(p, <uint32_t>(v & 0xFFFFFFFFu))
    _w32(p + 4, <uint32_t>(v >> 32))

cdef inline uint16_t _r16(const uint8_t* p) noexcept nogil:
    return <uint16_t>(p[0] | (p[1] << 8))

cdef inline uint32_t _r32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)

cdef inline uint64_t _r64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>_r32(p)) | ((<uint64_t>_r32(p + 4)) << 32)


cdef inline uint32_t _record_crc_v1(const uint8_t* p, Py_ssize_t length) noexcept nogil:
    cdef uint32_t c = fc_crc32(0, p, <size_t>CRC_OFFSET1)
    return fc_crc32(c, p + CRC_END1, <size_t>(length - CRC_END1))


def crc(data, unsigned long value=0):
    """crc32 (zlib's) of *data*, continuing from *value*."""
    cdef const uint8_t[::1] view = data
    if view.shape[0] == 0:
        return value
    return fc_crc32(<uint32_t>value, &view[0], <size_t>view.shape[0])


# ---- encoding -----------------------------------------------------------------
cdef uint8_t* _grow(bytearray buf, Py_ssize_t extra) except NULL:
    cdef Py_ssize_t old = PyByteArray_GET_SIZE(buf)
    PyByteArray_Resize(buf, old + extra)
    return <uint8_t*>PyByteArray_AS_STRING(buf) + old


cdef inline void _write_header(uint8_t* p, int rtype, int flags, Py_ssize_t length,
                               uint64_t txn_id) noexcept nogil:
    _w16(p, RECORD_MAGIC)
    p[2] = <uint8_t>rtype
    p[3] = <uint8_t>flags
    _w32(p + 4, <uint32_t>length)
    _w32(p + PREV_OFFSET, 0)
    _w64(p + TXN_OFFSET, txn_id)
    _w64(p + WOID_OFFSET, 0)
    _w32(p + BODY_CRC_OFFSET, 0)
    _w32(p + HEADER_CRC_OFFSET, 0)


cdef Py_ssize_t _put_size(Event event) except -1:
    """The length of *event*'s put record (and a check of its headers)."""
    cdef dict headers = event._headers
    cdef Py_ssize_t n = HDR + 8 + PyBytes_GET_SIZE(event._body)
    cdef Py_ssize_t ks, vs
    for k, v in headers.items():
        # headers is a mutable dict: it may have changed since the Event was made
        if type(k) is not str or type(v) is not str:
            check_headers(headers)   # raises, naming the header
        try:
            PyUnicode_AsUTF8AndSize(k, &ks)
            PyUnicode_AsUTF8AndSize(v, &vs)
        except UnicodeEncodeError:
            check_headers(headers)
            raise
        n += 8 + ks + vs
    if n > F.MAX_RECORD_SIZE:
        raise ValueError(f"record of {n} bytes is larger than a record can be")
    return n


cdef int _write_payload(uint8_t* q, Event event) except -1:
    """Write *event*'s put payload at *q* (its size checked by _put_size)."""
    cdef dict headers = event._headers
    cdef bytes body = event._body
    cdef Py_ssize_t ks, vs
    cdef const char* kp
    cdef const char* vp
    _w32(q, <uint32_t>len(headers))
    q += 4
    for k, v in headers.items():
        kp = PyUnicode_AsUTF8AndSize(k, &ks)   # cached by _put_size: cannot fail here
        vp = PyUnicode_AsUTF8AndSize(v, &vs)
        _w32(q, <uint32_t>ks)
        memcpy(q + 4, kp, ks)
        q += 4 + ks
        _w32(q, <uint32_t>vs)
        memcpy(q + 4, vp, vs)
        q += 4 + vs
    _w32(q, <uint32_t>PyBytes_GET_SIZE(body))
    memcpy(q + 4, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
    return 0


def encode_put(bytearray buf, uint64_t txn_id, Event event):
    """Append a put record (ids and crcs left for ``finalize``); return its
    offset in *buf*."""
    cdef Py_ssize_t n = _put_size(event)
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    cdef uint8_t* p = _grow(buf, n)
    _write_header(p, REC_PUT, 0, n, txn_id)
    _write_payload(p + HDR, event)
    return start


def encode_puts(bytearray buf, uint64_t txn_id, list events, list starts):
    """Append one put record per event, appending each record's offset in
    *buf* to *starts*.  The buffer grows once for the whole batch."""
    cdef Py_ssize_t count = len(events), i, total = 0
    cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc(max(count, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t start
    cdef uint8_t* p
    if sizes == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            sizes[i] = _put_size(<Event?>events[i])
            total += sizes[i]
        start = PyByteArray_GET_SIZE(buf)
        p = _grow(buf, total)
        for i in range(count):
            _write_header(p, REC_PUT, 0, sizes[i], txn_id)
            _write_payload(p + HDR, <Event>events[i])
            starts.append(start)
            start += sizes[i]
            p += sizes[i]
    finally:
        free(sizes)


def put_payload(Event event):
    """The payload of *event*'s put record (what a sealed put encrypts)."""
    cdef Py_ssize_t n = _put_size(event) - HDR
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    _write_payload(<uint8_t*>PyBytes_AS_STRING(out), event)
    return out


def sealed_aad(uint64_t txn_id):
    """The associated data a sealed put's payload is bound to: its type and
    transaction id."""
    cdef uint8_t a[9]
    a[0] = <uint8_t>REC_PUT
    _w64(a + 1, txn_id)
    return PyBytes_FromStringAndSize(<const char*>a, 9)


def encode_sealed(bytearray buf, uint64_t txn_id, sealed):
    """Append a put record whose payload is *sealed* (an encrypted put payload)."""
    cdef const uint8_t[::1] view = sealed
    cdef Py_ssize_t m = view.shape[0]
    cdef Py_ssize_t n = HDR + m
    if n > F.MAX_RECORD_SIZE:
        raise ValueError(f"record of {n} bytes is larger than a record can be")
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    cdef uint8_t* p = _grow(buf, n)
    _write_header(p, REC_PUT, FLAG_SEALED, n, txn_id)
    if m:
        memcpy(p + HDR, &view[0], m)
    return start


cdef inline Py_ssize_t _varint_size(uint64_t v) noexcept nogil:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline uint8_t* _put_varint(uint8_t* q, uint64_t v) noexcept nogil:
    while v >= 0x80:
        q[0] = <uint8_t>((v & 0x7F) | 0x80)
        v >>= 7
        q += 1
    q[0] = <uint8_t>v
    return q + 1


cdef inline Py_ssize_t _read_varint(const uint8_t* rec, Py_ssize_t q, Py_ssize_t end,
                                    uint64_t* out) noexcept nogil:
    """The position after the varint at *q* (its value in *out*); -1 when it
    is malformed, runs past *end* or is 2**63 or more."""
    cdef uint64_t v = 0, b
    cdef int shift = 0
    cdef bint big = False
    while q < end and shift < 7 * F_VARINT_MAX:
        b = rec[q]
        q += 1
        if shift == 63:
            if b & 0x7F:
                big = True
        elif shift < 63:
            v |= (b & 0x7F) << shift
        if not b & 0x80:
            if big or v >= (<uint64_t>1 << 63):
                return -1
            out[0] = v
            return q
        shift += 7
    return -1


def encode_commit(bytearray buf, uint64_t txn_id, int kind, uint32_t count, marks=None,
                  pointers=None):
    """Append a commit record; *marks* (str -> int) are committed with it.  A
    commit of takes names the pointers it took (sorted, as runs of equal
    steps: first pointer, then (step, repeat) pairs, all varints), so it is
    one record however many events it took."""
    cdef Py_ssize_t n = HDR + 12
    cdef Py_ssize_t ks, i, j, np = 0
    cdef const char* kp
    cdef dict m = dict(marks) if marks else {}
    cdef list ptrs = None
    cdef int64_t* pv = NULL
    cdef int64_t step
    for k in m:
        PyUnicode_AsUTF8AndSize(k, &ks)
        n += 12 + ks
    if kind == COMMIT_TAKES:
        ptrs = sorted(pointers or ())
        np = len(ptrs)
        if np != count:
            raise ValueError(f"a commit of {count} takes names {np} pointers")
        if np and ptrs[0] < 0:
            raise ValueError(f"pointer {ptrs[0]} is negative")
    elif pointers:
        raise ValueError("only a commit of takes names pointers")
    pv = <int64_t*>malloc(max(np, 1) * sizeof(int64_t))
    if pv == NULL:
        raise MemoryError()
    try:
        for i in range(np):
            pv[i] = ptrs[i]
        if np:
            n += _varint_size(<uint64_t>pv[0])
            i = 1
            while i < np:
                step = pv[i] - pv[i - 1]
                j = i + 1
                while j < np and pv[j] - pv[j - 1] == step:
                    j += 1
                n += _varint_size(<uint64_t>step) + _varint_size(<uint64_t>(j - i))
                i = j
        if n > F.MAX_RECORD_SIZE:
            raise ValueError(f"record of {n} bytes is larger than a record can be")
        start = PyByteArray_GET_SIZE(buf)
        p = _grow(buf, n)
        _write_header(p, REC_COMMIT, 0, n, txn_id)
        q = p + HDR
        q[0] = <uint8_t>kind
        q[1] = 0
        q[2] = 0
        q[3] = 0
        _w32(q + 4, count)
        _w32(q + 8, <uint32_t>len(m))
        q += 12
        for k, v in m.items():
            kp = PyUnicode_AsUTF8AndSize(k, &ks)
            _w32(q, <uint32_t>ks)
            memcpy(q + 4, kp, ks)
            _w64(q + 4 + ks, <uint64_t>(<int64_t>v))
            q += 12 + ks
        if np:
            q = _put_varint(q, <uint64_t>pv[0])
            i = 1
            while i < np:
                step = pv[i] - pv[i - 1]
                j = i + 1
                while j < np and pv[j] - pv[j - 1] == step:
                    j += 1
                q = _put_varint(q, <uint64_t>step)
                q = _put_varint(q, <uint64_t>(j - i))
                i = j
        return start
    finally:
        free(pv)


def encode_rollback(bytearray buf, uint64_t txn_id):
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    cdef uint8_t* p = _grow(buf, HDR)
    _write_header(p, REC_ROLLBACK, 0, HDR, txn_id)
    return start


def finalize(bytearray buf, Py_ssize_t start, uint64_t first_woid):
    """Give the records in ``buf[start:]`` consecutive write-order ids from
    *first_woid* and fill in their payload crcs (``frame`` fills in the rest
    of the header).  Returns the next free id."""
    cdef uint8_t* base = <uint8_t*>PyByteArray_AS_STRING(buf)
    cdef Py_ssize_t end = PyByteArray_GET_SIZE(buf)
    cdef Py_ssize_t pos = start
    cdef Py_ssize_t length
    cdef uint64_t woid = first_woid
    with nogil:
        while pos + HDR <= end:
            length = _r32(base + pos + 4)
            if length < HDR or pos + length > end:
                break
            _w64(base + pos + WOID_OFFSET, woid)
            _w32(base + pos + BODY_CRC_OFFSET,
                 fc_crc32(0, base + pos + HDR, <size_t>(length - HDR)))
            woid += 1
            pos += length
    if pos != end:
        raise ValueError(f"record buffer is malformed at offset {pos}")
    return woid


# ---- blocks ---------------------------------------------------------------------
cdef inline int64_t _next_start(int64_t p) noexcept nogil:
    cdef int64_t off = p % B
    if off and B - off < HDR:
        p += B - off
        off = 0
    if off == 0 and p:
        p += BH
    return p


cdef inline int64_t _phys_end(int64_t pos, int64_t length) noexcept nogil:
    cdef int64_t room = B - pos % B, m, r, nb
    if length <= room:
        return pos + length
    m = (length - room) // (B - BH)
    r = (length - room) % (B - BH)
    nb = pos - pos % B + B
    return nb + m * B + BH + r if r else nb + m * B


def next_start(int64_t p):
    """Where a record written at file offset *p* starts: after the padding
    of a block with too little room left and after a block header."""
    return _next_start(p)


def phys_end(int64_t pos, int64_t length):
    """Where a record of *length* bytes starting at file offset *pos* ends,
    counting the block headers it spans."""
    return _phys_end(pos, length)


cdef inline uint32_t _block_crc(uint16_t cont, uint64_t file_id, int64_t index) noexcept nogil:
    cdef uint8_t a[20]
    _w16(a, BLOCK_MAGIC)
    _w16(a + 2, cont)
    _w64(a + 4, file_id)
    _w64(a + 12, <uint64_t>index)
    return fc_crc32(0, a, 20)


cdef inline void _write_block_header(uint8_t* o, uint64_t file_id, int64_t index,
                                     uint16_t cont) noexcept nogil:
    _w16(o, BLOCK_MAGIC)
    _w16(o + 2, cont)
    _w32(o + 4, _block_crc(cont, file_id, index))


cdef inline int _block_cont(const uint8_t* data, int64_t base, int64_t pos,
                            uint64_t file_id) noexcept nogil:
    """The continuation of the valid block header at file offset *pos*, or -1."""
    cdef const uint8_t* p = data + (pos - base)
    cdef uint16_t cont = _r16(p + 2)
    if _r16(p) != BLOCK_MAGIC or cont > B - BH:
        return -1
    if _block_crc(cont, file_id, pos // B) != _r32(p + 4):
        return -1
    return cont


def frame(bytearray buf, Py_ssize_t pos, int64_t offset, int64_t limit, uint64_t file_id,
          int64_t prev, starts, Py_ssize_t si, list pointers):
    """Lay out the finalized records of ``buf[pos:]`` for writing at file
    offset *offset* of log *file_id*, whose last record starts at *prev* (0:
    none yet): each header gets its distance back to the previous record and
    its crc; a block header goes at every block boundary and zero padding
    where fewer than a record header's bytes are left in a block.  Only
    whole records that end by *limit* are taken.  The pointers of the put
    records at ``starts[si:]`` taken are appended to *pointers*.  Returns
    ``(bytes to write, end of what was taken in buf, records taken, where the
    last one starts, next si)``."""
    cdef const uint8_t* base = <const uint8_t*>PyByteArray_AS_STRING(buf)
    cdef Py_ssize_t total = PyByteArray_GET_SIZE(buf)
    cdef Py_ssize_t q = pos, length, count = 0, c, nstarts = len(starts)
    cdef int64_t p = offset, st, pe, rem, n, s
    cdef uint8_t* o
    cdef uint8_t* hp
    while q + HDR <= total:
        length = _r32(base + q + 4)
        if length < HDR or q + length > total:
            break
        st = _next_start(p)
        pe = _phys_end(st, length)
        if pe > limit:
            break
        p = pe
        q += length
        count += 1
    cdef bytearray out = bytearray(p - offset)
    o = <uint8_t*>PyByteArray_AS_STRING(out)
    p = offset
    q = pos
    for c in range(count):
        length = _r32(base + q + 4)
        st = _next_start(p)
        if st > p:   # padding to the block boundary at st - BH, its block header
            memset(o + (p - offset), 0, <size_t>(st - BH - p))
            _write_block_header(o + (st - BH - offset), file_id, st // B, 0)
        n = min(length, B - st % B)
        memcpy(o + (st - offset), base + q, <size_t>n)
        hp = o + (st - offset)
        _w32(hp + PREV_OFFSET, <uint32_t>(st - prev if prev else 0))
        _w32(hp + HEADER_CRC_OFFSET, fc_crc32(0, hp, <size_t>HEADER_CRC_OFFSET))
        rem = length - n
        s = st + n
        while rem > 0:
            n = min(rem, B - BH)
            _write_block_header(o + (s - offset), file_id, s // B, <uint16_t>n)
            s += BH
            memcpy(o + (s - offset), base + q + (length - rem), <size_t>n)
            s += n
            rem -= n
        if si < nstarts and starts[si] == q:
            pointers.append(<int64_t>((file_id << 32) | <uint64_t>st))
            si += 1
        prev = st
        p = _phys_end(st, length)
        q += length
    return out, q, count, prev, si


# ---- validation and decoding ----------------------------------------------------
cdef Py_ssize_t _check_put_body(const uint8_t* p, Py_ssize_t q, Py_ssize_t length) noexcept nogil:
    """0 when the put payload at *q*'s inner lengths end exactly at *length*."""
    cdef uint64_t nh, i, k
    cdef int j
    if q + 4 > length:
        return -1
    nh = _r32(p + q)
    q += 4
    for i in range(nh):
        for j in range(2):
            if q + 4 > length:
                return -1
            k = _r32(p + q)
            if <uint64_t>(length - q - 4) < k:
                return -1
            q += 4 + <Py_ssize_t>k
    if q + 4 > length:
        return -1
    k = _r32(p + q)
    if <uint64_t>(length - q - 4) != k:
        return -1
    return 0


cdef Py_ssize_t _marks_end(const uint8_t* rec, Py_ssize_t h, Py_ssize_t length) noexcept nogil:
    """Where the marks of a commit whose header is *h* bytes end; -1 if they
    run past *length*."""
    cdef Py_ssize_t q = h + 12
    cdef uint64_t nm, i, k
    nm = _r32(rec + h + 8)
    for i in range(nm):
        if q + 4 > length:
            return -1
        k = _r32(rec + q)
        if <uint64_t>(length - q - 4) < k + 8:
            return -1
        q += 12 + <Py_ssize_t>k
    return q


cdef int _take_pointers(const uint8_t* rec, Py_ssize_t q, Py_ssize_t length, uint32_t count,
                        int64_t* out, Py_ssize_t stride) noexcept nogil:
    """Decode a take commit's pointers (into ``out[i * stride]`` when *out*
    is not NULL); 0, or -1 when malformed."""
    cdef uint64_t p, step, rep, r
    cdef uint32_t n = 0
    if count == 0:
        return 0 if q == length else -1
    q = _read_varint(rec, q, length, &p)
    if q < 0:
        return -1
    if out != NULL:
        out[0] = <int64_t>p
    n = 1
    while n < count:
        q = _read_varint(rec, q, length, &step)
        if q < 0:
            return -1
        q = _read_varint(rec, q, length, &rep)
        if q < 0 or rep < 1 or rep > count - n:
            return -1
        for r in range(rep):
            p += step
            if p >= (<uint64_t>1 << 63):
                return -1
            if out != NULL:
                out[n * stride] = <int64_t>p
            n += 1
    return 0 if q == length else -1


cdef int _check_commit(const uint8_t* rec, Py_ssize_t length) noexcept nogil:
    cdef Py_ssize_t q = _marks_end(rec, HDR, length)
    if q < 0:
        return -1
    if rec[HDR] == COMMIT_PUTS:
        return 0 if q == length else -1
    if rec[HDR] != COMMIT_TAKES:
        return -1
    return _take_pointers(rec, q, length, _r32(rec + HDR + 4), NULL, 0)


cdef Py_ssize_t _head_at(const uint8_t* data, int64_t base, int64_t pos, int64_t end) noexcept nogil:
    """Length of the record whose header at *pos* is valid; -1 damaged; -2
    the header runs past *end*."""
    cdef const uint8_t* p
    cdef Py_ssize_t length
    cdef int rtype, flags
    if end - pos < HDR:
        return -2
    p = data + (pos - base)
    if _r16(p) != RECORD_MAGIC or fc_crc32(0, p, <size_t>HEADER_CRC_OFFSET) != _r32(p + HEADER_CRC_OFFSET):
        return -1
    rtype = p[2]
    flags = p[3]
    length = _r32(p + 4)
    if rtype == REC_PUT:
        if flags & ~FLAG_SEALED or length < HDR + (0 if flags else 8):
            return -1
    elif rtype == REC_COMMIT:
        if flags or length < HDR + 12:
            return -1
    elif rtype == REC_ROLLBACK:
        if flags or length != HDR:
            return -1
    else:
        return -1
    return length


cdef uint32_t _body_crc(const uint8_t* data, int64_t base, int64_t pos, int64_t length) noexcept nogil:
    cdef int64_t n = min(length, B - pos % B)
    cdef uint32_t c = fc_crc32(0, data + (pos - base) + HDR, <size_t>(n - HDR))
    length -= n
    pos += n
    while length > 0:
        pos += BH
        n = min(length, B - BH)
        c = fc_crc32(c, data + (pos - base), <size_t>n)
        length -= n
        pos += n
    return c


cdef void _gather(const uint8_t* data, int64_t base, int64_t pos, int64_t length,
                  uint8_t* out) noexcept nogil:
    cdef int64_t n = min(length, B - pos % B)
    memcpy(out, data + (pos - base), <size_t>n)
    out += n
    length -= n
    pos += n
    while length > 0:
        pos += BH
        n = min(length, B - BH)
        memcpy(out, data + (pos - base), <size_t>n)
        out += n
        length -= n
        pos += n


cdef Py_ssize_t _record(const uint8_t* data, int64_t base, int64_t pos, int64_t end,
                        const uint8_t** rec, bint* owned) noexcept nogil:
    """Length of the valid record at *pos*, its bytes in *rec* (a copy to
    free when *owned*: it spans blocks); -1 damaged, -2 incomplete, -3 no
    memory."""
    cdef Py_ssize_t length = _head_at(data, base, pos, end)
    cdef uint8_t* copy
    cdef const uint8_t* r
    owned[0] = False
    if length < 0:
        return length
    if _phys_end(pos, length) > end:
        return -2
    r = data + (pos - base)
    if _body_crc(data, base, pos, length) != _r32(r + BODY_CRC_OFFSET):
        return -1
    if length > B - pos % B:
        copy = <uint8_t*>malloc(length)
        if copy == NULL:
            return -3
        _gather(data, base, pos, length, copy)
        r = copy
        owned[0] = True
    if (r[2] == REC_PUT and not r[3] & FLAG_SEALED and _check_put_body(r, HDR, length) != 0) or \
            (r[2] == REC_COMMIT and _check_commit(r, length) != 0):
        if owned[0]:
            free(<void*>r)
            owned[0] = False
        return -1
    rec[0] = r
    return length


cdef str _utf8(const uint8_t* p, Py_ssize_t n):
    try:
        return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)
    except UnicodeDecodeError:
        raise CorruptionError("header text is not valid UTF-8") from None


cdef Event _decode_payload(const uint8_t* p, Py_ssize_t q):
    # the caller checked the payload with _check_put_body
    cdef uint32_t nh = _r32(p + q), i
    cdef uint32_t ks, vs, bs
    cdef dict headers = {}
    cdef str key
    q += 4
    for i in range(nh):
        ks = _r32(p + q)
        key = _utf8(p + q + 4, ks)
        q += 4 + ks
        vs = _r32(p + q)
        headers[key] = _utf8(p + q + 4, vs)
        q += 4 + vs
    bs = _r32(p + q)
    cdef Event e = Event.__new__(Event)
    e._body = PyBytes_FromStringAndSize(<const char*>p + q + 4, bs)
    e._headers = headers
    return e


cdef object _open_put(const uint8_t* rec, Py_ssize_t length, object opener, int64_t pointer):
    """The Event of a valid put record (a sealed one opened with *opener*)."""
    if not rec[3] & FLAG_SEALED:
        return _decode_payload(rec, HDR)
    if opener is None:
        raise CorruptionError(f"the put at log-{pointer >> 32} offset {pointer & 0xFFFFFFFF} "
                              "is encrypted and no key was given")
    plain = opener(PyBytes_FromStringAndSize(<const char*>rec + HDR, length - HDR),
                   sealed_aad(_r64(rec + TXN_OFFSET)), pointer)
    cdef const uint8_t[::1] view = plain
    cdef Py_ssize_t n = view.shape[0]
    if n == 0 or _check_put_body(&view[0], 0, n) != 0:
        raise CorruptionError(f"the put at log-{pointer >> 32} offset {pointer & 0xFFFFFFFF} "
                              "opened to a malformed event")
    return _decode_payload(&view[0], 0)


cdef dict _decode_marks(const uint8_t* p, Py_ssize_t h):
    """The marks of a valid commit record whose header is *h* bytes."""
    cdef Py_ssize_t q = h + 12
    cdef uint32_t nm = _r32(p + h + 8), i, ks
    cdef dict marks = {}
    for i in range(nm):
        ks = _r32(p + q)
        marks[_utf8(p + q + 4, ks)] = <int64_t>_r64(p + q + 4 + ks)
        q += 12 + ks
    return marks


cdef list _pointer_list(const uint8_t* rec, Py_ssize_t length):
    cdef uint32_t count = _r32(rec + HDR + 4), i
    cdef array.array a = _pyarray.array("q")
    if rec[HDR] != COMMIT_TAKES or count == 0:
        return []
    array.resize(a, count)
    _take_pointers(rec, _marks_end(rec, HDR, length), length, count, <int64_t*>a.data.as_longlongs, 1)
    return a.tolist()


def decode_record(data, int64_t pos, opener=None, uint64_t file_id=0):
    """Decode the record at file offset *pos* of *data* (a whole log file):
    ``(type, txn_id, woid, extent, value)``, extent its bytes in the file
    (block headers included), value the Event (put; a sealed one needs
    *opener*), ``(kind, count, marks, pointers)`` (commit) or None
    (rollback).  Raises CorruptionError when it is damaged or incomplete."""
    cdef const uint8_t[::1] view = data
    cdef int64_t end = view.shape[0]
    if pos < LOG_HEADER_SIZE or pos > end:
        raise CorruptionError(f"offset {pos} is not a record position in {end} bytes")
    cdef const uint8_t* rec = NULL
    cdef bint owned = False
    cdef Py_ssize_t length = _record(&view[0], 0, pos, end, &rec, &owned)
    if length == -3:
        raise MemoryError()
    if length == -2:
        raise CorruptionError(f"incomplete record at offset {pos}")
    if length < 0:
        raise CorruptionError(f"damaged record at offset {pos}")
    try:
        rtype = rec[2]
        txn, woid = _r64(rec + TXN_OFFSET), _r64(rec + WOID_OFFSET)
        if rtype == REC_PUT:
            value = _open_put(rec, length, opener, F.make_pointer(file_id, pos))
        elif rtype == REC_COMMIT:
            value = (rec[HDR], _r32(rec + HDR + 4), _decode_marks(rec, HDR), _pointer_list(rec, length))
        else:
            value = None
        return rtype, txn, woid, _phys_end(pos, length) - pos, value
    finally:
        if owned:
            free(<void*>rec)


# ---- scanning a whole log (replay, check) ------------------------------------------
cdef bint _all_zero(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] != 0:
            return False
    return True


cdef int64_t _anchor(const uint8_t* data, int64_t pos, int64_t end, uint64_t file_id) noexcept nogil:
    """The first record start after *pos* that a block header vouches for;
    *end* if there is none."""
    cdef int64_t b = pos - pos % B + B, s
    cdef int cont
    while b + BH <= end:
        cont = _block_cont(data, 0, b, file_id)
        if cont >= 0:
            s = b + BH + cont
            if s % B and B - s % B >= HDR:
                return s
        b += B
    return end


cdef int64_t _recover(const uint8_t* data, int64_t pos, int64_t end, uint64_t file_id,
                      int64_t hint) noexcept nogil:
    """Where scanning goes on after the damaged header at *pos* (see the
    pure twin): from the next block anchor (or *hint*) back along the
    records' prev links, each step checked; never a guess inside a body."""
    cdef int64_t top = _anchor(data, pos, end, file_id), q, r
    cdef uint32_t prev
    cdef Py_ssize_t length
    if top >= end:
        if not (pos < hint < end):
            return end
        top = hint
    if _head_at(data, 0, top, end) < 0:
        return top
    q = top
    while True:
        prev = _r32(data + q + PREV_OFFSET)
        r = q - prev
        if not prev or r <= pos or _next_start(r) != r:
            return q
        length = _head_at(data, 0, r, end)
        if length < 0 or _next_start(_phys_end(r, length)) != q:
            return q
        q = r


# _scan_run outcomes
cdef enum:
    SC_CHUNK = 0     # a chunk of records done, more to come
    SC_END = 1       # the end (of the range, or zeros to the end)
    SC_HURT = 2      # damage at [ha, hb), scanning goes on at pos
    SC_HURT_END = 3  # damage at [ha, hb), then the end
    SC_INNER = 4     # the record at ha (length hb) spans damaged block headers
    SC_GROW = 5      # the output needs room for hb more numbers
    SC_NOMEM = 6


cdef int _scan_run(const uint8_t* data, int64_t* ppos, int64_t end, uint64_t file_id,
                   int64_t hint, long long* o, Py_ssize_t cap, Py_ssize_t* pn,
                   int64_t* pgood, int64_t* ha, int64_t* hb) noexcept nogil:
    cdef int64_t pos = ppos[0], off, nxt, pe, s, rem
    cdef Py_ssize_t n = pn[0], length, head, k = 0, rows, i
    cdef const uint8_t* rec = NULL
    cdef bint owned = False, inner
    cdef int result = SC_END
    cdef uint32_t count
    cdef long long txn, woid
    while pos < end:
        if k >= SCAN_CHUNK:
            result = SC_CHUNK
            break
        off = pos % B
        if off == 0:
            if _all_zero(data + pos, end - pos):
                result = SC_END
                break
            if end - pos < BH:
                ha[0] = pos
                hb[0] = end
                result = SC_HURT_END
                break
            if _block_cont(data, 0, pos, file_id) != 0:
                ha[0] = pos
                hb[0] = pos + BH
                pos += BH
                result = SC_HURT
                break
            pos += BH
            continue
        if B - off < HDR:
            pos += B - off
            continue
        length = _record(data, 0, pos, end, &rec, &owned)
        if length == -3:
            result = SC_NOMEM
            break
        if length < 0:
            if _all_zero(data + pos, end - pos):
                result = SC_END
                break
            head = _head_at(data, 0, pos, end)
            if head > 0:
                nxt = _phys_end(pos, head) if length == -1 else end
            else:
                nxt = _recover(data, pos, end, file_id, hint)
            ha[0] = pos
            hb[0] = min(nxt, end)
            pos = nxt
            result = SC_HURT
            break
        rows = 1
        count = 0
        if rec[2] == REC_COMMIT:
            count = _r32(rec + HDR + 4)
            if rec[HDR] == COMMIT_TAKES:
                rows += count
        if n + 5 * rows > cap:
            if owned:
                free(<void*>rec)
            hb[0] = rows
            result = SC_GROW
            break
        txn = <long long>_r64(rec + TXN_OFFSET)
        woid = <long long>_r64(rec + WOID_OFFSET)
        if rows > 1:
            _take_pointers(rec, _marks_end(rec, HDR, length), length, count, <int64_t*>(o + n + 4), 5)
            for i in range(rows - 1):
                o[n] = REC_TAKE
                o[n + 1] = txn
                o[n + 2] = woid
                o[n + 3] = pos
                n += 5
        o[n] = rec[2]
        o[n + 1] = txn
        o[n + 2] = woid
        o[n + 3] = pos
        if rec[2] == REC_COMMIT:
            o[n + 4] = (rec[HDR] | ((_r32(rec + HDR + 8) != 0) << 8) | (<long long>count << 16))
        elif rec[2] == REC_PUT:
            o[n + 4] = rec[3]
        else:
            o[n + 4] = 0
        n += 5
        k += 1
        if owned:
            free(<void*>rec)
            owned = False
        pe = _phys_end(pos, length)
        # block headers inside the record: damaged ones are reported
        inner = False
        s = pos - pos % B + B
        while s < pe:
            if _block_cont(data, 0, s, file_id) < 0:
                inner = True
                break
            s += B
        if inner:
            ha[0] = pos
            hb[0] = length
            pos = pe
            pgood[0] = pe
            result = SC_INNER
            break
        pos = pe
        pgood[0] = pe
    ppos[0] = pos
    pn[0] = n
    return result


def scan(data, int64_t start, int64_t end=-1, uint64_t file_id=0, int64_t hint=0):
    """Walk the records of log *file_id* (``data`` is the whole file) from
    file offset *start* to *end*.

    Returns ``(records, good_end, damage)``: *records* an ``array('q')``,
    F.REC_FIELDS numbers per record (see format.py); *good_end* the offset
    after the last valid record (zero bytes from there to the end are
    preallocated space, the clean end); *damage* a list of ``(start, end,
    kind)``, kind ``"corrupt"`` (valid records follow) or ``"tail"`` (none
    does).  A record whose header is valid and whose payload is damaged is
    skipped by its length; after a damaged header scanning resumes at a
    record found from the next block anchor (or *hint*, see the pure twin's
    ``_recover``).  The GIL is released while it walks."""
    cdef const uint8_t[::1] view = data
    cdef int64_t size = view.shape[0]
    if end < 0 or end > size:
        end = size
    cdef int64_t pos = max(start, LOG_HEADER_SIZE), good_end, ha = 0, hb = 0, s, pe
    cdef array.array out = _pyarray.array("q")
    cdef list damage = []
    cdef Py_ssize_t n = 0, need = 0, cap
    cdef int st
    cdef const uint8_t* base
    good_end = pos
    if pos < end:
        base = &view[0]
        while True:
            cap = n + 5 * (SCAN_CHUNK + need)
            if len(out) < cap:
                array.resize(out, cap)
            need = 0
            cap = len(out)
            with nogil:
                st = _scan_run(base, &pos, end, file_id, hint, out.data.as_longlongs, cap,
                               &n, &good_end, &ha, &hb)
            if st == SC_CHUNK:
                continue
            if st == SC_GROW:
                need = hb
                continue
            if st == SC_NOMEM:
                raise MemoryError()
            if st == SC_HURT or st == SC_HURT_END:
                _hurt(damage, ha, hb)
                if st == SC_HURT_END:
                    break
                continue
            if st == SC_INNER:
                pe = _phys_end(ha, hb)
                s = ha - ha % B + B
                while s < pe:
                    if _block_cont(base, 0, s, file_id) < 0:
                        _hurt(damage, s, s + BH)
                    s += B
                continue
            break
    array.resize(out, n)
    cdef list result = []
    for a, b in damage:
        if a >= good_end:   # nothing valid after it: the tail
            result.append((a, end, "tail"))
            break
        result.append((a, b, "corrupt"))
    return out, good_end, result


cdef void _hurt(list damage, int64_t a, int64_t b):
    if damage and damage[-1][1] == a:
        damage[-1][1] = b
    else:
        damage.append([a, b])


# ---- file I/O with the GIL released ----------------------------------------------
def pwrite_all(int fd, data, int64_t offset):
    """Write all of *data* at *offset* (retrying short writes and EINTR)."""
    cdef const uint8_t[::1] view = data
    cdef Py_ssize_t n = view.shape[0], done = 0
    cdef ssize_t r = 0
    cdef int err = 0
    if n == 0:
        return 0
    cdef const uint8_t* p = &view[0]
    with nogil:
        while done < n:
            r = c_pwrite(fd, p + done, n - done, offset + done)
            if r < 0:
                err = errno
                if err == EINTR:
                    continue
                break
            if r == 0:   # no progress and no error: never spin on it
                err = EIO
                r = -1
                break
            done += r
    if r < 0:
        raise OSError(err, os.strerror(err))
    return done


def fdatasync(int fd):
    """fdatasync(2) with the GIL released."""
    cdef int r, err = 0
    with nogil:
        r = c_fdatasync(fd)
        if r != 0:
            err = errno
    if r != 0:
        raise OSError(err, os.strerror(err))


cdef Py_ssize_t _pread_full(int fd, uint8_t* buf, Py_ssize_t n, int64_t offset) except -1:
    cdef Py_ssize_t done = 0
    cdef ssize_t r = 0
    cdef int err = 0
    with nogil:
        while done < n:
            r = c_pread(fd, buf + done, n - done, offset + done)
            if r < 0:
                err = errno
                if err == EINTR:
                    continue
                break
            if r == 0:
                break
            done += r
    if r < 0:
        raise OSError(err, os.strerror(err))
    return done


cdef int64_t _file_size(int fd) except -1:
    return os.fstat(fd).st_size


# ---- reading events by pointer -----------------------------------------------------------
cdef object _INCOMPLETE = object()


cdef object _event_at(const uint8_t* data, int64_t base, int64_t pos, int64_t end, object opener,
                      int64_t pointer):
    """The Event at *pos*; None if damaged or not a put; _INCOMPLETE if it
    runs past *end*."""
    cdef const uint8_t* rec = NULL
    cdef bint owned = False
    cdef Py_ssize_t length
    if pos < LOG_HEADER_SIZE or _next_start(pos) != pos:
        return None   # not a position a record can start at
    length = _record(data, base, pos, end, &rec, &owned)
    if length == -2:
        return _INCOMPLETE
    if length == -3:
        raise MemoryError()
    if length < 0:
        return None
    try:
        if rec[2] != REC_PUT:
            return None
        return _open_put(rec, length, opener, pointer)
    finally:
        if owned:
            free(<void*>rec)


cdef object _read_one(int fd, int64_t pointer, object opener):
    cdef int64_t offset = pointer & 0xFFFFFFFF, extent
    cdef uint8_t small[4096]
    cdef Py_ssize_t got = _pread_full(fd, small, 4096, offset), length
    cdef uint8_t* big
    r = _event_at(small, offset, offset, offset + got, opener, pointer)
    if r is not _INCOMPLETE:
        return r
    length = _head_at(small, offset, offset, offset + got)
    if length < 0:
        return None
    extent = _phys_end(offset, length) - offset
    if extent > _file_size(fd) - offset:   # a damaged length: never allocate what is not there
        return None
    big = <uint8_t*>malloc(extent)
    if big == NULL:
        raise MemoryError()
    try:
        got = _pread_full(fd, big, extent, offset)
        r = _event_at(big, offset, offset, offset + got, opener, pointer)
        return None if r is _INCOMPLETE else r
    finally:
        free(big)


def read_events(int fd, pointers_in, opener=None):
    """The Events at *pointers* of the open log *fd* (only their offsets, the
    low 32 bits, are used to read); None where a record is damaged or is not
    a put.  Sealed puts are opened with ``opener(sealed, aad, pointer)``.
    Records close together are fetched with one pread."""
    return _read_events(fd, pointers_in, opener, 2)


cdef inline object _at(int version, const uint8_t* data, int64_t base, int64_t pos, int64_t end,
                       object opener, int64_t pointer):
    if version == 1:
        return _event_at_v1(data, base, pos, end)
    return _event_at(data, base, pos, end, opener, pointer)


cdef inline object _one(int version, int fd, int64_t pointer, object opener):
    if version == 1:
        return _read_one_v1(fd, pointer & 0xFFFFFFFF)
    return _read_one(fd, pointer, opener)


cdef list _read_events(int fd, pointers_in, object opener, int version):
    cdef list pointers = pointers_in if type(pointers_in) is list else list(pointers_in)
    cdef Py_ssize_t n = len(pointers), i
    cdef list out = [None] * n
    if n == 0:
        return out
    cdef int64_t* ptrs = <int64_t*>malloc(n * sizeof(int64_t))
    if ptrs == NULL:
        raise MemoryError()
    cdef int64_t lo, hi, off
    cdef Py_ssize_t span, got
    cdef uint8_t* buf = NULL
    try:
        for i in range(n):
            ptrs[i] = <int64_t>pointers[i]
        lo = hi = ptrs[0] & 0xFFFFFFFF
        for i in range(1, n):
            off = ptrs[i] & 0xFFFFFFFF
            if off < lo:
                lo = off
            elif off > hi:
                hi = off
        if hi - lo > SPAN_LIMIT:
            for i in range(n):
                out[i] = _one(version, fd, ptrs[i], opener)
            return out
        span = hi - lo + READ_AHEAD
        buf = <uint8_t*>malloc(span)
        if buf == NULL:
            raise MemoryError()
        got = _pread_full(fd, buf, span, lo)
        for i in range(n):
            r = _at(version, buf, lo, ptrs[i] & 0xFFFFFFFF, lo + got, opener, ptrs[i])
            out[i] = _one(version, fd, ptrs[i], opener) if r is _INCOMPLETE else r
        return out
    finally:
        free(buf)
        free(ptrs)


# ---- version 1 (read only) ----------------------------------------------------------
cdef inline Py_ssize_t _check_put_body_v1(const uint8_t* p, Py_ssize_t length) noexcept nogil:
    return _check_put_body(p, HDR1, length)


cdef inline Py_ssize_t _check_commit_body_v1(const uint8_t* p, Py_ssize_t length) noexcept nogil:
    return 0 if HDR1 + 12 <= length and _marks_end(p, HDR1, length) == length else -1


cdef Py_ssize_t _valid_at_v1(const uint8_t* data, Py_ssize_t pos, Py_ssize_t end) noexcept nogil:
    """Length of the valid record at *pos*; -1 if it is damaged; -2 if it
    runs past *end* (cannot be judged)."""
    cdef const uint8_t* p = data + pos
    cdef Py_ssize_t length
    cdef int rtype
    if end - pos < HDR1:
        return -2
    if _r16(p) != RECORD_MAGIC:
        return -1
    rtype = p[2]
    if rtype < REC_PUT or rtype > REC_ROLLBACK or p[3] != 0:
        return -1
    length = _r32(p + 4)
    if length < HDR1:
        return -1
    if length > end - pos:
        return -2
    if _r32(p + CRC_OFFSET1) != _record_crc_v1(p, length):
        return -1
    if rtype == REC_PUT:
        if _check_put_body_v1(p, length) != 0:
            return -1
    elif rtype == REC_TAKE:
        if length != HDR1 + 8:
            return -1
    elif rtype == REC_COMMIT:
        if _check_commit_body_v1(p, length) != 0:
            return -1
    elif length != HDR1:
        return -1
    return length


cdef inline Event _decode_put_v1(const uint8_t* p, Py_ssize_t length):
    # the caller validated the record with _valid_at_v1
    return _decode_payload(p, HDR1)


def decode_record_v1(data, Py_ssize_t pos=0):
    """Decode the record at *pos* of *data*: ``(type, txn_id, woid, length,
    value)`` where value is the Event (put), the pointer (take), the tuple
    ``(kind, count, marks)`` (commit) or None (rollback).  Raises
    CorruptionError when the record is damaged or incomplete."""
    cdef const uint8_t[::1] view = data
    cdef Py_ssize_t end = view.shape[0]
    if pos < 0 or pos > end:
        raise CorruptionError(f"offset {pos} is outside the buffer of {end} bytes")
    if end == 0:
        raise CorruptionError("incomplete record at offset 0")
    cdef const uint8_t* base = &view[0]
    cdef Py_ssize_t length = _valid_at_v1(base, pos, end)
    if length == -2:
        raise CorruptionError(f"incomplete record at offset {pos}")
    if length < 0:
        raise CorruptionError(f"damaged record at offset {pos}")
    cdef const uint8_t* p = base + pos
    cdef int rtype = p[2]
    txn, woid = _r64(p + 12), _r64(p + 20)
    if rtype == REC_PUT:
        value = _decode_put_v1(p, length)
    elif rtype == REC_TAKE:
        value = <int64_t>_r64(p + HDR1)
    elif rtype == REC_COMMIT:
        value = (p[HDR1], _r32(p + HDR1 + 4), _decode_marks(p, HDR1))
    else:
        value = None
    return rtype, txn, woid, length, value


# ---- scanning a whole log (replay, check) ------------------------------------------
def scan_v1(data, Py_ssize_t start, Py_ssize_t end=-1):
    """Walk the records of ``data[start:end]``.

    Returns ``(records, good_end, damage)``: *records* an ``array('q')`` of
    5-tuples (type, txn_id, woid, offset, aux) flattened, where aux is the
    pointer of a take, ``kind | has_marks << 8 | count << 16`` of a commit, else 0;
    *good_end* the offset after the last valid record (zero bytes from there
    to the end are preallocated space, the clean end, not damage); *damage* a list of
    ``(start, end, kind)`` with kind ``"corrupt"`` (valid records follow) or
    ``"tail"`` (nothing valid follows: a torn or damaged tail)."""
    cdef const uint8_t[::1] view = data
    cdef Py_ssize_t size = view.shape[0]
    if end < 0 or end > size:
        end = size
    if start < 0:
        start = 0
    cdef array.array out = _pyarray.array("q")
    cdef list damage = []
    cdef Py_ssize_t n = 0, pos = start, length = 0, q, good_end = start, k
    cdef const uint8_t* base
    cdef const uint8_t* p
    cdef long long* o
    cdef bint found, zero_tail
    if start >= end:
        return out, good_end, damage
    base = &view[0]
    while pos < end:
        # room for SCAN_CHUNK more records, then walk them with the GIL released
        array.resize(out, n + 5 * SCAN_CHUNK)
        o = out.data.as_longlongs
        with nogil:
            k = 0
            while pos < end and k < SCAN_CHUNK:
                length = _valid_at_v1(base, pos, end)
                if length <= 0:
                    break
                p = base + pos
                o[n] = p[2]
                o[n + 1] = <long long>_r64(p + 12)
                o[n + 2] = <long long>_r64(p + 20)
                o[n + 3] = pos
                if p[2] == REC_TAKE:
                    o[n + 4] = <long long>_r64(p + HDR1)
                elif p[2] == REC_COMMIT:
                    o[n + 4] = (p[HDR1] | ((_r32(p + HDR1 + 8) != 0) << 8)
                                | (<long long>_r32(p + HDR1 + 4) << 16))
                else:
                    o[n + 4] = 0
                n += 5
                k += 1
                pos += length
                good_end = pos
        if pos >= end or length > 0:
            continue
        with nogil:
            zero_tail = base[pos] == 0 and _all_zero(base + pos, end - pos)
            found = False
            q = pos + 1
            if not zero_tail:   # damaged or incomplete: look for the next valid record
                while q + HDR1 <= end:
                    if base[q] == 0xFC and base[q + 1] == 0x1A and _valid_at_v1(base, q, end) > 0:
                        found = True
                        break
                    q += 1
        if zero_tail:
            break   # zeros to the end: preallocated space, the clean end of the log
        if found:
            damage.append((pos, q, "corrupt"))
            pos = q
        else:
            damage.append((pos, end, "tail"))
            break
    array.resize(out, n)
    return out, good_end, damage


cdef object _read_one_v1(int fd, int64_t offset):
    cdef uint8_t small[4096]
    cdef Py_ssize_t got = _pread_full(fd, small, 4096, offset)
    cdef Py_ssize_t length = _valid_at_v1(small, 0, got)
    cdef uint8_t* big
    if length > 0:
        return _decode_put_v1(small, length) if small[2] == REC_PUT else None
    if length == -1 or got < HDR1:
        return None
    length = _r32(small + 4)
    if length > _file_size(fd) - offset:   # a damaged length: never allocate what is not there
        return None
    big = <uint8_t*>malloc(length)
    if big == NULL:
        raise MemoryError()
    try:
        got = _pread_full(fd, big, length, offset)
        length = _valid_at_v1(big, 0, got)
        if length > 0 and big[2] == REC_PUT:
            return _decode_put_v1(big, length)
        return None
    finally:
        free(big)


cdef object _event_at_v1(const uint8_t* data, int64_t base, int64_t pos, int64_t end):
    """The Event at *pos* of a version 1 log; None if damaged or not a put;
    _INCOMPLETE if it runs past *end*."""
    cdef Py_ssize_t rel = pos - base
    cdef Py_ssize_t length = _valid_at_v1(data, rel, end - base)
    if length > 0:
        return _decode_put_v1(data + rel, length) if data[rel + 2] == REC_PUT else None
    return _INCOMPLETE if length == -2 else None


def read_events_v1(int fd, pointers_in):
    """Read the put records at *pointers* (only their low 32 bits, the
    offset, are used) of the open version 1 log *fd*; one Event per pointer,
    or None where the record is damaged or is not a put.  Records close
    together are fetched with one pread."""
    return _read_events(fd, pointers_in, None, 1)

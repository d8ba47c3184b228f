# cython: language_level=3, embedsignature=True
"""Compiled record codec and log-file I/O of the FileChannel.

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
from libc.string cimport memcpy

from fchannel._event cimport Event
from fchannel._event import check_headers

import array as _pyarray
import os

from fchannel.errors import CorruptionError
from fchannel.file import format as F


cdef extern from "_crc32.h":
    # zlib's CRC-32, folded with carry-less multiplication where the CPU can
    uint32_t fc_crc32(uint32_t crc, const uint8_t* buf, size_t len) nogil

cdef extern from "unistd.h" nogil:
    ssize_t c_pread "pread" (int fd, void *buf, size_t count, long offset)
    ssize_t c_pwrite "pwrite" (int fd, const void *buf, size_t count, long offset)
    int c_fdatasync "fdatasync" (int fd)

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL


# constants taken from the one definition of the format
cdef uint16_t RECORD_MAGIC = F.RECORD_MAGIC
cdef int REC_PUT = F.REC_PUT
cdef int REC_TAKE = F.REC_TAKE
cdef int REC_COMMIT = F.REC_COMMIT
cdef int REC_ROLLBACK = F.REC_ROLLBACK
cdef Py_ssize_t HDR = F.RECORD_HEADER_SIZE
cdef Py_ssize_t CRC_OFFSET = F.CRC_OFFSET
cdef Py_ssize_t CRC_END = F.CRC_END
cdef Py_ssize_t WOID_OFFSET = F.WOID_OFFSET
cdef Py_ssize_t SPAN_LIMIT = F.SPAN_LIMIT
cdef Py_ssize_t READ_AHEAD = F.READ_AHEAD
#: records scan walks per release of the GIL
cdef Py_ssize_t SCAN_CHUNK = 4096


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


cdef inline uint32_t _record_crc(const uint8_t* p, Py_ssize_t length) noexcept nogil:
    cdef uint32_t c = fc_crc32(0, p, <size_t>CRC_OFFSET)
    return fc_crc32(c, p + CRC_END, <size_t>(length - CRC_END))


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


cdef inline void _write_header(uint8_t* p, int rtype, Py_ssize_t length,
                               uint64_t txn_id) noexcept nogil:
    _w16(p, RECORD_MAGIC)
    p[2] = <uint8_t>rtype
    p[3] = 0
    _w32(p + 4, <uint32_t>length)
    _w32(p + 8, 0)
    _w64(p + 12, txn_id)
    _w64(p + 20, 0)


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
        raise ValueError(f"event of {n} bytes is larger than a record can be")
    return n


cdef int _write_put(uint8_t* p, Py_ssize_t n, uint64_t txn_id, Event event) except -1:
    """Write *event*'s put record of length *n* (from _put_size) at *p*."""
    cdef dict headers = event._headers
    cdef bytes body = event._body
    cdef Py_ssize_t ks, vs
    cdef const char* kp
    cdef const char* vp
    _write_header(p, REC_PUT, n, txn_id)
    cdef uint8_t* q = p + HDR
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
    """Append a put record (write-order id and crc left for ``finalize``);
    return its offset in *buf*."""
    cdef Py_ssize_t n = _put_size(event)
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    _write_put(_grow(buf, n), n, txn_id, event)
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
            _write_put(p, sizes[i], txn_id, <Event>events[i])
            starts.append(start)
            start += sizes[i]
            p += sizes[i]
    finally:
        free(sizes)


def encode_take(bytearray buf, uint64_t txn_id, int64_t pointer):
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    cdef uint8_t* p = _grow(buf, HDR + 8)
    _write_header(p, REC_TAKE, HDR + 8, txn_id)
    _w64(p + HDR, <uint64_t>pointer)
    return start


def encode_takes(bytearray buf, uint64_t txn_id, pointers):
    cdef int64_t ptr
    for ptr in pointers:
        encode_take(buf, txn_id, ptr)


def encode_commit(bytearray buf, uint64_t txn_id, int kind, uint32_t count, marks=None):
    """Append a commit record; *marks* (str -> int) are committed with it."""
    cdef Py_ssize_t n = HDR + 12
    cdef Py_ssize_t ks
    cdef const char* kp
    cdef dict m = dict(marks) if marks else {}
    for k in m:
        PyUnicode_AsUTF8AndSize(k, &ks)
        n += 12 + ks
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    cdef uint8_t* p = _grow(buf, n)
    _write_header(p, REC_COMMIT, n, txn_id)
    cdef uint8_t* q = p + HDR
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
    return start


def encode_rollback(bytearray buf, uint64_t txn_id):
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    cdef uint8_t* p = _grow(buf, HDR)
    _write_header(p, REC_ROLLBACK, HDR, txn_id)
    return start


def finalize(bytearray buf, Py_ssize_t start, uint64_t first_woid):
    """Give the records in ``buf[start:]`` consecutive write-order ids from
    *first_woid* and fill in their crcs.  Returns the next free id."""
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
            _w32(base + pos + CRC_OFFSET, _record_crc(base + pos, length))
            woid += 1
            pos += length
    if pos != end:
        raise ValueError(f"record buffer is malformed at offset {pos}")
    return woid


# ---- validation and decoding ----------------------------------------------------
cdef Py_ssize_t _check_put_body(const uint8_t* p, Py_ssize_t length) noexcept nogil:
    """0 when the put payload's inner lengths end exactly at *length*."""
    cdef Py_ssize_t q = HDR
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


cdef Py_ssize_t _check_commit_body(const uint8_t* p, Py_ssize_t length) noexcept nogil:
    cdef Py_ssize_t q = HDR + 12
    cdef uint64_t nm, i, k
    if q > length:
        return -1
    nm = _r32(p + HDR + 8)
    for i in range(nm):
        if q + 4 > length:
            return -1
        k = _r32(p + q)
        if <uint64_t>(length - q - 4) < k + 8:
            return -1
        q += 12 + <Py_ssize_t>k
    return 0 if q == length else -1


cdef Py_ssize_t _valid_at(const uint8_t* data, Py_ssize_t pos, Py_ssize_t end) noexcept nogil:
    """Length of the valid record at *pos*; -1 if it is damaged; -2 if it
    runs past *end* (cannot be judged)."""
    cdef const uint8_t* p = data + pos
    cdef Py_ssize_t length
    cdef int rtype
    if end - pos < HDR:
        return -2
    if _r16(p) != RECORD_MAGIC:
        return -1
    rtype = p[2]
    if rtype < REC_PUT or rtype > REC_ROLLBACK or p[3] != 0:
        return -1
    length = _r32(p + 4)
    if length < HDR:
        return -1
    if length > end - pos:
        return -2
    if _r32(p + CRC_OFFSET) != _record_crc(p, length):
        return -1
    if rtype == REC_PUT:
        if _check_put_body(p, length) != 0:
            return -1
    elif rtype == REC_TAKE:
        if length != HDR + 8:
            return -1
    elif rtype == REC_COMMIT:
        if _check_commit_body(p, length) != 0:
            return -1
    elif length != HDR:
        return -1
    return length


cdef str _utf8(const uint8_t* p, Py_ssize_t n):
    try:
        return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)
    except UnicodeDecodeError:
        raise CorruptionError("header text is not valid UTF-8") from None


cdef Event _decode_put(const uint8_t* p, Py_ssize_t length):
    # the caller validated the record with _valid_at
    cdef Py_ssize_t q = HDR + 4
    cdef uint32_t nh = _r32(p + HDR), i
    cdef uint32_t ks, vs, bs
    cdef dict headers = {}
    cdef str key
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


def decode_record(data, Py_ssize_t pos=0):
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
    cdef Py_ssize_t length = _valid_at(base, pos, end)
    if length == -2:
        raise CorruptionError(f"incomplete record at offset {pos}")
    if length < 0:
        raise CorruptionError(f"damaged record at offset {pos}")
    cdef const uint8_t* p = base + pos
    cdef int rtype = p[2]
    txn, woid = _r64(p + 12), _r64(p + 20)
    if rtype == REC_PUT:
        value = _decode_put(p, length)
    elif rtype == REC_TAKE:
        value = <int64_t>_r64(p + HDR)
    elif rtype == REC_COMMIT:
        value = (p[HDR], _r32(p + HDR + 4), _decode_marks(p, length))
    else:
        value = None
    return rtype, txn, woid, length, value


cdef dict _decode_marks(const uint8_t* p, Py_ssize_t length):
    cdef Py_ssize_t q = HDR + 12
    cdef uint32_t nm = _r32(p + HDR + 8), i, ks
    cdef dict marks = {}
    for i in range(nm):
        ks = _r32(p + q)
        marks[_utf8(p + q + 4, ks)] = <int64_t>_r64(p + q + 4 + ks)
        q += 12 + ks
    return marks


# ---- scanning a whole log (replay, check) ------------------------------------------
cdef bint _all_zero(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] != 0:
            return False
    return True


def scan(data, Py_ssize_t start, Py_ssize_t end=-1):
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
                length = _valid_at(base, pos, end)
                if length <= 0:
                    break
                p = base + pos
                o[n] = p[2]
                o[n + 1] = <long long>_r64(p + 12)
                o[n + 2] = <long long>_r64(p + 20)
                o[n + 3] = pos
                if p[2] == REC_TAKE:
                    o[n + 4] = <long long>_r64(p + HDR)
                elif p[2] == REC_COMMIT:
                    o[n + 4] = (p[HDR] | ((_r32(p + HDR + 8) != 0) << 8)
                                | (<long long>_r32(p + HDR + 4) << 16))
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
                while q + HDR <= end:
                    if base[q] == 0xFC and base[q + 1] == 0x1A and _valid_at(base, q, end) > 0:
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


cdef object _read_one(int fd, int64_t offset):
    cdef uint8_t small[4096]
    cdef Py_ssize_t got = _pread_full(fd, small, 4096, offset)
    cdef Py_ssize_t length = _valid_at(small, 0, got)
    cdef uint8_t* big
    if length > 0:
        return _decode_put(small, length) if small[2] == REC_PUT else None
    if length == -1 or got < HDR:
        return None
    length = _r32(small + 4)
    if length > _file_size(fd) - offset:   # a damaged length: never allocate what is not there
        return None
    big = <uint8_t*>malloc(length)
    if big == NULL:
        raise MemoryError()
    try:
        got = _pread_full(fd, big, length, offset)
        length = _valid_at(big, 0, got)
        if length > 0 and big[2] == REC_PUT:
            return _decode_put(big, length)
        return None
    finally:
        free(big)


def read_events(int fd, pointers_in):
    """Read the put records at *pointers* (only their low 32 bits, the
    offset, are used) of the open log *fd*; one Event per pointer, or None
    where the record is damaged or is not a put.  Records close together are
    fetched with one pread."""
    cdef list pointers = pointers_in if type(pointers_in) is list else list(pointers_in)
    cdef Py_ssize_t n = len(pointers), i
    cdef list out = [None] * n
    if n == 0:
        return out
    cdef int64_t* offs = <int64_t*>malloc(n * sizeof(int64_t))
    if offs == NULL:
        raise MemoryError()
    cdef int64_t lo, hi, off
    cdef Py_ssize_t span, got, rel, length
    cdef uint8_t* buf = NULL
    try:
        for i in range(n):
            offs[i] = (<int64_t>pointers[i]) & 0xFFFFFFFF
        lo = hi = offs[0]
        for i in range(1, n):
            if offs[i] < lo:
                lo = offs[i]
            elif offs[i] > hi:
                hi = offs[i]
        if hi - lo > SPAN_LIMIT:
            for i in range(n):
                out[i] = _read_one(fd, offs[i])
            return out
        span = hi - lo + READ_AHEAD
        buf = <uint8_t*>malloc(span)
        if buf == NULL:
            raise MemoryError()
        got = _pread_full(fd, buf, span, lo)
        for i in range(n):
            off = offs[i]
            rel = off - lo
            length = _valid_at(buf, rel, got)
            if length > 0:
                out[i] = _decode_put(buf + rel, length) if buf[rel + 2] == REC_PUT else None
            elif length == -2:
                out[i] = _read_one(fd, off)
        return out
    finally:
        free(buf)
        free(offs)

# cython: language_level=3, embedsignature=True
"""Compiled event queue of the FileChannel: a ring buffer of int64 event
pointers with the overwrite map of slots changed since the last checkpoint
(kept as a bitmap: one bit per slot), so a checkpoint copies only what
changed into the memory-mapped checkpoint file.

The pure-Python twin is ``_queue_py.py``.  Policy (when to checkpoint,
what replay does) lives in Python; this is the loop over pointers.
"""
cimport cython
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

import sys

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("fchannel's checkpoint format needs a little-endian host")


@cython.final
cdef class EventQueue:
    """FIFO of event pointers with a fixed capacity."""
    cdef int64_t* ring
    cdef uint64_t* dirty
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _head
    cdef Py_ssize_t _size
    cdef Py_ssize_t _words

    def __cinit__(self, Py_ssize_t capacity):
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self._capacity = capacity
        self._words = (capacity + 63) // 64
        self.ring = <int64_t*>calloc(capacity, sizeof(int64_t))
        self.dirty = <uint64_t*>calloc(self._words, sizeof(uint64_t))
        if self.ring == NULL or self.dirty == NULL:
            raise MemoryError()
        self._head = 0
        self._size = 0

    def __dealloc__(self):
        free(self.ring)
        free(self.dirty)

    @property
    def capacity(self):
        return self._capacity

    @property
    def size(self):
        return self._size

    @property
    def head(self):
        return self._head

    def __len__(self):
        return self._size

    cdef inline void _set(self, Py_ssize_t idx, int64_t value) noexcept:
        self.ring[idx] = value
        self.dirty[idx >> 6] |= (<uint64_t>1) << (idx & 63)

    cdef inline Py_ssize_t _slot(self, Py_ssize_t i) noexcept:
        cdef Py_ssize_t s = self._head + i
        if s >= self._capacity:
            s -= self._capacity
        return s

    def add_tail(self, pointers):
        """Append pointers at the tail, in order."""
        cdef int64_t p
        cdef list ps = pointers if type(pointers) is list else list(pointers)
        if self._size + len(ps) > self._capacity:
            raise OverflowError(f"queue of capacity {self._capacity} cannot take "
                                f"{len(ps)} more (size {self._size})")
        for p in ps:
            self._set(self._slot(self._size), p)
            self._size += 1

    def add_head(self, pointers):
        """Insert pointers at the head so that pointers[0] becomes the head."""
        cdef list ps = pointers if type(pointers) is list else list(pointers)
        cdef Py_ssize_t i
        if self._size + len(ps) > self._capacity:
            raise OverflowError(f"queue of capacity {self._capacity} cannot take "
                                f"{len(ps)} more (size {self._size})")
        for i in range(len(ps) - 1, -1, -1):
            self._head = self._head - 1 if self._head > 0 else self._capacity - 1
            self._set(self._head, <int64_t>ps[i])
            self._size += 1

    def pop_head(self, Py_ssize_t n):
        """Remove and return up to *n* pointers from the head."""
        cdef Py_ssize_t k = min(n, self._size), i
        cdef list out = [None] * k
        for i in range(k):
            out[i] = self.ring[self._head]
            self._head += 1
            if self._head == self._capacity:
                self._head = 0
        self._size -= k
        return out

    def peek(self, Py_ssize_t i):
        """The pointer at logical position *i* (0 is the head)."""
        if i < 0 or i >= self._size:
            raise IndexError(f"position {i} outside a queue of size {self._size}")
        return self.ring[self._slot(i)]

    def remove(self, int64_t pointer):
        """Remove *pointer* wherever it is; False if it is not queued."""
        cdef Py_ssize_t i, j
        for i in range(self._size):
            if self.ring[self._slot(i)] == pointer:
                break
        else:
            return False
        # close the gap by moving the entries in front of it one step back
        for j in range(i, 0, -1):
            self._set(self._slot(j), self.ring[self._slot(j - 1)])
        self._head += 1
        if self._head == self._capacity:
            self._head = 0
        self._size -= 1
        return True

    def to_list(self):
        """All queued pointers, head first."""
        return [self.ring[self._slot(i)] for i in range(self._size)]

    def refs(self):
        """Per log file id, how many queued pointers point into it."""
        return _count_refs(self.ring, self._capacity, self._head, self._size)

    def dirty_count(self):
        cdef Py_ssize_t w, n = 0
        cdef uint64_t x
        for w in range(self._words):
            x = self.dirty[w]
            while x:
                x &= x - 1
                n += 1
        return n

    def mark_all_dirty(self):
        cdef Py_ssize_t w
        for w in range(self._words):
            self.dirty[w] = <uint64_t>-1

    def write_dirty(self, int64_t[::1] slots):
        """Copy every changed slot into *slots* (the checkpoint's ring) and
        clear the overwrite map; returns the number of slots copied."""
        if slots.shape[0] != self._capacity:
            raise ValueError(f"checkpoint ring has {slots.shape[0]} slots, "
                             f"queue capacity is {self._capacity}")
        cdef Py_ssize_t w, b, idx, n = 0
        cdef uint64_t x
        cdef int64_t* dst = &slots[0]
        with nogil:
            for w in range(self._words):
                x = self.dirty[w]
                if x == 0:
                    continue
                if x == <uint64_t>-1 and (w + 1) * 64 <= self._capacity:
                    memcpy(dst + w * 64, self.ring + w * 64, 64 * sizeof(int64_t))
                    n += 64
                else:
                    for b in range(64):
                        if x & ((<uint64_t>1) << b):
                            idx = w * 64 + b
                            if idx < self._capacity:
                                dst[idx] = self.ring[idx]
                                n += 1
                self.dirty[w] = 0
        return n

    def load(self, const int64_t[::1] slots, Py_ssize_t head, Py_ssize_t size):
        """Take the ring from a checkpoint; the overwrite map starts empty."""
        if slots.shape[0] != self._capacity:
            raise ValueError(f"checkpoint ring has {slots.shape[0]} slots, "
                             f"queue capacity is {self._capacity}")
        if not (0 <= head < self._capacity) or not (0 <= size <= self._capacity):
            raise ValueError(f"checkpoint head={head} size={size} do not fit "
                             f"capacity {self._capacity}")
        memcpy(self.ring, &slots[0], self._capacity * sizeof(int64_t))
        cdef Py_ssize_t w
        for w in range(self._words):
            self.dirty[w] = 0
        self._head = head
        self._size = size


cdef dict _count_refs(const int64_t* ring, Py_ssize_t cap, Py_ssize_t head, Py_ssize_t size):
    cdef dict out = {}
    cdef Py_ssize_t i, s, run = 0
    cdef int64_t fid, last = -1
    for i in range(size):
        s = head + i
        if s >= cap:
            s -= cap
        fid = ring[s] >> 32
        if fid == last:   # pointers come in runs from one file: count a run at once
            run += 1
            continue
        if run:
            out[last] = out.get(last, 0) + run
        last = fid
        run = 1
    if run:
        out[last] = out.get(last, 0) + run
    return out


def ring_refs(const int64_t[::1] slots, Py_ssize_t head, Py_ssize_t size):
    """Per log file id, how many of the *size* pointers from *head* of a
    checkpoint ring point into it."""
    cdef Py_ssize_t cap = slots.shape[0]
    if size < 0 or size > cap or (cap and not 0 <= head < cap):
        raise ValueError(f"head={head} size={size} do not fit a ring of {cap} slots")
    if size == 0:
        return {}
    return _count_refs(&slots[0], cap, head, size)


def common_file(pointers):
    """The log file id all *pointers* point into, or -1 if they differ (or
    there are none)."""
    cdef Py_ssize_t n = len(pointers), i
    if n == 0:
        return -1
    cdef int64_t fid = (<int64_t>pointers[0]) >> 32
    for i in range(1, n):
        if ((<int64_t>pointers[i]) >> 32) != fid:
            return -1
    return fid

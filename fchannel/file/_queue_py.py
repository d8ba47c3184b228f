"""Pure-Python twin of ``_queue.pyx``: the FileChannel's ring buffer of event
pointers with its overwrite map (the set of slots changed since the last
checkpoint)."""
from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("fchannel's checkpoint format needs a little-endian host")


class EventQueue:
    """FIFO of event pointers with a fixed capacity."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self._capacity = capacity
        self._ring = array("q", bytes(8 * capacity))
        self._dirty: set[int] = set()
        self._head = 0
        self._size = 0

    capacity = property(lambda self: self._capacity)
    size = property(lambda self: self._size)
    head = property(lambda self: self._head)

    def __len__(self) -> int:
        return self._size

    def _slot(self, i: int) -> int:
        return (self._head + i) % self._capacity

    def _set(self, idx: int, value: int) -> None:
        self._ring[idx] = value
        self._dirty.add(idx)

    def _room(self, n: int) -> None:
        if self._size + n > self._capacity:
            raise OverflowError(f"queue of capacity {self._capacity} cannot take "
                                f"{n} more (size {self._size})")

    def add_tail(self, pointers: Iterable[int]) -> None:
        ps = list(pointers)
        self._room(len(ps))
        for p in ps:
            self._set(self._slot(self._size), p)
            self._size += 1

    def add_head(self, pointers: Iterable[int]) -> None:
        ps = list(pointers)
        self._room(len(ps))
        for p in reversed(ps):
            self._head = (self._head - 1) % self._capacity
            self._set(self._head, p)
            self._size += 1

    def pop_head(self, n: int) -> list[int]:
        k = min(n, self._size)
        out = [self._ring[self._slot(i)] for i in range(k)]
        self._head = (self._head + k) % self._capacity
        self._size -= k
        return out

    def peek(self, i: int) -> int:
        if i < 0 or i >= self._size:
            raise IndexError(f"position {i} outside a queue of size {self._size}")
        return self._ring[self._slot(i)]

    def remove(self, pointer: int) -> bool:
        for i in range(self._size):
            if self._ring[self._slot(i)] == pointer:
                break
        else:
            return False
        for j in range(i, 0, -1):
            self._set(self._slot(j), self._ring[self._slot(j - 1)])
        self._head = (self._head + 1) % self._capacity
        self._size -= 1
        return True

    def to_list(self) -> list[int]:
        return [self._ring[self._slot(i)] for i in range(self._size)]

    def refs(self) -> dict[int, int]:
        return ring_refs(self._ring, self._head, self._size)

    def dirty_count(self) -> int:
        return len(self._dirty)

    def mark_all_dirty(self) -> None:
        self._dirty = set(range(self._capacity))

    def write_dirty(self, slots) -> int:
        view = memoryview(slots).cast("B").cast("q") if not isinstance(slots, array) else slots
        if len(view) != self._capacity:
            raise ValueError(f"checkpoint ring has {len(view)} slots, "
                             f"queue capacity is {self._capacity}")
        for idx in self._dirty:
            view[idx] = self._ring[idx]
        n = len(self._dirty)
        self._dirty = set()
        return n

    def load(self, slots, head: int, size: int) -> None:
        view = memoryview(slots).cast("B").cast("q") if not isinstance(slots, array) else slots
        if len(view) != self._capacity:
            raise ValueError(f"checkpoint ring has {len(view)} slots, "
                             f"queue capacity is {self._capacity}")
        if not (0 <= head < self._capacity) or not (0 <= size <= self._capacity):
            raise ValueError(f"checkpoint head={head} size={size} do not fit "
                             f"capacity {self._capacity}")
        self._ring = array("q", view)
        self._dirty = set()
        self._head = head
        self._size = size


def ring_refs(slots, head: int, size: int) -> dict[int, int]:
    """Per log file id, how many of the *size* pointers from *head* of a
    checkpoint ring point into it."""
    view = memoryview(slots).cast("B").cast("q") if not isinstance(slots, array) else slots
    cap = len(view)
    if size < 0 or size > cap or (cap and not 0 <= head < cap):
        raise ValueError(f"head={head} size={size} do not fit a ring of {cap} slots")
    out: dict[int, int] = {}
    for i in range(size):
        fid = view[(head + i) % cap] >> 32
        out[fid] = out.get(fid, 0) + 1
    return out


def common_file(pointers) -> int:
    """The log file id all *pointers* point into, or -1 if they differ (or
    there are none)."""
    fids = {p >> 32 for p in pointers}
    return fids.pop() if len(fids) == 1 else -1

"""The in-memory state of an open FileChannel that transactions, the commit
path and the checkpointer share, guarded by one condition (``cond``)."""
from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any

from fchannel.errors import ChannelClosedError, ChannelError, ChannelFullError

if TYPE_CHECKING:
    from fchannel.file.transaction import FileTransaction


class ChannelState:
    def __init__(self, queue: Any, capacity: int, marks: dict[str, int], name: str) -> None:
        self.name = name
        self.queue = queue                    # the event queue (pointers), FIFO
        self.capacity = capacity
        self.cond = threading.Condition(threading.Lock())
        self.slots_used = queue.size          # queued + taken + reserved by puts
        #: transactions whose records or takes the checkpoint must know of
        self.active: dict[int, FileTransaction] = {}
        self.marks = dict(marks)              # latest committed value per key
        self.counters: collections.Counter[str] = collections.Counter()
        self.closed = False
        #: why the channel refuses work until it is reopened (a failed sync)
        self.failed: str | None = None

    def check_open(self) -> None:
        if self.closed:
            raise ChannelClosedError(f"channel {self.name!r} is closed")
        if self.failed:
            raise ChannelError(f"channel {self.name!r} refuses work until it is reopened: "
                               f"{self.failed}")

    def fail(self, why: str) -> None:
        """Enter the failed state: after a failed fdatasync nothing proves
        what reached the disk (a retried sync can succeed over lost pages),
        so the channel stops, and the next open decides from the disk."""
        with self.cond:
            if not self.failed:
                self.failed = why
            self.cond.notify_all()

    def reserve(self, n: int, keep_alive: float) -> None:
        """Claim room for n events, waiting up to *keep_alive* seconds."""
        with self.cond:
            self.check_open()
            if self.slots_used + n > self.capacity:
                deadline = time.monotonic() + keep_alive
                while self.slots_used + n > self.capacity:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.closed or self.failed:
                        break
                    self.cond.wait(left)
                self.check_open()
                if self.slots_used + n > self.capacity:
                    raise ChannelFullError(
                        f"channel {self.name!r} is full: no room for {n} event(s) within "
                        f"keep_alive={keep_alive}s (capacity={self.capacity}); "
                        "sinks are not keeping up with sources")
            self.slots_used += n

    def release(self, n: int) -> None:
        """Give back room for n events (caller holds ``cond``)."""
        if n:
            self.slots_used -= n
            self.cond.notify_all()

"""The commit path of the FileChannel: writing a transaction's records,
syncing them (group commit) and applying them to the queue in commit order;
and rollback.

A put commit appends its buffer plus a commit record to the log of its data
dir under the log lock (which hands out write-order ids, so the order of
records is the order of commits), syncs, and only then appends its pointers
to the queue, in commit order (tickets).  A take commit writes one commit
record naming the events it took, syncs, and frees the room.  Commits hold the
checkpoint gate (shared) until they are applied, so a checkpoint sees each
one wholly applied or not begun.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from fchannel._compat import codec
from fchannel._compat import queue as _queue
from fchannel.errors import ChannelError, ChannelFullError, TransactionError
from fchannel.file import format as F
from fchannel.file.log import Log
from fchannel.file.state import ChannelState
from fchannel.file.transaction import FileTransaction

log = logging.getLogger("fchannel.file")


def _files_of(pointers: list[int]) -> set[int]:
    """The log files *pointers* point into."""
    fid = _queue.common_file(pointers)   # the usual case: one file
    return {fid} if fid >= 0 else {p >> 32 for p in pointers}


class Gate:
    """Commits pass in shared mode; a checkpoint takes it exclusively, so it
    sees every commit either wholly applied or not begun."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False

    def enter_shared(self) -> None:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1

    def exit_shared(self, count: int = 1) -> None:
        if count <= 0:
            return
        with self._cond:
            self._shared -= count
            if self._shared == 0:
                self._cond.notify_all()

    def busy(self) -> bool:
        """More than one commit is in flight (a hint, read without the lock)."""
        return self._shared > 1

    def enter_exclusive(self) -> None:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._shared:
                self._cond.wait()

    def exit_exclusive(self) -> None:
        with self._cond:
            self._exclusive = False
            self._cond.notify_all()


class Committer:
    def __init__(self, st: ChannelState, lg: Log, fsync_per_transaction: bool) -> None:
        self.st = st
        self.log = lg
        self.fsync = fsync_per_transaction
        self.gate = Gate()
        self._tickets: collections.deque[int] = collections.deque()  # put commits in order
        #: commits between entering commit and having written (group commit waits for them)
        self._unwritten = 0
        self._unwritten_lock = threading.Lock()
        self._ready: dict[int, Any] = {}   # synced put commits waiting for their turn

    # ---- writing ------------------------------------------------------------------
    def flush(self, tx: FileTransaction) -> None:
        """Write a big transaction's buffered puts before its commit."""
        self.log.check_space(tx.dir, len(tx.buf))
        with self.log.lock:
            ptrs, _fid, _end = self._write(tx, "writing its puts")
            tx.flushed.extend(ptrs)
            with self.st.cond:   # active changes only under cond
                self.st.active[tx.id] = tx
        tx.written()

    def _write(self, tx: FileTransaction, what: str) -> tuple[list[int], int, int]:
        """Write the transaction's buffered records (caller holds the log lock).
        A failed write may have left part of them in the log: the transaction
        can then only be rolled back (see commit)."""
        self.st.check_open()
        tx.wrote = True
        try:
            return self.log.write(tx.dir, tx.buf, tx.starts)
        except BaseException as exc:
            tx.failed = f"{what} failed ({exc})"
            raise

    def _sync(self, tx: FileTransaction, fid: int, end: int) -> None:
        """Sync the commit's records; a failure puts the channel in the failed
        state and the transaction's outcome is unknown until a reopen."""
        try:
            self.log.sync(fid, end, self._count_unwritten)
        except BaseException as exc:
            why = f"syncing the commit of transaction {tx.id} failed ({exc})"
            tx.failed = why
            tx.unknown = True
            self.st.fail(why)
            raise ChannelError(
                f"channel {self.st.name!r}: {why}; whether it committed is unknown until the "
                "channel is reopened, which decides from the disk (the channel refuses work "
                "until then)") from exc

    def _count_unwritten(self) -> int:
        return self._unwritten

    def _on_the_way(self, n: int) -> None:
        with self._unwritten_lock:
            self._unwritten += n

    # ---- commit -------------------------------------------------------------------
    def commit(self, tx: FileTransaction) -> None:
        self.st.check_open()
        if tx.failed:
            # part of it may be in the log already: writing it again would
            # commit those events twice; a rollback record makes replay drop it
            raise TransactionError(f"cannot commit: {tx.failed}; roll the transaction back")
        self._on_the_way(1)
        tx.on_the_way = True
        try:
            if tx.taken:
                self._commit_takes(tx)
            elif tx.pending or tx.marks:
                self._commit_puts(tx)
            else:
                with self.st.cond:
                    self.st.counters["commit"] += 1
        finally:
            self._arrived(tx)

    def _arrived(self, tx: FileTransaction) -> None:
        """The commit has written (or failed): a sync need not wait for it."""
        if tx.on_the_way:
            tx.on_the_way = False
            self._on_the_way(-1)

    def _commit_puts(self, tx: FileTransaction) -> None:
        n = tx.pending
        mark = len(tx.buf)
        codec.encode_commit(tx.buf, tx.id, F.COMMIT_PUTS, n, tx.marks)
        try:
            self.log.check_space(tx.dir, len(tx.buf))
        except ChannelFullError:
            del tx.buf[mark:]  # the transaction stays OPEN and can be rolled back
            raise
        gate = self.gate
        gate.enter_shared()
        handed_over = False
        try:
            try:
                with self.log.lock:
                    ptrs, fid, end = self._write(tx, "writing its commit")
                    woid = self.log.next_woid - 1
                    self._tickets.append(woid)
            finally:
                self._arrived(tx)
            item = None
            try:
                if self.fsync:
                    self._sync(tx, fid, end)
                item = (tx.flushed + ptrs if tx.flushed else ptrs,
                        dict(tx.marks) if tx.marks else None, tx.id, tx.attempts, n)
            finally:
                # Enqueue in commit order.  Whoever finds its turn at the front
                # applies every commit that is ready, so committers that shared
                # one fdatasync do not wait for each other one by one; a commit's
                # hold on the checkpoint gate ends when it is applied.  A commit
                # whose sync failed (item None) only gives up its turn: it stays
                # OPEN, can only be rolled back, and its rollback releases the room.
                with self.st.cond:
                    self._ready[woid] = item
                    applied = self._apply_ready()
                handed_over = True
                gate.exit_shared(applied)
        finally:
            if not handed_over:
                gate.exit_shared()
        tx.reset_puts()

    def _apply_ready(self) -> int:
        """Append the committed puts that are ready, in commit order (caller
        holds ``st.cond``); returns how many commits it applied."""
        applied = 0
        st, tickets, ready = self.st, self._tickets, self._ready
        while tickets and tickets[0] in ready:
            item = ready.pop(tickets.popleft())
            applied += 1
            if item is None:
                continue
            ptrs, marks, txn_id, attempts, n = item
            st.queue.add_tail(ptrs)
            if marks:
                st.marks.update(marks)
            st.active.pop(txn_id, None)
            st.counters["put_attempt"] += attempts
            st.counters["put_success"] += n
            st.counters["commit"] += 1
        return applied

    def _commit_takes(self, tx: FileTransaction) -> None:
        buf = bytearray()   # one record names every event taken (docs/FORMAT.md)
        codec.encode_commit(buf, tx.id, F.COMMIT_TAKES, len(tx.taken), tx.marks, tx.taken)
        st = self.st
        self.gate.enter_shared()
        try:
            try:
                with self.log.lock:
                    st.check_open()
                    _p, fid, end = self.log.write(tx.dir, buf, None, _files_of(tx.taken))
            finally:
                self._arrived(tx)
            if self.fsync:
                self._sync(tx, fid, end)
            with st.cond:
                if tx.marks:
                    st.marks.update(tx.marks)
                st.active.pop(tx.id, None)
                st.release(len(tx.taken))
                st.counters["take_success"] += tx._count   # the damaged ones are not counted
                st.counters["commit"] += 1
        finally:
            self.gate.exit_shared()
        tx.taken = []

    # ---- rollback -----------------------------------------------------------------
    def rollback(self, tx: FileTransaction) -> None:
        st = self.st
        if tx.unknown:
            self._forget(tx)
            raise ChannelError(
                f"channel {st.name!r}: cannot roll back transaction {tx.id}: {tx.failed}, so "
                "its commit may be on disk; reopen the channel to learn its outcome")
        if tx.taken:
            with st.cond:
                # even while closing: a checkpoint on close either saw these as
                # in flight or sees them queued again, never neither
                st.queue.add_head(tx.taken)
                st.active.pop(tx.id, None)
                st.counters["rollback"] += 1
                st.cond.notify_all()
            tx.taken = []
            return
        if (tx.flushed or tx.wrote) and not st.closed and not st.failed:
            buf = bytearray()
            codec.encode_rollback(buf, tx.id)
            try:
                with self.log.lock:
                    self.log.write(tx.dir, buf, None)
            except ChannelError as exc:  # replay drops the uncommitted puts anyway
                log.warning("%s: rollback record not written: %s", st.name, exc)
        with st.cond:
            st.active.pop(tx.id, None)
            st.release(tx.pending)
            st.counters["put_attempt"] += tx.attempts
            st.counters["rollback"] += 1
            st.cond.notify_all()
        tx.reset_puts()

    def _forget(self, tx: FileTransaction) -> None:
        """Drop a transaction whose outcome only a reopen can tell."""
        with self.st.cond:
            self.st.active.pop(tx.id, None)
            if not tx.taken:
                self.st.release(tx.pending)
        tx.taken = []
        tx.reset_puts()

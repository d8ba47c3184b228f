"""When and how the FileChannel checkpoints: every ``checkpoint_interval``
in a background thread, on demand and on close.

A checkpoint pauses commits (the commit gate, exclusively) only while it
copies the queue's changes into the mapped checkpoint file and notes where
each log stands and which transactions are open; then, with commits running
again, it syncs the logs, writes the checkpoint's metadata and in-flight
files, updates each log's ``.meta``, marks the checkpoint complete, backs it
up, and deletes the log files it freed (``gc.py``).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from fchannel._compat import codec
from fchannel._compat import queue as _queue_mod
from fchannel.errors import ChannelError, from_os_error
from fchannel.file import format as F
from fchannel.file import gc
from fchannel.file.checkpoint import CheckpointStore
from fchannel.file.commit import Gate
from fchannel.file.log import Log
from fchannel.file.state import ChannelState

log = logging.getLogger("fchannel.file")


class Checkpointer:
    def __init__(self, st: ChannelState, lg: Log, store: CheckpointStore, gate: Gate,
                 next_txn_id: Any, checkpoint_dir: str, backup_dir: str | None) -> None:
        self.st = st
        self.log = lg
        self.store = store
        self.gate = gate
        self._next_txn_id = next_txn_id
        self.checkpoint_dir = checkpoint_dir
        self.backup_dir = backup_dir
        self._mutex = threading.Lock()
        self.last: dict[str, Any] = {}

    def run(self, interval: float, stop: threading.Event, first: bool) -> None:
        """The background thread: checkpoint now if *first*, then every *interval*."""
        if first:
            self.safe_checkpoint()
        while not stop.wait(interval):
            self.safe_checkpoint()

    def safe_checkpoint(self) -> None:
        try:
            self.checkpoint()
        except Exception as exc:
            with self.st.cond:
                self.st.counters["checkpoint_error"] += 1
            if self.log.sync_failed is not None:   # the log has put the channel in failed state
                log.error("%s: checkpoint failed, the channel stops: %s", self.st.name, exc)
            else:
                log.error("%s: checkpoint failed (will retry): %s", self.st.name, exc)

    def checkpoint(self) -> None:
        try:
            self._checkpoint()
        except OSError as exc:
            raise from_os_error(exc, self.st.name, f"writing a checkpoint in "
                                f"{self.checkpoint_dir}") from exc

    def _checkpoint(self) -> None:
        with self._mutex:
            if self.store.slots is None:   # released by close
                return
            if self.st.failed:   # what is in memory may not be what is on disk
                raise ChannelError(f"channel {self.st.name!r}: no checkpoint after a failure: "
                                   f"{self.st.failed}")
            t0 = time.monotonic()
            st, store, lg = self.st, self.store, self.log
            store.begin()
            self.gate.enter_exclusive()
            t_pause = time.monotonic()
            try:
                with lg.lock:
                    self._log_marks()
                    woid = lg.next_woid - 1
                    # where each log stands: writers at their offset, closed logs at their
                    # end (never appended to again); logs started later are not covered
                    positions: dict[int, int | None] = dict.fromkeys(lg.files)
                    for w in lg.writers:
                        if w is not None:
                            positions[w.info.file_id] = w.offset
                    with st.cond:   # takes and rollbacks change active meanwhile
                        active = list(st.active.values())
                    # flushed only grows under the log lock, which is held here
                    inflight_puts = {t.id: list(t.flushed) for t in active if t.flushed}
                with st.cond:
                    head, size = st.queue.head, st.queue.size
                    st.queue.write_dirty(store.slots)
                    inflight_takes = {t.id: list(t.taken) for t in st.active.values()
                                      if t.taken}
                    marks = dict(st.marks)
            finally:
                self.gate.exit_exclusive()
            pause = time.monotonic() - t_pause
            lg.sync_all()
            refs = _queue_mod.ring_refs(store.slots, head, size)
            for ptrs in (*inflight_puts.values(), *inflight_takes.values()):
                for p in ptrs:
                    refs[p >> 32] = refs.get(p >> 32, 0) + 1
            log_ids = sorted(positions)
            store.finish(woid, head, size, marks, refs, log_ids, inflight_puts, inflight_takes,
                         self._next_txn_id())
            for fid in log_ids:   # the logs captured: later ones are read from the start
                info = lg.files.get(fid)
                if info is None:
                    continue
                pos = positions[fid]
                info.ckpt_position = pos if pos is not None else os.path.getsize(info.path)
                info.ckpt_woid = woid
                info.write_meta()
            store.complete()
            backed_up = True
            if self.backup_dir:
                try:
                    store.backup()
                except OSError as exc:
                    backed_up = False
                    log.error("%s: backup checkpoint failed: %s", st.name, exc)
            if backed_up:
                deleted = gc.collect(lg, self.checkpoint_dir, woid, refs)
                if deleted:
                    with st.cond:
                        st.counters["gc_deleted"] += len(deleted)
                    log.info("%s: deleted %d log file(s): %s", st.name, len(deleted),
                             ", ".join(f"log-{f}" for f in deleted))
            with st.cond:
                st.counters["checkpoint"] += 1
            self.last = {"seconds": time.monotonic() - t0, "pause": pause,
                         "write_order_id": woid}

    def _log_marks(self) -> None:
        """Write every mark again, in a commit record of transaction 0, to a
        current log (caller holds the log lock, commits are paused).

        A mark lives in the commit record that set it; GC may delete that
        file.  With a copy in a file that is current at each checkpoint, a
        full replay (the checkpoint lost) still finds the latest value."""
        with self.st.cond:
            marks = dict(self.st.marks)
        if not marks:
            return
        buf = bytearray()
        codec.encode_commit(buf, 0, F.COMMIT_PUTS, 0, marks)
        try:
            self.log.write(0, buf, None)
        except (ChannelError, OSError) as exc:   # the checkpoint meta has them too
            log.warning("%s: marks not copied to the log: %s", self.st.name, exc)

"""FileChannel: Flume's durable File Channel for Python.

The channel's face (settings, transactions, size, counters, close) and its
opening: lock the directories, finish an interrupted GC, load the checkpoint
(or its backup) and replay the logs after it (``replay.py``).  A transaction
(``transaction.py``) stages its records in its own buffer; the commit path
(``commit.py``) writes, syncs and applies them; the checkpointer
(``checkpointer.py``) snapshots the queue and frees log files (``gc.py``).
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from fchannel._compat import queue as _queue_mod
from fchannel.channel import ChannelBase
from fchannel.errors import (
    NO_SPACE,
    ChannelError,
    ChannelLockedError,
    ConfigError,
    CorruptionError,
    DecryptionError,
    KeyMismatchError,
    from_os_error,
)
from fchannel.event import Event
from fchannel.file import format as F
from fchannel.file import gc
from fchannel.file.checkpoint import CheckpointStore, LoadedCheckpoint
from fchannel.file.checkpointer import Checkpointer
from fchannel.file.commit import Committer
from fchannel.file.config import Settings, kwargs_from_flume, validate
from fchannel.file.log import Log, first_sealed_put
from fchannel.file.replay import Damage, ReplayResult, replay
from fchannel.file.state import ChannelState
from fchannel.file.transaction import FileTransaction

log = logging.getLogger("fchannel.file")


class FileChannel(ChannelBase):
    """A durable, transactional channel backed by log files and a checkpoint.

    See DESIGN §3 for the parameters; all sizes are bytes and all intervals
    seconds.  Opening takes the directories' locks and replays.
    """

    #: seals (encrypts) put payloads when encryption at rest is configured
    _sealer: Any = None

    def __init__(self, checkpoint_dir: str | os.PathLike, data_dirs: Any,
                 capacity: int = 1_000_000, transaction_capacity: int = 10_000,
                 checkpoint_interval: float = 30.0, max_file_size: int = 1_623_195_647,
                 minimum_required_space: int = 524_288_000, keep_alive: float = 3.0,
                 backup_checkpoint_dir: str | os.PathLike | None = None,
                 fsync_per_transaction: bool = True, fsync_interval: float = 5.0,
                 checkpoint_on_close: bool = True, use_fast_replay: bool = False,
                 name: str = "file-channel", encryption: Any = None) -> None:
        s = self._settings = validate(
            checkpoint_dir, data_dirs, capacity, transaction_capacity, checkpoint_interval,
            max_file_size, minimum_required_space, keep_alive, backup_checkpoint_dir,
            fsync_per_transaction, fsync_interval, checkpoint_on_close, use_fast_replay, name,
            encryption)
        if s.encryption is not None:   # the key files are read before anything is opened
            from fchannel.file.crypto import Sealer
            self._sealer = Sealer.from_settings(s.encryption, s.name)
        self.name = s.name
        self._capacity = s.capacity
        self._transaction_capacity = s.transaction_capacity
        self._st: ChannelState | None = None   # until open succeeds
        self._lock_fds: list[int] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        try:
            self._open(s)
        except BaseException as exc:
            self._release()
            if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                raise from_os_error(exc, self.name, "to open it") from exc
            raise

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], name: str = "file-channel",
                        ) -> FileChannel:
        """Build from Flume's file channel properties: ``checkpointDir``,
        ``dataDirs`` (comma list), ``useDualCheckpoints``,
        ``backupCheckpointDir``, ``transactionCapacity``, ``capacity``,
        ``checkpointInterval`` (ms), ``maxFileSize``, ``minimumRequiredSpace``,
        ``keep-alive`` (s), ``checkpointOnClose``, ``fsyncPerTransaction``,
        ``fsyncInterval`` (s), ``use-fast-replay``.  An unknown name is a
        ConfigError."""
        kw = kwargs_from_flume(props)
        return cls(kw.pop("checkpoint_dir"), kw.pop("data_dirs"), name=name, **kw)

    # ---- opening ----------------------------------------------------------------------
    def _open(self, s: Settings) -> None:
        from fchannel.file import identity
        t0 = time.monotonic()
        identity.check(s, self.name)   # a wrong set of directories: refused before any write
        for setting, d in identity.settings(s):
            with identity.dir_errors(setting, d, self.name):
                os.makedirs(d, exist_ok=True)
                self._lock(d)
        identity.establish(s, self.name)   # decided again under the locks, then written
        gc.finish(s.checkpoint_dir, s.data_dirs, self.name)
        self._log = Log(s.data_dirs, s.max_file_size, s.minimum_required_space, self.name)
        if self._sealer is not None:
            self._log.opener = self._opener
        # the longest record a log file holds: after its header, the block
        # headers the record spans and the padding before it count too
        usable = s.max_file_size - F.LOG_HEADER_SIZE
        self._max_record = usable - F.BLOCK_HEADER_SIZE * (usable // F.BLOCK_SIZE + 1) \
            - F.RECORD_HEADER_SIZE
        self._store = CheckpointStore(s.checkpoint_dir, s.capacity, s.backup_dir, self.name)
        queue = _queue_mod.EventQueue(s.capacity)
        self._ckpt_damage: list[str] = []
        ckpt, mode = self._load_checkpoint()
        if ckpt is not None:
            assert self._store.slots is not None
            queue.load(self._store.slots, ckpt.head, ckpt.size)
        self._replay: ReplayResult = replay(self._log, queue, ckpt,
                                            fast=s.use_fast_replay, mode=mode, name=self.name)
        refs = queue.refs()
        self._find_missing_logs(refs)
        self._check_keys(refs)   # a wrong or missing key: refused before anything is written
        if ckpt is None:
            self._store.create()
            queue.mark_all_dirty()
        self._log.start_writers()
        self._txn_ids = _TxnIds(max(self._replay.max_txn_id, ckpt.next_txn_id if ckpt else 0))
        st = ChannelState(queue, s.capacity, self._replay.marks, self.name)
        self._log.on_sync_failure = st.fail   # every failed fdatasync stops the channel
        self._committer = Committer(st, self._log, s.fsync_per_transaction)
        self._checkpointer = Checkpointer(st, self._log, self._store, self._committer.gate,
                                          self._txn_ids.peek, s.checkpoint_dir, s.backup_dir)
        self._open_seconds = time.monotonic() - t0
        self._st = st
        self._start_threads(first_checkpoint=ckpt is None or self._replay.records > 0)

    def _find_missing_logs(self, refs: dict[int, int]) -> None:
        """Report queued events that point into a log file no data dir has
        (deleted or lost): they cannot be delivered."""
        for fid, n in sorted(refs.items()):
            if fid not in self._log.files:
                d = Damage(f"log-{fid}", 0, 0, "missing",
                           f"(in none of the data dirs {', '.join(self._settings.data_dirs)}; "
                           f"{n} queued event(s) point into it and cannot be delivered)")
                self._replay.damage.append(d)
                log.error("%s: %s", self.name, d)

    def _check_keys(self, refs: dict[int, int]) -> None:
        """Every log holding queued events that were encrypted must open with
        the configured keys: the first encrypted put of each is opened now,
        so a wrong or missing key is an error at open, never garbage or a
        dropped event at take time (a log is written under one key: each
        open of the channel starts new logs)."""
        from fchannel.file.crypto import key_alias
        for fid in sorted(refs):
            info = self._log.files.get(fid)
            if info is None or info.version < 2:
                continue
            found = first_sealed_put(info.path, fid)
            if found is None:
                continue
            off, sealed = found
            if self._sealer is None:
                raise ConfigError(
                    f"channel {self.name!r}: {info.path} holds events encrypted with key "
                    f"{key_alias(sealed, f'{info.path} offset {off}')!r}; configure "
                    "encryption (encryption.activeKey and encryption.keyProvider.keys."
                    "<alias>.keyFile) to open it")
            try:
                self._log.read([F.make_pointer(fid, off)])   # raises KeyMissingError, ...
            except DecryptionError as exc:
                raise KeyMismatchError(
                    f"{exc}; the key file given for that alias holds other key material "
                    "than the key these events were written with") from None

    def _opener(self, sealed: Any, aad: bytes, pointer: int) -> bytes:
        return self._sealer.open(sealed, aad, _Where(self, pointer))  # type: ignore[arg-type]

    def _lock(self, d: str) -> None:
        path = os.path.join(d, F.LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            raise ChannelLockedError(
                f"directory {d!r} is in use by another process"
                + (f" (pid {holder})" if holder else "")) from None
        self._lock_fds.append(fd)
        try:   # who holds it, for the error message of the next one: best effort
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass

    def _load_checkpoint(self) -> tuple[LoadedCheckpoint | None, str]:
        store = self._store
        try:
            return store.load(), "checkpoint"
        except CorruptionError as exc:
            if os.path.exists(store.path) or os.path.exists(
                    os.path.join(self._settings.checkpoint_dir, F.CHECKPOINT_META_FILE)):
                self._ckpt_damage.append(str(exc))
                log.warning("%s: checkpoint unusable: %s", self.name, exc)
        if store.backup_valid():
            try:
                return store.restore_backup(), "backup"
            except (CorruptionError, OSError) as exc:
                self._ckpt_damage.append(str(exc))
                log.warning("%s: backup checkpoint unusable: %s", self.name, exc)
        store.close()
        return None, ("fast-full" if self._settings.use_fast_replay else "full")

    def _start_threads(self, first_checkpoint: bool) -> None:
        s = self._settings
        self._threads.append(threading.Thread(
            target=self._checkpointer.run, args=(s.checkpoint_interval, self._stop,
                                                 first_checkpoint),
            name=f"{self.name}-checkpoint", daemon=True))
        if not s.fsync_per_transaction:
            self._threads.append(threading.Thread(target=self._syncer, daemon=True,
                                                  name=f"{self.name}-fsync"))
        for t in self._threads:
            t.start()

    def _syncer(self) -> None:
        while not self._stop.wait(self._settings.fsync_interval):
            try:
                self._log.sync_all()
            except (OSError, ChannelError) as exc:
                # the log has put the channel in the failed state (on_sync_failure)
                log.error("%s: periodic fsync failed, the channel stops: %s", self.name, exc)
                return

    # ---- the channel face -----------------------------------------------------------------
    @property
    def _closed(self) -> bool:   # type: ignore[override]
        return self._st is None or self._st.closed

    @property
    def _slots_used(self) -> int:   # type: ignore[override]
        return self._st.slots_used if self._st is not None else 0

    def transaction(self) -> FileTransaction:
        self._check_open()
        txn_id = self._txn_ids.next()
        return FileTransaction(self, txn_id, txn_id % len(self._settings.data_dirs))

    @property
    def size(self) -> int:
        return self._st.queue.size if self._st is not None else 0

    @property
    def marks(self) -> dict[str, int]:
        """Latest committed value of every mark (see FileTransaction.set_mark)."""
        st = self._state()
        with st.cond:
            return dict(st.marks)

    @property
    def checkpoint_dir(self) -> str:
        return self._settings.checkpoint_dir

    @property
    def data_dirs(self) -> list[str]:
        return list(self._settings.data_dirs)

    @property
    def damage(self) -> list[str]:
        """What the last open found damaged (checkpoint files and log records)."""
        return self._ckpt_damage + [str(d) for d in self._replay.corrupt]

    @property
    def counters(self) -> dict[str, Any]:
        r, st = self._replay, self._state()
        with st.cond:
            c = dict(st.counters)
            out = {
                "channel_size": st.queue.size,
                "channel_capacity": self._capacity,
                "channel_fill_percentage": 100.0 * st.slots_used / self._capacity,
                "event_put_attempt_count": c.get("put_attempt", 0),
                "event_put_success_count": c.get("put_success", 0),
                "event_take_attempt_count": c.get("take_attempt", 0),
                "event_take_success_count": c.get("take_success", 0),
                "commit_count": c.get("commit", 0),
                "rollback_count": c.get("rollback", 0),
                "corrupt_events_skipped": c.get("corrupt_events", 0),
                "checkpoint_count": c.get("checkpoint", 0),
                "checkpoint_write_errors": c.get("checkpoint_error", 0),
                "log_files_deleted": c.get("gc_deleted", 0),
            }
        last = self._checkpointer.last
        out.update({
            "log_files": len(self._log.files),
            "log_bytes_written": self._log.bytes_written,
            "log_syncs": self._log.syncs,
            "open_mode": r.mode,
            "open_records_replayed": r.records,
            "open_events_restored": r.events,
            "open_corrupt_records": len(r.corrupt) + len(self._ckpt_damage),
            "open_torn_tails": r.torn_tails,
            "open_seconds": self._open_seconds,
            "last_checkpoint_seconds": last.get("seconds", 0.0),
            "last_checkpoint_pause_seconds": last.get("pause", 0.0),
        })
        return out

    def _state(self) -> ChannelState:
        """The shared state (open or closed; not before open succeeded)."""
        assert self._st is not None
        return self._st

    def checkpoint(self) -> None:
        """Write a checkpoint now (and delete the log files it frees)."""
        self._check_open()
        self._checkpointer.checkpoint()

    def close(self) -> None:
        """Stop the background threads, checkpoint (if checkpoint_on_close)
        and release files and locks.  Idempotent."""
        if self._closed:
            return
        st = self._state()
        self._stop.set()
        for t in self._threads:
            t.join()
        self._threads = []
        with st.cond:
            st.closed = True
            st.cond.notify_all()
        try:
            if self._settings.checkpoint_on_close and not st.failed:
                try:
                    self._checkpointer.checkpoint()
                except (OSError, ChannelError) as exc:
                    # everything committed is in the synced logs; the next open
                    # replays them (the checkpoint is marked incomplete)
                    log.error("%s: checkpoint on close failed, the next open will replay the "
                              "logs: %s", self.name, exc)
        finally:
            self._release()

    def _release(self) -> None:
        for obj in ("_log", "_store"):
            o = getattr(self, obj, None)
            if o is not None:
                try:
                    o.close()
                except OSError as exc:  # pragma: no cover
                    log.warning("%s: closing: %s", self.name, exc)
        for fd in self._lock_fds:
            os.close(fd)
        self._lock_fds = []
        if self._st is not None:
            self._st.closed = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self.size}/{self._capacity}"
        return f"<FileChannel {self.name!r} {state}>"

    # ---- what transactions call ---------------------------------------------------------
    def _put(self, tx: FileTransaction, events: list[Event]) -> None:
        st = self._state()
        tx.attempts += len(events)
        st.reserve(len(events), self._settings.keep_alive)
        try:
            tx.stage(events, self._max_record)
        except BaseException:
            with st.cond:
                st.release(len(events))
            raise
        if tx.wants_flush():
            self._committer.flush(tx)

    def _take(self, tx: FileTransaction, n: int) -> list[Event]:
        st = self._state()
        out: list[Event] = []
        with st.cond:
            st.check_open()
            st.counters["take_attempt"] += 1
        while len(out) < n:
            with st.cond:
                st.check_open()
                ptrs = st.queue.pop_head(n - len(out))
                if not ptrs:
                    break
                tx.taken.extend(ptrs)
                st.active[tx.id] = tx
            events = self._log.read(ptrs)
            if None not in events:   # the usual case: every record intact
                out += events
                continue
            for p, e in zip(ptrs, events):
                if e is None:
                    with st.cond:
                        st.counters["corrupt_events"] += 1
                    log.error("%s: event at log-%d offset %d is damaged and cannot be "
                              "delivered; it is dropped when this take commits",
                              self.name, p >> 32, p & 0xFFFFFFFF)
                else:
                    out.append(e)
        return out

    def _commit(self, tx: FileTransaction) -> None:
        self._committer.commit(tx)

    def _rollback(self, tx: FileTransaction) -> None:
        self._committer.rollback(tx)


class _Where:
    """Names an event's place in an error message; formatted only if one is
    raised (opening an encrypted event must not pay for it every time)."""

    __slots__ = ("_ch", "_pointer")

    def __init__(self, ch: FileChannel, pointer: int) -> None:
        self._ch = ch
        self._pointer = pointer

    def __str__(self) -> str:
        fid = self._pointer >> 32
        info = self._ch._log.files.get(fid)
        where = info.path if info is not None else f"log-{fid}"
        return f"channel {self._ch.name!r}: {where} offset {self._pointer & 0xFFFFFFFF}"


class _TxnIds:
    """Transaction ids, unique across restarts: they start above every id
    found in the logs and the checkpoint, and above the clock in µs."""

    def __init__(self, floor: int) -> None:
        self._next = max(floor, time.time_ns() // 1000)
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def peek(self) -> int:
        with self._lock:
            return self._next + 1

"""FileChannel: Flume's durable File Channel for Python.

Write path: a transaction encodes its put records into a private buffer
(compiled codec); at commit it appends the buffer plus a commit record to
the log of data dir ``txn_id % len(data_dirs)`` under the log lock (which
hands out write-order ids), syncs (group commit, or a timer), and only then
appends the event pointers to the in-memory queue, in commit order.  A take
pops pointers from the head and reads the events by pread; its take records
and commit record are written at commit.  A background thread checkpoints
the queue every ``checkpoint_interval`` seconds and deletes log files no
longer needed.  Opening replays (see replay.py).
"""
from __future__ import annotations

import collections
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fchannel._compat import codec
from fchannel._compat import queue as _queue_mod
from fchannel._config import Prop, as_bool, as_float, as_int, kwargs_from_properties
from fchannel.channel import ChannelBase
from fchannel.errors import (
    ChannelError,
    ChannelFullError,
    ChannelLockedError,
    ConfigError,
    CorruptionError,
    TransactionError,
)
from fchannel.event import Event
from fchannel.file import format as F
from fchannel.file.checkpoint import CheckpointStore, LoadedCheckpoint
from fchannel.file.log import (
    ANY_FILE,
    Log,
    clear_gc_journal,
    finish_gc,
    write_gc_journal,
)
from fchannel.file.replay import Damage, ReplayResult, replay
from fchannel.transaction import Transaction

log = logging.getLogger("fchannel.file")

#: a put transaction writes its buffer out early once it holds this much
FLUSH_BYTES = 4 << 20

_DEFAULT_HOME = os.path.join("~", ".fchannel", "file-channel")


def _ms(name: str, value: Any) -> float:
    return as_float(name, value, strictly_positive=True) / 1000.0


def _seconds(name: str, value: Any) -> float:
    return as_float(name, value, minimum=0)


def _seconds_positive(name: str, value: Any) -> float:
    return as_float(name, value, strictly_positive=True)


def _dir_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a comma-separated list of directories, got {value!r}")
    return [p.strip() for p in value.split(",") if p.strip()]


def _dir(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a directory path, got {value!r}")
    return value.strip()


_PROPERTIES = {
    "checkpointDir": Prop("checkpoint_dir", _dir),
    "dataDirs": Prop("data_dirs", _dir_list),
    "useDualCheckpoints": Prop("_use_dual", as_bool),
    "backupCheckpointDir": Prop("backup_checkpoint_dir", _dir),
    "transactionCapacity": Prop("transaction_capacity", lambda n, v: as_int(n, v, minimum=1)),
    "capacity": Prop("capacity", lambda n, v: as_int(n, v, minimum=1)),
    "checkpointInterval": Prop("checkpoint_interval", _ms),
    "maxFileSize": Prop("max_file_size", lambda n, v: as_int(n, v, minimum=0)),
    "minimumRequiredSpace": Prop("minimum_required_space", lambda n, v: as_int(n, v, minimum=0)),
    "keep-alive": Prop("keep_alive", _seconds),
    "checkpointOnClose": Prop("checkpoint_on_close", as_bool),
    "fsyncPerTransaction": Prop("fsync_per_transaction", as_bool),
    "fsyncInterval": Prop("fsync_interval", _seconds_positive),
    "use-fast-replay": Prop("use_fast_replay", as_bool),
}

_MIN_FILE_SIZE = F.LOG_HEADER_SIZE + 2 * F.RECORD_HEADER_SIZE + 64


class _Gate:
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


class FileTransaction(Transaction):
    """A transaction on a :class:`FileChannel` (see :class:`Transaction`)."""

    def __init__(self, channel: FileChannel, txn_id: int) -> None:
        super().__init__(channel._transaction_capacity)
        self._ch = channel
        self.id = txn_id
        self._dir = txn_id % len(channel._data_dirs)
        self._buf = bytearray()
        self._starts: list[int] = []
        self._flushed: list[int] = []     # pointers of put records already in the log
        self._pending = 0                 # events staged (buffered or flushed)
        self._taken: list[int] = []       # pointers taken, in order
        self._marks: dict[str, int] | None = None
        self._attempts = 0
        self._wrote = False               # some of its records may be in the log
        self._failed: str | None = None   # why it can only be rolled back

    def set_mark(self, key: str, value: int) -> None:
        """Commit ``key = value`` atomically with this transaction; the
        channel's :attr:`FileChannel.marks` holds the latest committed value
        per key across restarts (e.g. the next Kafka offset of a partition)."""
        if self.state != "OPEN":
            raise TransactionError(f"cannot set a mark: transaction is {self.state}, "
                                   "set_mark needs OPEN")
        if not isinstance(key, str) or not key:
            raise TypeError(f"mark key must be a non-empty str, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, int) or \
                not -(1 << 63) <= value < (1 << 63):
            raise TypeError(f"mark {key!r} must be a 64-bit int, got {value!r}")
        if self._marks is None:
            self._marks = {}
        self._marks[key] = value

    def _do_put(self, events: list[Event]) -> None:
        self._ch._put(self, events)

    def _do_take(self, n: int) -> list[Event]:
        return self._ch._take(self, n)

    def _do_commit(self) -> None:
        self._ch._commit(self)

    def _do_rollback(self) -> None:
        self._ch._rollback(self)


class FileChannel(ChannelBase):
    """A durable, transactional channel backed by log files and a checkpoint.

    See DESIGN §3 for the parameters; all sizes are bytes and all intervals
    seconds.  Opening takes the directories' locks and replays.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike, data_dirs: Any,
                 capacity: int = 1_000_000, transaction_capacity: int = 10_000,
                 checkpoint_interval: float = 30.0, max_file_size: int = 1_623_195_647,
                 minimum_required_space: int = 524_288_000, keep_alive: float = 3.0,
                 backup_checkpoint_dir: str | os.PathLike | None = None,
                 fsync_per_transaction: bool = True, fsync_interval: float = 5.0,
                 checkpoint_on_close: bool = True, use_fast_replay: bool = False,
                 name: str = "file-channel") -> None:
        self._validate(checkpoint_dir, data_dirs, capacity, transaction_capacity,
                       checkpoint_interval, max_file_size, minimum_required_space, keep_alive,
                       backup_checkpoint_dir, fsync_per_transaction, fsync_interval,
                       checkpoint_on_close, use_fast_replay, name)
        self._closed = True  # until open succeeds
        self._lock_fds: list[int] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        try:
            self._open()
        except BaseException as exc:
            self._release()
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ChannelFullError(
                    f"channel {self.name!r} cannot open: no space left ({exc}); free some "
                    "space and open it again (nothing committed was lost)") from exc
            raise
        self._closed = False

    # ---- configuration --------------------------------------------------------------
    def _validate(self, checkpoint_dir, data_dirs, capacity, transaction_capacity,
                  checkpoint_interval, max_file_size, minimum_required_space, keep_alive,
                  backup_checkpoint_dir, fsync_per_transaction, fsync_interval,
                  checkpoint_on_close, use_fast_replay, name) -> None:
        def path(field: str, value: Any) -> str:
            if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)) \
                    or not os.fspath(value):
                raise ConfigError(f"{field} must be a directory path, got {value!r}")
            return os.path.abspath(os.path.expanduser(os.fspath(value)))

        self._checkpoint_dir = path("checkpoint_dir", checkpoint_dir)
        if isinstance(data_dirs, (bytes, bytearray)):
            raise ConfigError(f"data_dirs must be a path or a non-empty list of paths, "
                              f"got {data_dirs!r}")
        if isinstance(data_dirs, (str, os.PathLike)):
            data_dirs = [data_dirs]
        if not isinstance(data_dirs, Sequence) or not data_dirs:
            raise ConfigError(f"data_dirs must be a path or a non-empty list of paths, "
                              f"got {data_dirs!r}")
        self._data_dirs = [path("data_dirs", d) for d in data_dirs]
        self._backup_dir = (None if backup_checkpoint_dir is None
                            else path("backup_checkpoint_dir", backup_checkpoint_dir))
        everything = [self._checkpoint_dir, *self._data_dirs]
        if self._backup_dir is not None:
            if self._backup_dir == self._checkpoint_dir:
                raise ConfigError(f"backup_checkpoint_dir ({backup_checkpoint_dir!r}) must differ "
                                  f"from checkpoint_dir ({checkpoint_dir!r})")
            everything.append(self._backup_dir)
        seen: set[str] = set()
        for d in everything:
            if d in seen:
                raise ConfigError(f"directory {d!r} is used twice (checkpoint_dir, data_dirs and "
                                  "backup_checkpoint_dir must all differ)")
            seen.add(d)
        self._capacity = as_int("capacity", capacity, minimum=1)
        self._transaction_capacity = as_int("transaction_capacity", transaction_capacity,
                                            minimum=1)
        if self._transaction_capacity > self._capacity:
            raise ConfigError(f"transaction_capacity ({transaction_capacity!r}) must not exceed "
                              f"capacity ({capacity!r})")
        self._checkpoint_interval = as_float("checkpoint_interval", checkpoint_interval,
                                             strictly_positive=True)
        self._max_file_size = as_int("max_file_size", max_file_size, minimum=_MIN_FILE_SIZE,
                                     maximum=F.MAX_FILE_SIZE)
        self._minimum_required_space = as_int("minimum_required_space", minimum_required_space,
                                              minimum=0)
        self._keep_alive = as_float("keep_alive", keep_alive, minimum=0)
        self._fsync_per_transaction = as_bool("fsync_per_transaction", fsync_per_transaction)
        self._fsync_interval = as_float("fsync_interval", fsync_interval, strictly_positive=True)
        self._checkpoint_on_close = as_bool("checkpoint_on_close", checkpoint_on_close)
        self._use_fast_replay = as_bool("use_fast_replay", use_fast_replay)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"name must be a non-empty str, got {name!r}")
        self.name = name

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
        kw = kwargs_from_properties("file channel", props, _PROPERTIES,
                                    ignore=frozenset({"type"}))
        dual = kw.pop("_use_dual", False)
        backup = kw.pop("backup_checkpoint_dir", None)
        if dual:
            if not backup:
                raise ConfigError("useDualCheckpoints is true but backupCheckpointDir is not set")
            kw["backup_checkpoint_dir"] = backup
        kw.setdefault("checkpoint_dir", os.path.join(_DEFAULT_HOME, "checkpoint"))
        kw.setdefault("data_dirs", [os.path.join(_DEFAULT_HOME, "data")])
        checkpoint_dir = kw.pop("checkpoint_dir")
        data_dirs = kw.pop("data_dirs")
        return cls(checkpoint_dir, data_dirs, name=name, **kw)

    # ---- opening ----------------------------------------------------------------------
    def _open(self) -> None:
        t0 = time.monotonic()
        dirs = [self._checkpoint_dir, *self._data_dirs]
        if self._backup_dir:
            dirs.append(self._backup_dir)
        for d in dirs:
            os.makedirs(d, exist_ok=True)
            self._lock(d)
        finish_gc(self._checkpoint_dir, self._data_dirs, self.name)
        self._log = Log(self._data_dirs, self._max_file_size, self._minimum_required_space,
                        self.name)
        self._store = CheckpointStore(self._checkpoint_dir, self._capacity, self._backup_dir)
        self._queue = _queue_mod.EventQueue(self._capacity)
        self._ckpt_damage: list[str] = []
        ckpt, mode = self._load_checkpoint()
        if ckpt is not None:
            assert self._store.slots is not None
            self._queue.load(self._store.slots, ckpt.head, ckpt.size)
        self._replay: ReplayResult = replay(self._log, self._queue, ckpt,
                                            fast=self._use_fast_replay, mode=mode, name=self.name)
        self._find_missing_logs()
        if ckpt is None:
            self._store.create()
            self._queue.mark_all_dirty()
        self._log.start_writers()
        self._marks: dict[str, int] = dict(self._replay.marks)
        # state shared by transactions
        self._cond = threading.Condition(threading.Lock())   # queue, space, counters
        self._slots_used = self._queue.size                  # queued + taken + reserved
        self._active: dict[int, FileTransaction] = {}
        self._tickets: collections.deque[int] = collections.deque()  # put commits in order
        self._ready: dict[int, Any] = {}   # synced put commits waiting for their turn
        self._gate = _Gate()
        self._ckpt_mutex = threading.Lock()
        self._txn_ids = _TxnIds(max(self._replay.max_txn_id, ckpt.next_txn_id if ckpt else 0))
        self._counters: collections.Counter[str] = collections.Counter()
        self._last_checkpoint: dict[str, Any] = {}
        self._open_seconds = time.monotonic() - t0
        self._need_checkpoint = ckpt is None or self._replay.records > 0
        self._start_threads()

    def _find_missing_logs(self) -> None:
        """Report queued events that point into a log file no data dir has
        (deleted or lost): they cannot be delivered."""
        for fid, n in sorted(self._queue.refs().items()):
            if fid not in self._log.files:
                d = Damage(f"log-{fid}", 0, 0, "missing",
                           f"(in none of the data dirs {', '.join(self._data_dirs)}; {n} queued "
                           "event(s) point into it and cannot be delivered)")
                self._replay.damage.append(d)
                log.error("%s: %s", self.name, d)

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
                    os.path.join(self._checkpoint_dir, F.CHECKPOINT_META_FILE)):
                self._ckpt_damage.append(str(exc))
                log.warning("%s: checkpoint unusable: %s", self.name, exc)
        if store.backup_valid():
            try:
                return store.restore_backup(), "backup"
            except (CorruptionError, OSError) as exc:
                self._ckpt_damage.append(str(exc))
                log.warning("%s: backup checkpoint unusable: %s", self.name, exc)
        store.close()
        return None, ("fast-full" if self._use_fast_replay else "full")

    def _start_threads(self) -> None:
        t = threading.Thread(target=self._checkpointer, name=f"{self.name}-checkpoint",
                             daemon=True)
        self._threads.append(t)
        if not self._fsync_per_transaction:
            self._threads.append(threading.Thread(target=self._syncer, daemon=True,
                                                  name=f"{self.name}-fsync"))
        for t in self._threads:
            t.start()

    # ---- the channel face -----------------------------------------------------------------
    def transaction(self) -> FileTransaction:
        self._check_open()
        return FileTransaction(self, self._txn_ids.next())

    @property
    def size(self) -> int:
        return self._queue.size

    @property
    def marks(self) -> dict[str, int]:
        """Latest committed value of every mark (see FileTransaction.set_mark)."""
        with self._cond:
            return dict(self._marks)

    @property
    def checkpoint_dir(self) -> str:
        return self._checkpoint_dir

    @property
    def data_dirs(self) -> list[str]:
        return list(self._data_dirs)

    @property
    def damage(self) -> list[str]:
        """What the last open found damaged (checkpoint files and log records)."""
        return self._ckpt_damage + [str(d) for d in self._replay.corrupt]

    @property
    def counters(self) -> dict[str, Any]:
        r = self._replay
        with self._cond:
            c = dict(self._counters)
            out = {
                "channel_size": self._queue.size,
                "channel_capacity": self._capacity,
                "channel_fill_percentage": 100.0 * self._slots_used / self._capacity,
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
            "last_checkpoint_seconds": self._last_checkpoint.get("seconds", 0.0),
            "last_checkpoint_pause_seconds": self._last_checkpoint.get("pause", 0.0),
        })
        return out

    def checkpoint(self) -> None:
        """Write a checkpoint now (and delete the log files it frees)."""
        self._check_open()
        self._checkpoint()

    def close(self) -> None:
        """Stop the background threads, checkpoint (if checkpoint_on_close)
        and release files and locks.  Idempotent."""
        if self._closed:
            return
        self._stop.set()
        for t in self._threads:
            t.join()
        self._threads = []
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        try:
            if self._checkpoint_on_close:
                try:
                    self._checkpoint()
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
        self._closed = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self.size}/{self._capacity}"
        return f"<FileChannel {self.name!r} {state}>"

    # ---- puts ------------------------------------------------------------------------------
    def _reserve(self, n: int) -> None:
        """Claim room for n events, waiting up to keep_alive."""
        with self._cond:
            self._check_open()
            if self._slots_used + n > self._capacity:
                deadline = time.monotonic() + self._keep_alive
                while self._slots_used + n > self._capacity:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed:
                        break
                    self._cond.wait(left)
                self._check_open()
                if self._slots_used + n > self._capacity:
                    raise ChannelFullError(
                        f"channel {self.name!r} is full: no room for {n} event(s) within "
                        f"keep_alive={self._keep_alive}s (capacity={self._capacity}); "
                        "sinks are not keeping up with sources")
            self._slots_used += n

    def _release_slots(self, n: int) -> None:
        if n:
            with self._cond:
                self._slots_used -= n
                self._cond.notify_all()

    def _put(self, tx: FileTransaction, events: list[Event]) -> None:
        tx._attempts += len(events)
        self._reserve(len(events))
        mark = len(tx._buf)
        nstarts = len(tx._starts)
        try:
            codec.encode_puts(tx._buf, tx.id, events, tx._starts)
            limit = self._max_file_size - F.LOG_HEADER_SIZE
            if len(tx._buf) - mark > limit:  # some record may be too big: look at each
                for k in range(nstarts, len(tx._starts)):
                    end = tx._starts[k + 1] if k + 1 < len(tx._starts) else len(tx._buf)
                    if end - tx._starts[k] > limit:
                        raise ChannelError(
                            f"event {k - nstarts} of {end - tx._starts[k]} bytes (as a record) "
                            f"does not fit in max_file_size={self._max_file_size}")
        except BaseException:
            del tx._buf[mark:]
            del tx._starts[nstarts:]
            self._release_slots(len(events))
            raise
        tx._pending += len(events)
        if len(tx._buf) >= FLUSH_BYTES:
            self._flush(tx)

    def _flush(self, tx: FileTransaction) -> None:
        """Write a big transaction's buffered puts before its commit."""
        self._log.check_space(tx._dir, len(tx._buf))
        with self._log.lock:
            ptrs, _fid, _end = self._write_records(tx, "writing its puts")
            tx._flushed.extend(ptrs)
            with self._cond:   # _active changes only under _cond
                self._active[tx.id] = tx
        tx._buf = bytearray()
        tx._starts = []

    def _write_records(self, tx: FileTransaction, what: str) -> tuple[list[int], int, int]:
        """Write the transaction's buffered records (caller holds the log lock).
        A failed write may have left part of them in the log: the transaction
        can then only be rolled back (see _commit)."""
        self._check_open()
        tx._wrote = True
        try:
            return self._log.write(tx._dir, tx._buf, tx._starts)
        except BaseException as exc:
            tx._failed = f"{what} failed ({exc})"
            raise

    # ---- takes -------------------------------------------------------------------------------
    def _take(self, tx: FileTransaction, n: int) -> list[Event]:
        out: list[Event] = []
        with self._cond:
            self._check_open()
            self._counters["take_attempt"] += 1
        while len(out) < n:
            with self._cond:
                self._check_open()
                ptrs = self._queue.pop_head(n - len(out))
                if not ptrs:
                    break
                tx._taken.extend(ptrs)
                self._active[tx.id] = tx
            events = self._log.read(ptrs)
            for p, e in zip(ptrs, events):
                if e is None:
                    self._corrupt_take(p)
                else:
                    out.append(e)
        return out

    def _corrupt_take(self, ptr: int) -> None:
        with self._cond:
            self._counters["corrupt_events"] += 1
        log.error("%s: event at log-%d offset %d is damaged and cannot be delivered; "
                  "it is dropped when this take commits", self.name, ptr >> 32, ptr & 0xFFFFFFFF)

    # ---- commit and rollback ----------------------------------------------------------------
    def _commit(self, tx: FileTransaction) -> None:
        self._check_open()
        if tx._failed:
            # part of it may be in the log already: writing it again would
            # commit those events twice; a rollback record makes replay drop it
            raise TransactionError(f"cannot commit: {tx._failed}; roll the transaction back")
        if tx._taken:
            self._commit_takes(tx)
        elif tx._pending or tx._marks:
            self._commit_puts(tx)
        else:
            with self._cond:
                self._counters["commit"] += 1

    def _commit_puts(self, tx: FileTransaction) -> None:
        n = tx._pending
        mark = len(tx._buf)
        codec.encode_commit(tx._buf, tx.id, F.COMMIT_PUTS, n, tx._marks)
        try:
            self._log.check_space(tx._dir, len(tx._buf))
        except ChannelFullError:
            del tx._buf[mark:]  # the transaction stays OPEN and can be rolled back
            raise
        self._gate.enter_shared()
        handed_over = False
        try:
            with self._log.lock:
                ptrs, fid, end = self._write_records(tx, "writing its commit")
                woid = self._log.next_woid - 1
                self._tickets.append(woid)
            item = None
            try:
                if self._fsync_per_transaction:
                    try:
                        self._log.sync(fid, end, self._gate.busy())
                    except BaseException as exc:
                        tx._failed = f"syncing its commit failed ({exc})"
                        raise
                item = (tx._flushed + ptrs if tx._flushed else ptrs,
                        dict(tx._marks) if tx._marks else None, tx.id, tx._attempts, n)
            finally:
                # Enqueue in commit order.  Whoever finds its turn at the front
                # applies every commit that is ready, so committers that shared
                # one fdatasync do not wait for each other one by one; a commit's
                # hold on the checkpoint gate ends when it is applied.  A commit
                # whose sync failed (item None) only gives up its turn: it stays
                # OPEN, can only be rolled back, and its rollback releases the room.
                with self._cond:
                    self._ready[woid] = item
                    applied = self._apply_ready()
                handed_over = True
                self._gate.exit_shared(applied)
        finally:
            if not handed_over:
                self._gate.exit_shared()
        tx._buf = bytearray()
        tx._starts = []
        tx._flushed = []
        tx._pending = 0

    def _apply_ready(self) -> int:
        """Append the committed puts that are ready, in commit order (caller
        holds ``self._cond``); returns how many commits it applied."""
        applied = 0
        tickets, ready = self._tickets, self._ready
        while tickets and tickets[0] in ready:
            item = ready.pop(tickets.popleft())
            applied += 1
            if item is None:
                continue
            ptrs, marks, txn_id, attempts, n = item
            self._queue.add_tail(ptrs)
            if marks:
                self._marks.update(marks)
            self._active.pop(txn_id, None)
            self._counters["put_attempt"] += attempts
            self._counters["put_success"] += n
            self._counters["commit"] += 1
        return applied

    def _commit_takes(self, tx: FileTransaction) -> None:
        buf = bytearray()
        codec.encode_takes(buf, tx.id, tx._taken)
        codec.encode_commit(buf, tx.id, F.COMMIT_TAKES, len(tx._taken), tx._marks)
        self._gate.enter_shared()
        try:
            with self._log.lock:
                self._check_open()
                _p, fid, end = self._log.write(tx._dir, buf, None,
                                               {p >> 32 for p in tx._taken})
            if self._fsync_per_transaction:
                self._log.sync(fid, end, self._gate.busy())
            with self._cond:
                if tx._marks:
                    self._marks.update(tx._marks)
                self._active.pop(tx.id, None)
                self._slots_used -= len(tx._taken)
                self._counters["take_success"] += tx._count
                self._counters["commit"] += 1
                self._cond.notify_all()
        finally:
            self._gate.exit_shared()
        tx._taken = []

    def _rollback(self, tx: FileTransaction) -> None:
        if tx._taken:
            with self._cond:
                good = tx._taken
                if not self._closed:
                    self._queue.add_head(good)
                self._active.pop(tx.id, None)
                self._counters["rollback"] += 1
                self._cond.notify_all()
            tx._taken = []
            return
        if (tx._flushed or tx._wrote) and not self._closed:
            buf = bytearray()
            codec.encode_rollback(buf, tx.id)
            try:
                with self._log.lock:
                    self._log.write(tx._dir, buf, None)
            except ChannelError as exc:  # replay drops the uncommitted puts anyway
                log.warning("%s: rollback record not written: %s", self.name, exc)
        with self._cond:
            self._active.pop(tx.id, None)
            self._slots_used -= tx._pending
            self._counters["put_attempt"] += tx._attempts
            self._counters["rollback"] += 1
            self._cond.notify_all()
        tx._buf = bytearray()
        tx._starts = []
        tx._flushed = []
        tx._pending = 0

    # ---- checkpoint and log GC ----------------------------------------------------------------
    def _checkpointer(self) -> None:
        if self._need_checkpoint:
            self._safe_checkpoint()
        while not self._stop.wait(self._checkpoint_interval):
            self._safe_checkpoint()

    def _safe_checkpoint(self) -> None:
        try:
            self._checkpoint()
        except Exception as exc:
            with self._cond:
                self._counters["checkpoint_error"] += 1
            log.error("%s: checkpoint failed (will retry): %s", self.name, exc)

    def _syncer(self) -> None:
        while not self._stop.wait(self._fsync_interval):
            try:
                self._log.sync_all()
            except OSError as exc:
                log.error("%s: periodic fsync failed: %s", self.name, exc)

    def _checkpoint(self) -> None:
        with self._ckpt_mutex:
            if self._store.slots is None:   # released by close
                return
            t0 = time.monotonic()
            store = self._store
            store.begin()
            lg = self._log
            self._gate.enter_exclusive()
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
                    with self._cond:   # takes and rollbacks change _active meanwhile
                        active = list(self._active.values())
                    # _flushed only grows under the log lock, which is held here
                    inflight_puts = {t.id: list(t._flushed) for t in active if t._flushed}
                with self._cond:
                    head, size = self._queue.head, self._queue.size
                    self._queue.write_dirty(store.slots)
                    inflight_takes = {t.id: list(t._taken) for t in self._active.values()
                                      if t._taken}
                    marks = dict(self._marks)
            finally:
                self._gate.exit_exclusive()
            pause = time.monotonic() - t_pause
            lg.sync_all()
            refs = _queue_mod.ring_refs(store.slots, head, size)
            for ptrs in (*inflight_puts.values(), *inflight_takes.values()):
                for p in ptrs:
                    refs[p >> 32] = refs.get(p >> 32, 0) + 1
            log_ids = sorted(positions)
            store.finish(woid, head, size, marks, refs, log_ids, inflight_puts, inflight_takes,
                         self._txn_ids.peek())
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
            if self._backup_dir:
                try:
                    store.backup()
                except OSError as exc:
                    backed_up = False
                    log.error("%s: backup checkpoint failed: %s", self.name, exc)
            if backed_up:
                self._gc(woid, refs)
            with self._cond:
                self._counters["checkpoint"] += 1
            self._last_checkpoint = {"seconds": time.monotonic() - t0, "pause": pause,
                                     "write_order_id": woid}

    def _log_marks(self) -> None:
        """Write every mark again, in a commit record of transaction 0, to a
        current log (caller holds the log lock, commits are paused).

        A mark lives in the commit record that set it; GC may delete that
        file.  With a copy in a file that is current at each checkpoint, a
        full replay (the checkpoint lost) still finds the latest value."""
        with self._cond:
            marks = dict(self._marks)
        if not marks:
            return
        buf = bytearray()
        codec.encode_commit(buf, 0, F.COMMIT_PUTS, 0, marks)
        try:
            self._log.write(0, buf, None)
        except (ChannelError, OSError) as exc:   # the checkpoint meta has them too
            log.warning("%s: marks not copied to the log: %s", self.name, exc)

    def _gc(self, woid: int, refs: dict[int, int]) -> None:
        """Delete the log files that nothing needs any more.

        In each data dir, the oldest files go while none is current, none
        holds a queued or in-flight event and all their records are covered
        by the checkpoint (a transaction's records all live in one dir, so
        no kept file holds a commit for a deleted one's puts).  A candidate
        stays, with every newer file of its dir, while one of its take
        records points into a file that stays: a full replay of what remains
        must never resurrect a taken event.  Take-targets go first, so a
        crash in the middle leaves a safe set too.
        """
        lg = self._log
        with lg.lock:   # a commit may start a new log meanwhile
            current = lg.current_ids()
            files = dict(lg.files)
        cand: set[int] = set()
        for i in range(len(lg.data_dirs)):
            for fid in sorted(f for f, inf in files.items() if inf.dir_index == i):
                info = files[fid]
                if fid in current or refs.get(fid) or not info.closed or info.last_woid > woid:
                    break
                cand.add(fid)

        def needs(fid: int) -> set[int]:
            """The files that must go no later than *fid*."""
            targets = lg.take_targets(fid)
            if ANY_FILE in targets:   # damaged: any file it may have taken from
                last = files[fid].last_woid
                return {f for f, inf in files.items() if inf.created_woid <= last} - {fid}
            return {t for t in targets if t in files and t != fid}

        for _ in range(len(cand) + 1):
            blocked = next((f for f in sorted(cand) if not needs(f) <= cand), None)
            if blocked is None:
                break
            di = files[blocked].dir_index
            cand -= {f for f in cand if f >= blocked and files[f].dir_index == di}
        order: list[int] = []
        left = set(cand)
        while left:
            ready = [f for f in sorted(left) if not (needs(f) & left)] or [min(left)]
            order.append(ready[0])
            left.discard(ready[0])
        if not order:
            return
        # The take records of two logs can point into each other (two data
        # dirs), so no deletion order is safe on its own: the set goes as one.
        # The journal names it before anything is deleted, and an open finishes
        # a deletion a kill interrupted (finish_gc), so a later full replay
        # never sees the puts of a taken event without its take.
        write_gc_journal(self._checkpoint_dir, order)
        for fid in order:
            lg.delete(fid)
        clear_gc_journal(self._checkpoint_dir)
        if order:
            with self._cond:
                self._counters["gc_deleted"] += len(order)
            log.info("%s: deleted %d log file(s): %s", self.name, len(order),
                     ", ".join(f"log-{f}" for f in order))


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

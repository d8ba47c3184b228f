"""The queues compared, behind one small interface.

Each adapter opens a fresh queue in a directory and offers ``put_batch`` (one
transaction: all of the items or none, durable when the adapter was opened
with ``durable=True``) and ``take_batch(n)`` (one transaction taking up to
``n`` items; returns how many it took).  Items are prepared outside the timed
region by ``prepare`` (bytes for most, ``Event`` objects for fchannel).

Durability settings, so that "durable" means the same thing for everyone
(the commit has reached the disk when it returns):

- raw file (``raw-sync``, the naive line): ``os.write`` appended to a growing
  file, then ``os.fdatasync`` per batch; takes store the read offset in a
  second file, also fdatasync'd.  Every sync also commits the file's new size
  (and, now and then, new extents) to the filesystem journal.
- raw preallocated (``raw-prealloc``, the physical line): the same records
  written with ``os.pwrite`` over blocks that were zero-filled ahead of the
  writer (``PREALLOC_STEP`` bytes at a time, written zeros, one fdatasync per
  step), so every batch is an overwrite plus ``os.fdatasync`` that changes no
  metadata.  The zero-fill covers the run's records before the timed puts
  (``reserve``), as a recycled or preallocated log file would be ready; its
  time is reported, not counted.  Should a writer pass the filled end anyway,
  the file grows by another step inside the put, timed.  ``fallocate`` alone would not do:
  unwritten extents still change metadata on their first write.  Takes read
  back like ``raw-sync`` (up to the writer's end, never into the zero tail).
- persist-queue ``SQLiteAckQueue``: its defaults (WAL, synchronous=FULL); it
  has no batch API and forces autocommit, so every put is a commit and every
  take is a ``get`` plus an ``ack`` (two commits); after each batch of takes
  ``clear_acked_data(keep_latest=0)`` deletes the acked rows (one more commit),
  without which each ``get`` scans every acked row before the head.
- diskcache ``Deque``: a ``Cache`` with ``sqlite_synchronous=2`` (FULL; the
  default, NORMAL, does not sync WAL commits), batches inside ``transact()``.
- sqlite3: WAL, synchronous=FULL, one ``BEGIN IMMEDIATE`` ... ``COMMIT`` per
  batch, rowid order.
- lmdb: ``sync=True, metasync=True``, big-endian sequence-number keys,
  appended with ``putmulti(append=True)``, taken from the first key.
- fchannel: ``FileChannel(fsync_per_transaction=True)``; MemoryChannel keeps
  nothing on disk.
"""
from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import fchannel
from fchannel import Event, MemoryChannel

_LEN = struct.Struct("<I")
_OFF = struct.Struct("<Q")
_KEY = struct.Struct(">Q")


class Adapter:
    name = "?"
    kind = "peer"            # baseline | peer | fchannel
    threadsafe = True
    durable_capable = True   # False: the adapter never touches the disk
    events_cap: float = 1.0  # run at most this fraction of a workload's events

    def open(self, path: str, durable: bool, capacity: int, batch: int) -> None:
        raise NotImplementedError

    def prepare(self, bodies: list[bytes]) -> list[Any]:
        return bodies

    def put_batch(self, items: list[Any]) -> None:
        raise NotImplementedError

    def take_batch(self, n: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def reserve(self, events: int, body_bytes: int) -> None:
        """Called once after ``open``, outside the timed puts, with what the run
        will put: room a queue may prepare ahead of its writer."""

    def stats(self) -> dict[str, float]:
        """Cumulative counters (numbers) read before and after each phase;
        the run records their change over the puts and over the takes."""
        return {}

    @staticmethod
    def version() -> str:
        return ""


class RawFile(Adapter):
    """Length-prefixed records appended to one file: the naive disk line."""

    kind = "baseline"

    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.name = "raw write+fdatasync" if sync else "raw write, no sync"
        self.durable_capable = sync

    def open(self, path, durable, capacity, batch):
        self._lock = threading.Lock()
        self._wfd = self._open_data(os.path.join(path, "data"))
        self._rfd = os.open(os.path.join(path, "data"), os.O_RDONLY)
        self._afd = os.open(os.path.join(path, "offset"), os.O_WRONLY | os.O_CREAT, 0o644)
        self._do_sync = self.sync and durable
        self._buf = b""
        self._bufpos = 0
        self._off = 0           # file offset of _buf[0]
        self._end = 0           # end of the records written so far
        self._syncs = 0

    def _open_data(self, path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _append(self, data: bytes) -> None:
        os.write(self._wfd, data)

    def put_batch(self, items):
        data = b"".join([_LEN.pack(len(b)) + b for b in items])
        with self._lock:
            self._append(data)
            self._end += len(data)
            if self._do_sync:
                os.fdatasync(self._wfd)
                self._syncs += 1

    def _fill(self, need: int) -> bool:
        if len(self._buf) - self._bufpos >= need:
            return True
        self._off += self._bufpos
        rest = self._buf[self._bufpos:]
        start = self._off + len(rest)
        want = min(max(1 << 20, need), self._end - start)   # never into a zero tail
        more = os.pread(self._rfd, want, start) if want > 0 else b""
        self._buf = rest + more
        self._bufpos = 0
        return len(self._buf) >= need

    def take_batch(self, n):
        with self._lock:
            k = 0
            while k < n and self._fill(4):
                (ln,) = _LEN.unpack_from(self._buf, self._bufpos)
                if not self._fill(4 + ln):
                    break
                body = self._buf[self._bufpos + 4:self._bufpos + 4 + ln]
                del body
                self._bufpos += 4 + ln
                k += 1
            if k:
                os.pwrite(self._afd, _OFF.pack(self._off + self._bufpos), 0)
                if self._do_sync:
                    os.fdatasync(self._afd)
                    self._syncs += 1
            return k

    def stats(self) -> dict[str, float]:
        return {"syncs": self._syncs}

    def close(self):
        for fd in (self._wfd, self._rfd, self._afd):
            os.close(fd)


PREALLOC_STEP = 16 << 20     # bytes zero-filled (written, then synced once) per step
_ZEROS = bytes(1 << 20)


class RawPrealloc(RawFile):
    """The records of ``RawFile`` written over already-written (zero-filled)
    blocks: each batch is a ``pwrite`` inside the file plus ``fdatasync``,
    which has no new size or extents to commit.  The file is zero-filled in
    ``PREALLOC_STEP`` steps (written zeros, one fdatasync per step) ahead of
    the writer: by ``reserve`` before the timed puts, and inside a put should
    the writer reach the filled end."""

    def __init__(self, step: int = PREALLOC_STEP) -> None:
        super().__init__(True)
        self.name = "raw pwrite over preallocated space+fdatasync"
        self.step = step

    def _open_data(self, path: str) -> int:
        self._filled = 0        # bytes of written zeros (or records) in the file
        self._fill_s = 0.0      # zero-filling inside puts (timed)
        self._fill_steps = 0
        self._reserve_s = 0.0   # zero-filling before the puts (not timed)
        self._reserve_steps = 0
        return os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)

    def reserve(self, events: int, body_bytes: int) -> None:
        t0 = time.perf_counter()
        steps = self._fill_steps
        need = body_bytes + _LEN.size * events
        while self._filled < need:       # bounded: each step adds self.step bytes
            self._extend(self._filled + 1)
        self._reserve_steps += self._fill_steps - steps
        self._fill_steps = steps
        self._fill_s = 0.0
        self._reserve_s += time.perf_counter() - t0

    def _extend(self, need: int) -> None:
        t0 = time.perf_counter()
        target = self._filled + self.step * max(1, -(-(need - self._filled) // self.step))
        pos = self._filled
        while pos < target:
            chunk = _ZEROS[:min(len(_ZEROS), target - pos)]
            pos += os.pwrite(self._wfd, chunk, pos)
        os.fdatasync(self._wfd)
        self._filled = target
        self._fill_steps += 1
        self._fill_s += time.perf_counter() - t0

    def _append(self, data: bytes) -> None:
        end = self._end + len(data)
        if end > self._filled:
            self._extend(end)
        mv = memoryview(data)
        pos = 0
        while pos < len(data):
            pos += os.pwrite(self._wfd, mv[pos:], self._end + pos)

    def stats(self) -> dict[str, float]:
        return {"syncs": self._syncs, "prealloc_s": self._fill_s,
                "prealloc_steps": self._fill_steps, "reserve_s": self._reserve_s,
                "reserve_steps": self._reserve_steps}


class PersistQueueAck(Adapter):
    name = "persist-queue SQLiteAckQueue"
    events_cap = 0.1     # one commit per put and two per take: 10% of the events

    def open(self, path, durable, capacity, batch):
        import persistqueue
        self._q = persistqueue.SQLiteAckQueue(path, multithreading=True, auto_commit=True)
        if not durable:
            for conn in {id(self._q._putter): self._q._putter,
                         id(self._q._getter): self._q._getter}.values():
                conn.execute("PRAGMA synchronous=OFF")
        self._empty = persistqueue.Empty

    def put_batch(self, items):
        put = self._q.put
        for b in items:
            put(b)

    def take_batch(self, n):
        q = self._q
        k = 0
        for _ in range(n):
            try:
                item = q.get(block=False, raw=True)
            except self._empty:
                break
            q.ack(id=item["pqid"])
            k += 1
        if k:
            # acked rows stay in the table until cleared, and every get() scans
            # past them: clear them as its documentation advises (one commit)
            q.clear_acked_data(keep_latest=0)
        return k

    def close(self):
        self._q.close()

    @staticmethod
    def version():
        from importlib.metadata import version
        return version("persist-queue")


class DiskcacheDeque(Adapter):
    name = "diskcache Deque+transact"

    def open(self, path, durable, capacity, batch):
        import diskcache
        self._cache = diskcache.Cache(path, sqlite_synchronous=2 if durable else 0,
                                      size_limit=2 ** 40, cull_limit=0)
        self._dq = diskcache.Deque.fromcache(self._cache)

    def put_batch(self, items):
        dq = self._dq
        with dq.transact():
            for b in items:
                dq.append(b)

    def take_batch(self, n):
        dq = self._dq
        k = 0
        with dq.transact():
            for _ in range(n):
                try:
                    dq.popleft()
                except IndexError:
                    break
                k += 1
        return k

    def close(self):
        self._cache.close()

    @staticmethod
    def version():
        import diskcache
        return diskcache.__version__


class SqliteWal(Adapter):
    name = "sqlite3 WAL queue"

    def open(self, path, durable, capacity, batch):
        self._lock = threading.Lock()
        c = sqlite3.connect(os.path.join(path, "q.db"), isolation_level=None,
                            check_same_thread=False)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=%s" % ("FULL" if durable else "OFF"))
        c.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        self._c = c

    def put_batch(self, items):
        with self._lock:
            c = self._c
            c.execute("BEGIN IMMEDIATE")
            c.executemany("INSERT INTO q (body) VALUES (?)", [(b,) for b in items])
            c.execute("COMMIT")

    def take_batch(self, n):
        with self._lock:
            c = self._c
            c.execute("BEGIN IMMEDIATE")
            rows = c.execute("SELECT id, body FROM q ORDER BY id LIMIT ?", (n,)).fetchall()
            if rows:
                c.execute("DELETE FROM q WHERE id <= ?", (rows[-1][0],))
            c.execute("COMMIT")
            return len(rows)

    def close(self):
        self._c.close()

    @staticmethod
    def version():
        return "SQLite " + sqlite3.sqlite_version


class LmdbQueue(Adapter):
    name = "lmdb queue"

    def open(self, path, durable, capacity, batch):
        import lmdb
        self._env = lmdb.open(path, map_size=1 << 36, sync=durable, metasync=durable,
                              max_dbs=0, readahead=False)
        self._lock = threading.Lock()
        with self._env.begin() as txn:
            cur = txn.cursor()
            self._next = _KEY.unpack(cur.key())[0] + 1 if cur.last() else 0

    def put_batch(self, items):
        with self._lock:
            seq = self._next
            pairs = [(_KEY.pack(seq + i), b) for i, b in enumerate(items)]
            with self._env.begin(write=True) as txn:
                txn.cursor().putmulti(pairs, append=True)
            self._next = seq + len(items)

    def take_batch(self, n):
        with self._lock, self._env.begin(write=True) as txn:
            cur = txn.cursor()
            k = 0
            if cur.first():
                while k < n:
                    bytes(cur.value())
                    k += 1
                    if not cur.delete():     # moves to the next key
                        break
                    if not cur.key():
                        break
            return k

    def close(self):
        self._env.close()

    @staticmethod
    def version():
        import lmdb
        return lmdb.__version__ + " (LMDB %d.%d.%d)" % lmdb.version()


class _ChannelAdapter(Adapter):
    kind = "fchannel"

    def prepare(self, bodies):
        return [Event(b) for b in bodies]

    def put_batch(self, items):
        with self._ch.transaction() as tx:
            tx.put_batch(items)

    def take_batch(self, n):
        with self._ch.transaction() as tx:
            return len(tx.take_batch(n))

    def close(self):
        self._ch.close()

    @staticmethod
    def version():
        return f"{fchannel.__version__} ({'compiled' if fchannel.COMPILED else 'pure'})"


class MemoryChannelAdapter(_ChannelAdapter):
    name = "fchannel MemoryChannel"
    durable_capable = False

    def open(self, path, durable, capacity, batch):
        self._ch = MemoryChannel(capacity=capacity, transaction_capacity=max(batch, 1),
                                 keep_alive=0)


class FileChannelAdapter(_ChannelAdapter):
    name = "fchannel FileChannel"

    def open(self, path, durable, capacity, batch):
        self._ch = fchannel.FileChannel(os.path.join(path, "checkpoint"), [os.path.join(path, "data")],
                       capacity=capacity, transaction_capacity=max(batch, 1),
                       fsync_per_transaction=durable)

    def stats(self):
        c = self._ch.counters
        return {"commits": c["commit_count"], "log_syncs": c["log_syncs"]}


class EncryptedFileChannelAdapter(FileChannelAdapter):
    """The FileChannel with encryption at rest (AES-GCM per put): what
    sealing and opening every event costs beside the plain one."""
    name = "fchannel FileChannel, encrypted"

    def open(self, path, durable, capacity, batch):
        from fchannel.file.crypto import write_key_file
        key = os.path.join(path, "bench.key")
        if not os.path.exists(key):
            os.makedirs(path, exist_ok=True)
            write_key_file(key)
        self._ch = fchannel.FileChannel(
            os.path.join(path, "checkpoint"), [os.path.join(path, "data")],
            capacity=capacity, transaction_capacity=max(batch, 1),
            fsync_per_transaction=durable,
            encryption={"active_key": "bench", "keys": {"bench": key}})


def all_adapters() -> dict[str, Callable[[], Adapter]]:
    """name -> factory, in report order (baselines, peers, fchannel)."""
    out: dict[str, Callable[[], Adapter]] = {
        "raw-sync": lambda: RawFile(True),
        "raw-prealloc": RawPrealloc,
        "raw-nosync": lambda: RawFile(False),
        "persist-queue": PersistQueueAck,
        "diskcache": DiskcacheDeque,
        "sqlite": SqliteWal,
        "lmdb": LmdbQueue,
        "memory": MemoryChannelAdapter,
        "file": FileChannelAdapter,
        "file-enc": EncryptedFileChannelAdapter,
    }
    return out


def available(key: str) -> str | None:
    """None when the adapter can run here, else why not."""
    mods = {"persist-queue": "persistqueue", "diskcache": "diskcache", "lmdb": "lmdb",
            "file-enc": "cryptography"}
    mod = mods.get(key)
    if mod:
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} not installed (pip install 'fchannel[bench]')"
    return None

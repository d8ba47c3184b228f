"""Log files of the FileChannel: writing (with rolling and group commit),
reading events by pointer, and the per-file ``.meta``.

Policy lives here in Python; the byte loops (record framing, crc, pwrite,
pread, fdatasync with the GIL released) are in the codec selected by
``fchannel._compat``.
"""
from __future__ import annotations

import logging
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fchannel._compat import codec, queue
from fchannel.errors import NO_SPACE, ChannelError, ChannelFullError, CorruptionError, from_os_error
from fchannel.file import fchannel_pb2 as pb
from fchannel.file import format as F

log = logging.getLogger("fchannel.file")

#: free space is asked of the file system at most this often while far above the minimum
SPACE_SAMPLE_SECONDS = 0.5
SPACE_MARGIN = 64 << 20
#: how long the leader of a group commit waits for commits about to write
GROUP_WAIT = 0.0002
#: how far ahead of the writer a log file is filled with zeros (docs/FORMAT.md)
PREALLOC_STEP = 4 << 20
_ZEROS = bytes(1 << 20)
#: in LogFile.take_targets: the file's takes may point anywhere (it is damaged)
ANY_FILE = -1
_LOG_NAME = re.compile(r"^log-(\d+)$")
_U32 = struct.Struct("<I")


# ---- framed protobuf files -----------------------------------------------------
def write_framed(path: str, magic: bytes, message, *, sync: bool = True) -> None:
    """Write *message* framed (magic, length, crc) to *path* atomically."""
    payload = message.SerializeToString()
    data = F.FRAME.pack(magic, len(payload), codec.crc(payload)) + payload
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        codec.pwrite_all(fd, data, 0)
        if sync:
            codec.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_framed(path: str, magic: bytes, message_type):
    """Read a framed protobuf file; CorruptionError (naming the file and what
    is wrong) if it is missing, truncated, or fails its crc."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CorruptionError(f"{path}: missing") from None
    except OSError as exc:
        raise CorruptionError(f"{path}: unreadable ({exc})") from None
    if len(data) < F.FRAME_SIZE:
        raise CorruptionError(f"{path}: truncated ({len(data)} bytes)")
    got_magic, length, crc = F.FRAME.unpack_from(data, 0)
    if got_magic != magic:
        raise CorruptionError(f"{path}: bad magic {got_magic!r}, expected {magic!r}")
    payload = data[F.FRAME_SIZE:]
    if len(payload) != length:
        raise CorruptionError(f"{path}: length field says {length} bytes, file has {len(payload)}")
    if codec.crc(payload) != crc:
        raise CorruptionError(f"{path}: checksum mismatch")
    msg = message_type()
    try:
        msg.ParseFromString(payload)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise CorruptionError(f"{path}: cannot parse ({exc})") from None
    return msg


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- log file headers ------------------------------------------------------------
def encode_log_header(file_id: int, created_woid: int) -> bytes:
    head = F.LOG_HEADER.pack(F.LOG_MAGIC, F.LOG_VERSION, 0, file_id, created_woid, 0, 0)
    crc = codec.crc(head[:24])
    return F.LOG_HEADER.pack(F.LOG_MAGIC, F.LOG_VERSION, 0, file_id, created_woid, crc, 0)


def decode_log_header(data: bytes, path: str = "log") -> tuple[int, int]:
    """``(file_id, created_woid)``; CorruptionError if damaged."""
    file_id, created, _version = decode_log_header_version(data, path)
    return file_id, created


def decode_log_header_version(data: bytes, path: str = "log") -> tuple[int, int, int]:
    """``(file_id, created_woid, version)``; CorruptionError if damaged or of
    a version this reader does not know."""
    if len(data) < F.LOG_HEADER_SIZE:
        raise CorruptionError(f"{path}: header truncated ({len(data)} bytes)")
    magic, version, _r, file_id, created, crc, _r2 = F.LOG_HEADER.unpack_from(data, 0)
    if magic != F.LOG_MAGIC:
        raise CorruptionError(f"{path}: bad magic {magic!r}")
    if codec.crc(data[:24]) != crc:
        raise CorruptionError(f"{path}: header checksum mismatch")
    if version not in F.LOG_VERSIONS:
        raise CorruptionError(f"{path}: unsupported log version {version} (this fchannel "
                              f"reads versions {', '.join(map(str, F.LOG_VERSIONS))})")
    return file_id, created, version


def scan_log(data, start: int, file_id: int, version: int, end: int = -1, hint: int = 0):
    """``codec.scan`` of a log file of either version (*hint*: a record start
    the .meta knows, see ``codec.scan``)."""
    if version == 1:
        return codec.scan_v1(data, start, end)
    return codec.scan(data, start, end, file_id, hint)


def first_sealed_put(path: str, file_id: int) -> tuple[int, bytes] | None:
    """``(offset, sealed payload)`` of the first encrypted put of a version 2
    log, or None when its first put is not encrypted (a log is written in one
    open of the channel, under one setting: all its puts are sealed or none)
    or it holds no put.  Reads only as far as the first put."""
    try:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    except (OSError, ValueError):   # ValueError: an empty file cannot be mapped
        return None
    try:
        window = 1 << 16
        while True:
            end = min(window, len(mm))
            recs, _good, _damage = codec.scan(mm, F.LOG_HEADER_SIZE, end, file_id)
            for k in range(0, len(recs), F.REC_FIELDS):
                if recs[k + F.REC_TYPE] == F.REC_PUT:
                    if not recs[k + F.REC_AUX] & F.FLAG_SEALED:
                        return None
                    off = recs[k + F.REC_OFFSET]
                    return off, _sealed_payload(mm, off, file_id)
            if end == len(mm):
                return None
            window *= 16
    finally:
        mm.close()


class _Sealed(Exception):
    def __init__(self, sealed: bytes) -> None:
        self.sealed = sealed


def _sealed_payload(mm, off: int, file_id: int) -> bytes:
    """The sealed payload of the valid encrypted put at *off*."""
    def keep(sealed: bytes, _aad: bytes, _pointer: int) -> bytes:
        raise _Sealed(bytes(sealed))
    try:
        codec.decode_record(mm, off, keep, file_id)
    except _Sealed as got:
        return got.sealed
    raise CorruptionError(f"log-{file_id} offset {off}: not an encrypted put")


def log_path(data_dir: str, file_id: int) -> str:
    return os.path.join(data_dir, f"{F.LOG_PREFIX}{file_id}")


def list_logs(data_dirs: Iterable[str]) -> list[tuple[int, int, str]]:
    """``(file_id, dir_index, path)`` of every log file, by id."""
    out = []
    for i, d in enumerate(data_dirs):
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for name in names:
            m = _LOG_NAME.match(name)
            if m:
                out.append((int(m.group(1)), i, os.path.join(d, name)))
    out.sort()
    return out


@dataclass
class LogFile:
    """What the channel knows of one log file."""

    file_id: int
    dir_index: int
    path: str
    created_woid: int
    last_woid: int          # highest write-order id known to be in the file
    closed: bool            # nothing more will be appended
    ckpt_position: int = F.LOG_HEADER_SIZE
    ckpt_woid: int = 0
    #: the log format version the file is written in
    version: int = F.LOG_VERSION
    #: where the last record known to be in the file starts (0: none)
    last_record: int = 0
    #: ids of the log files its take records point into (None: not known yet;
    #: ANY_FILE in it: a damaged record may have been a take of anything)
    take_targets: set[int] | None = None
    #: the checkpointer and a roll (or close) may write the .meta at the same time
    _meta_lock: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                       compare=False)

    @property
    def meta_path(self) -> str:
        return self.path + F.META_SUFFIX

    def write_meta(self) -> None:
        # one writer at a time (they share the .tmp name), and the fields are
        # read under the lock, so the last writer writes the newest state
        with self._meta_lock:
            write_framed(self.meta_path, F.LOG_META_MAGIC, pb.LogMeta(
                version=1, log_id=self.file_id, checkpoint_position=self.ckpt_position,
                checkpoint_write_order_id=self.ckpt_woid,
                created_write_order_id=self.created_woid,
                last_write_order_id=self.last_woid, closed=self.closed,
                last_record_position=self.last_record))


def read_log_meta(path: str, file_id: int):
    meta = read_framed(path + F.META_SUFFIX, F.LOG_META_MAGIC, pb.LogMeta)
    if meta.log_id != file_id:
        raise CorruptionError(f"{path}.meta: names log {meta.log_id}, expected {file_id}")
    return meta


class _Writer:
    """The file a data directory currently appends to, with group commit."""

    def __init__(self, info: LogFile, fd: int, offset: int) -> None:
        self.info = info
        self.fd = fd
        self.offset = offset          # next write position
        self.allocated = offset       # the file is written (zeros ahead) up to here
        self.synced = offset          # everything before it is on disk
        self.syncing = False
        self.cond = threading.Condition(threading.Lock())


class Log:
    """All log files of one channel.

    ``lock`` serialises the assignment of write-order ids with the writes, so
    the order of records in each file is the order of their ids, and one
    checkpoint boundary (a write-order id) splits every file in two.
    """

    def __init__(self, data_dirs: list[str], max_file_size: int,
                 minimum_required_space: int, name: str) -> None:
        self.data_dirs = data_dirs
        self.max_file_size = max_file_size
        self.minimum_required_space = minimum_required_space
        self.name = name
        self.lock = threading.Lock()
        self.next_woid = 1
        self.next_file_id = 1
        self.files: dict[int, LogFile] = {}
        self.writers: list[_Writer | None] = [None] * len(data_dirs)
        self._readers: dict[int, int] = {}
        self._readers_lock = threading.Lock()
        self.bytes_written = 0
        self.syncs = 0
        #: per data dir: (when, free bytes, bytes_written then) of the last statvfs
        self._space: dict[int, tuple[float, int, int]] = {}
        #: the first failed fdatasync (see _fdatasync), and who is told of it
        self.sync_failed: ChannelError | None = None
        self.on_sync_failure: Callable[[str], None] | None = None
        #: opens sealed (encrypted) puts: ``opener(sealed, aad, pointer)``
        self.opener: Callable | None = None

    # ---- opening --------------------------------------------------------------
    def start_writers(self) -> None:
        with self.lock:
            for i in range(len(self.data_dirs)):
                self._roll(i, self.next_woid)

    def _roll(self, i: int, next_woid: int) -> _Writer:
        """Close dir *i*'s current file (synced) and start a new one whose
        first record will have write-order id *next_woid* or more.

        The new file is made first: if that fails (a full disk), the current
        file stays the writer, open and not marked closed."""
        file_id = self.next_file_id
        if file_id > F.MAX_FILE_ID:
            raise ChannelError(f"log file ids exhausted ({file_id})")
        path = log_path(self.data_dirs[i], file_id)
        fd = -1
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            header = encode_log_header(file_id, next_woid)
            codec.pwrite_all(fd, header, 0)
            codec.fdatasync(fd)
            fsync_dir(self.data_dirs[i])
        except BaseException as exc:
            if fd >= 0:
                os.close(fd)
                try:
                    os.unlink(path)
                except OSError:
                    pass
            if isinstance(exc, OSError):
                where = (f"in {self.data_dirs[i]!r} for a new log file" if exc.errno in NO_SPACE
                         else f"creating {path}")
                raise from_os_error(exc, self.name, where) from exc
            raise
        self.next_file_id += 1
        old = self.writers[i]
        if old is not None:
            self._trim(old)
            self._fdatasync(old.fd, old.info.path)
            old.info.closed = True
            try:
                old.info.write_meta()
            except OSError as exc:  # the meta is an accelerator; replay copes without
                log.warning("%s: cannot write %s: %s", self.name, old.info.meta_path, exc)
            self._adopt_reader(old.info.file_id, old.fd)
        info = LogFile(file_id, i, path, created_woid=next_woid,
                       last_woid=next_woid - 1, closed=False,
                       ckpt_position=F.LOG_HEADER_SIZE, ckpt_woid=0, take_targets=set())
        self.files[file_id] = info
        w = _Writer(info, fd, F.LOG_HEADER_SIZE)
        self.writers[i] = w
        return w

    def _adopt_reader(self, file_id: int, fd: int) -> None:
        with self._readers_lock:
            old = self._readers.pop(file_id, None)
            self._readers[file_id] = fd
        if old is not None and old != fd:
            os.close(old)

    # ---- writing ----------------------------------------------------------------
    def check_space(self, i: int, nbytes: int) -> None:
        """ChannelFullError if writing *nbytes* would leave data dir *i* below
        minimum_required_space.  Free space is sampled, not asked of the file
        system on every write: a sample is trusted while it is younger than
        SPACE_SAMPLE_SECONDS and what was written since leaves a margin of
        SPACE_MARGIN above the minimum (preallocated zeros already count as used)."""
        if self.minimum_required_space <= 0:
            return
        now = time.monotonic()
        at, free_then, written_then = self._space.get(i, (-1e9, 0, 0))
        estimate = free_then - (self.bytes_written - written_then)
        if now - at < SPACE_SAMPLE_SECONDS and \
                estimate - nbytes >= self.minimum_required_space + SPACE_MARGIN:
            return
        st = os.statvfs(self.data_dirs[i])
        free = st.f_bavail * st.f_frsize
        self._space[i] = (now, free, self.bytes_written)
        if free - nbytes < self.minimum_required_space:
            raise ChannelFullError(
                f"channel {self.name!r}: data dir {self.data_dirs[i]!r} has {free} bytes free, "
                f"below minimum_required_space={self.minimum_required_space} after writing "
                f"{nbytes} bytes; free some space (nothing was lost)")

    def write(self, i: int, buf: bytearray, starts: list[int] | None,
              take_targets: set[int] | None = None) -> tuple[list[int], int, int]:
        """Append the records in *buf* to data dir *i*.

        Gives them consecutive write-order ids, splits them across files when
        the current one would pass max_file_size (never splitting a record),
        and returns ``(pointers of the records at starts, file id, end
        offset)``; the last two say how far the last file must be synced.
        Caller holds ``self.lock``.
        """
        self._check_synced()
        first = self.next_woid
        nxt = codec.finalize(buf, 0, first)
        self.next_woid = nxt
        w = self.writers[i]
        assert w is not None
        pointers: list[int] = []
        total = len(buf)
        pos = 0
        done = 0  # records written so far
        si = 0
        starts = starts or []
        try:
            while pos < total:
                framed, end, count, last, si = codec.frame(
                    buf, pos, w.offset, self.max_file_size, w.info.file_id,
                    w.info.last_record, starts, si, pointers)
                if count == 0:
                    if w.offset == F.LOG_HEADER_SIZE:
                        raise ChannelError(
                            f"a record of {_U32.unpack_from(buf, pos + 4)[0]} bytes does not fit "
                            f"in max_file_size={self.max_file_size}")
                    w = self._roll(i, first + done)
                    continue
                self._pwrite(w, framed)
                if take_targets and w.info.take_targets is not None:
                    w.info.take_targets.update(take_targets)
                done += count
                w.info.last_woid = first + done - 1
                w.info.last_record = last
                pos = end
        except BaseException:
            # the ids of records that never reached a file are given back, so
            # the ids after a checkpoint stay contiguous (replay reports gaps)
            self.next_woid = first + done
            raise
        return pointers, w.info.file_id, w.offset

    def _extend(self, w: _Writer, need: int) -> None:
        """Write zeros ahead of the writer, so that commits overwrite blocks
        the file system already holds: their fdatasync then carries no file
        size or extent change (docs/FORMAT.md, "Preallocation").  The zeros
        are synced once here, per step, not by every commit."""
        target = min(self.max_file_size, max(need, w.allocated + PREALLOC_STEP))
        pos = w.allocated
        try:
            while pos < target:
                n = min(len(_ZEROS), target - pos)
                codec.pwrite_all(w.fd, _ZEROS[:n] if n < len(_ZEROS) else _ZEROS, pos)
                pos += n
            self._fdatasync(w.fd, w.info.path)
        except OSError as exc:
            try:
                os.ftruncate(w.fd, w.allocated)
            except OSError:
                pass
            where = (f"in {self.data_dirs[w.info.dir_index]!r}" if exc.errno in NO_SPACE
                     else f"extending {w.info.path}")
            raise from_os_error(exc, self.name, where) from exc
        w.allocated = target

    def _trim(self, w: _Writer) -> None:
        """Cut the zeros ahead of the writer off (a file that is rolled or closed)."""
        if w.allocated > w.offset:
            os.ftruncate(w.fd, w.offset)
            w.allocated = w.offset

    def _pwrite(self, w: _Writer, data) -> None:
        if w.offset + len(data) > w.allocated:
            self._extend(w, w.offset + len(data))
        try:
            codec.pwrite_all(w.fd, data, w.offset)
        except OSError as exc:
            # cut the partial write off so the file stays a clean sequence of records
            try:
                os.ftruncate(w.fd, w.offset)
                w.allocated = w.offset
            except OSError:
                pass
            where = (f"in {self.data_dirs[w.info.dir_index]!r}" if exc.errno in NO_SPACE
                     else f"writing {w.info.path}")
            raise from_os_error(exc, self.name, where) from exc
        w.offset += len(data)
        self.bytes_written += len(data)

    # ---- syncing -------------------------------------------------------------------
    def _fdatasync(self, fd: int, path: str) -> None:
        """fdatasync; a failure is remembered for good: after it, no later
        sync can prove that what was written before reached the disk."""
        try:
            codec.fdatasync(fd)
        except OSError as exc:
            if self.sync_failed is None:
                self.sync_failed = from_os_error(exc, self.name, f"syncing {path}")
                if self.on_sync_failure is not None:
                    self.on_sync_failure(str(self.sync_failed))
            raise self._sync_error() from exc

    def _check_synced(self) -> None:
        if self.sync_failed is not None:
            raise self._sync_error()

    def _sync_error(self) -> ChannelError:
        """A new exception like the first failed sync's (each raise its own)."""
        assert self.sync_failed is not None
        return type(self.sync_failed)(str(self.sync_failed))

    def sync(self, file_id: int, offset: int,
             unwritten: Callable[[], int] | None = None) -> None:
        """Return once ``file_id`` is on disk up to *offset*.  Concurrent callers
        share one fdatasync (group commit).  *unwritten* counts the commits
        that are on their way to write: the caller that leads a sync lets them
        write first, for at most GROUP_WAIT seconds, so that the same
        fdatasync covers them too."""
        self._check_synced()
        for w in self.writers:
            if w is not None and w.info.file_id == file_id:
                break
        else:
            return  # rolled: synced when it was closed (or sync_failed is set)
        with w.cond:
            while w.synced < offset:
                self._check_synced()
                if w.syncing:
                    w.cond.wait()
                    continue
                w.syncing = True
                w.cond.release()
                try:
                    if unwritten is not None and unwritten():
                        deadline = time.monotonic() + GROUP_WAIT
                        while unwritten() and time.monotonic() < deadline:
                            time.sleep(0)   # let them write (they need the GIL)
                    target = w.offset
                    self._fdatasync(w.fd, w.info.path)
                    self.syncs += 1
                finally:
                    w.cond.acquire()
                    w.syncing = False
                    w.cond.notify_all()
                w.synced = max(w.synced, target)

    def sync_all(self) -> None:
        for w in list(self.writers):
            if w is not None:
                self.sync(w.info.file_id, w.offset)

    # ---- reading ----------------------------------------------------------------------
    def _reader(self, file_id: int) -> int | None:
        with self._readers_lock:
            fd = self._readers.get(file_id)
            if fd is not None:
                return fd
            for w in self.writers:
                if w is not None and w.info.file_id == file_id:
                    return w.fd
            info = self.files.get(file_id)
            if info is None:
                return None
            try:
                fd = os.open(info.path, os.O_RDONLY)
            except OSError:
                return None
            self._readers[file_id] = fd
            return fd

    def _read_file(self, fid: int, pointers: list[int]) -> list:
        fd = self._reader(fid)
        if fd is None:
            return [None] * len(pointers)
        info = self.files.get(fid)
        if info is not None and info.version == 1:
            return codec.read_events_v1(fd, pointers)
        return codec.read_events(fd, pointers, self.opener)

    def read(self, pointers: list[int]) -> list:
        """The Events at *pointers*, None where a record is damaged or gone."""
        fid = queue.common_file(pointers)
        if fid >= 0:   # the usual case: one batch, one file
            return self._read_file(fid, pointers)
        out: list = [None] * len(pointers)
        by_file: dict[int, list[int]] = {}
        for idx, p in enumerate(pointers):
            by_file.setdefault(p >> 32, []).append(idx)
        for fid, idxs in by_file.items():
            events = self._read_file(fid, [pointers[j] for j in idxs])
            for j, e in zip(idxs, events):
                out[j] = e
        return out

    def take_targets(self, file_id: int) -> set[int]:
        """The log files the take records of *file_id* point into (read from
        the file once when not known, e.g. after a restart)."""
        info = self.files[file_id]
        if info.take_targets is None:
            targets = {ANY_FILE}
            try:
                with open(info.path, "rb") as f:
                    data = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
                try:
                    recs, _end, damage = scan_log(data, F.LOG_HEADER_SIZE, file_id,
                                                  info.version)
                finally:
                    data.close()
                if not damage:
                    targets = {recs[k + F.REC_AUX] >> 32
                               for k in range(0, len(recs), F.REC_FIELDS)
                               if recs[k + F.REC_TYPE] == F.REC_TAKE}
            except (OSError, ValueError):   # ValueError: an empty file cannot be mapped
                pass
            info.take_targets = targets
        return info.take_targets

    def current_ids(self) -> set[int]:
        return {w.info.file_id for w in self.writers if w is not None}

    def delete(self, file_id: int) -> None:
        info = self.files.pop(file_id, None)
        with self._readers_lock:
            fd = self._readers.pop(file_id, None)
        if fd is not None:
            os.close(fd)
        if info is None:
            return
        # the .meta first: a crash in between leaves a log without a .meta,
        # which replay reads in full, never a .meta without its log
        for path in (info.meta_path, info.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        with self.lock:
            for i, w in enumerate(self.writers):
                if w is None:
                    continue
                try:
                    if self.sync_failed is None:   # else the .meta would vouch for lost records
                        self._trim(w)
                        self._fdatasync(w.fd, w.info.path)
                        w.info.closed = True
                        w.info.write_meta()
                except (OSError, ChannelError) as exc:
                    log.warning("%s: closing %s: %s", self.name, w.info.path, exc)
                os.close(w.fd)
                self.writers[i] = None
            with self._readers_lock:
                fds = list(self._readers.values())
                self._readers.clear()
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

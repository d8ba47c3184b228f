"""The checkpoint of the FileChannel's event queue.

A checkpoint directory holds:

- ``checkpoint``: a memory-mapped file, a 64-byte header and ``capacity``
  int64 slots holding the ring of event pointers.  The header's marker is
  set to INCOMPLETE before anything changes and to COMPLETE last;
- ``checkpoint.meta``: the protobuf ``CheckpointMeta`` (write-order id, queue
  size and head, ring crc, per-log reference counts, marks);
- ``inflightputs`` / ``inflighttakes``: the open transactions' pointers.

A backup directory, when configured, receives a copy after each complete
checkpoint, with ``backupComplete`` written last.
"""
from __future__ import annotations

import mmap
import os
import shutil
import time
from dataclasses import dataclass, field

from fchannel._compat import codec
from fchannel.errors import NO_SPACE, CorruptionError, from_os_error
from fchannel.file import fchannel_pb2 as pb
from fchannel.file import format as F
from fchannel.file.log import fsync_dir, read_framed, write_framed

_FILES = (F.CHECKPOINT_FILE, F.CHECKPOINT_META_FILE, F.INFLIGHT_PUTS_FILE, F.INFLIGHT_TAKES_FILE)


@dataclass
class LoadedCheckpoint:
    write_order_id: int
    head: int
    size: int
    marks: dict[str, int]
    inflight_puts: dict[int, list[int]]
    inflight_takes: dict[int, list[int]]
    log_refs: dict[int, int] = field(default_factory=dict)
    next_txn_id: int = 0


def ring_crc(slots: memoryview, head: int, size: int, capacity: int) -> int:
    """crc32 of the queued slots in queue order (handles the wrap)."""
    raw = slots.cast("B")
    first = min(size, capacity - head)
    crc = codec.crc(raw[head * 8:(head + first) * 8])
    if size > first:
        crc = codec.crc(raw[:(size - first) * 8], crc)
    return crc


def _header_crc(buf) -> int:
    # everything but the marker (bytes 40..48) and the crc field itself
    return codec.crc(bytes(buf[0:40]) + bytes(buf[48:52]))


def _inflight_message(woid: int, txns: dict[int, list[int]]) -> pb.Inflight:
    msg = pb.Inflight(write_order_id=woid)
    for txn_id, ptrs in txns.items():
        msg.transactions.add(transaction_id=txn_id, pointers=ptrs)
    return msg


def _read_inflight(path: str, magic: bytes, woid: int) -> dict[int, list[int]]:
    msg = read_framed(path, magic, pb.Inflight)
    if msg.write_order_id != woid:
        raise CorruptionError(f"{path}: belongs to write-order id {msg.write_order_id}, "
                              f"the checkpoint is at {woid}")
    return {t.transaction_id: list(t.pointers) for t in msg.transactions}


class CheckpointStore:
    """The checkpoint directory of one channel."""

    def __init__(self, directory: str, capacity: int, backup_dir: str | None = None,
                 name: str = "file-channel") -> None:
        self.name = name
        self.dir = directory
        self.capacity = capacity
        self.backup_dir = backup_dir
        self.path = os.path.join(directory, F.CHECKPOINT_FILE)
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._views: list[memoryview] = []
        self.slots: memoryview | None = None

    # ---- loading ------------------------------------------------------------------
    def load(self, directory: str | None = None) -> LoadedCheckpoint:
        """Validate and read the checkpoint in *directory* (default: ours).
        Raises CorruptionError saying what is wrong.  On success the mmap is
        open and ``slots`` holds the ring."""
        d = directory or self.dir
        path = os.path.join(d, F.CHECKPOINT_FILE)
        if not os.path.exists(path):
            raise CorruptionError(f"{path}: missing")
        expected = F.CHECKPOINT_HEADER_SIZE + self.capacity * F.SLOT_SIZE
        actual = os.path.getsize(path)
        with open(path, "rb") as f:
            head_bytes = f.read(F.CHECKPOINT_HEADER_SIZE)
        if len(head_bytes) < F.CHECKPOINT_HEADER_SIZE:
            raise CorruptionError(f"{path}: header truncated ({len(head_bytes)} bytes)")
        (magic, version, _r, capacity, woid, size, head, marker, rcrc, hcrc,
         _r2) = F.CHECKPOINT_HEADER.unpack(head_bytes)
        if magic != F.CHECKPOINT_MAGIC:
            raise CorruptionError(f"{path}: bad magic {magic!r}")
        if marker != F.CHECKPOINT_COMPLETE:
            raise CorruptionError(f"{path}: incomplete (the process stopped during a checkpoint)")
        if _header_crc(head_bytes) != hcrc:
            raise CorruptionError(f"{path}: header checksum mismatch")
        if version != F.CHECKPOINT_VERSION:
            raise CorruptionError(f"{path}: unsupported version {version}")
        if capacity != self.capacity:
            raise CorruptionError(f"{path}: written for capacity {capacity}, channel has "
                                  f"capacity {self.capacity} (a full replay rebuilds it)")
        if actual != expected:
            raise CorruptionError(f"{path}: {actual} bytes, expected {expected}")
        if head >= capacity or size > capacity:
            raise CorruptionError(f"{path}: head {head} / size {size} outside capacity {capacity}")
        meta = read_framed(os.path.join(d, F.CHECKPOINT_META_FILE), F.CHECKPOINT_META_MAGIC,
                           pb.CheckpointMeta)
        if (meta.write_order_id, meta.queue_size, meta.queue_head, meta.capacity, meta.ring_crc) \
                != (woid, size, head, capacity, rcrc):
            raise CorruptionError(
                f"{os.path.join(d, F.CHECKPOINT_META_FILE)}: does not match the checkpoint file "
                f"(write-order id {meta.write_order_id} vs {woid})")
        puts = _read_inflight(os.path.join(d, F.INFLIGHT_PUTS_FILE), F.INFLIGHT_PUTS_MAGIC, woid)
        takes = _read_inflight(os.path.join(d, F.INFLIGHT_TAKES_FILE), F.INFLIGHT_TAKES_MAGIC,
                               woid)
        if directory is None:
            self._map()
            slots = self.slots
        else:
            with open(path, "rb") as f:
                f.seek(F.CHECKPOINT_HEADER_SIZE)
                slots = memoryview(f.read()).cast("q")
        assert slots is not None
        if ring_crc(slots, head, size, capacity) != rcrc:
            raise CorruptionError(f"{path}: queue checksum mismatch")
        return LoadedCheckpoint(woid, head, size, dict(meta.marks), puts, takes,
                                dict(meta.log_refs), meta.next_transaction_id)

    def backup_valid(self) -> bool:
        return bool(self.backup_dir) and os.path.exists(
            os.path.join(self.backup_dir, F.BACKUP_COMPLETE_FILE))  # type: ignore[arg-type]

    def restore_backup(self) -> LoadedCheckpoint:
        """Validate the backup, copy it over the checkpoint and load it."""
        assert self.backup_dir
        if not self.backup_valid():
            raise CorruptionError(f"{self.backup_dir}: no complete backup checkpoint")
        self.load(self.backup_dir)  # validate before overwriting anything
        self.close()
        for name in _FILES:
            _copy(os.path.join(self.backup_dir, name), os.path.join(self.dir, name))
        fsync_dir(self.dir)
        return self.load()

    # ---- writing --------------------------------------------------------------------
    def create(self) -> None:
        """Start a fresh, empty (incomplete) checkpoint file."""
        self.close()
        for name in _FILES:
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        size = F.CHECKPOINT_HEADER_SIZE + self.capacity * F.SLOT_SIZE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            # real blocks, not a sparse file: a write through the mmap into a
            # hole on a full disk is a SIGBUS, not an error
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno in NO_SPACE:
                    raise from_os_error(exc, self.name, f"for a checkpoint of {size} bytes "
                                        f"in {self.path}") from exc
                os.ftruncate(fd, size)
                codec.pwrite_all(fd, bytes(size), 0)
            header = F.CHECKPOINT_HEADER.pack(F.CHECKPOINT_MAGIC, F.CHECKPOINT_VERSION, 0,
                                              self.capacity, 0, 0, 0,
                                              F.CHECKPOINT_INCOMPLETE, 0, 0, 0)
            codec.pwrite_all(fd, header, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.dir)
        self._map()

    def _map(self) -> None:
        if self._mm is not None:
            return
        self._fd = os.open(self.path, os.O_RDWR)
        self._mm = mmap.mmap(self._fd, 0)
        base = memoryview(self._mm)
        ring = base[F.CHECKPOINT_HEADER_SIZE:]
        self.slots = ring.cast("q")
        self._views = [self.slots, ring, base]

    def begin(self) -> None:
        """Mark the checkpoint INCOMPLETE, durably, before any slot changes."""
        assert self._mm is not None
        self._mm[F.CHECKPOINT_MARKER_OFFSET:F.CHECKPOINT_MARKER_OFFSET + 8] = \
            F.CHECKPOINT_INCOMPLETE.to_bytes(8, "little")
        self._mm.flush(0, min(mmap.PAGESIZE, len(self._mm)))

    def finish(self, woid: int, head: int, size: int, marks: dict[str, int],
               log_refs: dict[int, int], log_ids: list[int],
               inflight_puts: dict[int, list[int]],
               inflight_takes: dict[int, list[int]], next_txn_id: int) -> None:
        """Write header, meta and in-flight files, then the COMPLETE marker.
        The ring slots were already copied in by the event queue."""
        mm = self._mm
        assert mm is not None and self.slots is not None
        rcrc = ring_crc(self.slots, head, size, self.capacity)
        header = bytearray(F.CHECKPOINT_HEADER.pack(
            F.CHECKPOINT_MAGIC, F.CHECKPOINT_VERSION, 0, self.capacity, woid, size, head,
            F.CHECKPOINT_INCOMPLETE, rcrc, 0, 0))
        hcrc = _header_crc(header)
        header[52:56] = hcrc.to_bytes(4, "little")
        mm[:F.CHECKPOINT_MARKER_OFFSET] = header[:F.CHECKPOINT_MARKER_OFFSET]
        mm[48:F.CHECKPOINT_HEADER_SIZE] = header[48:]
        mm.flush()
        meta = pb.CheckpointMeta(version=1, write_order_id=woid, queue_size=size,
                                 queue_head=head, capacity=self.capacity, ring_crc=rcrc,
                                 created_unix_ms=int(time.time() * 1000), log_ids=log_ids,
                                 next_transaction_id=next_txn_id)
        meta.log_refs.update(log_refs)
        meta.marks.update(marks)
        write_framed(os.path.join(self.dir, F.INFLIGHT_PUTS_FILE), F.INFLIGHT_PUTS_MAGIC,
                     _inflight_message(woid, inflight_puts))
        write_framed(os.path.join(self.dir, F.INFLIGHT_TAKES_FILE), F.INFLIGHT_TAKES_MAGIC,
                     _inflight_message(woid, inflight_takes))
        write_framed(os.path.join(self.dir, F.CHECKPOINT_META_FILE), F.CHECKPOINT_META_MAGIC,
                     meta)
        fsync_dir(self.dir)

    def complete(self) -> None:
        assert self._mm is not None
        self._mm[F.CHECKPOINT_MARKER_OFFSET:F.CHECKPOINT_MARKER_OFFSET + 8] = \
            F.CHECKPOINT_COMPLETE.to_bytes(8, "little")
        self._mm.flush(0, min(mmap.PAGESIZE, len(self._mm)))

    def backup(self) -> None:
        """Copy the complete checkpoint to the backup directory; the
        ``backupComplete`` marker is removed first and written last."""
        if not self.backup_dir:
            return
        marker = os.path.join(self.backup_dir, F.BACKUP_COMPLETE_FILE)
        try:
            os.unlink(marker)
        except FileNotFoundError:
            pass
        fsync_dir(self.backup_dir)
        for name in _FILES:
            _copy(os.path.join(self.dir, name), os.path.join(self.backup_dir, name))
        with open(marker, "wb") as f:
            f.write(b"COMPLETE\n")
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.backup_dir)

    def close(self) -> None:
        for v in self._views:
            v.release()
        self._views = []
        self.slots = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _copy(src: str, dst: str) -> None:
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)

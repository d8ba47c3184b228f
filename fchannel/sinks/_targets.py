"""Where the ``hdfs`` sink's files go, through fsspec: how a file is written,
made durable and committed under its final name on each kind of filesystem.

- **local** (``file://`` or a plain path): written in place under the in-use
  name; ``sync`` is flush + fsync (and the directory is fsynced when the file
  is created), so every batch is durable on its own.  Commit is a hard link
  to the final name (which fails if that name exists, where ``rename`` would
  overwrite it silently), then unlink of the in-use name, then fsync of the
  directory.
- **object stores** (``s3://``, ``gs://``, ``abfs://``...): an object appears
  whole or not at all and cannot be appended to, so the file is spooled on
  local disk (``hdfs.spoolDir``, the system temp directory by default) and
  committed by one upload under the final name: a conditional create
  (``If-None-Match: *``, s3fs ``mode="create"``) on S3, so an existing object
  is never replaced.  Nothing is durable before the commit.  Each sink spools
  into its own directory, ``<spoolDir>/fchannel-hdfs-<sink name>`` (``+1``,
  ``+2``... when a sink of the same name in another process holds it), which
  it holds locked (``flock`` on its ``lock`` file) while it runs; the files in
  it are named after their bucket file.  A sink that starts empties its own
  directory and every unlocked one of its name: what a crashed run spooled
  was never uploaded, and its events are still in the channel (the sink keeps
  their takes open until the upload), so they are written again.
- **everything else** (``hdfs://`` via pyarrow, ``webhdfs://``, ``memory://``,
  ``sftp://``...): written under the in-use name through ``fs.open``;
  commit is ``fs.mv`` and is checked afterwards (WebHDFS answers a rename onto
  an existing name with ``false`` and fsspec does not look).  Only ``hdfs``
  (pyarrow's ``flush`` is an hflush, what Flume's HDFS sink relies on) counts
  a flushed batch as durable; elsewhere data is durable only once committed.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import tempfile
from typing import IO, Any

OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss"})
DURABLE_FLUSH = frozenset({"hdfs", "viewfs"})


class CommitConflict(Exception):
    """The final name exists already."""


def split_url(url: str) -> tuple[str, str]:
    """(protocol, rest) of a path or URL; plain paths are ``file``."""
    if "://" in url:
        proto, rest = url.split("://", 1)
        return proto.lower(), rest
    return "file", url


class Handle:
    """One file being written: ``raw`` is the stream the serializer writes."""

    raw: IO[bytes]
    tmp_path: str
    final_path: str

    def sync(self) -> None:
        """Push what was written to the target (durable if the target can)."""
        self.raw.flush()

    def finish(self) -> None:
        """Flush everything and close the stream (before commit)."""
        if not self.raw.closed:
            self.raw.flush()
            self.raw.close()


class Target:
    protocol = "file"
    durable_sync = False      # does Handle.sync make a batch durable?

    def join(self, directory: str, name: str) -> str:
        return directory.rstrip("/") + "/" + name

    def open(self, directory: str, tmp_name: str, final_name: str) -> Handle:
        raise NotImplementedError

    def commit(self, h: Handle) -> None:
        """Make the file visible under its final name; CommitConflict if taken."""
        raise NotImplementedError

    def discard(self, h: Handle) -> None:
        raise NotImplementedError

    def glob(self, pattern: str) -> list[str]:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def remove(self, path: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the target holds (a spool directory's lock)."""


# ---- local ---------------------------------------------------------------------------

def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class _LocalHandle(Handle):
    def __init__(self, tmp: str, final: str) -> None:
        self.tmp_path = tmp
        self.final_path = final
        self.raw = open(tmp, "wb")  # noqa: SIM115 - kept open across batches

    def sync(self) -> None:
        self.raw.flush()
        os.fsync(self.raw.fileno())

    def finish(self) -> None:
        if not self.raw.closed:
            try:
                self.sync()
            finally:
                self.raw.close()


class LocalTarget(Target):
    protocol = "file"
    durable_sync = True

    def __init__(self) -> None:
        self._dirs: set[str] = set()

    @staticmethod
    def local(path: str) -> str:
        return split_url(path)[1]

    def _makedirs(self, d: str) -> None:
        if d in self._dirs:
            return
        made = []
        p = d
        while p and not os.path.isdir(p):
            made.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        os.makedirs(d, exist_ok=True)
        for m in made:  # make each new directory entry durable
            _fsync_dir(os.path.dirname(m) or ".")
        self._dirs.add(d)

    def open(self, directory: str, tmp_name: str, final_name: str) -> Handle:
        d = self.local(directory)
        self._makedirs(d)
        h = _LocalHandle(os.path.join(d, tmp_name), os.path.join(d, final_name))
        try:
            _fsync_dir(d)   # the new name is durable before any take commits
        except BaseException:
            h.raw.close()
            raise
        return h

    def commit(self, h: Handle) -> None:
        h.finish()
        try:
            os.link(h.tmp_path, h.final_path)
        except FileExistsError:
            raise CommitConflict(h.final_path) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            # no hard links here: check, then rename (not atomic against a rival)
            if os.path.exists(h.final_path):
                raise CommitConflict(h.final_path) from None
            os.rename(h.tmp_path, h.final_path)
        else:
            os.unlink(h.tmp_path)
        _fsync_dir(os.path.dirname(h.final_path))

    def discard(self, h: Handle) -> None:
        try:
            h.raw.close()
        except OSError:
            pass
        try:
            os.unlink(h.tmp_path)
        except FileNotFoundError:
            pass

    def glob(self, pattern: str) -> list[str]:
        import glob as _glob
        return _glob.glob(self.local(pattern))

    def exists(self, path: str) -> bool:
        return os.path.exists(self.local(path))

    def remove(self, path: str) -> None:
        try:
            os.unlink(self.local(path))
        except FileNotFoundError:
            pass


# ---- fsspec: object stores and renaming filesystems -----------------------------------

_log = logging.getLogger("fchannel.sinks.hdfs")
SPOOL_PREFIX = "fchannel-hdfs-"
SPOOL_LOCK = "lock"


class SpoolDir:
    """A sink's own spool directory under *base*, held locked while it runs;
    on claiming it, what a crashed run left in it (and in every unlocked
    directory of the same sink name) is removed."""

    def __init__(self, base: str | None, owner: str) -> None:
        self.base = base or tempfile.gettempdir()
        os.makedirs(self.base, exist_ok=True)
        self.stem = SPOOL_PREFIX + (re.sub(r"[^A-Za-z0-9._-]", "_", owner) or "sink")
        self._fd = -1
        self.path = self._claim()
        self.removed = self._sweep()
        if self.removed:
            _log.info("removed %d spooled file(s) a stopped run left in %s: %s",
                      len(self.removed), self.base, ", ".join(self.removed))

    def _slot(self, n: int) -> str:
        return os.path.join(self.base, self.stem if n == 0 else f"{self.stem}+{n}")

    @staticmethod
    def _lock(d: str) -> int:
        """An exclusive lock on ``d/lock`` (fd), or -1 if another holds it."""
        for _ in range(10):
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, SPOOL_LOCK)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:   # removed by its owner's stop meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return -1
            try:   # still the file at that name (not one its owner unlinked at stop)?
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
        raise OSError(f"could not lock {d}: it keeps being removed")

    def _claim(self) -> str:
        for n in range(1000):
            d = self._slot(n)
            fd = self._lock(d)
            if fd >= 0:
                self._fd = fd
                return d
        raise OSError(f"no free spool directory {self.stem}* in {self.base}")

    @staticmethod
    def _empty(d: str) -> list[str]:
        removed: list[str] = []
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return removed
        for name in names:
            if name == SPOOL_LOCK:
                continue
            try:
                os.unlink(os.path.join(d, name))
                removed.append(os.path.join(os.path.basename(d), name))
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                pass
        return removed

    def _sweep(self) -> list[str]:
        removed = self._empty(self.path)
        slot_re = re.compile("^" + re.escape(self.stem) + r"(\+\d+)?$")
        for name in sorted(os.listdir(self.base)):
            d = os.path.join(self.base, name)
            if d == self.path or not slot_re.match(name) or not os.path.isdir(d):
                continue
            fd = self._lock(d)
            if fd < 0:
                continue   # a running sink of the same name uses it
            try:
                removed += self._empty(d)
                self._remove_dir(d)
            finally:
                os.close(fd)
        return removed

    @staticmethod
    def _remove_dir(d: str) -> None:
        """Remove an emptied slot (its lock held by the caller)."""
        try:
            os.unlink(os.path.join(d, SPOOL_LOCK))
            os.rmdir(d)
        except OSError:
            pass   # a file appeared, or it is gone: leave it

    def create(self, name: str) -> tuple[int, str]:
        """A new spool file named after *name* (fd, path)."""
        return tempfile.mkstemp(prefix=name + ".", dir=self.path)

    def close(self) -> None:
        """Remove the directory if nothing is spooled in it, and unlock it."""
        if self._fd < 0:
            return
        try:
            if not [n for n in os.listdir(self.path) if n != SPOOL_LOCK]:
                self._remove_dir(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1


class _SpoolHandle(Handle):
    def __init__(self, spool: SpoolDir, tmp_name: str, final: str) -> None:
        fd, self.spool_path = spool.create(tmp_name)
        self.raw = os.fdopen(fd, "wb")
        self.tmp_path = self.spool_path
        self.final_path = final


class _FsHandle(Handle):
    def __init__(self, fs: Any, tmp: str, final: str) -> None:
        self.fs = fs
        self.tmp_path = tmp
        self.final_path = final
        self.raw = fs.open(tmp, "wb")
        self.size = 0

    def finish(self) -> None:
        if not self.raw.closed:
            self.raw.close()


class FsspecTarget(Target):
    """Any fsspec filesystem; object stores spool locally and upload at commit."""

    def __init__(self, protocol: str, storage_options: dict[str, Any],
                 spool_dir: str | None = None, owner: str = "sink") -> None:
        import fsspec
        self.protocol = protocol
        self.fs = fsspec.filesystem(protocol, **storage_options)
        self.object_store = protocol in OBJECT_STORES
        self.durable_sync = protocol in DURABLE_FLUSH
        self.spool_dir = spool_dir
        self.spool: SpoolDir | None = SpoolDir(spool_dir, owner) if self.object_store \
            else None

    def path(self, url: str) -> str:
        return self.fs._strip_protocol(url)  # type: ignore[no-any-return]

    def open(self, directory: str, tmp_name: str, final_name: str) -> Handle:
        final = self.join(self.path(directory), final_name)
        if self.spool is not None:
            return _SpoolHandle(self.spool, tmp_name, final)
        d = self.path(directory)
        try:
            self.fs.makedirs(d, exist_ok=True)
        except (FileExistsError, NotImplementedError):
            pass
        return _FsHandle(self.fs, self.join(d, tmp_name), final)

    def commit(self, h: Handle) -> None:
        h.finish()
        fs = self.fs
        if isinstance(h, _SpoolHandle):
            try:
                if self.protocol in ("s3", "s3a"):
                    fs.put_file(h.spool_path, h.final_path, mode="create")
                else:  # no conditional create known: check first
                    if fs.exists(h.final_path):
                        raise CommitConflict(h.final_path)
                    fs.put_file(h.spool_path, h.final_path)
            except FileExistsError:
                raise CommitConflict(h.final_path) from None
            os.unlink(h.spool_path)
            return
        if fs.exists(h.final_path):
            raise CommitConflict(h.final_path)
        fs.mv(h.tmp_path, h.final_path)
        # check: WebHDFS's RENAME answers {"boolean": false} when the target exists,
        # and fsspec does not look at the answer
        try:
            fs.invalidate_cache()
        except Exception:
            pass
        if fs.exists(h.tmp_path):
            if fs.exists(h.final_path):
                raise CommitConflict(h.final_path)
            raise OSError(f"rename of {h.tmp_path} to {h.final_path} did not happen")
        if not fs.exists(h.final_path):
            raise OSError(f"rename of {h.tmp_path} to {h.final_path}: the target is missing")

    def discard(self, h: Handle) -> None:
        try:
            h.raw.close()
        except Exception:
            pass
        if isinstance(h, _SpoolHandle):
            try:
                os.unlink(h.spool_path)
            except FileNotFoundError:
                pass
            return
        try:
            self.fs.rm(h.tmp_path)
        except FileNotFoundError:
            pass

    def glob(self, pattern: str) -> list[str]:
        try:
            self.fs.invalidate_cache()
        except Exception:
            pass
        return list(self.fs.glob(self.path(pattern)))

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self.path(path)))

    def remove(self, path: str) -> None:
        try:
            self.fs.rm(self.path(path))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


def make_target(url: str, storage_options: dict[str, Any],
                spool_dir: str | None = None, owner: str = "sink") -> Target:
    """The target for *url*; *owner* (the sink's name) names its spool directory."""
    proto, _ = split_url(url)
    if proto in ("file", "local") and not storage_options:
        return LocalTarget()
    return FsspecTarget(proto, storage_options, spool_dir, owner)

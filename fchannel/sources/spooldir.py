"""``spooldir``: reads complete files dropped into a directory, line by line.

A file must be complete and unchanged once it is in the directory (write it
elsewhere and move it in).  Each line becomes an event; when a file is fully
committed to the channels it is renamed to ``<name><fileSuffix>`` or, with
``deletePolicy = immediate``, deleted.

Progress is tracked so that a restart, even after ``kill -9``, loses no line
and repeats at most the last uncommitted batch: the byte offset reached in
the current file is written to ``<trackerDir>/.flumespool-main.meta``
(atomically: write, fsync, rename) right after each batch commits.

Properties (Flume's): ``spoolDir`` (required), ``fileSuffix`` (.COMPLETED),
``deletePolicy`` (never | immediate), ``fileHeader`` (false),
``fileHeaderKey`` (file), ``basenameHeader`` (false), ``basenameHeaderKey``
(basename), ``includePattern`` (``^.*$``), ``ignorePattern`` (``^$``),
``trackerDir`` (.flumespool, relative to spoolDir), ``consumeOrder`` (oldest
| youngest | random), ``recursiveDirectorySearch`` (false), ``pollDelay``
(500 ms), ``batchSize`` (100), ``inputCharset`` (UTF-8),
``decodeErrorPolicy`` (FAIL | REPLACE | IGNORE), ``deserializer`` (LINE),
``deserializer.maxLineLength`` (2048 characters; longer lines are cut),
``deserializer.outputCharset`` (UTF-8).
"""
from __future__ import annotations

import codecs
import json
import os
import random
from typing import IO

from fchannel.agent.component import PollableSource, Status
from fchannel.agent.properties import Context
from fchannel.event import Event

META_NAME = ".flumespool-main.meta"


def atomic_write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class SpoolDirectorySource(PollableSource):

    def configure(self, ctx: Context) -> None:
        self.spool_dir = ctx.string("spoolDir", required=True)
        self.suffix = ctx.string("fileSuffix", ".COMPLETED") or ".COMPLETED"
        self.delete = (ctx.string("deletePolicy", "never", choices=("never", "immediate"))
                       or "never").lower() == "immediate"
        self.file_header = ctx.boolean("fileHeader", False)
        self.file_header_key = ctx.string("fileHeaderKey", "file")
        self.basename_header = ctx.boolean("basenameHeader", False)
        self.basename_header_key = ctx.string("basenameHeaderKey", "basename")
        self.include = ctx.regex("includePattern", "^.*$")
        self.ignore = ctx.regex("ignorePattern", "^$")
        self.tracker_dir_name = ctx.string("trackerDir", ".flumespool") or ".flumespool"
        self.order = (ctx.string("consumeOrder", "oldest",
                                 choices=("oldest", "youngest", "random")) or "oldest").lower()
        self.recursive = ctx.boolean("recursiveDirectorySearch", False)
        poll = ctx.integer("pollDelay", 500, minimum=1) / 1000.0
        self.backoff_increment = poll
        self.max_backoff = max(poll, (ctx.integer("maxBackoff", 4000, minimum=1)) / 1000.0)
        self.configure_backoff(ctx)
        self.batch_size = ctx.integer("batchSize", 100, minimum=1)
        charset = ctx.string("inputCharset", "UTF-8") or "UTF-8"
        out_charset = ctx.string("deserializer.outputCharset", "UTF-8") or "UTF-8"
        for key, cs in (("inputCharset", charset), ("deserializer.outputCharset", out_charset)):
            try:
                codecs.lookup(cs)
            except LookupError:
                ctx.problem(key, "unknown character set")
        self.charset, self.out_charset = charset, out_charset
        policy = (ctx.string("decodeErrorPolicy", "FAIL",
                             choices=("FAIL", "REPLACE", "IGNORE")) or "FAIL").upper()
        self.errors = {"FAIL": "strict", "REPLACE": "replace", "IGNORE": "ignore"}[policy]
        deser = ctx.string("deserializer", "LINE") or "LINE"
        if deser.strip().upper() not in ("LINE", "ORG.APACHE.FLUME.SERIALIZATION.LINEDESERIALIZER"
                                         "$BUILDER"):
            ctx.problem("deserializer", "unsupported deserializer; supported: LINE")
        self.max_line = ctx.integer("deserializer.maxLineLength", 2048, minimum=1)
        tracking = ctx.string("trackingPolicy", "rename", choices=("rename", "tracker_dir"))
        if tracking and tracking.lower() == "tracker_dir":
            ctx.problem("trackingPolicy", "only 'rename' is supported")
        self._file: IO[bytes] | None = None
        self._path: str | None = None
        self._pending: list[Event] = []
        self._pending_end = 0
        self._offset = 0
        self._failed: set[str] = set()
        self._rng = random.Random()

    # ---- files --------------------------------------------------------------
    @property
    def tracker_dir(self) -> str:
        assert self.spool_dir is not None
        return os.path.join(self.spool_dir, self.tracker_dir_name)

    def start(self) -> None:
        assert self.spool_dir is not None
        if not os.path.isdir(self.spool_dir):
            raise OSError(f"spoolDir {self.spool_dir!r} is not a directory")
        os.makedirs(self.tracker_dir, exist_ok=True)
        self._resume()

    def _eligible(self, name: str) -> bool:
        if name.startswith(".") or name.endswith(self.suffix):
            return False
        assert self.include is not None and self.ignore is not None
        return bool(self.include.search(name)) and not (
            self.ignore.pattern != "^$" and self.ignore.search(name))

    def _candidates(self) -> list[str]:
        assert self.spool_dir is not None
        out: list[str] = []
        stack = [self.spool_dir]
        while stack:
            d = stack.pop()
            try:
                entries = list(os.scandir(d))
            except OSError as exc:
                self.log.warning("cannot list %s: %s", d, exc)
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=False):
                    if self.recursive:
                        stack.append(e.path)
                elif e.is_file() and self._eligible(e.name) and e.path not in self._failed:
                    out.append(e.path)
        return out

    def _pick(self) -> str | None:
        files = self._candidates()
        if not files:
            return None
        if self.order == "random":
            return self._rng.choice(files)

        def key(p: str) -> tuple[float, str]:
            try:
                return (os.stat(p).st_mtime, p)
            except OSError:
                return (float("inf"), p)
        files.sort(key=key, reverse=self.order == "youngest")
        return files[0]

    def _resume(self) -> None:
        meta = os.path.join(self.tracker_dir, META_NAME)
        try:
            with open(meta, "rb") as f:
                state = json.loads(f.read())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.log.error("cannot read progress file %s (%s); starting files from the top",
                           meta, exc)
            return
        path, offset, ino = state.get("file"), state.get("offset", 0), state.get("inode")
        try:
            st = os.stat(path)
        except (OSError, TypeError):
            self.log.info("progress file names %s, which is gone (completed); ignoring", path)
            return
        if ino is not None and st.st_ino != ino:
            self.log.warning("%s was replaced since the last run; reading it from the top", path)
            offset = 0
        self._open(path, int(offset))
        self.log.info("resuming %s at byte %d", path, offset)

    def _open(self, path: str, offset: int) -> None:
        f = open(path, "rb")  # noqa: SIM115 - kept open while the file is read
        f.seek(offset)
        self._file, self._path, self._offset = f, path, offset
        self._seen = self._stamp()
        self._warned_change = False

    def _stamp(self) -> tuple[int, int]:
        assert self._file is not None
        st = os.fstat(self._file.fileno())
        return (st.st_size, st.st_mtime_ns)

    def _unchanged(self) -> bool:
        """At the end of the file: has it stayed as it was since it was opened
        (or last found changed)?  A file still being written is not completed."""
        now = self._stamp()
        if now == self._seen:
            return True
        if not self._warned_change:
            self.log.error("%s changed after it was picked up: files must be complete "
                           "before they are moved into the spool directory; it is read "
                           "on and completed once it stops changing", self._path)
            self._warned_change = True
        self._seen = now
        return False

    def _save_progress(self) -> None:
        assert self._path is not None
        st = os.fstat(self._file.fileno()) if self._file is not None else None
        state = {"file": self._path, "offset": self._offset,
                 "inode": st.st_ino if st else None}
        atomic_write(os.path.join(self.tracker_dir, META_NAME), json.dumps(state).encode())

    def _complete(self) -> None:
        path = self._path
        assert path is not None and self._file is not None
        self._file.close()
        self._file = None
        if self.delete:
            os.remove(path)
            self.log.info("finished %s; deleted it", path)
        else:
            dest = path + self.suffix
            if os.path.exists(dest):
                self.log.error("cannot rename %s: %s exists already; the file is left as it "
                               "is and will not be read again in this run", path, dest)
                self._failed.add(path)
            else:
                os.rename(path, dest)
                self.log.info("finished %s; renamed to %s", path, dest)
        try:
            os.remove(os.path.join(self.tracker_dir, META_NAME))
        except FileNotFoundError:
            pass
        self._path = None

    # ---- reading ------------------------------------------------------------
    def _read_batch(self) -> tuple[list[Event], int]:
        f = self._file
        assert f is not None
        events: list[Event] = []
        # a character is at most 4 bytes in the charsets people use; cut by characters
        limit = self.max_line * 4 + 2
        headers: dict[str, str] = {}
        if self.file_header:
            headers[self.file_header_key or "file"] = self._path or ""
        if self.basename_header:
            headers[self.basename_header_key or "basename"] = os.path.basename(self._path or "")
        pos = f.tell()
        while len(events) < self.batch_size:
            raw = f.readline(limit)
            if not raw:
                break
            if not raw.endswith(b"\n") and len(raw) == limit:
                # an overlong line: skip the rest of it
                while True:
                    more = f.readline(65536)
                    if not more or more.endswith(b"\n"):
                        break
            pos = f.tell()
            line = raw.rstrip(b"\n")
            if line.endswith(b"\r"):
                line = line[:-1]
            text = line.decode(self.charset, self.errors)
            if len(text) > self.max_line:
                self.log.warning("line longer than maxLineLength=%d in %s; cut",
                                 self.max_line, self._path)
                text = text[:self.max_line]
            events.append(Event(text.encode(self.out_charset), dict(headers)))
        return events, pos

    def process(self) -> Status:
        assert self.channel_processor is not None
        if not self._pending:
            if self._file is None:
                path = self._pick()
                if path is None:
                    return Status.BACKOFF
                try:
                    self._open(path, 0)
                except OSError as exc:
                    self.log.error("cannot open %s: %s", path, exc)
                    self._failed.add(path)
                    return Status.BACKOFF
                self.log.info("reading %s", path)
            try:
                events, end = self._read_batch()
            except UnicodeDecodeError as exc:
                self.counter.add("EventReadFail")
                self.log.error("%s is not %s (%s); set decodeErrorPolicy = REPLACE or "
                               "IGNORE to read it anyway; skipping the file",
                               self._path, self.charset, exc)
                assert self._file is not None and self._path is not None
                self._failed.add(self._path)
                self._file.close()
                self._file = None
                self._path = None
                return Status.BACKOFF
            if not events:
                if not self._unchanged():
                    return Status.BACKOFF
                self._complete()
                return Status.READY
            self._pending, self._pending_end = events, end
            self.counter.add("EventReceivedCount", len(events))
            self.counter.add("AppendBatchReceivedCount")
        if not self.offer(self._pending):
            return Status.BACKOFF
        self._offset = self._pending_end
        self._pending = []
        self._save_progress()
        return Status.READY

    def stop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

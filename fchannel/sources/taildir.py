"""``TAILDIR``: follows files matched by patterns, one event per complete line.

File groups: ``filegroups = f1 f2`` and ``filegroups.f1 = /var/log/app/.*\\.log``
(the directory part is literal, the file name part a regular expression).
Files are known by their inode, so a rotated file (renamed, even to a name
the pattern does not match) is read to its end before it is dropped, and the
new file at the old name is read from its start: rotation loses nothing.
A line is sent only once its newline is written.

Positions are kept in ``positionFile`` (Flume's JSON format:
``[{"inode": 123, "pos": 456, "file": "/var/log/app/a.log"}]``), written
every ``writePosInterval`` ms and on stop, so a clean restart neither loses
nor repeats a line; after ``kill -9`` the lines committed since the last
position write are read again (at least once, never lost).

Properties (Flume's): ``filegroups`` (required), ``filegroups.<g>``,
``headers.<g>.<key> = value``, ``positionFile``
(``~/.flume/taildir_position.json``), ``batchSize`` (100), ``maxBatchCount``
(batches from one file before moving to the next), ``skipToEnd`` (false),
``idleTimeout`` (120000 ms: close idle files), ``writePosInterval`` (3000 ms),
``fileHeader`` (false), ``fileHeaderKey`` (file), ``byteOffsetHeader``
(false: header ``byteoffset``), ``backoffSleepIncrement`` (ms),
``maxBackoffSleep`` (ms), ``cachePatternMatching`` (accepted).
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import IO

from fchannel.agent.component import PollableSource, Status
from fchannel.agent.properties import Context, java_regex
from fchannel.event import Event
from fchannel.sources.spooldir import atomic_write


@dataclass
class TailFile:
    inode: int
    path: str
    pos: int
    group: str
    fh: IO[bytes] | None = None
    last_read: float = field(default_factory=time.monotonic)
    gone: bool = False   # no longer matched at its path: read to the end, then drop

    def open(self) -> IO[bytes]:
        if self.fh is None:
            self.fh = open(self.path, "rb")  # noqa: SIM115 - kept open while tailed
            if os.fstat(self.fh.fileno()).st_ino != self.inode:
                self.fh.close()
                self.fh = None
                raise FileNotFoundError(f"{self.path} is another file now")
        return self.fh

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class TaildirSource(PollableSource):

    def configure(self, ctx: Context) -> None:
        groups = ctx.names("filegroups", required=True)
        self.groups: dict[str, tuple[str, re.Pattern[str]]] = {}
        gctx = ctx.sub("filegroups.")
        for g in groups:
            pat = gctx.string(g, required=True)
            if not pat:
                continue
            directory, _, name_re = pat.rpartition("/")
            if not directory:
                gctx.problem(g, "must be an absolute or relative path: <dir>/<file regex>")
                continue
            try:
                self.groups[g] = (directory, re.compile(java_regex(name_re)))
            except re.error as exc:
                gctx.problem(g, f"the file name part is not a valid regular expression ({exc})")
        hctx = ctx.sub("headers.")
        self.headers: dict[str, dict[str, str]] = {g: {} for g in groups}
        for k in hctx:
            g, _, key = k.partition(".")
            if g not in self.headers or not key:
                hctx.problem(k, "must be headers.<filegroup>.<header> for a listed file group")
                continue
            self.headers[g][key] = hctx.get(k)
        self.position_file = os.path.expanduser(
            ctx.string("positionFile", "~/.flume/taildir_position.json") or "")
        self.batch_size = ctx.integer("batchSize", 100, minimum=1)
        self.max_batch_count = ctx.integer("maxBatchCount", 2**62, minimum=1)
        self.skip_to_end = ctx.boolean("skipToEnd", False)
        self.idle_timeout = ctx.integer("idleTimeout", 120_000, minimum=0) / 1000.0
        self.write_pos_interval = ctx.integer("writePosInterval", 3000, minimum=0) / 1000.0
        self.file_header = ctx.boolean("fileHeader", False)
        self.file_header_key = ctx.string("fileHeaderKey", "file") or "file"
        self.offset_header = ctx.boolean("byteOffsetHeader", False)
        ctx.boolean("cachePatternMatching", True)
        mx = ctx.integer("maxBackOffSleep", None, minimum=1)  # Flume's spelling
        self.configure_backoff(ctx)
        if mx is not None:
            self.max_backoff = mx / 1000.0
        self.files: dict[int, TailFile] = {}
        self._last_pos_write = 0.0
        self._pending: tuple[TailFile, list[Event], int] | None = None
        self._started = False

    # ---- discovery ------------------------------------------------------------
    def _matched(self) -> dict[int, tuple[str, str]]:
        """inode -> (path, group) of every file the patterns match now."""
        out: dict[int, tuple[str, str]] = {}
        for g, (directory, pat) in self.groups.items():
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for e in entries:
                try:
                    if pat.fullmatch(e.name) and e.is_file():
                        out.setdefault(e.inode(), (e.path, g))
                except OSError:
                    continue
        return out

    def _find_inode(self, inode: int, near: str) -> str | None:
        """A file with *inode* in the directory of *near* (a rotated file)."""
        d = os.path.dirname(near) or "."
        try:
            for e in os.scandir(d):
                if e.inode() == inode and e.is_file():
                    return e.path
        except OSError:
            return None
        return None

    def start(self) -> None:
        self._stopping.clear()
        known: dict[int, tuple[str, int]] = {}
        try:
            with open(self.position_file, "rb") as f:
                for entry in json.loads(f.read() or b"[]"):
                    known[int(entry["inode"])] = (str(entry["file"]), int(entry["pos"]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.log.error("cannot read position file %s (%s); starting without positions",
                           self.position_file, exc)
        matched = self._matched()
        for inode, (path, g) in matched.items():
            if inode in known:
                pos = known[inode][1]
            else:
                pos = os.path.getsize(path) if self.skip_to_end else 0
            self.files[inode] = TailFile(inode, path, pos, g)
        for inode, (old_path, pos) in known.items():
            if inode in matched:
                continue
            # rotated while we were down: finish it if it is still around
            found = self._find_inode(inode, old_path)
            if found is not None:
                group = next((g for g, (d, _) in self.groups.items()
                              if os.path.samefile(d, os.path.dirname(found) or ".")), None)
                if group is not None:
                    self.log.info("finishing rotated file %s (was %s) from byte %d",
                                  found, old_path, pos)
                    self.files[inode] = TailFile(inode, found, pos, group, gone=True)
        self._started = True
        self.log.info("tailing %d file(s)", len(self.files))

    def _refresh(self) -> None:
        matched = self._matched()
        changed = False
        for inode, (path, g) in matched.items():
            tf = self.files.get(inode)
            if tf is None:
                self.files[inode] = TailFile(inode, path, 0, g)
                self.log.info("new file %s", path)
                changed = True
            elif tf.path != path:
                tf.path = path
        for inode, tf in self.files.items():
            if inode not in matched and not tf.gone:
                tf.gone = True  # rotated away or deleted: finish what its handle still reads
        if changed:
            # a new file is recorded at once: if it is rotated away to a name the
            # pattern does not match while the agent is down, the restart still
            # finds it by its inode
            self.write_positions()
            self._last_pos_write = time.monotonic()

    # ---- reading --------------------------------------------------------------
    def _read(self, tf: TailFile) -> tuple[list[Event], int]:
        fh = self._open(tf)
        fh.seek(tf.pos)
        events: list[Event] = []
        pos = tf.pos
        base = dict(self.headers.get(tf.group, {}))
        if self.file_header:
            base[self.file_header_key] = tf.path
        while len(events) < self.batch_size:
            raw = fh.readline()
            if not raw or not raw.endswith(b"\n"):
                break  # no complete line yet
            headers = dict(base)
            if self.offset_header:
                headers["byteoffset"] = str(pos)
            pos += len(raw)
            line = raw[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
            events.append(Event(line, headers))
        return events, pos

    def _commit(self, tf: TailFile, events: list[Event], end: int) -> bool:
        if not self.offer(events):
            self._pending = (tf, events, end)
            return False
        tf.pos = end
        tf.last_read = time.monotonic()
        return True

    def process(self) -> Status:
        if self._pending is not None:
            tf, events, end = self._pending
            self._pending = None
            if not self._commit(tf, events, end):
                return Status.BACKOFF
        self._refresh()
        did = False
        for tf in sorted(self.files.values(), key=self._mtime):
            for _ in range(self.max_batch_count):
                try:
                    size = os.fstat(self._open(tf).fileno()).st_size
                except OSError as exc:
                    self.log.warning("cannot read %s: %s", tf.path, exc)
                    tf.gone = True
                    break
                if size < tf.pos:
                    self.log.warning("%s was truncated (size %d < position %d); reading it "
                                     "from the start", tf.path, size, tf.pos)
                    tf.pos = 0
                if size == tf.pos:
                    break
                events, end = self._read(tf)
                if not events:
                    break
                self.counter.add("EventReceivedCount", len(events))
                self.counter.add("AppendBatchReceivedCount")
                if not self._commit(tf, events, end):
                    self._write_positions_if_due()
                    return Status.BACKOFF
                did = True
                self._write_positions_if_due()
                if len(events) < self.batch_size:
                    break
        self._drop_finished()
        self._write_positions_if_due()
        return Status.READY if did else Status.BACKOFF

    def _open(self, tf: TailFile) -> IO[bytes]:
        try:
            return tf.open()
        except OSError:
            # renamed (rotated) while its handle was closed: look for it by inode
            path = self._find_inode(tf.inode, tf.path)
            if path is None:
                raise
            self.log.info("%s is now %s", tf.path, path)
            tf.path = path
            return tf.open()

    def _mtime(self, tf: TailFile) -> float:
        try:
            return os.fstat(tf.fh.fileno()).st_mtime if tf.fh else os.stat(tf.path).st_mtime
        except OSError:
            return 0.0

    def _drop_finished(self) -> None:
        now = time.monotonic()
        for inode, tf in list(self.files.items()):
            if tf.gone:
                try:
                    at_end = tf.fh is None or os.fstat(tf.fh.fileno()).st_size <= tf.pos
                except OSError:
                    at_end = True
                if at_end:
                    self.log.info("done with %s (rotated away or deleted)", tf.path)
                    tf.close()
                    del self.files[inode]
            elif tf.fh is not None and self.idle_timeout and now - tf.last_read > \
                    self.idle_timeout:
                tf.close()

    def _write_positions_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_pos_write >= self.write_pos_interval:
            self.write_positions()
            self._last_pos_write = now

    def write_positions(self) -> None:
        doc = [{"inode": tf.inode, "pos": tf.pos, "file": tf.path}
               for tf in self.files.values()]
        d = os.path.dirname(self.position_file)
        if d:
            os.makedirs(d, exist_ok=True)
        atomic_write(self.position_file, json.dumps(doc).encode())

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            self.write_positions()
        except OSError as exc:
            self.log.error("cannot write position file %s: %s", self.position_file, exc)
        for tf in self.files.values():
            tf.close()

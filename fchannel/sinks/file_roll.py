"""``file_roll``: writes events to files in a local directory, rolling them.

Properties (Flume's names):

- ``sink.directory`` (required; created if missing)
- ``sink.rollInterval`` (30 s; 0 never rolls): a file is closed once it is
  this old, and the next event opens a new one (no empty files are made)
- ``sink.serializer``: ``TEXT`` (the body, default) or ``JSON`` (one
  ``{"headers": {...}, "body": "..."}`` object per line; a body that is not
  UTF-8 is written as ``"body_base64"``)
- ``sink.serializer.appendNewline`` (true, TEXT only)
- ``sink.batchSize`` or ``batchSize`` (100)
- ``sink.pathManager`` ``DEFAULT`` (``<prefix><start millis>-<n>[.ext]``) or
  ``ROLLTIME`` (``<prefix><yyyyMMddHHmmss>-<n>[.ext]``), with
  ``sink.pathManager.prefix`` and ``sink.pathManager.extension``
- ``sink.fsync`` (false; fchannel's addition): fsync every batch before
  committing the take, so a machine crash cannot lose a committed batch

The take is committed only after the batch is written and flushed.
"""
from __future__ import annotations

import base64
import json
import os
import time
from typing import IO, Any

from fchannel.agent.component import BatchSink, Status
from fchannel.agent.properties import Context


class RollingFileSink(BatchSink):

    def configure(self, ctx: Context) -> None:
        self.directory = ctx.string("sink.directory", required=True)
        self.roll_interval = ctx.number("sink.rollInterval", 30.0, minimum=0)
        ser = (ctx.string("sink.serializer", "TEXT") or "TEXT").strip()
        if ser.upper() in ("TEXT", "JSON"):
            self.serializer = ser.upper()
        else:
            ctx.problem("sink.serializer", "unsupported serializer; supported: TEXT, JSON")
            self.serializer = "TEXT"
        self.newline = ctx.boolean("sink.serializer.appendNewline", True)
        bs = ctx.integer("sink.batchSize", None, minimum=1)
        bs2 = ctx.integer("batchSize", None, minimum=1)
        self.batch_size = bs or bs2 or 100
        pm = (ctx.string("sink.pathManager", "DEFAULT") or "DEFAULT").strip().upper()
        if pm not in ("DEFAULT", "ROLLTIME"):
            ctx.problem("sink.pathManager", "unsupported path manager; supported: "
                                            "DEFAULT, ROLLTIME")
        self.path_manager = pm
        self.prefix = ctx.string("sink.pathManager.prefix", "") or ""
        self.extension = ctx.string("sink.pathManager.extension", "") or ""
        self.fsync = ctx.boolean("sink.fsync", False)
        self.configure_backoff(ctx)
        self._series = int(time.time() * 1000)
        self._index = 0
        self._file: IO[bytes] | None = None
        self._opened_at = 0.0
        self.current_path: str | None = None

    def _next_path(self) -> str:
        self._index += 1
        if self.path_manager == "ROLLTIME":
            stamp = time.strftime("%Y%m%d%H%M%S")
        else:
            stamp = str(self._series)
        name = f"{self.prefix}{stamp}-{self._index}"
        if self.extension:
            name += "." + self.extension
        assert self.directory is not None
        return os.path.join(self.directory, name)

    def _roll_if_due(self) -> None:
        if self._file is not None and self.roll_interval and \
                time.monotonic() - self._opened_at >= self.roll_interval:
            self._close_file()

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            finally:
                f.close()
            self.counter.add("ConnectionClosedCount")
            self.log.info("closed %s", self.current_path)

    def _open_file(self) -> IO[bytes]:
        if self._file is None:
            assert self.directory is not None
            try:
                os.makedirs(self.directory, exist_ok=True)
                path = self._next_path()
                while os.path.exists(path):  # a restart within the same millisecond
                    path = self._next_path()
                self._file = open(path, "ab")  # noqa: SIM115 - kept open across batches
            except OSError:
                self.counter.add("ConnectionFailedCount")
                raise
            self._opened_at = time.monotonic()
            self.current_path = path
            self.counter.add("ConnectionCreatedCount")
            self.log.info("writing %s", path)
        return self._file

    def process(self) -> Status:
        self._roll_if_due()
        return super().process()

    def _encode(self, e: Any) -> bytes:
        if self.serializer == "JSON":
            obj: dict[str, Any] = {"headers": dict(e.headers)}
            try:
                obj["body"] = e.body.decode("utf-8")
            except UnicodeDecodeError:
                obj["body_base64"] = base64.b64encode(e.body).decode("ascii")
            return json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"
        return e.body + b"\n" if self.newline else e.body

    def deliver(self, events: list[Any]) -> None:
        f = self._open_file()
        data = b"".join(self._encode(e) for e in events)
        try:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        except OSError:
            # a half-written batch: start a fresh file for the retry
            try:
                self._close_file()
            except OSError:
                pass
            raise

    def stop(self) -> None:
        self._close_file()

"""``hdfs``: rolling files in HDFS, S3 or a local directory, through fsspec,
at least once as Flume's HDFS sink or exactly once for Kafka events.

Properties (Flume's names; times in seconds, sizes in bytes):

- ``hdfs.path`` (required): a directory URL with escapes (see
  :mod:`fchannel.sinks._pathescape`): ``file:///data/%Y/%m/%d``,
  ``hdfs://nn:8020/logs/%{topic}``, ``webhdfs://...``, ``s3://bucket/%Y%m%d``
- ``hdfs.filePrefix`` (``FlumeData``; escapes allowed), ``hdfs.fileSuffix`` ('')
- ``hdfs.inUsePrefix`` (''), ``hdfs.inUseSuffix`` (``.tmp``;
  ``hdfs.emptyInUseSuffix = true`` for none): the name of a file while it is written
- ``hdfs.rollInterval`` (30; 0 never), ``hdfs.rollSize`` (1024 bytes of event
  bodies; 0 never), ``hdfs.rollCount`` (10 events; 0 never), ``hdfs.idleTimeout``
  (0: never closes an idle file)
- ``hdfs.batchSize`` (100): events taken per transaction
- ``hdfs.fileType``: ``DataStream`` (default here; Flume's default
  ``SequenceFile`` is Hadoop's format and is not supported) or
  ``CompressedStream`` with ``hdfs.codeC`` (``gzip``, ``bzip2``, ``zstd``); a
  codec given without a file type means ``CompressedStream``, as in Flume
- ``hdfs.round`` (false), ``hdfs.roundValue`` (1), ``hdfs.roundUnit``
  (``second``, ``minute``, ``hour``, ``day``), ``hdfs.timeZone`` (local zone),
  ``hdfs.useLocalTimeStamp`` (false: the ``timestamp`` header, in ms)
- ``hdfs.maxOpenFiles`` (5000): beyond it the least recently written file is closed
- ``hdfs.closeTries`` (0: forever), ``hdfs.retryInterval`` (180): how often and
  how long to retry committing a closed file whose data is already durable
- ``serializer`` (``text``), ``serializer.*`` options: see
  :mod:`fchannel.sinks._serializers`
- fchannel's additions: ``hdfs.fs.<option>`` fsspec storage options (nested
  with dots: ``hdfs.fs.client_kwargs.region_name``; ``true``/``false`` and
  integers are converted), ``hdfs.spoolDir`` (object stores: where a file is
  spooled before its upload, in a directory of the sink's own,
  ``fchannel-hdfs-<sink name>``, emptied when the sink starts: see
  :mod:`fchannel.sinks._targets`), and the exactly-once mode below.

**Durability.**  The take is committed only once its events are durable in
the target.  Where a flushed batch is durable (local files: flush and fsync;
HDFS: hflush) and the serializer leaves a readable prefix, every batch is
made durable and its take committed, as Flume does; the file is renamed to
its final name when it rolls.  Elsewhere (object stores, WebHDFS, Parquet, and
the exactly-once mode) the sink keeps each batch's take transaction open
until every file holding its events has been committed under its final
name; a crash then returns the events to the channel.  Any failure rolls back
what is not yet durable and the sink backs off; nothing is lost.

**Exactly once** (``hdfs.exactlyOnce = true``): for events with Kafka's
topic, partition and offset headers (``hdfs.exactlyOnce.topicHeader``,
``.partitionHeader``, ``.offsetHeader``: ``topic``, ``partition``, ``offset``,
what fchannel's ``kafka`` source sets).  A file holds one partition's events
from one bucket, and its committed name says which:
``<filePrefix><topic>+<partition>+<first offset>+<last offset><fileSuffix>``
(offsets zero-padded to 20 digits).  Committing is atomic and never replaces
a file (a hard link, a checked rename, or a conditional create on S3).  On
start the sink lists the committed names under the path (escapes as
wildcards) and learns, per partition, the last offset stored; it then drops
every event at or below it, and any event below one it has already written.
A partition has one open file at a time and files commit in offset order, so
what is committed is always a prefix of each partition's stream: a replay
after a crash starts a new file exactly after it, and no offset is ever in
two files.  An event without the headers is an error (the batch is rolled back).
"""
from __future__ import annotations

import collections
import itertools
import re
import time
from typing import Any

from fchannel.agent.component import EventDeliveryError, Sink, Status
from fchannel.agent.properties import Context
from fchannel.errors import ChannelError, ConfigError
from fchannel.sinks import _serializers as ser
from fchannel.sinks._pathescape import ROUND_UNITS, PathTemplate, load_zone
from fchannel.sinks._targets import CommitConflict, Handle, Target, make_target, split_url

OFFSET_WIDTH = 20


def _option_value(v: str) -> Any:
    s = v.strip()
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    return s


def storage_options(ctx: Context, prefix: str = "hdfs.fs.") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ctx:
        if not k.startswith(prefix):
            continue
        ctx.used.add(k)
        parts = k[len(prefix):].split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = _option_value(ctx.get(k))
    return out


class _File:
    """One file being written (a bucket)."""

    __slots__ = ("key", "directory", "handle", "writer", "count", "body_bytes", "opened_at",
                 "last_write", "tp", "first", "last", "txs", "attempts", "next_try",
                 "tmp_name", "name_stub", "fid")

    def __init__(self, key: Any, directory: str, handle: Handle, writer: ser.Serializer,
                 tp: tuple[str, int] | None, tmp_name: str, name_stub: str, fid: int) -> None:
        self.fid = fid
        self.key = key
        self.directory = directory
        self.handle = handle
        self.writer = writer
        self.count = 0
        self.body_bytes = 0
        self.opened_at = self.last_write = time.monotonic()
        self.tp = tp
        self.first = -1
        self.last = -1
        self.txs: set[int] = set()
        self.attempts = 0
        self.next_try = 0.0
        self.tmp_name = tmp_name
        self.name_stub = name_stub


class _Held:
    """A take transaction kept open until its events' files are committed."""

    __slots__ = ("tx", "files", "n", "writing")

    def __init__(self, tx: Any, n: int) -> None:
        self.tx = tx
        self.files: set[int] = set()
        self.n = n
        self.writing = True


class HDFSEventSink(Sink):

    # ---- configuration -----------------------------------------------------------------
    def configure(self, ctx: Context) -> None:
        path = ctx.string("hdfs.path", required=True) or ""
        self.tz = None
        tzname = ctx.string("hdfs.timeZone", None)
        if tzname:
            try:
                self.tz = load_zone(tzname)
            except ConfigError as exc:
                ctx.problem("hdfs.timeZone", str(exc))
        round_ms = 0
        if ctx.boolean("hdfs.round", False):
            unit = (ctx.string("hdfs.roundUnit", "second") or "second").strip().lower()
            value = ctx.integer("hdfs.roundValue", 1, minimum=1)
            if unit not in ROUND_UNITS:
                ctx.problem("hdfs.roundUnit", "must be one of " + ", ".join(ROUND_UNITS))
                unit = "second"
            round_ms = ROUND_UNITS[unit] * value
            limit = {"second": 60, "minute": 60, "hour": 24, "day": 1}[unit]
            if value > limit or (limit % value if unit != "day" else 0):
                ctx.problem("hdfs.roundValue", f"must divide {limit} for unit {unit}")
        self.path_tpl: PathTemplate = self._template(ctx, "hdfs.path", path, round_ms) \
            or PathTemplate("")
        self.prefix_tpl = self._template(ctx, "hdfs.filePrefix",
                                         ctx.string("hdfs.filePrefix", None), round_ms)
        self.suffix = ctx.string("hdfs.fileSuffix", "") or ""
        self.in_use_prefix = ctx.string("hdfs.inUsePrefix", "") or ""
        self.in_use_suffix = ctx.string("hdfs.inUseSuffix", ".tmp") or ""
        if ctx.boolean("hdfs.emptyInUseSuffix", False):   # Flume 1.9
            self.in_use_suffix = ""
        self.roll_interval = ctx.number("hdfs.rollInterval", 30.0, minimum=0)
        self.roll_size = ctx.integer("hdfs.rollSize", 1024, minimum=0)
        self.roll_count = ctx.integer("hdfs.rollCount", 10, minimum=0)
        self.idle_timeout = ctx.number("hdfs.idleTimeout", 0.0, minimum=0)
        self.batch_size = ctx.integer("hdfs.batchSize", 100, minimum=1)
        self.max_open = ctx.integer("hdfs.maxOpenFiles", 5000, minimum=1)
        self.close_tries = ctx.integer("hdfs.closeTries", 0, minimum=0)
        self.retry_interval = ctx.number("hdfs.retryInterval", 180.0, minimum=0)
        self.use_local_ts = ctx.boolean("hdfs.useLocalTimeStamp", False)
        self.spool_dir = ctx.string("hdfs.spoolDir", None)
        self.options = storage_options(ctx)

        codec = "none"
        codec_raw = ctx.string("hdfs.codeC", None)
        if codec_raw is not None and codec_raw.strip():
            try:
                codec = ser.codec_name(codec_raw)
            except ConfigError as exc:
                ctx.problem("hdfs.codeC", str(exc))
        ft = (ctx.string("hdfs.fileType", None) or "").strip()
        if not ft:
            ft = "CompressedStream" if codec != "none" else "DataStream"
        if ft.lower() not in ("datastream", "compressedstream"):
            ctx.problem("hdfs.fileType", "supported: DataStream, CompressedStream "
                                         "(SequenceFile is Hadoop's format and is not)")
            ft = "DataStream"
        self.file_type = ft

        sname = (ctx.string("serializer", "text") or "text").strip()
        self.serializer_cls: type[ser.Serializer] = ser.TextSerializer
        try:
            self.serializer_cls = ser.serializer_class(sname)
        except ConfigError as exc:
            ctx.problem("serializer", str(exc))
        container = self.serializer_cls in (ser.AvroSerializer, ser.ParquetSerializer)
        inner = ctx.string("serializer.compressionCodec", None)
        if container:
            if inner:
                try:
                    codec = ser.codec_name(inner)
                except ConfigError as exc:
                    ctx.problem("serializer.compressionCodec", str(exc))
            if self.serializer_cls is ser.ParquetSerializer and codec == "bzip2":
                ctx.problem("hdfs.codeC", "Parquet has no bzip2; use gzip, zstd, snappy")
            else:
                try:
                    ser.check_container_codec(self.serializer_cls, codec)
                except ConfigError as exc:
                    ctx.problem("serializer.compressionCodec" if inner else "hdfs.codeC",
                                str(exc))
            self.stream_codec = "none"
        else:
            if ft.lower() == "datastream" and codec != "none":
                ctx.problem("hdfs.codeC", f"fileType {ft} does not compress; "
                                          "set hdfs.fileType = CompressedStream")
            if ft.lower() == "compressedstream":
                if codec == "none":
                    ctx.problem("hdfs.codeC", "CompressedStream needs a codec "
                                              "(gzip, bzip2, zstd)")
                elif codec not in ser.STREAM_CODECS:
                    ctx.problem("hdfs.codeC", f"codec {codec} cannot compress a stream; "
                                              f"supported: {', '.join(ser.STREAM_CODECS)}")
                else:
                    try:
                        ser.compressor(codec)
                    except ConfigError as exc:
                        ctx.problem("hdfs.codeC", str(exc))
            self.stream_codec = codec if ft.lower() == "compressedstream" else "none"
        self.codec = codec
        self.ser_options: dict[str, Any] = {
            "appendNewline": ctx.boolean("serializer.appendNewline", True),
            "codec": codec if container else self.stream_codec,
        }
        sync_iv = ctx.integer("serializer.syncIntervalBytes", None, minimum=1)
        if sync_iv:
            self.ser_options["syncIntervalBytes"] = sync_iv
        rg = ctx.integer("serializer.rowGroupSize", None, minimum=1)
        if rg:
            self.ser_options["rowGroupSize"] = rg
        if self.serializer_cls is ser.ParquetSerializer and codec == "none" and not inner \
                and codec_raw is None:
            self.ser_options["codec"] = "snappy"
        self.extension = self.serializer_cls.extension if container else \
            ser.CODEC_EXTENSIONS.get(self.stream_codec, "")

        self.exactly_once = ctx.boolean("hdfs.exactlyOnce", False)
        self.topic_header = ctx.string("hdfs.exactlyOnce.topicHeader", "topic") or "topic"
        self.partition_header = ctx.string("hdfs.exactlyOnce.partitionHeader",
                                           "partition") or "partition"
        self.offset_header = ctx.string("hdfs.exactlyOnce.offsetHeader", "offset") or "offset"
        if self.prefix_tpl is None:
            default_prefix = "" if self.exactly_once else "FlumeData"
            self.prefix_tpl = PathTemplate(default_prefix)
        self.configure_backoff(ctx)
        self._validate_url(ctx, path)
        self._reset_state()

    def _template(self, ctx: Context, key: str, value: str | None,
                  round_ms: int) -> PathTemplate | None:
        if value is None:
            return None
        try:
            return PathTemplate(value, time_zone=self.tz, round_ms=round_ms)
        except ConfigError as exc:
            ctx.problem(key, str(exc))
            return PathTemplate("")

    def _validate_url(self, ctx: Context, path: str) -> None:
        proto, _ = split_url(path)
        if "%" in proto:
            ctx.problem("hdfs.path", "the scheme cannot hold escapes")
        if proto not in ("file", "local"):
            try:
                import fsspec
                fsspec.get_filesystem_class(proto)
            except ImportError as exc:
                ctx.problem("hdfs.path", f"scheme {proto}:// needs a package: {exc}")
            except ValueError:
                ctx.problem("hdfs.path", f"no fsspec filesystem for {proto}://")

    def _reset_state(self) -> None:
        self.target: Target | None = None
        self._files: collections.OrderedDict[Any, _File] = collections.OrderedDict()
        self._pending: list[_File] = []          # closed, commit failed, data durable
        self._held: collections.OrderedDict[int, _Held] = collections.OrderedDict()
        self._held_events = 0
        self._tx_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._counter = int(time.time() * 1000)
        self._committed: dict[tuple[str, int], int] | None = None   # exactly once
        self._seen: dict[tuple[str, int], int] = {}
        self._tp_file: dict[tuple[str, int], _File] = {}
        self.committed_files: list[str] = []     # for tests and tools (bounded)

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.target = make_target(self.path_tpl.template, self.options, self.spool_dir,
                                  owner=self.name)
        self.held_mode = (self.exactly_once or not self.target.durable_sync
                          or not self.serializer_cls.flushable)
        cap = getattr(self.channel, "capacity", None)
        self.max_held = max(1, int(cap) // 2) if cap else 100_000
        self.log.info("writing to %s (%s, %s)", self.path_tpl.template,
                      "exactly once" if self.exactly_once else "at least once",
                      "takes held until commit" if self.held_mode else "durable per batch")

    def stop(self) -> None:
        try:
            self._commit_all("stop")
            self._retry_pending(force=True)
        except Exception as exc:
            self.log.error("could not commit open files at stop: %s", exc)
            if self.held_mode:
                self._abort()
        if self._held:
            self._abort()
        if self.target is not None:
            try:
                self.target.close()   # unlocks (and removes, if empty) its spool directory
            except Exception as exc:
                self.log.warning("closing %s: %s", self.path_tpl.template, exc)
            self.target = None

    # ---- the loop ----------------------------------------------------------------------
    def process(self) -> Status:
        if self.target is None:
            self.start()
        if self._pending and not self._retry_pending():
            return Status.BACKOFF
        try:
            self._roll_by_time()
            if self.exactly_once and self._committed is None:
                self._load_committed()
        except Exception as exc:
            self._fail(exc, 0)
        ch = self.channel
        want = self.batch_size
        cap = getattr(ch, "transaction_capacity", None)
        if cap and cap < want:
            want = cap
        tx = ch.transaction()
        tx.begin()
        try:
            events = tx.take_batch(want)
        except ChannelError:
            self.counter.add("ChannelReadFail")
            tx.rollback()
            tx.close()
            raise
        n = len(events)
        if n == 0:
            self.counter.add("BatchEmptyCount")
            tx.commit()
            tx.close()
            return Status.BACKOFF
        self.counter.add("EventDrainAttemptCount", n)
        held = _Held(tx, n)
        txid = next(self._tx_ids)
        if self.held_mode:
            self._held[txid] = held
            self._held_events += n
        try:
            touched = self._write(events, txid, held)
            if self.held_mode:
                for f in touched:
                    f.writer.flush()
                held.writing = False
                for f in [f for f in self._files.values() if self._full(f)]:
                    self._close_file(f)
                if self._held_events >= self.max_held:
                    self._commit_all("held events reached %d" % self.max_held)
                self._commit_ready()
            else:
                for f in touched:
                    f.writer.flush()
                    f.handle.sync()
        except Exception as exc:
            self._fail(exc, n, tx)
        if not self.held_mode:
            try:
                tx.commit()   # the batch is durable: a failure here only repeats it
            except Exception:
                if tx.state == "OPEN":
                    tx.rollback()
                tx.close()
                raise
            tx.close()
            self._count_done(n, want)
            for f in [f for f in self._files.values() if self._full(f)]:
                self._close_file(f)
        return Status.READY

    def _count_done(self, n: int, want: int) -> None:
        self.counter.add("BatchCompleteCount" if n == want else "BatchUnderflowCount")
        self.counter.add("EventDrainSuccessCount", n)

    def _fail(self, exc: Exception, n: int, tx: Any = None) -> None:
        self.counter.add("EventWriteFail")
        if self.held_mode:
            self._abort()   # the batch's take is held too
        else:
            if tx is not None:
                try:
                    tx.rollback()
                    tx.close()
                except Exception as exc2:
                    self.log.warning("rollback failed: %s", exc2)
            self._drop_files_after_error()
        raise EventDeliveryError(f"sink {self.name!r} failed to write {n} event(s): "
                                 f"{exc}") from exc

    # ---- writing -----------------------------------------------------------------------
    def _full(self, f: _File) -> bool:
        return bool((self.roll_count and f.count >= self.roll_count)
                    or (self.roll_size and f.body_bytes >= self.roll_size))

    def _write(self, events: list[Any], txid: int, held: _Held) -> list[_File]:
        path_tpl, prefix_tpl = self.path_tpl, self.prefix_tpl
        assert prefix_tpl is not None
        need_ts = path_tpl.needs_time or prefix_tpl.needs_time
        now_ms = int(time.time() * 1000)
        eo = self.exactly_once
        touched: dict[int, _File] = {}
        groups: list[tuple[_File, list[Any]]] = []
        cur: _File | None = None
        run: list[Any] = []

        def flush_run() -> None:
            if cur is not None and run:
                cur.writer.write(run)
                groups.append((cur, run))

        for e in events:
            h = e.headers
            tp: tuple[str, int] | None = None
            off = -1
            if eo:
                tp, off = self._kafka_position(e)
                if off <= self._seen.get(tp, -1):
                    continue  # stored already (or repeated): dropped
            ts: int | None = None
            if need_ts:
                if self.use_local_ts:
                    ts = now_ms
                else:
                    raw = h.get("timestamp")
                    if raw is None:
                        raise ValueError("event has no 'timestamp' header for the time "
                                         "escapes; set hdfs.useLocalTimeStamp = true or "
                                         "add the timestamp interceptor")
                    try:
                        ts = int(raw)
                    except ValueError:
                        raise ValueError(f"event header timestamp = {raw!r} is not "
                                         f"milliseconds since the epoch") from None
            directory = path_tpl.render(h, ts)
            prefix = prefix_tpl.render(h, ts)
            key: Any = (directory, prefix, tp) if eo else (directory, prefix)
            f = self._files.get(key)
            if f is not None and self._full(f):
                flush_run()
                run = []
                cur = None
                self._close_file(f)
                f = None
            if f is None:
                if eo:
                    assert tp is not None
                    other = self._tp_file.get(tp)
                    if other is not None:  # one open file per partition
                        flush_run()
                        run = []
                        cur = None
                        self._close_file(other)
                f = self._open_file(key, directory, prefix, tp, off)
            if f is not cur:
                flush_run()
                run = []
                cur = f
            run.append(e)
            f.count += 1
            f.body_bytes += len(e.body)
            if eo:
                assert tp is not None
                if f.first < 0:
                    f.first = off
                f.last = off
                self._seen[tp] = off
            if id(f) not in touched:
                touched[id(f)] = f
                f.last_write = time.monotonic()
                self._files.move_to_end(key)
                if self.held_mode:
                    f.txs.add(txid)
                    held.files.add(f.fid)
        flush_run()
        # those still open (a file closed on the way was flushed and committed)
        return [f for f in touched.values() if self._files.get(f.key) is f]

    def _kafka_position(self, e: Any) -> tuple[tuple[str, int], int]:
        h = e.headers
        try:
            topic = h[self.topic_header]
            part = int(h[self.partition_header])
            off = int(h[self.offset_header])
        except KeyError as exc:
            raise ValueError(f"exactly-once mode: event has no {exc.args[0]!r} header "
                             f"(headers: {sorted(h)})") from None
        except ValueError:
            raise ValueError(f"exactly-once mode: partition/offset headers are not integers: "
                             f"{h.get(self.partition_header)!r}, "
                             f"{h.get(self.offset_header)!r}") from None
        return (topic, part), off

    def _open_file(self, key: Any, directory: str, prefix: str,
                   tp: tuple[str, int] | None, first: int) -> _File:
        assert self.target is not None
        while len(self._files) >= self.max_open:
            _, lru = next(iter(self._files.items()))
            self._close_file(lru)
        if tp is not None:
            stub = f"{prefix}{tp[0]}+{tp[1]}+{first:0{OFFSET_WIDTH}d}"
            tmp = f"{self.in_use_prefix}{stub}{self.suffix}{self.extension}{self.in_use_suffix}"
        else:
            self._counter += 1
            stub = f"{prefix}.{self._counter}" if prefix else str(self._counter)
            tmp = f"{self.in_use_prefix}{stub}{self.suffix}{self.extension}{self.in_use_suffix}"
        try:
            handle = self.target.open(directory, tmp, f"{stub}{self.suffix}{self.extension}")
            writer = self.serializer_cls(handle.raw, self.ser_options)
        except Exception:
            self.counter.add("ConnectionFailedCount")
            raise
        f = _File(key, directory, handle, writer, tp, tmp, stub, next(self._file_ids))
        self._files[key] = f
        if tp is not None:
            self._tp_file[tp] = f
        self.counter.add("ConnectionCreatedCount")
        self.log.debug("writing %s", handle.tmp_path)
        return f

    # ---- closing and committing ----------------------------------------------------------
    def _final_name(self, f: _File) -> str:
        if f.tp is not None:
            return (f"{f.name_stub}+{f.last:0{OFFSET_WIDTH}d}{self.suffix}{self.extension}")
        return f"{f.name_stub}{self.suffix}{self.extension}"

    def _close_file(self, f: _File) -> None:
        """Close *f* and commit it under its final name.  In held mode a failure
        raises (the caller aborts); otherwise the data is durable and the commit is
        retried later (``closeTries``, ``retryInterval``)."""
        assert self.target is not None
        self._files.pop(f.key, None)
        if f.tp is not None and self._tp_file.get(f.tp) is f:
            del self._tp_file[f.tp]
        h = f.handle
        h.final_path = h.final_path.rsplit("/", 1)[0] + "/" + self._final_name(f) \
            if "/" in h.final_path else self._final_name(f)
        if self.held_mode:
            try:
                f.writer.close()
                self._commit_unique(f)
            except Exception:
                self._pending.append(f)  # so that _abort discards it
                raise
            self._file_committed(f)
            return
        try:
            f.writer.close()
            h.finish()
        except Exception as exc:
            # the bytes of earlier batches are durable under the in-use name
            self.log.error("closing %s failed: %s", h.tmp_path, exc)
            self.counter.add("ConnectionFailedCount")
            return
        self._try_commit(f)

    def _commit(self, f: _File) -> None:
        assert self.target is not None
        try:
            self.target.commit(f.handle)
        except CommitConflict:
            if f.tp is None:
                raise
            # the same topic, partition and offsets are committed already (a rival
            # sink, or a commit whose answer was lost): the data is there
            self.log.warning("%s exists already: keeping it, dropping this copy",
                             f.handle.final_path)
            self.target.discard(f.handle)
        self.counter.add("ConnectionClosedCount")
        self.committed_files.append(f.handle.final_path)
        if len(self.committed_files) > 10000:
            del self.committed_files[:5000]
        self.log.info("committed %s (%d events)", f.handle.final_path, f.count)

    def _commit_unique(self, f: _File) -> None:
        """Commit; at least once, a name found taken is replaced by the next one."""
        for _ in range(100):
            try:
                self._commit(f)
                return
            except CommitConflict:
                if f.tp is not None:
                    raise
                self._counter += 1
                old = f.handle.final_path
                d = old.rsplit("/", 1)
                base = f.name_stub.rsplit(".", 1)[0] if "." in f.name_stub else f.name_stub
                f.name_stub = f"{base}.{self._counter}"
                name = self._final_name(f)
                f.handle.final_path = d[0] + "/" + name if len(d) == 2 else name
                self.log.warning("%s exists: committing as %s", old, name)
        raise OSError(f"no free name for {f.handle.tmp_path}")

    def _try_commit(self, f: _File) -> bool:
        try:
            self._commit_unique(f)
            return True
        except Exception as exc:
            f.attempts += 1
            self.counter.add("ConnectionFailedCount")
            if self.close_tries and f.attempts >= self.close_tries:
                self.log.error("giving up committing %s after %d tries (%s); the data "
                               "stays in %s", f.handle.final_path, f.attempts, exc,
                               f.handle.tmp_path)
                return True
            self.log.warning("commit of %s failed (%s); retrying in %.0fs",
                             f.handle.final_path, exc, self.retry_interval)
            f.next_try = time.monotonic() + self.retry_interval
            if f not in self._pending:
                self._pending.append(f)
            return False

    def _retry_pending(self, force: bool = False) -> bool:
        """Retry due commits (at-least-once mode); True when none is left."""
        now = time.monotonic()
        for f in list(self._pending):
            if force or f.next_try <= now:
                self._pending.remove(f)
                self._try_commit(f)
        return not self._pending

    def _file_committed(self, f: _File) -> None:
        if f.tp is not None and self._committed is not None \
                and f.last > self._committed.get(f.tp, -1):
            self._committed[f.tp] = f.last
        for txid in f.txs:
            held = self._held.get(txid)
            if held is not None:
                held.files.discard(f.fid)
        self._commit_ready()

    def _commit_ready(self) -> None:
        for txid, held in list(self._held.items()):
            if held.files or held.writing:
                continue
            del self._held[txid]
            self._held_events -= held.n
            tx = held.tx
            try:
                tx.commit()
                tx.close()
            except Exception as exc:
                # the files are committed; the events may come again (exactly once: dropped)
                self.log.error("take commit failed after the files were committed: %s", exc)
                try:
                    tx.rollback()
                    tx.close()
                except Exception:
                    pass
                continue
            self._count_done(held.n, min(self.batch_size, held.n))

    def _commit_all(self, why: str) -> None:
        if self._files:
            self.log.debug("closing %d file(s): %s", len(self._files), why)
        for f in list(self._files.values()):
            self._close_file(f)

    def _roll_by_time(self) -> None:
        if not self._files:
            return
        now = time.monotonic()
        for f in list(self._files.values()):
            if (self.roll_interval and now - f.opened_at >= self.roll_interval) or \
                    (self.idle_timeout and now - f.last_write >= self.idle_timeout):
                self._close_file(f)

    # ---- failures ----------------------------------------------------------------------
    def _drop_files_after_error(self) -> None:
        """At least once, durable per batch: a failed batch may have left part of
        itself in the open files; close them (their earlier batches are durable
        and committed) and start new files for the retry."""
        for f in list(self._files.values()):
            self._files.pop(f.key, None)
            try:
                f.writer.close()
                f.handle.finish()
            except Exception as exc:
                self.log.warning("closing %s after an error: %s", f.handle.tmp_path, exc)
                try:
                    f.handle.raw.close()
                except Exception:
                    pass
                continue
            self._try_commit(f)

    def _abort(self) -> None:
        """Held mode: discard every uncommitted file, roll back every held take
        (last first, so the events return to the channel's head in order)."""
        assert self.target is not None
        for f in list(self._files.values()) + self._pending:
            try:
                f.writer.abandon()
            except Exception:
                pass
            try:
                self.target.discard(f.handle)
            except Exception as exc:
                self.log.warning("could not remove %s: %s", f.handle.tmp_path, exc)
        self._files.clear()
        self._pending = []
        self._tp_file.clear()
        for held in reversed(list(self._held.values())):
            try:
                held.tx.rollback()
                held.tx.close()
            except Exception as exc:
                self.log.warning("rollback failed: %s", exc)
        self._held.clear()
        self._held_events = 0
        self._seen = dict(self._committed or {})

    # ---- exactly once: what is stored ------------------------------------------------
    def _load_committed(self) -> None:
        """Learn the last stored offset of each partition from the committed names."""
        assert self.target is not None and self.prefix_tpl is not None
        pat = self.path_tpl.glob().rstrip("/") + "/*"
        name_re = re.compile(
            "^" + self.prefix_tpl.regex()
            + r"(?P<topic>[A-Za-z0-9._-]+)\+(?P<part>\d+)\+(?P<first>\d+)\+(?P<last>\d+)"
            + re.escape(self.suffix + self.extension) + "$")
        tmp_re = re.compile(
            "^" + re.escape(self.in_use_prefix) + self.prefix_tpl.regex()
            + r"[A-Za-z0-9._-]+\+\d+\+\d+" + re.escape(self.suffix + self.extension)
            + re.escape(self.in_use_suffix) + "$") if (
            self.in_use_prefix or self.in_use_suffix) else None
        committed: dict[tuple[str, int], int] = {}
        stale = []
        for p in self.target.glob(pat):
            name = p.rsplit("/", 1)[-1]
            m = name_re.match(name)
            if m:
                tp = (m.group("topic"), int(m.group("part")))
                last = int(m.group("last"))
                if last > committed.get(tp, -1):
                    committed[tp] = last
            elif tmp_re is not None and tmp_re.match(name):
                stale.append(p)
        for p in stale:  # in-use files of a run that crashed: their events come again
            self.log.info("removing %s left by an earlier run", p)
            self.target.remove(p)
        self._committed = committed
        self._seen = dict(committed)
        if committed:
            self.log.info("stored already: %s", ", ".join(
                f"{t}/{p} up to {o}" for (t, p), o in sorted(committed.items())))

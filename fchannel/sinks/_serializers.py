"""Event serializers and stream codecs for the ``hdfs`` sink.

A serializer turns events into the bytes of one file.  It writes to a raw
binary stream it does not own: ``write(events)`` adds events, ``flush()``
pushes everything so far to the raw stream *as a readable prefix of the file*
(a complete gzip member or zstd frame, a complete Avro block), and ``close()``
writes what ends the file (Parquet's footer).  ``flushable`` is False when no
prefix of the file is readable before ``close`` (Parquet): the sink then keeps
the takes of such a file open until the file is closed and committed.

Serializers (``serializer``, Flume's names where Flume has them):

- ``text`` (Flume's ``TEXT``, the default): the body, then ``\\n``
  (``serializer.appendNewline``, true)
- ``header_and_text``: ``{k=v, ...} body\\n`` as Flume writes it
- ``json``: one ``{"headers": {...}, "body": "..."}`` per line; a body that is
  not UTF-8 goes in ``"body_base64"`` (the ``file_roll`` sink's format)
- ``avro_event`` (also ``avro``): an Avro object container file of Flume's
  ``Event`` record ``{headers: map<string>, body: bytes}`` (fastavro); each
  flush ends a block; ``serializer.syncIntervalBytes`` (2 MB as in Flume)
- ``parquet``: columns ``headers`` (map<string, string>) and ``body`` (binary)
  (pyarrow); a row group per ``serializer.rowGroupSize`` events (65536) and at
  close

Compression: with ``hdfs.fileType = CompressedStream`` the text and JSON
serializers' output goes through ``hdfs.codeC`` (``gzip``, ``bzip2``, ``zstd``,
``none``), one gzip member / bzip2 stream / zstd frame per flush (what Hadoop's
codecs write on a ``sync`` too), so standard tools read every complete batch.
Avro and Parquet compress inside the container: ``hdfs.codeC`` (or
``serializer.compressionCodec``) names their codec.
"""
from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from typing import IO, Any

from fchannel.errors import ConfigError

# codec name (lower case, Flume's and Hadoop's spellings) -> canonical name
CODEC_ALIASES = {
    "none": "none", "null": "none", "": "none",
    "gzip": "gzip", "gz": "gzip", "gzipcodec": "gzip", "defaultcodec": "gzip",
    "deflate": "gzip",
    "bzip2": "bzip2", "bz2": "bzip2", "bzip2codec": "bzip2",
    "zstd": "zstd", "zstandard": "zstd", "zstandardcodec": "zstd", "zstdcodec": "zstd",
    "snappy": "snappy", "snappycodec": "snappy",
}
STREAM_CODECS = ("gzip", "bzip2", "zstd")
CODEC_EXTENSIONS = {"none": "", "gzip": ".gz", "bzip2": ".bz2", "zstd": ".zst"}


def codec_name(value: str) -> str:
    name = CODEC_ALIASES.get(value.strip().lower())
    if name is None:
        raise ConfigError(f"unknown codec {value!r}; supported: gzip, bzip2, zstd, snappy "
                          f"(Avro and Parquet only), none")
    return name


def compressor(codec: str) -> Any:
    """A function bytes -> one complete compressed member/frame."""
    if codec == "gzip":
        import zlib

        def gz(data: bytes) -> bytes:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip wrapper
            return c.compress(data) + c.flush()
        return gz
    if codec == "bzip2":
        import bz2
        return bz2.compress
    if codec == "zstd":
        try:
            import zstandard
        except ImportError:
            raise ConfigError("codec zstd needs the zstandard package: "
                              "pip install 'fchannel[formats]'") from None
        cctx = zstandard.ZstdCompressor(level=3)
        return cctx.compress
    raise ConfigError(f"codec {codec!r} cannot compress a stream; supported: "
                      f"{', '.join(STREAM_CODECS)}")


def _json_line(e: Any) -> bytes:
    obj: dict[str, Any] = {"headers": dict(e.headers)}
    try:
        obj["body"] = e.body.decode("utf-8")
    except UnicodeDecodeError:
        obj["body_base64"] = base64.b64encode(e.body).decode("ascii")
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class Serializer:
    """Base: buffers a batch, hands it to the raw stream on flush."""

    extension = ""
    flushable = True

    def __init__(self, raw: IO[bytes], options: dict[str, Any]) -> None:
        self.raw = raw
        self.options = options

    def write(self, events: Sequence[Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.flush()

    def abandon(self) -> None:
        """The file is being thrown away: release what close would, write nothing
        that matters."""


class _LineSerializer(Serializer):

    def __init__(self, raw: IO[bytes], options: dict[str, Any]) -> None:
        super().__init__(raw, options)
        codec = options.get("codec", "none")
        self._compress = compressor(codec) if codec != "none" else None
        self._buf: list[bytes] = []

    def encode(self, e: Any) -> bytes:
        raise NotImplementedError

    def write(self, events: Sequence[Any]) -> None:
        enc = self.encode
        self._buf.extend(enc(e) for e in events)

    def flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf = []
        if self._compress is not None:
            data = self._compress(data)
        self.raw.write(data)


class TextSerializer(_LineSerializer):
    def __init__(self, raw: IO[bytes], options: dict[str, Any]) -> None:
        super().__init__(raw, options)
        self._nl = b"\n" if options.get("appendNewline", True) else b""

    def encode(self, e: Any) -> bytes:
        return e.body + self._nl  # type: ignore[no-any-return]


class HeaderAndTextSerializer(TextSerializer):
    def encode(self, e: Any) -> bytes:
        head = "{" + ", ".join(f"{k}={v}" for k, v in e.headers.items()) + "} "
        return head.encode("utf-8") + e.body + self._nl  # type: ignore[no-any-return]


class JsonSerializer(_LineSerializer):
    def encode(self, e: Any) -> bytes:
        return _json_line(e)


AVRO_SCHEMA = {
    "type": "record", "name": "Event", "namespace": "org.apache.flume",
    "fields": [
        {"name": "headers", "type": {"type": "map", "values": "string"}},
        {"name": "body", "type": "bytes"},
    ],
}
_AVRO_CODECS = {"none": "null", "gzip": "deflate", "bzip2": "bzip2", "zstd": "zstandard",
                "snappy": "snappy"}


class AvroSerializer(Serializer):
    extension = ".avro"

    def __init__(self, raw: IO[bytes], options: dict[str, Any]) -> None:
        super().__init__(raw, options)
        from fastavro import parse_schema
        from fastavro.write import Writer
        codec = _AVRO_CODECS[options.get("codec", "none")]
        self._writer = Writer(raw, parse_schema(AVRO_SCHEMA), codec=codec,
                              sync_interval=int(options.get("syncIntervalBytes", 2048000)))

    def write(self, events: Sequence[Any]) -> None:
        w = self._writer.write
        for e in events:
            w({"headers": e.headers, "body": e.body})

    def flush(self) -> None:
        self._writer.flush()  # ends the block: a readable prefix


class ParquetSerializer(Serializer):
    extension = ".parquet"
    flushable = False

    def __init__(self, raw: IO[bytes], options: dict[str, Any]) -> None:
        super().__init__(raw, options)
        import pyarrow as pa
        import pyarrow.parquet as pq
        self._pa = pa
        self._schema = pa.schema([("headers", pa.map_(pa.string(), pa.string())),
                                  ("body", pa.binary())])
        codec = options.get("codec", "snappy")
        self._writer = pq.ParquetWriter(raw, self._schema,
                                        compression="none" if codec == "none" else codec)
        self._rows = int(options.get("rowGroupSize", 65536))
        self._headers: list[Any] = []
        self._bodies: list[bytes] = []

    def write(self, events: Sequence[Any]) -> None:
        for e in events:
            self._headers.append(list(e.headers.items()))
            self._bodies.append(e.body)
            if len(self._bodies) >= self._rows:
                self._row_group()

    def _row_group(self) -> None:
        if not self._bodies:
            return
        pa = self._pa
        table = pa.table([pa.array(self._headers, type=self._schema.field("headers").type),
                          pa.array(self._bodies, type=pa.binary())], schema=self._schema)
        self._headers, self._bodies = [], []
        self._writer.write_table(table)

    def flush(self) -> None:
        pass  # no readable prefix before the footer

    def close(self) -> None:
        self._row_group()
        self._writer.close()

    def abandon(self) -> None:
        self._headers, self._bodies = [], []
        try:
            self._writer.close()
        except Exception:
            pass


SERIALIZERS: dict[str, type[Serializer]] = {
    "text": TextSerializer,
    "header_and_text": HeaderAndTextSerializer,
    "json": JsonSerializer,
    "avro_event": AvroSerializer,
    "avro": AvroSerializer,
    "parquet": ParquetSerializer,
}
# Flume's class names for its serializers
SERIALIZER_ALIASES = {
    "org.apache.flume.serialization.bodytexteventserializer$builder": "text",
    "org.apache.flume.serialization.headerandbodytexteventserializer$builder":
        "header_and_text",
    "org.apache.flume.serialization.flumeeventavroeventserializer$builder": "avro_event",
}


def serializer_class(name: str) -> type[Serializer]:
    key = name.strip().lower()
    key = SERIALIZER_ALIASES.get(key, key)
    cls = SERIALIZERS.get(key)
    if cls is None:
        raise ConfigError(f"unknown serializer {name!r}; supported: "
                          + ", ".join(sorted(SERIALIZERS)))
    if cls is AvroSerializer:
        try:
            import fastavro  # noqa: F401
        except ImportError:
            raise ConfigError("serializer avro_event needs fastavro: "
                              "pip install 'fchannel[formats]'") from None
    if cls is ParquetSerializer:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("serializer parquet needs pyarrow: "
                              "pip install 'fchannel[formats]'") from None
    return cls


def check_container_codec(cls: type[Serializer], codec: str) -> None:
    """ConfigError if *cls* cannot write with *codec* here (a missing library)."""
    if cls is AvroSerializer:
        from fastavro import parse_schema
        from fastavro.write import Writer
        try:
            w = Writer(io.BytesIO(), parse_schema(AVRO_SCHEMA), codec=_AVRO_CODECS[codec])
            w.write({"headers": {}, "body": b"x"})
            w.flush()
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"Avro codec {codec}: {exc}") from None
    elif cls is ParquetSerializer:
        import pyarrow as pa
        if codec != "none" and not pa.Codec.is_available(codec):
            raise ConfigError(f"Parquet codec {codec} is not available in this pyarrow")


def read_back(data: bytes, serializer: str, codec: str = "none") -> list[tuple[dict[str, str],
                                                                                bytes]]:
    """Decode a whole file written by *serializer* into (headers, body) pairs
    (for tests and tools; text formats give empty headers)."""
    key = SERIALIZER_ALIASES.get(serializer.lower(), serializer.lower())
    if key in ("avro", "avro_event"):
        import fastavro
        recs: Any = fastavro.reader(io.BytesIO(data))
        return [(r["headers"], r["body"]) for r in recs]
    if key == "parquet":
        import pyarrow.parquet as pq
        t = pq.read_table(io.BytesIO(data))
        return [(dict(h), b) for h, b in zip(t.column("headers").to_pylist(),
                                             t.column("body").to_pylist())]
    if codec == "gzip":
        import gzip
        data = gzip.decompress(data)
    elif codec == "bzip2":
        import bz2
        data = bz2.decompress(data)
    elif codec == "zstd":
        import zstandard
        out = []
        dctx = zstandard.ZstdDecompressor()
        with dctx.stream_reader(io.BytesIO(data), read_across_frames=True) as r:
            out.append(r.read())
        data = b"".join(out)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if key == "json":
        res = []
        for ln in lines:
            o = json.loads(ln)
            body = (o["body"].encode("utf-8") if "body" in o
                    else base64.b64decode(o["body_base64"]))
            res.append((o["headers"], body))
        return res
    return [({}, ln) for ln in lines]

"""What the grpc source and sink share: property parsing for TLS and
compression, the message size limit, and event conversion."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import grpc

from fchannel.agent.properties import Context
from fchannel.event import Event
from fchannel.rpc import fchannel_rpc_pb2 as pb

# Flume's avro components know "none" and "deflate"; gRPC adds "gzip"
COMPRESSION = {
    "none": grpc.Compression.NoCompression,
    "deflate": grpc.Compression.Deflate,
    "gzip": grpc.Compression.Gzip,
}

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024   # bytes (gRPC's own default is 4 MiB)


def compression(ctx: Context) -> grpc.Compression:
    value = (ctx.string("compression-type", "none", choices=COMPRESSION) or "none")
    return COMPRESSION[value.strip().lower()]


def max_message_size(ctx: Context) -> int:
    return int(ctx.integer("maxMessageSize", DEFAULT_MAX_MESSAGE_SIZE, minimum=1024))


def read_pem(ctx: Context, name: str, *, required: bool = False) -> bytes | None:
    """The bytes of the PEM file named by property *name* (a problem if unreadable)."""
    path = ctx.string(name, None, required=required)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        ctx.problem(name, f"cannot read the file: {exc.strerror}")
        return None
    if b"-----BEGIN" not in data:
        ctx.problem(name, "not a PEM file (no -----BEGIN line)")
        return None
    return data


def to_request(events: Iterable[Any]) -> pb.AppendRequest:
    return pb.AppendRequest(events=[pb.Event(body=e.body, headers=e.headers) for e in events])


def from_request(request: pb.AppendRequest) -> list[Event]:
    return [Event(e.body, dict(e.headers)) for e in request.events]


def split_to_fit(events: Sequence[Any], limit: int) -> list[Sequence[Any]]:
    """Cut *events* into consecutive chunks whose requests fit in *limit* bytes.

    A single event whose request alone is over the limit raises ValueError
    (it can never be sent: the receiver would refuse it every time).
    """
    whole = to_request(events).ByteSize()
    if whole <= limit:
        return [events]
    chunks: list[Sequence[Any]] = []
    start = 0
    size = 0
    for i, e in enumerate(events):
        # a repeated message field costs tag + length varint + the message
        n = pb.Event(body=e.body, headers=e.headers).ByteSize()
        n += 1 + _varint_len(n)
        if n + 16 > limit:
            raise ValueError(f"one event of {len(e.body)} body bytes is larger than "
                             f"maxMessageSize={limit}")
        if size + n > limit - 16 and i > start:
            chunks.append(events[start:i])
            start, size = i, 0
        size += n
    chunks.append(events[start:])
    return chunks


def _varint_len(n: int) -> int:
    length = 1
    while n >= 0x80:
        n >>= 7
        length += 1
    return length

"""What the Kafka and Faust integrations share: the mark that holds a
partition's next offset, and how a Kafka record becomes a channel Event."""
from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from fchannel.event import Event

MARK_PREFIX = "kafka"


def mark_key(topic: str, partition: int) -> str:
    """The channel mark holding the next offset (highest stored + 1) of a partition."""
    return f"{MARK_PREFIX}:{topic}:{partition}"


def record_event(*, topic: str, partition: int, offset: int, timestamp_ms: int | None,
                 key: Any, value: Any, headers: Iterable[tuple[Any, Any]] | None = None,
                 topic_header: str | None = "topic",
                 value_hint: str = "use a raw serializer") -> Event:
    """An Event from a Kafka record: the raw value as body; headers
    *topic_header* (unless None), ``partition``, ``offset``, ``timestamp``
    (ms), ``key`` (or ``key_base64`` when it is not UTF-8), after the
    record's own UTF-8 *headers* (others are skipped).  A value that is not
    bytes or str is a TypeError ending with *value_hint*."""
    out: dict[str, str] = {}
    for k, v in headers or ():
        if v is None:
            continue
        try:
            out[str(k)] = v.decode("utf-8") if isinstance(v, bytes) else str(v)
        except UnicodeDecodeError:
            continue
    if topic_header is not None:
        out[topic_header] = topic
    out["partition"] = str(partition)
    out["offset"] = str(offset)
    if timestamp_ms is not None and timestamp_ms >= 0:
        out["timestamp"] = str(int(timestamp_ms))
    if key is not None:
        if isinstance(key, bytes):
            try:
                out["key"] = key.decode("utf-8")
            except UnicodeDecodeError:
                out["key_base64"] = base64.b64encode(key).decode("ascii")
        else:
            out["key"] = str(key)
    if value is None:
        body = b""
    elif isinstance(value, bytes):
        body = value
    elif isinstance(value, str):
        body = value.encode("utf-8")
    else:
        raise TypeError(f"record value of type {type(value).__name__} at {topic}/{partition}"
                        f"@{offset}: values must be bytes or str ({value_hint})")
    return Event(body, out)

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


def check_batch_size(batch_size: Any, capacity: int | None, who: str = "") -> None:
    """ConfigError unless *batch_size* is a positive int within the channel's
    transaction *capacity* (None: unknown); *who* prefixes the message."""
    from fchannel.errors import ConfigError
    prefix = f"{who}: " if who else ""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"{prefix}batch_size must be a positive int, got {batch_size!r}")
    if capacity is not None and batch_size > capacity:
        raise ConfigError(f"{prefix}batch_size={batch_size} exceeds the channel's "
                          f"transaction_capacity={capacity}")


def header_key(h: Any, key_header: str | None = "key") -> bytes | None:
    """The record key an event's headers *h* carry: the *key_header* header
    (UTF-8), or for ``key`` the ``key_base64`` one (a key that was not UTF-8)."""
    if key_header and h.get(key_header) is not None:
        return h[key_header].encode("utf-8")
    if key_header == "key" and h.get("key_base64") is not None:
        return base64.b64decode(h["key_base64"])
    return None


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


# ---- out of the channel: an Event becomes a Kafka record ------------------------------
class Route:
    """How a drained Event becomes a Kafka record, the same for every client.

    The topic is *topic*, or the event's *topic_header* header when
    *allow_topic_override* and it is present. The key is the *key_header*
    header (UTF-8; ``key_base64`` holds a key that was not UTF-8), the
    partition the *partition_header* header (an int) if set, else
    *default_partition* (None: the producer's partitioner). Event headers
    become record headers (UTF-8 values) only when *forward_headers*.
    *render_topic*, a function of the event, makes the topic when the header
    does not name one (the agent's ``%{header}`` escapes)."""

    def __init__(self, topic: str | None = None, *, allow_topic_override: bool = True,
                 topic_header: str = "topic", key_header: str | None = "key",
                 partition_header: str | None = None, forward_headers: bool = False,
                 default_partition: int | None = None,
                 render_topic: Any = None) -> None:
        from fchannel.errors import ConfigError
        if topic is None and not allow_topic_override:
            raise ConfigError("give a topic, or allow the topic header to choose it")
        if default_partition is not None and (isinstance(default_partition, bool) or not
                                              isinstance(default_partition, int) or
                                              default_partition < 0):
            raise ConfigError(f"default_partition must be a partition number >= 0, got "
                              f"{default_partition!r}")
        self.topic = topic
        self.allow_topic_override = allow_topic_override
        self.topic_header = topic_header
        self.key_header = key_header
        self.partition_header = partition_header
        self.forward_headers = forward_headers
        self.default_partition = default_partition
        self.render_topic = render_topic

    def __call__(self, e: Event) -> tuple[str, bytes | None, int | None,
                                          list[tuple[str, bytes]] | None]:
        """``(topic, key, partition, headers)`` of the record for *e*."""
        from fchannel.errors import ConfigError
        h = e.headers
        topic = self.topic
        if self.allow_topic_override and h.get(self.topic_header):
            topic = h[self.topic_header]
        elif self.render_topic is not None:
            topic = self.render_topic(e)
            if not topic:
                raise ConfigError(f"the topic {self.topic!r} is empty for an event with "
                                  f"headers {dict(h)!r}")
        if not topic:
            raise ConfigError(f"event has no {self.topic_header!r} header and no "
                              "default topic is set")
        key = header_key(h, self.key_header)
        part = self.default_partition
        if self.partition_header and h.get(self.partition_header) is not None:
            raw = h[self.partition_header]
            try:
                part = int(raw)
            except ValueError:
                raise ConfigError(f"header {self.partition_header}={raw!r} is not a "
                                  "partition number") from None
        headers = ([(k, v.encode("utf-8")) for k, v in h.items()]
                   if self.forward_headers else None)
        return topic, key, part, headers

    def records(self, events: Iterable[Event]) -> list[tuple[str, bytes, bytes | None,
                                                              int | None, Any, None]]:
        """``(topic, value, key, partition, headers, timestamp_ms)`` of the
        record for each event (the timestamp is left to the producer)."""
        out = []
        for e in events:
            topic, key, part, headers = self(e)
            out.append((topic, e.body, key, part, headers, None))
        return out


# ---- a SpooledProducer's record, stored losslessly as an Event -------------------------
# Header names of a spooled record (none of them is sent to Kafka as a header).
SPOOL_TOPIC = "topic"
SPOOL_KEY = "key_base64"
SPOOL_PARTITION = "partition"
SPOOL_TIMESTAMP = "timestamp"
SPOOL_HEADERS = "headers_json"
SPOOL_TOMBSTONE = "tombstone"
SPOOL_AT = "spooled_at"


class SpooledRecord:
    """A record as a SpooledProducer hands it to the real producer."""

    __slots__ = ("headers", "key", "partition", "spooled_at", "timestamp_ms", "topic", "value")

    def __init__(self, topic: str, value: bytes | None, key: bytes | None,
                 partition: int | None, timestamp_ms: int | None,
                 headers: list[tuple[str, bytes]] | None, spooled_at: float) -> None:
        self.topic = topic
        self.value = value
        self.key = key
        self.partition = partition
        self.timestamp_ms = timestamp_ms
        self.headers = headers
        self.spooled_at = spooled_at

    def __repr__(self) -> str:
        return (f"SpooledRecord({self.topic!r}, partition={self.partition}, "
                f"key={self.key!r}, {len(self.value or b'')} bytes)")


def _as_bytes(field: str, value: Any, topic: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"{field} for topic {topic!r} is a {type(value).__name__}; give bytes or "
                    f"str, or pass a {field}_serializer to the SpooledProducer")


def spool_event(topic: Any, value: Any = None, key: Any = None, headers: Any = None,
                partition: Any = None, timestamp_ms: Any = None, *,
                now: float | None = None) -> Event:
    """The Event that holds a record to send, losslessly: the value as body
    (a null value is flagged ``tombstone``), the key base64-coded, the
    record headers as JSON (values base64) and the time it was
    spooled (epoch seconds). Bad fields raise TypeError/ValueError naming
    the field and the value."""
    import json
    import time as _time
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty str, got {topic!r}")
    if partition is not None and (isinstance(partition, bool) or not isinstance(partition, int)
                                  or partition < 0):
        raise ValueError(f"partition must be None or an int >= 0, got {partition!r}")
    if timestamp_ms is not None and (isinstance(timestamp_ms, bool) or
                                     not isinstance(timestamp_ms, int) or timestamp_ms < 0):
        raise ValueError(f"timestamp_ms must be None or an int >= 0, got {timestamp_ms!r}")
    body = _as_bytes("value", value, topic)
    k = _as_bytes("key", key, topic)
    out = {SPOOL_TOPIC: topic,
           SPOOL_AT: repr(_time.time() if now is None else now)}
    if body is None:
        out[SPOOL_TOMBSTONE] = "1"
    if k is not None:
        out[SPOOL_KEY] = base64.b64encode(k).decode("ascii")
    if partition is not None:
        out[SPOOL_PARTITION] = str(partition)
    if timestamp_ms is not None:
        out[SPOOL_TIMESTAMP] = str(timestamp_ms)
    if headers:
        items = headers.items() if hasattr(headers, "items") else headers
        enc = []
        for pair in items:
            try:
                hk, hv = pair
            except (TypeError, ValueError):
                raise ValueError(f"headers must be (str, bytes) pairs, got {pair!r}") from None
            if not isinstance(hk, str):
                raise ValueError(f"header name must be a str, got {hk!r}")
            hb = _as_bytes(f"header {hk!r}", hv, topic)
            if hb is None:
                raise ValueError(f"header {hk!r} for topic {topic!r} has no value; give "
                                 "bytes or str (b'' for an empty one)")
            enc.append([hk, base64.b64encode(hb).decode("ascii")])
        out[SPOOL_HEADERS] = json.dumps(enc, separators=(",", ":"))
    return Event(body or b"", out)


def spooled_record(e: Event) -> SpooledRecord:
    """The record :func:`spool_event` stored in *e*."""
    import json
    h = e.headers
    topic = h.get(SPOOL_TOPIC)
    if not topic:
        raise ValueError(f"event has no {SPOOL_TOPIC!r} header: not written by a "
                         f"SpooledProducer (headers {sorted(h)})")
    key = base64.b64decode(h[SPOOL_KEY]) if SPOOL_KEY in h else None
    part = int(h[SPOOL_PARTITION]) if SPOOL_PARTITION in h else None
    ts = int(h[SPOOL_TIMESTAMP]) if SPOOL_TIMESTAMP in h else None
    headers = None
    if SPOOL_HEADERS in h:
        headers = [(k, base64.b64decode(v)) for k, v in json.loads(h[SPOOL_HEADERS])]
    value = None if h.get(SPOOL_TOMBSTONE) == "1" else bytes(e.body)
    return SpooledRecord(topic, value, key, part, ts, headers, float(h.get(SPOOL_AT, "0")))

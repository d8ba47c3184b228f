"""Syslog sources: ``syslogtcp``, ``multiport_syslogtcp`` and ``syslogudp``.

Each message becomes one event, parsed as Flume's SyslogUtils does:

- **RFC 5424** (``<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG``)
  and **RFC 3164** (``<PRI>Mmm dd hh:mm:ss HOSTNAME MSG``; the year is the
  current one, or the previous one for a date more than a month ahead; local
  time).
- Headers: ``Facility`` and ``Severity`` (from PRI), ``priority`` (PRI),
  ``version`` (RFC 5424), ``timestamp`` (milliseconds since the epoch) and
  ``host`` when the message has them.
- The body is what follows the hostname; ``keepFields`` puts fields back in
  front of it: ``none`` / ``false`` (default), ``all`` / ``true``, or a list of
  ``priority``, ``version``, ``timestamp``, ``hostname``.
- A message that is not syslog (no valid ``<PRI>``, a header cut short) is
  **kept**, whole, as the body of an event with header
  ``flume.syslog.status = Invalid``; a message longer than ``eventSize`` is
  cut into pieces of that size, the first marked
  ``flume.syslog.status = Incomplete``.  Nothing received is dropped and no
  input can stop the source.

Framing over TCP, per message: octet counting (RFC 6587, ``LEN SP MSG``,
what rsyslog and syslog-ng send with ``framing octet-counted``) when a frame
starts with a length, otherwise one message per line (``\\n``; a ``\\r``
before it is removed).  Over UDP one datagram is one message.

Properties (Flume's):

- ``syslogtcp``: ``host`` (required), ``port`` (required), ``eventSize``
  (2500 bytes), ``keepFields``, ``clientIPHeader``, ``clientHostnameHeader``
  (header names for the client's address and its reverse-DNS name).
- ``multiport_syslogtcp``: the same with ``ports`` (required, a list) instead
  of ``port``, and ``portHeader`` (a header naming the port the message came
  in on), ``batchSize`` (100), ``charset.default`` / ``charset.port.<port>``
  and ``readBufferSize`` (accepted; the body is kept as the bytes received).
- ``syslogudp``: ``host``, ``port``, ``keepFields``, ``clientIPHeader``,
  ``clientHostnameHeader``.

TLS (``syslogtcp``, ``multiport_syslogtcp``): Flume's ``ssl = true`` with
the certificate and key as PEM files in ``ssl.cert`` and ``ssl.key``;
Flume's Java keystore settings (``keystore``, ``keystore-password``...) are
reported as unsupported.  TCP connections are served by one asyncio loop, so
idle senders cost a socket each, not a thread.
"""
from __future__ import annotations

import asyncio
import calendar
import functools
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

from fchannel.agent.component import EventDrivenSource
from fchannel.agent.properties import Context
from fchannel.event import Event
from fchannel.sources._serverloop import ServerLoop, connection
from fchannel.sources._tls import server_tls

STATUS = "flume.syslog.status"
INVALID = "Invalid"
INCOMPLETE = "Incomplete"
KEEP_FIELDS = ("priority", "version", "timestamp", "hostname")
MAX_LENGTH_DIGITS = 9

_PRI = re.compile(rb"<(\d{1,3})>")
_RFC3164_TS = re.compile(rb"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) ")
_RFC5424_TS = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
_MONTHS = {m.encode(): i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}


def keep_fields(value: str | None) -> frozenset[str] | None:
    """Flume's keepFields value as a set of field names; None if not valid."""
    v = (value or "none").strip().lower()
    if v in ("none", "false", ""):
        return frozenset()
    if v in ("all", "true"):
        return frozenset(KEEP_FIELDS)
    words = set(re.split(r"[\s,]+", v)) - {""}
    if not words <= set(KEEP_FIELDS):
        return None
    return frozenset(words)


def _rfc5424_millis(ts: bytes) -> int | None:
    m = _RFC5424_TS.match(ts)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    try:
        secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    if zone != b"Z":
        sign = 1 if zone[:1] == b"+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    ms = int((frac or b"0").ljust(3, b"0")[:3])
    return secs * 1000 + ms


def _rfc3164_millis(m: re.Match[bytes], now: float) -> int | None:
    month = _MONTHS.get(m.group(1))
    if month is None:
        return None
    day, h, mi, s = int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5))
    if not (1 <= day <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    year = time.localtime(now).tm_year
    try:
        t = time.mktime((year, month, day, h, mi, s, 0, 0, -1))
        if t > now + 31 * 86400:   # a date far ahead is last year's (as Flume does)
            t = time.mktime((year - 1, month, day, h, mi, s, 0, 0, -1))
    except (OverflowError, ValueError):
        return None
    return int(t * 1000)


def _token(raw: bytes, pos: int) -> tuple[bytes, int] | None:
    """The word at *pos* and the position after the space that ends it."""
    end = raw.find(b" ", pos)
    if end < 0 or end == pos:
        return None
    return raw[pos:end], end + 1


def parse_message(raw: bytes, keep: frozenset[str] = frozenset(),
                  now: float | None = None) -> Event:
    """One syslog message (without its framing) as an event; never raises."""
    m = _PRI.match(raw)
    pri = int(m.group(1)) if m else -1
    if m is None or pri > 191 or (len(m.group(1)) > 1 and m.group(1)[:1] == b"0"):
        return Event(raw, {STATUS: INVALID})
    headers = {"Facility": str(pri >> 3), "Severity": str(pri & 7), "priority": str(pri)}
    pos = m.end()
    kept: list[bytes] = [raw[:pos]] if "priority" in keep else []
    if now is None:
        now = time.time()
    # RFC 5424: a version (1-99) and a space after PRI
    v = re.match(rb"([1-9]\d?) ", raw[pos:pos + 3])
    if v is not None:
        headers["version"] = v.group(1).decode()
        if "version" in keep:
            kept.append(raw[pos:pos + v.end()])
        pos += v.end()
        ts = _token(raw, pos)
        if ts is None:
            return Event(raw, {**headers, STATUS: INVALID})
        if ts[0] != b"-":
            millis = _rfc5424_millis(ts[0])
            if millis is None:
                return Event(raw, {**headers, STATUS: INVALID})
            headers["timestamp"] = str(millis)
        if "timestamp" in keep:
            kept.append(raw[pos:ts[1]])
        pos = ts[1]
        host = _token(raw, pos)
        if host is None:
            return Event(raw, {**headers, STATUS: INVALID})
        if host[0] != b"-":
            headers["host"] = host[0].decode("utf-8", "replace")
        if "hostname" in keep:
            kept.append(raw[pos:host[1]])
        pos = host[1]
        return Event(b"".join(kept) + raw[pos:], headers)
    # RFC 3164: a timestamp and a hostname, when present
    t = _RFC3164_TS.match(raw, pos)
    if t is not None:
        millis = _rfc3164_millis(t, now)
        host = _token(raw, t.end()) if millis is not None else None
        if millis is not None and host is not None:
            headers["timestamp"] = str(millis)
            headers["host"] = host[0].decode("utf-8", "replace")
            if "timestamp" in keep:
                kept.append(raw[pos:t.end()])
            if "hostname" in keep:
                kept.append(raw[t.end():host[1]])
            pos = host[1]
    return Event(b"".join(kept) + raw[pos:], headers)


def parse_frame(raw: bytes, incomplete: bool, keep: frozenset[str],
                now: float | None = None) -> Event:
    e = parse_message(raw, keep, now)
    if incomplete and e.headers.get(STATUS) != INVALID:
        e.headers[STATUS] = INCOMPLETE
    return e


class Framer:
    """Splits a TCP byte stream into syslog messages: octet-counted frames
    (``LEN SP MSG``) or lines.  ``feed`` returns ``(message, incomplete)``
    pairs; a message longer than *max_size* comes out in pieces of that size,
    each flagged incomplete.  Any input is accepted."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max(1, max_size)
        self.buf = bytearray()
        self.remaining = -1     # bytes left of an octet-counted frame, -1: not in one
        self.frame = bytearray()
        self.split = False      # the frame in hand already gave out a piece

    def _emit(self, out: list[tuple[bytes, bool]], data: bytes, incomplete: bool) -> None:
        if data:
            out.append((data, incomplete))

    def _pieces(self, out: list[tuple[bytes, bool]]) -> None:
        """The message in hand is already longer than max_size: give out full pieces."""
        while len(self.frame) > self.max_size:
            self._emit(out, bytes(self.frame[:self.max_size]), True)
            del self.frame[:self.max_size]
            self.split = True

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        buf = self.buf
        buf += data
        n = len(buf)
        pos = 0          # what is before pos is consumed (cut off once, at the end)
        while pos < n:
            if self.remaining > 0:
                take = min(self.remaining, n - pos)
                self.frame += buf[pos:pos + take]
                pos += take
                self.remaining -= take
                self._pieces(out)
                if self.remaining == 0:
                    self._pieces_exact(out)
                    self.remaining = -1
                continue
            if not self.frame and buf[pos:pos + 1].isdigit():
                # a length prefix? digits then a space
                i = pos
                while i < n and i - pos <= MAX_LENGTH_DIGITS and buf[i:i + 1].isdigit():
                    i += 1
                if i == n and i - pos <= MAX_LENGTH_DIGITS:
                    break                     # wait for the byte after the digits
                if buf[i:i + 1] == b" " and buf[pos:pos + 1] != b"0":
                    self.remaining = int(buf[pos:i])
                    pos = i + 1
                    continue
            idx = buf.find(b"\n", pos)
            if idx < 0:
                self.frame += buf[pos:]
                pos = n
                self.remaining = -1
                self._pieces(out)
                break
            self.frame += buf[pos:idx]
            pos = idx + 1
            if self.frame.endswith(b"\r"):
                del self.frame[-1:]
            self._pieces_exact(out)
        del buf[:pos]
        return out

    def _pieces_exact(self, out: list[tuple[bytes, bool]]) -> None:
        """End of a line: give out what is left of it."""
        self._pieces(out)
        self._emit(out, bytes(self.frame), self.split)
        self.frame.clear()
        self.split = False

    def flush(self) -> list[tuple[bytes, bool]]:
        """The connection closed: whatever was received of the last message."""
        out: list[tuple[bytes, bool]] = []
        rest = bytes(self.frame) + bytes(self.buf)
        self.frame.clear()
        self.buf.clear()
        if rest:
            out.append((rest, self.split or self.remaining > 0))
        self.remaining = -1
        self.split = False
        return out


@functools.lru_cache(maxsize=1024)
def _reverse_dns(ip: str) -> str:
    try:
        return socket.gethostbyaddr(ip)[0]
    except OSError:
        return ip


class _SyslogBase(EventDrivenSource):
    """What the three syslog sources share: properties, parsing, putting."""

    port_header: str | None = None
    tls = True   # False for UDP

    def _configure_common(self, ctx: Context) -> None:
        self.host = ctx.string("host", required=True)
        keep = ctx.string("keepFields", "none")
        kf = keep_fields(keep)
        if kf is None:
            ctx.problem("keepFields", "must be none, all, true, false or a list of "
                                      + ", ".join(KEEP_FIELDS))
            kf = frozenset()
        self.keep = kf
        self.ip_header = ctx.string("clientIPHeader")
        self.hostname_header = ctx.string("clientHostnameHeader")
        self.ssl_context: ssl.SSLContext | None = None
        if ctx.boolean("ssl", False):
            if not self.tls:
                ctx.problem("ssl", "TLS needs a stream: use syslogtcp or multiport_syslogtcp")
            else:
                self.ssl_context = server_tls(ctx)
        else:
            for k in ("ssl.cert", "ssl.key"):
                if ctx.get(k) is not None:
                    ctx.problem(k, "set but ssl is not true")

    def _headers_for(self, addr: Any, port: int | None = None) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.ip_header:
            h[self.ip_header] = str(addr[0])
        if self.hostname_header:
            h[self.hostname_header] = _reverse_dns(str(addr[0]))
        if port is not None and self.port_header:
            h[self.port_header] = str(port)
        return h

    def _events(self, frames: Iterable[tuple[bytes, bool]],
                extra: dict[str, str]) -> list[Event]:
        now = time.time()
        out = []
        for raw, incomplete in frames:
            e = parse_frame(raw, incomplete, self.keep, now)
            if extra:
                e.headers.update(extra)
            if e.headers.get(STATUS) == INVALID:
                self.counter.add("EventReadFail")
            out.append(e)
        return out

    def _put(self, events: list[Event]) -> None:
        if not events:
            return
        self.counter.add("EventReceivedCount", len(events))
        if self.put_batch_retrying(events):
            self.counter.add("EventAcceptedCount", len(events))


class SyslogTcpSource(_SyslogBase):
    """``syslogtcp``: one port; ``multiport_syslogtcp`` extends it to many.

    Connections are served by one asyncio loop (an idle sender costs a
    socket, not a thread); what a read brings is framed, parsed and put in a
    worker thread before the connection is read again, so a full channel
    slows the senders down instead of filling memory."""

    multiport = False

    def configure(self, ctx: Context) -> None:
        self._configure_common(ctx)
        if self.multiport:
            ports = ctx.names("ports", required=True)
            self.ports: list[int] = []
            for p in ports:
                if not p.isdigit() or int(p) > 65535:
                    ctx.problem("ports", f"{p!r} is not a port number")
                else:
                    self.ports.append(int(p))
            self.port_header = ctx.string("portHeader")
            self.batch_size = ctx.integer("batchSize", 100, minimum=1)
            ctx.integer("readBufferSize", 1024, minimum=1)
            ctx.get("numProcessors")
            ctx.string("charset.default", "UTF-8")
            for k in ctx:
                if k.startswith("charset.port."):
                    ctx.get(k)
        else:
            port = ctx.integer("port", required=True, minimum=0, maximum=65535)
            self.ports = [port] if port is not None else []
            self.port_header = None
            self.batch_size = 100
        self.event_size = ctx.integer("eventSize", 2500, minimum=1)
        self.read_size = 65536
        # one worker: puts keep the order of each connection's messages
        self._srv = ServerLoop(self, f"syslogtcp-{self.name}", 1)
        self.bound_ports: list[int] = []

    def start(self) -> None:
        servers = self._srv.start([
            functools.partial(asyncio.start_server, functools.partial(self._serve, p),
                              self.host or "0.0.0.0", p, ssl=self.ssl_context, backlog=128)
            for p in self.ports])
        self.bound_ports = [srv.sockets[0].getsockname()[1] for srv in servers]
        self.bound_port = self.bound_ports[0] if self.bound_ports else 0
        self.log.info("listening on %s port(s) %s%s", self.host,
                      " ".join(str(p) for p in self.bound_ports),
                      " (TLS)" if self.ssl_context else "")

    async def _serve(self, port: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        framer = Framer(self.event_size or 2500)
        loop = asyncio.get_running_loop()
        # a reverse DNS lookup may take a while: not in the loop
        extra = await loop.run_in_executor(None, self._headers_for, peer,
                                           port if self.port_header else None)
        async with connection(self, writer):
            while not self.stopping:
                try:
                    data = await reader.read(self.read_size)
                except (ConnectionError, OSError, ssl.SSLError):
                    data = b""
                frames = framer.feed(data) if data else framer.flush()
                if frames:
                    await loop.run_in_executor(self._srv.pool, self._deliver, frames, extra)
                if not data:
                    break

    def _deliver(self, frames: list[tuple[bytes, bool]], extra: dict[str, str]) -> None:
        events = self._events(frames, extra)
        for i in range(0, len(events), self.batch_size):
            self._put(events[i:i + self.batch_size])

    def stop(self) -> None:
        self._stopping.set()
        self._srv.stop()


class MultiportSyslogTcpSource(SyslogTcpSource):
    multiport = True


class SyslogUdpSource(_SyslogBase):
    """``syslogudp``: one datagram, one message."""

    tls = False

    def configure(self, ctx: Context) -> None:
        self._configure_common(ctx)
        self.port = ctx.integer("port", required=True, minimum=0, maximum=65535)
        self.port_header = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        host = self.host or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.bind((host, self.port or 0))
        except BaseException:
            s.close()
            raise
        s.settimeout(0.2)
        self._sock = s
        self.bound_port = s.getsockname()[1]
        self._thread = threading.Thread(target=self._loop, name=f"syslogudp-{self.name}",
                                        daemon=True)
        self._thread.start()
        self.log.info("listening on %s:%d (udp)", host, self.bound_port)

    def _loop(self) -> None:
        assert self._sock is not None
        s = self._sock
        try:
            while not self._stopping.is_set():
                try:
                    data, addr = s.recvfrom(65535)
                except TimeoutError:
                    continue
                frames = [(data.rstrip(b"\n"), False)]
                s.setblocking(False)
                try:   # what else is already waiting goes in the same batch
                    while len(frames) < 100:
                        more, addr2 = s.recvfrom(65535)
                        if addr2 != addr:
                            self._put(self._events(frames, self._headers_for(addr)))
                            frames, addr = [], addr2
                        frames.append((more.rstrip(b"\n"), False))
                except (BlockingIOError, InterruptedError):
                    pass
                finally:
                    s.settimeout(0.2)
                self._put(self._events([f for f in frames if f[0]], self._headers_for(addr)))
        except Exception as exc:
            if not self._stopping.is_set():
                self.log.exception("syslog udp loop failed")
                self.died(exc)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

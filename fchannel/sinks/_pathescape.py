"""Flume's path escapes (``BucketPath``) for the ``hdfs`` sink.

A template such as ``s3://logs/%{topic}/%Y-%m-%d/%H`` is compiled once into
literal pieces and escapes; :meth:`PathTemplate.render` fills them in for one
event.  The escapes are Flume's:

``%{name}``       the value of header *name* ('' when missing, as in Flume)
``%[localhost]``  the host name; ``%[IP]`` its address; ``%[FQDN]`` the full name
``%t``  milliseconds since the epoch      ``%s``  seconds since the epoch
``%a``  short weekday (Mon)               ``%A``  full weekday (Monday)
``%b``  short month (Jan)                 ``%B``  full month (January)
``%c``  date and time (Thu Mar 3 23:05:25 2005)
``%d``  day of month (01)                 ``%e``  day of month (1)
``%D``  date as %m/%d/%y                  ``%H``  hour (00..23)
``%I``  hour (01..12)                     ``%j``  day of year (001..366)
``%k``  hour (0..23)                      ``%m``  month (01..12)
``%n``  month (1..12)                     ``%M``  minute (00..59)
``%p``  AM or PM                          ``%S``  second (00..59)
``%y``  year, two digits (00..99)         ``%Y``  year (2010)
``%z``  numeric zone (+hhmm)              ``%%``  a literal ``%`` (fchannel's)

Time escapes use the event's ``timestamp`` header (milliseconds) or, with
``useLocalTimeStamp``, the sink's clock; ``round``/``roundValue``/``roundUnit``
round that time down (Flume's ``TimestampRoundDownUtil``); ``timeZone`` names
the zone (an IANA name; the local zone by default).  Names of days and months
are English whatever the locale, so paths do not change with the machine.
"""
from __future__ import annotations

import datetime as _dt
import re
import socket
from collections.abc import Mapping
from typing import Any

from fchannel.errors import ConfigError

_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]


def _zone(d: _dt.datetime) -> str:
    off = d.utcoffset() or _dt.timedelta(0)
    mins = int(off.total_seconds() // 60)
    sign = "+" if mins >= 0 else "-"
    mins = abs(mins)
    return f"{sign}{mins // 60:02d}{mins % 60:02d}"


# escape letter -> function of an aware datetime (and the millisecond timestamp)
_TIME: dict[str, Any] = {
    "a": lambda d: _DAYS[d.weekday()][:3],
    "A": lambda d: _DAYS[d.weekday()],
    "b": lambda d: _MONTHS[d.month - 1][:3],
    "B": lambda d: _MONTHS[d.month - 1],
    "c": lambda d: (f"{_DAYS[d.weekday()][:3]} {_MONTHS[d.month - 1][:3]} {d.day} "
                    f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} {d.year}"),
    "d": lambda d: f"{d.day:02d}",
    "e": lambda d: str(d.day),
    "D": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",
    "H": lambda d: f"{d.hour:02d}",
    "I": lambda d: f"{(d.hour % 12) or 12:02d}",
    "j": lambda d: f"{d.timetuple().tm_yday:03d}",
    "k": lambda d: str(d.hour),
    "m": lambda d: f"{d.month:02d}",
    "n": lambda d: str(d.month),
    "M": lambda d: f"{d.minute:02d}",
    "p": lambda d: "AM" if d.hour < 12 else "PM",
    "S": lambda d: f"{d.second:02d}",
    "y": lambda d: f"{d.year % 100:02d}",
    "Y": lambda d: str(d.year),
    "z": _zone,
}
_EPOCH = {"s", "t"}  # need the timestamp, not the calendar

ROUND_UNITS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def _host(kind: str) -> str:
    if kind == "localhost":
        return socket.gethostname()
    if kind == "IP":
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    if kind == "FQDN":
        return socket.getfqdn()
    raise ConfigError(f"unknown escape %[{kind}]; supported: %[localhost], %[IP], %[FQDN]")


def load_zone(name: str | None) -> _dt.tzinfo | None:
    """A tzinfo for an IANA name (None: the local zone)."""
    if not name:
        return None
    if name.upper() in ("UTC", "GMT", "Z"):
        return _dt.timezone.utc
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for odd names
        raise ConfigError(f"unknown time zone {name!r}") from None


class PathTemplate:
    """A compiled path (or file prefix) with escapes.

    ``parts`` is a list of ``("lit", text)``, ``("hdr", name)``, ``("time", letter)``
    pieces.  :attr:`needs_time` says whether rendering needs a timestamp.
    """

    def __init__(self, template: str, *, time_zone: _dt.tzinfo | None = None,
                 round_ms: int = 0) -> None:
        self.template = template
        self.tz = time_zone
        self.round_ms = round_ms
        self.parts: list[tuple[str, str]] = []
        lit: list[str] = []
        i, n = 0, len(template)
        while i < n:
            c = template[i]
            if c != "%" or i + 1 >= n:
                lit.append(c)
                i += 1
                continue
            nxt = template[i + 1]
            if nxt == "%":
                lit.append("%")
                i += 2
                continue
            if nxt in "{[":
                close = "}" if nxt == "{" else "]"
                end = template.find(close, i + 2)
                if end < 0:
                    raise ConfigError(f"unterminated %{nxt}...{close} escape in {template!r}")
                name = template[i + 2:end]
                if not name:
                    raise ConfigError(f"empty %{nxt}{close} escape in {template!r}")
                if nxt == "[":
                    lit.append(_host(name))
                else:
                    self._flush(lit)
                    self.parts.append(("hdr", name))
                i = end + 1
                continue
            if nxt in _TIME or nxt in _EPOCH:
                self._flush(lit)
                self.parts.append(("time", nxt))
                i += 2
                continue
            raise ConfigError(f"unknown escape %{nxt} in {template!r}; supported: "
                              f"%{{header}} %[localhost] %[IP] %[FQDN] %t %s "
                              + " ".join("%" + k for k in _TIME) + " %%")
        self._flush(lit)
        self.needs_time = any(k == "time" for k, _ in self.parts)
        self.constant = all(k == "lit" for k, _ in self.parts)
        self.headers = [v for k, v in self.parts if k == "hdr"]
        self._cache: dict[tuple[Any, ...], str] = {}

    def _flush(self, lit: list[str]) -> None:
        if lit:
            self.parts.append(("lit", "".join(lit)))
            lit.clear()

    def round_down(self, ts_ms: int) -> int:
        """Flume's round-down: to a multiple of the unit on the zone's wall clock."""
        r = self.round_ms
        if not r:
            return ts_ms
        off = self._offset_ms(ts_ms)
        return ((ts_ms + off) // r) * r - off

    def _offset_ms(self, ts_ms: int) -> int:
        off = _to_dt(ts_ms, self.tz).utcoffset()
        return int(off.total_seconds() * 1000) if off else 0

    def render(self, headers: Mapping[str, str], ts_ms: int | None = None) -> str:
        """The path for an event with *headers* at time *ts_ms* (milliseconds)."""
        if self.constant:
            return self.parts[0][1] if self.parts else ""
        if self.needs_time:
            if ts_ms is None:
                raise ValueError("a timestamp is needed")
            ts_ms = self.round_down(ts_ms)
            key: tuple[Any, ...] = (ts_ms,) + tuple(headers.get(h, "") for h in self.headers)
        else:
            key = tuple(headers.get(h, "") for h in self.headers)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        out: list[str] = []
        d: _dt.datetime | None = None
        for kind, v in self.parts:
            if kind == "lit":
                out.append(v)
            elif kind == "hdr":
                out.append(headers.get(v, ""))
            elif v == "t":
                out.append(str(ts_ms))
            elif v == "s":
                assert ts_ms is not None
                out.append(str(ts_ms // 1000))
            else:
                if d is None:
                    assert ts_ms is not None
                    d = _to_dt(ts_ms, self.tz)
                out.append(_TIME[v](d))
        s = "".join(out)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = s
        return s

    def glob(self) -> str:
        """The template with every escape as ``*`` (for listing what was written)."""
        out = []
        for kind, v in self.parts:
            if kind == "lit":
                out.append(_glob_escape(v))
            elif not out or out[-1] != "*":
                out.append("*")
        return "".join(out)

    def regex(self) -> str:
        """A regular expression matching what the template renders to (no '/' in escapes)."""
        out = []
        for kind, v in self.parts:
            out.append(re.escape(v) if kind == "lit" else "[^/]*?")
        return "".join(out)


def _glob_escape(s: str) -> str:
    return re.sub(r"([*?\[\]])", r"[\1]", s)


def _to_dt(ts_ms: int, tz: _dt.tzinfo | None) -> _dt.datetime:
    if tz is not None:
        return _dt.datetime.fromtimestamp(ts_ms / 1000.0, tz)
    return _dt.datetime.fromtimestamp(ts_ms / 1000.0).astimezone()  # local, with its DST

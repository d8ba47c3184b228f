"""Flume's interceptors, with Flume's type names and property names.

=================  ==========================================================
type               properties (default)
=================  ==========================================================
timestamp          headerName (timestamp), preserveExisting (false)
host               hostHeader (host), useIP (true), preserveExisting (false)
static             key (key), value (value), preserveExisting (true)
remove_header      withName, fromList, fromListSeparator (``\\s*,\\s*``), matching
uuid               headerName (id), prefix (""), preserveExisting (true)
regex_filter       regex (``.*``), excludeEvents (false)
regex_extractor    regex, serializers (names), serializers.<s>.name,
                   serializers.<s>.type (default or millis, with .pattern)
search_replace     searchPattern, replaceString, charset (UTF-8)
=================  ==========================================================
"""
from __future__ import annotations

import codecs
import datetime as _dt
import re
import socket
import time
import uuid
from typing import Any

from fchannel.agent.component import Interceptor
from fchannel.agent.properties import Context, java_replacement


class TimestampInterceptor(Interceptor):

    def configure(self, ctx: Context) -> None:
        self.header = ctx.string("headerName", "timestamp")
        self.preserve = ctx.boolean("preserveExisting", False)

    def intercept(self, event: Any) -> Any:
        h = event.headers
        if not (self.preserve and self.header in h):
            h[self.header] = str(int(time.time() * 1000))
        return event


class HostInterceptor(Interceptor):

    def configure(self, ctx: Context) -> None:
        self.header = ctx.string("hostHeader", "host")
        self.preserve = ctx.boolean("preserveExisting", False)
        use_ip = ctx.boolean("useIP", True)
        name = socket.gethostname()
        if use_ip:
            try:
                self.host = socket.gethostbyname(name)
            except OSError:
                self.log.warning("cannot resolve %r to an address; using the name", name)
                self.host = name
        else:
            self.host = socket.getfqdn(name)

    def intercept(self, event: Any) -> Any:
        h = event.headers
        if not (self.preserve and self.header in h):
            h[self.header] = self.host
        return event


class StaticInterceptor(Interceptor):

    def configure(self, ctx: Context) -> None:
        self.key = ctx.string("key", "key")
        self.value = ctx.string("value", "value")
        self.preserve = ctx.boolean("preserveExisting", True)

    def intercept(self, event: Any) -> Any:
        h = event.headers
        if not (self.preserve and self.key in h):
            h[self.key] = self.value
        return event


class RemoveHeaderInterceptor(Interceptor):

    def configure(self, ctx: Context) -> None:
        self.with_name = ctx.string("withName")
        from_list = ctx.string("fromList")
        sep = ctx.regex("fromListSeparator", r"\s*,\s*")
        self.from_list: set[str] = set()
        if from_list and sep is not None:
            self.from_list = {n for n in sep.split(from_list.strip()) if n}
        self.matching = ctx.regex("matching")
        if self.with_name is None and not from_list and self.matching is None \
                and "matching" not in ctx:
            self.log.warning("remove_header has none of withName, fromList, matching: "
                             "it removes nothing")

    def intercept(self, event: Any) -> Any:
        h = event.headers
        for k in list(h):
            if k == self.with_name or k in self.from_list or (
                    self.matching is not None and self.matching.fullmatch(k)):
                del h[k]
        return event


class UUIDInterceptor(Interceptor):

    def configure(self, ctx: Context) -> None:
        self.header = ctx.string("headerName", "id")
        self.prefix = ctx.string("prefix", "")
        self.preserve = ctx.boolean("preserveExisting", True)

    def intercept(self, event: Any) -> Any:
        h = event.headers
        if not (self.preserve and self.header in h):
            h[self.header] = f"{self.prefix}{uuid.uuid4()}"
        return event


def _text(event: Any, charset: str = "utf-8") -> str:
    return event.body.decode(charset, errors="replace")


class RegexFilterInterceptor(Interceptor):
    """Keeps events whose body matches ``regex`` somewhere (Java's find()),
    or drops them when ``excludeEvents`` is true."""

    def configure(self, ctx: Context) -> None:
        self.regex = ctx.regex("regex", ".*", flags=re.S)
        self.exclude = ctx.boolean("excludeEvents", False)

    def intercept(self, event: Any) -> Any:
        assert self.regex is not None
        found = self.regex.search(_text(event)) is not None
        return None if found == self.exclude else event


_JODA = [  # longest tokens first
    ("yyyy", "%Y"), ("yy", "%y"), ("MMMM", "%B"), ("MMM", "%b"), ("MM", "%m"),
    ("dd", "%d"), ("HH", "%H"), ("hh", "%I"), ("mm", "%M"), ("ss", "%S"),
    ("SSS", "%f"), ("a", "%p"), ("Z", "%z"), ("EEE", "%a"),
]


def joda_to_strptime(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "'":
            end = pattern.find("'", i + 1)
            end = len(pattern) if end < 0 else end
            out.append(pattern[i + 1:end].replace("%", "%%") or "'")
            i = end + 1
            continue
        for tok, fmt in _JODA:
            if pattern.startswith(tok, i):
                out.append(fmt)
                i += len(tok)
                break
        else:
            out.append("%%" if pattern[i] == "%" else pattern[i])
            i += 1
    return "".join(out)


class _MillisSerializer:
    """Flume's RegexExtractorInterceptorMillisSerializer: a date in ``pattern``
    (Joda syntax) to epoch milliseconds (local time unless the pattern has Z)."""

    def __init__(self, pattern: str) -> None:
        # strptime's %f reads 1-6 digits as a fraction, so Joda's SSS maps to it
        self.fmt = joda_to_strptime(pattern)

    def __call__(self, value: str) -> str:
        t = _dt.datetime.strptime(value, self.fmt)
        if t.tzinfo is None:
            return str(int(time.mktime(t.timetuple()) * 1000 + t.microsecond // 1000))
        return str(int(t.timestamp() * 1000))


_SERIALIZER_TYPES = {
    "default": "default",
    "org.apache.flume.interceptor.regexextractorinterceptorpassthroughserializer": "default",
    "millis": "millis",
    "org.apache.flume.interceptor.regexextractorinterceptormillisserializer": "millis",
}


class RegexExtractorInterceptor(Interceptor):
    """Puts regex groups in headers: ``serializers = s1 s2`` names one
    serializer per group; ``serializers.s1.name`` is the header."""

    def configure(self, ctx: Context) -> None:
        self.regex = ctx.regex("regex", required=True, flags=re.S)
        names = ctx.names("serializers", required=True)
        self.serializers: list[tuple[str, Any]] = []
        sctx = ctx.sub("serializers.")
        for s in names:
            header = sctx.string(f"{s}.name", required=True)
            stype = sctx.string(f"{s}.type", "default")
            kind = _SERIALIZER_TYPES.get(stype.lower()) if stype else "default"
            conv: Any = None
            if kind is None:
                sctx.problem(f"{s}.type", "unknown regex_extractor serializer type; "
                                          "known: default, millis (or Flume's class names)")
            elif kind == "millis":
                pattern = sctx.string(f"{s}.pattern", required=True)
                conv = _MillisSerializer(pattern) if pattern else None
            self.serializers.append((header or s, conv))
        if self.regex is not None and self.regex.groups < len(self.serializers):
            ctx.problem("regex", f"has {self.regex.groups} group(s) but "
                                 f"{len(self.serializers)} serializer(s) are listed")

    def intercept(self, event: Any) -> Any:
        assert self.regex is not None
        m = self.regex.search(_text(event))
        if m is None:
            return event
        h = event.headers
        for i, (header, conv) in enumerate(self.serializers, start=1):
            if i > (self.regex.groups or 0):
                break
            value = m.group(i)
            if value is None:
                continue
            if conv is not None:
                try:
                    value = conv(value)
                except ValueError:
                    self.log.debug("value %r does not parse as a date; header %r not set",
                                   value, header)
                    continue
            if value:
                h[header] = value
        return event


class SearchReplaceInterceptor(Interceptor):

    def configure(self, ctx: Context) -> None:
        self.pattern = ctx.regex("searchPattern", required=True)
        repl = ctx.string("replaceString", "")
        try:
            self.repl = java_replacement(repl or "")
        except Exception as exc:
            ctx.problem("replaceString", str(exc))
            self.repl = ""
        charset = ctx.string("charset", "UTF-8") or "UTF-8"
        try:
            self.charset = codecs.lookup(charset).name
        except LookupError:
            ctx.problem("charset", "unknown character set")
            self.charset = "utf-8"

    def intercept(self, event: Any) -> Any:
        assert self.pattern is not None
        text = event.body.decode(self.charset, errors="replace")
        event.body = self.pattern.sub(self.repl, text).encode(self.charset)
        return event


INTERCEPTORS = {
    "timestamp": TimestampInterceptor,
    "host": HostInterceptor,
    "static": StaticInterceptor,
    "remove_header": RemoveHeaderInterceptor,
    "uuid": UUIDInterceptor,
    "regex_filter": RegexFilterInterceptor,
    "regex_extractor": RegexExtractorInterceptor,
    "search_replace": SearchReplaceInterceptor,
}

# Flume's builder class names, so configs that spell them out run unchanged
FLUME_CLASS_NAMES = {
    "org.apache.flume.interceptor.TimestampInterceptor$Builder": "timestamp",
    "org.apache.flume.interceptor.HostInterceptor$Builder": "host",
    "org.apache.flume.interceptor.StaticInterceptor$Builder": "static",
    "org.apache.flume.interceptor.RemoveHeaderInterceptor$Builder": "remove_header",
    "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder": "uuid",
    "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder": "regex_filter",
    "org.apache.flume.interceptor.RegexExtractorInterceptor$Builder": "regex_extractor",
    "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder": "search_replace",
}

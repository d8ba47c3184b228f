"""``http``: events POSTed as JSON, Flume's HTTPSource with its JSONHandler.

The body of a POST is a JSON array of events::

    [{"headers": {"host": "web-1"}, "body": "first line"}, {"body": "second"}]

Answers: **200** once every event is committed to its required channels;
**503** when a channel refuses the batch (full): nothing of it was
committed to that channel, the client should retry; **400** for a body that
is not such an array (nothing is put); **405** for a method other than POST;
**408** (and the connection closed) for a request that did not arrive whole
within ``readTimeout``; **411**/**413** for a missing or too large
Content-Length.

Slow or idle clients cannot pin the source: connections are served by one
asyncio loop (an idle connection costs a socket, not a thread), each request
must arrive whole within ``readTimeout``, at most ``maxConnections`` are open
at once (more are answered 503 and closed), and only complete requests reach
the ``QueuedThreadPool.maxThreads`` worker threads that put into the channel.

Properties (Flume's): ``bind`` (0.0.0.0), ``port`` (required), ``handler``
(``org.apache.flume.source.http.JSONHandler``, the only one), ``ssl`` (or
Flume 1.8's ``enableSSL``) with fchannel's PEM files ``ssl.cert`` (the
certificate chain) and ``ssl.key`` (its private key); Flume's Java keystore
settings (``keystore``, ``keystorePassword``, ``keystore-type``...) are not
supported and are reported as such.  ``QueuedThreadPool.maxThreads`` (10),
``ServerConnector.idleTimeout`` (ms, the same as ``readTimeout``).
fchannel's: ``readTimeout`` (30000 ms), ``maxConnections`` (1000),
``maxBodyBytes`` (64 MiB).  The charset of the body comes from the request's
Content-Type (UTF-8 by default).
"""
from __future__ import annotations

import asyncio
import http.client
import io
import json
import ssl
from http import HTTPStatus
from typing import Any

from fchannel.agent.component import EventDrivenSource
from fchannel.agent.properties import Context
from fchannel.errors import ChannelError
from fchannel.event import Event
from fchannel.sources._serverloop import ServerLoop, connection
from fchannel.sources._tls import server_tls

_HANDLERS = {"org.apache.flume.source.http.jsonhandler", "json", "jsonhandler"}
MAX_HEADER_BYTES = 64 * 1024


class BadRequest(ValueError):
    pass


def parse_json_events(raw: bytes, charset: str = "utf-8") -> list[Event]:
    """Flume's JSONHandler format: a JSON array of {"headers": {...}, "body": str}."""
    try:
        doc = json.loads(raw.decode(charset))
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadRequest(f"body is not {charset}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(doc, list):
        raise BadRequest(f"body must be a JSON array of events, got {type(doc).__name__}")
    events = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise BadRequest(f"event {i} must be an object, got {type(item).__name__}")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise BadRequest(f"event {i}: headers must map strings to strings")
        body = item.get("body", "")
        if body is None:
            body = ""
        if not isinstance(body, str):
            raise BadRequest(f"event {i}: body must be a string, got {type(body).__name__}")
        events.append(Event(body.encode(charset), headers))
    return events


class HTTPSource(EventDrivenSource):

    def configure(self, ctx: Context) -> None:
        self.bind = ctx.string("bind", "0.0.0.0")
        self.port = ctx.integer("port", required=True, minimum=0, maximum=65535)
        handler = ctx.string("handler")
        if handler and handler.strip().lower() not in _HANDLERS:
            ctx.problem("handler", "unsupported handler; supported: "
                                   "org.apache.flume.source.http.JSONHandler")
        self.max_body = ctx.integer("maxBodyBytes", 64 * 1024 * 1024, minimum=1)
        idle = ctx.integer("ServerConnector.idleTimeout", None, minimum=1)
        self.read_timeout = ctx.integer("readTimeout", idle or 30_000, minimum=1) / 1000.0
        self.max_connections = ctx.integer("maxConnections", 1000, minimum=1)
        self.threads = ctx.integer("QueuedThreadPool.maxThreads", 10, minimum=1)
        use_ssl = ctx.boolean("ssl", False) or ctx.boolean("enableSSL", False)
        self.ssl_context: ssl.SSLContext | None = server_tls(ctx) if use_ssl else None
        if not use_ssl:
            for k in ("ssl.cert", "ssl.key"):
                if ctx.get(k) is not None:
                    ctx.problem(k, "set but ssl is not true")
        self._srv = ServerLoop(self, f"http-{self.name}", self.threads)
        self._open = 0
        self.bound_port = 0

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        (server,) = self._srv.start([lambda: asyncio.start_server(
            self._serve, self.bind or "0.0.0.0", self.port or 0, ssl=self.ssl_context,
            backlog=512, limit=MAX_HEADER_BYTES)])
        self._open = 0
        self.bound_port = server.sockets[0].getsockname()[1]
        self.log.info("listening on %s:%d%s", self.bind, self.bound_port,
                      " (TLS)" if self.ssl_context else "")

    def stop(self) -> None:
        self._stopping.set()
        self._srv.stop()

    # ---- one connection ----------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            self.counter.add("GenericProcessingFail")
            await self._respond(writer, 503, f"too many connections (maxConnections = "
                                             f"{self.max_connections})", close=True)
            writer.close()
            return
        self._open += 1
        try:
            async with connection(self, writer, quiet=(ConnectionError, OSError, ssl.SSLError,
                                                       asyncio.IncompleteReadError)):
                while not self.stopping:
                    try:   # only the reading is timed: a commit under way is never cut short
                        request = await asyncio.wait_for(self._read_request(reader, writer),
                                                         self.read_timeout)
                    except asyncio.TimeoutError:
                        await self._respond(writer, 408, "request not received within "
                                                         f"readTimeout ({self.read_timeout:g} s)",
                                            close=True)
                        break
                    if request is None:
                        break
                    raw, charset, keep = request
                    if raw is not None:
                        assert self._srv.loop is not None
                        code, message = await self._srv.loop.run_in_executor(
                            self._srv.pool, self._commit, raw, charset, writer)
                        await self._respond(writer, code, message, close=not keep)
                    if not keep:
                        break
        finally:
            self._open -= 1

    async def _respond(self, writer: asyncio.StreamWriter, code: int, message: str,
                       close: bool = False, extra: dict[str, str] | None = None) -> None:
        body = (message + "\n").encode() if message else b""
        reason = HTTPStatus(code).phrase
        head = [f"HTTP/1.1 {code} {reason}", "Server: fchannel-http-source",
                "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}"]
        if close:
            head.append("Connection: close")
        for k, v in (extra or {}).items():
            head.append(f"{k}: {v}")
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            ) -> tuple[bytes | None, str, bool] | None:
        """Read one request: (body, charset, keep-alive), with body None when it
        was answered already (405); None when the connection should close."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                await self._respond(writer, 400, "incomplete request", close=True)
            return None
        except asyncio.LimitOverrunError:
            await self._respond(writer, 431, "request headers too large", close=True)
            return None
        line, _, rest = head.partition(b"\r\n")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._respond(writer, 400, "bad request line", close=True)
            return None
        method, _target, version = parts
        headers = http.client.parse_headers(io.BytesIO(rest))
        conn_hdr = (headers.get("Connection") or "").lower()
        keep = version == "HTTP/1.1" and "close" not in conn_hdr
        keep = keep or (version == "HTTP/1.0" and "keep-alive" in conn_hdr)
        length = headers.get("Content-Length")
        if method != "POST":
            if length and length.isdigit() and int(length) <= self.max_body:
                await reader.readexactly(int(length))
            else:
                keep = False
            await self._respond(writer, 405, "", close=not keep, extra={"Allow": "POST"})
            return (None, "", keep) if keep else None
        try:
            n = int(length) if length is not None else -1
        except ValueError:
            n = -1
        if n < 0:
            self.counter.add("EventReadFail")
            await self._respond(writer, 411 if length is None else 400,
                                "Content-Length required", close=True)
            return None
        if n > self.max_body:
            self.counter.add("EventReadFail")
            await self._respond(writer, 413, f"body of {n} bytes exceeds maxBodyBytes="
                                             f"{self.max_body}", close=True)
            return None
        raw = await reader.readexactly(n)
        charset = "utf-8"
        for part in (headers.get("Content-Type") or "").split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                charset = v.strip().strip('"')
        return raw, charset, keep

    def _commit(self, raw: bytes, charset: str, writer: Any) -> tuple[int, str]:
        """In a worker thread: parse and put; the answer's status and text."""
        self.counter.add("AppendBatchReceivedCount")
        try:
            events = parse_json_events(raw, charset)
        except BadRequest as exc:
            self.counter.add("EventReadFail")
            self.log.warning("bad request from %s: %s", writer.get_extra_info("peername"), exc)
            return 400, f"Bad request: {exc}"
        self.counter.add("EventReceivedCount", len(events))
        if self.stopping:
            return 503, "agent is stopping"
        try:
            assert self.channel_processor is not None
            self.channel_processor.process_event_batch(events)
        except ChannelError as exc:
            self.counter.add("ChannelWriteFail")
            self.log.warning("channel refused %d event(s): %s", len(events), exc)
            return 503, f"Service unavailable: {exc}"
        except Exception as exc:
            self.counter.add("GenericProcessingFail")
            self.log.exception("unexpected error putting %d event(s)", len(events))
            return 500, f"Internal error: {exc}"
        self.counter.add("EventAcceptedCount", len(events))
        self.counter.add("AppendBatchAcceptedCount")
        return 200, "OK"

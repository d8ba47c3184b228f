"""``http``: events POSTed as JSON, Flume's HTTPSource with its JSONHandler.

The body of a POST is a JSON array of events::

    [{"headers": {"host": "web-1"}, "body": "first line"}, {"body": "second"}]

Answers: **200** once every event is committed to its required channels;
**503** when a channel refuses the batch (full): nothing of it was
committed to that channel, the client should retry; **400** for a body that
is not such an array (nothing is put); **405** for a method other than POST.

Properties (Flume's): ``bind`` (0.0.0.0), ``port`` (required), ``handler``
(``org.apache.flume.source.http.JSONHandler``, the only one), and the
charset of the body from the request's Content-Type (UTF-8 by default).
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fchannel.agent.component import EventDrivenSource
from fchannel.agent.properties import Context
from fchannel.errors import ChannelError
from fchannel.event import Event

_HANDLERS = {"org.apache.flume.source.http.jsonhandler", "json", "jsonhandler"}


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
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        source = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "fchannel-http-source"
            protocol_version = "HTTP/1.1"

            def _answer(self, code: int, message: str) -> None:
                body = (message + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                source._handle(self)

            def _not_allowed(self) -> None:
                self.send_response(405)
                self.send_header("Allow", "POST")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815

            def log_message(self, fmt: str, *args: Any) -> None:
                source.log.debug("%s " + fmt, self.address_string(), *args)

        self._httpd = ThreadingHTTPServer((self.bind or "0.0.0.0", self.port or 0), Handler)
        self._httpd.daemon_threads = True
        self.bound_port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name=f"http-{self.name}", daemon=True)
        self._thread.start()
        self.log.info("listening on %s:%d", self.bind, self.bound_port)

    def _handle(self, req: Any) -> None:
        length = req.headers.get("Content-Length")
        try:
            n = int(length) if length is not None else -1
        except ValueError:
            n = -1
        if n < 0:
            self.counter.add("EventReadFail")
            req.close_connection = True
            req._answer(411 if length is None else 400, "Content-Length required")
            return
        if n > self.max_body:
            self.counter.add("EventReadFail")
            req.close_connection = True
            req._answer(413, f"body of {n} bytes exceeds maxBodyBytes={self.max_body}")
            return
        raw = req.rfile.read(n)
        charset = "utf-8"
        ctype = req.headers.get("Content-Type", "")
        for part in ctype.split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                charset = v.strip().strip('"')
        self.counter.add("AppendBatchReceivedCount")
        try:
            events = parse_json_events(raw, charset)
        except BadRequest as exc:
            self.counter.add("EventReadFail")
            self.log.warning("bad request from %s: %s", req.address_string(), exc)
            req._answer(400, f"Bad request: {exc}")
            return
        self.counter.add("EventReceivedCount", len(events))
        if self.stopping:
            req._answer(503, "agent is stopping")
            return
        try:
            assert self.channel_processor is not None
            self.channel_processor.process_event_batch(events)
        except ChannelError as exc:
            self.counter.add("ChannelWriteFail")
            self.log.warning("channel refused %d event(s): %s", len(events), exc)
            req._answer(503, f"Service unavailable: {exc}")
            return
        except Exception as exc:
            self.counter.add("GenericProcessingFail")
            self.log.exception("unexpected error putting %d event(s)", len(events))
            req._answer(500, f"Internal error: {exc}")
            return
        self.counter.add("EventAcceptedCount", len(events))
        self.counter.add("AppendBatchAcceptedCount")
        req._answer(200, "OK")

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

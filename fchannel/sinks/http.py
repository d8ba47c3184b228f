"""``http``: POSTs each event's body to a URL, Flume's HttpSink.

One event is taken per transaction and sent as the body of one POST (over a
kept-alive connection).  What happens next depends on the HTTP status, as in
Flume: three settings decide, each with a default for every status and
overrides per status code (``rollback.503``) or per class (``rollback.5XX``;
an exact code wins over its class):

- **rollback** (``defaultRollback`` true): roll the take back (the event
  stays at the head of the channel and is sent again), else commit it;
- **backoff** (``defaultBackoff`` true): the sink runner backs off before the
  next event;
- **incrementMetrics** (``defaultIncrementMetrics`` false): count the event in
  ``EventDrainSuccessCount``.

Flume's defaults roll back and back off on *every* status, 200 included, so
a configuration sets ``rollback.2XX = false`` (and usually ``backoff.2XX =
false``, ``incrementMetrics.2XX = true``) for delivered events to leave the
channel; the sink warns at start when nothing lets a 2XX commit.  A
connection that cannot be made, or a request that times out, rolls back and
backs off.

Properties (Flume's): ``endpoint`` (required, ``http://`` or ``https://``),
``connectTimeout`` (5000 ms), ``requestTimeout`` (5000 ms),
``contentTypeHeader`` (``text/plain``), ``acceptHeader`` (``text/plain``),
``defaultBackoff``, ``defaultRollback``, ``defaultIncrementMetrics``,
``backoff.<code>``, ``rollback.<code>``, ``incrementMetrics.<code>``.
"""
from __future__ import annotations

import http.client
import re
import urllib.parse
from typing import Any

from fchannel.agent.component import EventDeliveryError, Sink, Status
from fchannel.agent.properties import Context
from fchannel.errors import ChannelError

_CODE = re.compile(r"^(\d{3}|\dXX)$", re.IGNORECASE)
_SETTINGS = ("backoff", "rollback", "incrementMetrics")


def decide(overrides: dict[str, bool], default: bool, status: int) -> bool:
    """Flume's findOverrideValue: the exact code, then its class (``4XX``), then the default."""
    code = str(status)
    if code in overrides:
        return overrides[code]
    cls = code[0] + "XX"
    if cls in overrides:
        return overrides[cls]
    return default


class HttpSink(Sink):

    def configure(self, ctx: Context) -> None:
        endpoint = ctx.string("endpoint", required=True)
        self.endpoint = endpoint
        self.url: Any = None
        if endpoint:
            u = urllib.parse.urlsplit(endpoint.strip())
            if u.scheme not in ("http", "https") or not u.hostname:
                ctx.problem("endpoint", "must be an http:// or https:// URL")
            else:
                try:
                    _ = u.port
                except ValueError:
                    ctx.problem("endpoint", "has a bad port")
                else:
                    self.url = u
        self.connect_timeout = ctx.integer("connectTimeout", 5000, minimum=1) / 1000.0
        self.request_timeout = ctx.integer("requestTimeout", 5000, minimum=1) / 1000.0
        self.content_type = ctx.string("contentTypeHeader", "text/plain") or "text/plain"
        self.accept = ctx.string("acceptHeader", "text/plain") or "text/plain"
        self.defaults = {
            "backoff": ctx.boolean("defaultBackoff", True),
            "rollback": ctx.boolean("defaultRollback", True),
            "incrementMetrics": ctx.boolean("defaultIncrementMetrics", False),
        }
        self.overrides: dict[str, dict[str, bool]] = {s: {} for s in _SETTINGS}
        for key in ctx:
            setting, dot, code = key.partition(".")
            if not dot or setting not in _SETTINGS:
                continue
            if not _CODE.match(code):
                ctx.used.add(key)
                ctx.problem(key, "the part after the dot must be a status code (503) or "
                                 "a class (5XX)")
                continue
            self.overrides[setting][code.upper()] = ctx.boolean(key, False)
        self.configure_backoff(ctx)
        self._conn: http.client.HTTPConnection | None = None

    def start(self) -> None:
        if decide(self.overrides["rollback"], self.defaults["rollback"], 200):
            self.log.warning("a 200 answer rolls the event back (defaultRollback = true and "
                             "no rollback.200 / rollback.2XX = false): events never leave "
                             "the channel, as in Flume; set rollback.2XX = false")
        self.log.info("posting to %s", self.endpoint)

    def stop(self) -> None:
        self._disconnect()

    # ---- HTTP ----------------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is not None:
            return self._conn
        u = self.url
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except OSError:
            self.counter.add("ConnectionFailedCount")
            conn.close()
            raise
        if conn.sock is not None:
            conn.sock.settimeout(self.request_timeout)
        self.counter.add("ConnectionCreatedCount")
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self.counter.add("ConnectionClosedCount")

    def _post(self, body: bytes) -> int:
        u = self.url
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        headers = {"Content-Type": self.content_type, "Accept": self.accept,
                   "Content-Length": str(len(body))}
        for attempt in (1, 2):   # a kept-alive connection the server closed: once more
            conn = self._connect()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.will_close:
                    self._disconnect()
                return int(resp.status)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._disconnect()
                if attempt == 2:
                    raise
            except (OSError, http.client.HTTPException):
                self._disconnect()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- the loop ------------------------------------------------------------------------
    def process(self) -> Status:
        tx = self.channel.transaction()
        tx.begin()
        try:
            try:
                event = tx.take()
            except ChannelError:
                self.counter.add("ChannelReadFail")
                raise
            if event is None:
                self.counter.add("BatchEmptyCount")
                tx.commit()
                return Status.BACKOFF
            self.counter.add("EventDrainAttemptCount")
            try:
                status = self._post(bytes(event.body))
            except (OSError, http.client.HTTPException) as exc:
                self.counter.add("EventWriteFail")
                raise EventDeliveryError(f"sink {self.name!r}: POST to {self.endpoint} "
                                         f"failed: {exc}") from exc
            rollback = decide(self.overrides["rollback"], self.defaults["rollback"], status)
            if rollback:
                tx.rollback()
            else:
                tx.commit()
            if decide(self.overrides["incrementMetrics"], self.defaults["incrementMetrics"],
                      status):
                self.counter.add("EventDrainSuccessCount")
            if status >= 400:
                self.log.debug("%s answered %d (%s)", self.endpoint, status,
                               "rolled back" if rollback else "committed")
            backoff = decide(self.overrides["backoff"], self.defaults["backoff"], status)
            return Status.BACKOFF if backoff else Status.READY
        except BaseException:
            self.roll_back(tx)
            raise
        finally:
            self.close_done(tx)

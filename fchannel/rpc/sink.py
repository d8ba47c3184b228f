"""``grpc`` sink: sends batches to the ``grpc`` source of the next agent.

Properties (after Flume's avro sink; times in milliseconds):

- ``hostname`` (required), ``port`` (required)
- ``batch-size`` (100): events taken in one channel transaction and sent
  (in one Append, or several if they do not fit in ``maxMessageSize``)
- ``connect-timeout`` (20000): how long to wait for a connection before
  giving up on this attempt
- ``request-timeout`` (20000): the deadline of each Append
- ``reset-connection-interval`` (0, seconds as in Flume; 0 never): close
  and reopen the connection this often, so a load balancer in front of
  several collectors spreads the sinks again
- ``compression-type`` (``none``, ``deflate`` or ``gzip``)
- ``maxMessageSize`` (16 MiB, bytes): the largest request sent; a larger
  batch is cut into several Appends
- ``ssl`` (false), ``ssl.ca`` (PEM of the CA that signed the server's
  certificate; the system's roots when unset), ``ssl.cert`` and ``ssl.key``
  (PEM: a client certificate, for mutual TLS), ``ssl.server-name`` (the name
  to check in the server's certificate, when it is not ``hostname``)
- ``backoffSleepIncrement``, ``maxBackoffSleep`` (ms, as every fchannel sink)

The take is committed only after every Append of the batch was answered OK,
that is after the next agent committed the events to its channels.  Any
failure (no connection within connect-timeout, an error status, a deadline)
rolls the take back, so the events go back to the head of the channel, and
raises :class:`~fchannel.agent.component.EventDeliveryError`: the runner
backs off, and a failover or load_balance group moves to another sink.  A
batch that was committed by the next agent but whose answer was lost is sent
again: delivery is at least once.
"""
from __future__ import annotations

import time
from typing import Any

import grpc

from fchannel.agent.component import BatchSink, EventDeliveryError, Status
from fchannel.agent.properties import Context
from fchannel.rpc import _common
from fchannel.rpc import fchannel_rpc_pb2_grpc as pb_grpc

# answers after which the connection is dropped and made anew on the next try
_RESET_ON = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                       grpc.StatusCode.INTERNAL})


class GrpcSink(BatchSink):

    def configure(self, ctx: Context) -> None:
        self.hostname = ctx.string("hostname", required=True)
        self.port = ctx.integer("port", required=True, minimum=1, maximum=65535)
        self.batch_size = ctx.integer("batch-size", 100, minimum=1)
        self.connect_timeout = ctx.integer("connect-timeout", 20_000, minimum=1) / 1000.0
        self.request_timeout = ctx.integer("request-timeout", 20_000, minimum=1) / 1000.0
        self.reset_interval = ctx.number("reset-connection-interval", 0.0, minimum=0)
        self.compression = _common.compression(ctx)
        self.max_message = _common.max_message_size(ctx)
        self.ssl = ctx.boolean("ssl", False)
        self.ca = self.cert = self.key = None
        self.server_name = ctx.string("ssl.server-name", None)
        if self.ssl:
            self.ca = _common.read_pem(ctx, "ssl.ca")
            self.cert = _common.read_pem(ctx, "ssl.cert")
            self.key = _common.read_pem(ctx, "ssl.key")
            if (ctx.get("ssl.cert") is None) != (ctx.get("ssl.key") is None):
                ctx.problem("ssl.cert" if ctx.get("ssl.cert") is None else "ssl.key",
                            "a client certificate needs both ssl.cert and ssl.key")
        else:
            for k in ("ssl.ca", "ssl.cert", "ssl.key", "ssl.server-name"):
                if ctx.get(k) is not None:
                    ctx.problem(k, "set but ssl is not true")
        self.configure_backoff(ctx)
        self.target = f"{self.hostname}:{self.port}"
        if self.hostname and ":" in self.hostname and not self.hostname.startswith("["):
            self.target = f"[{self.hostname}]:{self.port}"
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._connected_at = 0.0

    # ---- connection -----------------------------------------------------------
    def _options(self) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_message),
            ("grpc.max_receive_message_length", self.max_message),
            ("grpc.enable_http_proxy", 0),         # agents talk directly
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if self.server_name:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
        return opts

    def _connect(self) -> None:
        if self._channel is not None and self.reset_interval and \
                time.monotonic() - self._connected_at >= self.reset_interval:
            self.log.info("reset-connection-interval passed: reconnecting to %s", self.target)
            self._disconnect()
        if self._channel is not None:
            return
        if self.ssl:
            creds = grpc.ssl_channel_credentials(root_certificates=self.ca,
                                                 private_key=self.key,
                                                 certificate_chain=self.cert)
            channel = grpc.secure_channel(self.target, creds, options=self._options(),
                                          compression=self.compression)
        else:
            channel = grpc.insecure_channel(self.target, options=self._options(),
                                            compression=self.compression)
        try:
            grpc.channel_ready_future(channel).result(timeout=self.connect_timeout)
        except grpc.FutureTimeoutError:
            channel.close()
            self.counter.add("ConnectionFailedCount")
            raise EventDeliveryError(
                f"sink {self.name!r}: no connection to {self.target} within "
                f"connect-timeout={self.connect_timeout * 1000:.0f}ms") from None
        self._channel = channel
        self._stub = pb_grpc.EventServiceStub(channel)
        self._connected_at = time.monotonic()
        self.counter.add("ConnectionCreatedCount")
        self.log.info("connected to %s", self.target)

    def _disconnect(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()
            self.counter.add("ConnectionClosedCount")

    # ---- delivery -------------------------------------------------------------
    def process(self) -> Status:
        # connect before taking, so a dead next hop costs no take and rollback
        self._connect()
        return super().process()

    def deliver(self, events: list[Any]) -> None:
        try:
            chunks = _common.split_to_fit(events, self.max_message)
        except ValueError as exc:
            raise EventDeliveryError(f"sink {self.name!r}: {exc}") from None
        for chunk in chunks:
            try:
                reply = self._stub.Append(_common.to_request(chunk),
                                          timeout=self.request_timeout,
                                          compression=self.compression)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                details = exc.details() if hasattr(exc, "details") else str(exc)
                if code in _RESET_ON:
                    self._disconnect()
                name = code.name if code is not None else "an error"
                raise EventDeliveryError(f"{self.target} answered {name}: {details}") from None
            if reply.committed != len(chunk):
                raise EventDeliveryError(f"{self.target} committed {reply.committed} of "
                                         f"{len(chunk)} event(s)")

    def stop(self) -> None:
        self._disconnect()

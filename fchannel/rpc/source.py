"""``grpc`` source: receives batches from the ``grpc`` sinks of other agents.

Properties (after Flume's avro source):

- ``bind`` (required), ``port`` (required; 0 picks a free one, logged)
- ``threads`` (8): the server's worker threads, so at most this many batches
  are committed at once
- ``maxBatchSize`` (10000): a larger Append is refused (INVALID_ARGUMENT)
- ``maxMessageSize`` (16 MiB, bytes): the largest request accepted
- ``compression-type`` (``none``): compression of the answers; requests are
  accepted compressed or not, whatever the sink chose
- ``ssl`` (false), ``ssl.cert`` and ``ssl.key`` (PEM: the server's
  certificate chain and key, required with ssl), ``ssl.ca`` (PEM: the CA
  that signs client certificates; when set, clients must present one:
  mutual TLS), ``ssl.require-client-auth`` (true when ``ssl.ca`` is set)

Each Append is answered only after the channel processor committed the whole
batch to every required channel.  Errors: a full required channel is
RESOURCE_EXHAUSTED, any other refusal of a required channel (closed, out of
disk, a failed write) is UNAVAILABLE, a stopping source is UNAVAILABLE, and
an unexpected error (a faulty interceptor, say) is INTERNAL.  A request whose
deadline passed before the commit began is not committed (DEADLINE_EXCEEDED).
The sink retries any of them: delivery is at least once.
"""
from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc

from fchannel.agent.component import EventDrivenSource
from fchannel.agent.properties import Context
from fchannel.errors import ChannelError, ChannelFullError
from fchannel.rpc import _common
from fchannel.rpc import fchannel_rpc_pb2 as pb
from fchannel.rpc import fchannel_rpc_pb2_grpc as pb_grpc


class _Servicer(pb_grpc.EventServiceServicer):

    def __init__(self, source: GrpcSource) -> None:
        self.source = source

    def Append(self, request: pb.AppendRequest, context: grpc.ServicerContext,
               ) -> pb.AppendResponse:
        src = self.source
        n = len(request.events)
        src.counter.add("AppendBatchReceivedCount")
        src.counter.add("EventReceivedCount", n)
        if src.stopping:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"source {src.name!r} is stopping")
        if n > src.max_batch:
            src.counter.add("EventReadFail", n)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"batch of {n} events is over maxBatchSize={src.max_batch} of "
                          f"source {src.name!r}")
        if n == 0:
            src.counter.add("AppendBatchAcceptedCount")
            return pb.AppendResponse(committed=0)
        if not context.is_active():
            # the caller gave up (deadline, cancel): committing now would only
            # make a duplicate of the batch it will send again
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the caller's deadline passed "
                                                             "before the commit began")
        code, message = src.commit(_common.from_request(request))
        if code is not None:
            context.abort(code, message)
        src.counter.add("AppendBatchAcceptedCount")
        src.counter.add("EventAcceptedCount", n)
        return pb.AppendResponse(committed=n)

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        if self.source.stopping:
            context.abort(grpc.StatusCode.UNAVAILABLE, "stopping")
        return pb.PingResponse(source=self.source.name)


class GrpcSource(EventDrivenSource):

    def configure(self, ctx: Context) -> None:
        self.bind = ctx.string("bind", required=True)
        self.port = ctx.integer("port", required=True, minimum=0, maximum=65535)
        self.threads = ctx.integer("threads", 8, minimum=1)
        self.max_batch = ctx.integer("maxBatchSize", 10_000, minimum=1)
        self.max_message = _common.max_message_size(ctx)
        self.compression = _common.compression(ctx)
        self.ssl = ctx.boolean("ssl", False)
        self.cert = self.key = self.ca = None
        self.require_client_auth = False
        if self.ssl:
            self.cert = _common.read_pem(ctx, "ssl.cert", required=True)
            self.key = _common.read_pem(ctx, "ssl.key", required=True)
            self.ca = _common.read_pem(ctx, "ssl.ca")
            self.require_client_auth = ctx.boolean("ssl.require-client-auth",
                                                   self.ca is not None)
            if self.require_client_auth and self.ca is None:
                ctx.problem("ssl.require-client-auth",
                            "client authentication needs ssl.ca (the CA of client certificates)")
        else:
            for k in ("ssl.cert", "ssl.key", "ssl.ca", "ssl.require-client-auth"):
                if ctx.get(k) is not None:
                    ctx.problem(k, "set but ssl is not true")
        self._server: grpc.Server | None = None
        self.bound_port = 0

    def start(self) -> None:
        self._stopping.clear()
        options = [
            ("grpc.max_receive_message_length", self.max_message),
            ("grpc.max_send_message_length", self.max_message),
            # never share the port with another process (Linux allows it by default)
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.threads,
                                                        thread_name_prefix=f"grpc-{self.name}"),
                             options=options, compression=self.compression)
        pb_grpc.add_EventServiceServicer_to_server(_Servicer(self), server)
        address = f"{self.bind}:{self.port}"
        if ":" in str(self.bind) and not str(self.bind).startswith("["):
            address = f"[{self.bind}]:{self.port}"  # an IPv6 literal
        try:
            if self.ssl:
                creds = grpc.ssl_server_credentials(
                    [(self.key, self.cert)], root_certificates=self.ca,
                    require_client_auth=self.require_client_auth)
                port = server.add_secure_port(address, creds)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"source {self.name!r}: cannot listen on {address}: {exc}") from None
        if not port:
            raise OSError(f"source {self.name!r}: cannot listen on {address}")
        server.start()
        self._server = server
        self.bound_port = port
        self.log.info("listening on %s:%d (grpc%s)", self.bind, port,
                      ", TLS" + (" with client certificates" if self.require_client_auth
                                 else "") if self.ssl else "")

    def commit(self, events: list[Any]) -> tuple[grpc.StatusCode | None, str]:
        """Put *events* through the channel processor; (None, "") once committed,
        else the status code and message to answer with."""
        assert self.channel_processor is not None
        try:
            self.channel_processor.process_event_batch(events)
        except ChannelFullError as exc:
            self.counter.add("ChannelWriteFail")
            self.log.warning("a required channel is full; refused %d event(s): %s",
                             len(events), exc)
            return grpc.StatusCode.RESOURCE_EXHAUSTED, f"channel full: {exc}"
        except ChannelError as exc:
            self.counter.add("ChannelWriteFail")
            self.log.warning("a required channel refused %d event(s): %s", len(events), exc)
            return grpc.StatusCode.UNAVAILABLE, f"channel failure: {exc}"
        except Exception as exc:
            self.counter.add("GenericProcessingFail")
            self.log.exception("unexpected error committing %d event(s)", len(events))
            return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"
        return None, ""

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            # batches being committed finish (and are answered); new ones are refused
            server.stop(grace=5.0).wait(10.0)

"""Multi-hop flows: the ``grpc`` sink and source that chain agents.

A ``grpc`` sink in one agent calls ``EventService.Append`` on a ``grpc``
source in the next agent with the batch it took from its channel (see
``fchannel_rpc.proto``).  The source answers only after its channel
processor committed the batch to every required channel, and the sink
commits its take only after that answer: an event leaves a hop's channel
only once the next hop has stored it (at least once, as in Flume).

This package imports :mod:`grpc` (the ``agent`` extra); the registry refers
to the components by lazy ``"module:attr"`` strings, so an agent that uses
no grpc component never imports it.
"""
from __future__ import annotations

__all__ = ["GrpcSink", "GrpcSource"]


def __getattr__(name: str) -> object:
    if name == "GrpcSource":
        from fchannel.rpc.source import GrpcSource
        return GrpcSource
    if name == "GrpcSink":
        from fchannel.rpc.sink import GrpcSink
        return GrpcSink
    raise AttributeError(f"module 'fchannel.rpc' has no attribute {name!r}")

"""Flume's agent runtime: sources -> channel processor -> channels -> sink runners.

The pieces (see each module): ``properties`` (the file format and typed
property access), ``config`` (building and validating an agent),
``registry`` (Flume type names to factories, extensible), ``processor``
(interceptors, selectors, required/optional channels), ``runners`` and
``sinkgroups`` (driving sources and sinks), ``monitoring`` (Flume JSON and
Prometheus over HTTP), ``agent`` (the lifecycle) and ``command`` (the
``fchannel agent`` subcommand).
"""
from fchannel.agent.component import (
    BatchSink,
    EventDeliveryError,
    EventDrivenSource,
    Interceptor,
    PollableSource,
    Sink,
    Source,
    Status,
)
from fchannel.agent.registry import (
    register,
    register_channel,
    register_interceptor,
    register_selector,
    register_sink,
    register_sink_processor,
    register_source,
)

__all__ = [
    "Agent",
    "BatchSink",
    "EventDeliveryError",
    "EventDrivenSource",
    "Interceptor",
    "PollableSource",
    "Sink",
    "Source",
    "Status",
    "register",
    "register_channel",
    "register_interceptor",
    "register_selector",
    "register_sink",
    "register_sink_processor",
    "register_source",
]


def __getattr__(name: str):  # Agent imports the config machinery: load it on use
    if name == "Agent":
        from fchannel.agent.agent import Agent
        return Agent
    raise AttributeError(f"module 'fchannel.agent' has no attribute {name!r}")

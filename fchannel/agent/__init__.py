"""Flume's agent runtime: sources -> channel processor -> channels -> sink runners.

The pieces (see each module): ``properties`` (the file format and typed
property access), ``config`` (building and validating an agent),
``registry`` (Flume type names to factories, extensible), ``processor``
(interceptors, selectors, required/optional channels), ``runners`` and
``sinkgroups`` (driving sources and sinks), ``monitoring`` (Flume JSON and
Prometheus over HTTP), ``agent`` (the lifecycle) and ``command`` (the
``fchannel agent`` subcommand).

Writing a component (integrations do this for Kafka, RPC or object stores)::

    from fchannel.agent import BatchSink, PollableSource, Status, register_sink

    class PrintSink(BatchSink):
        def configure(self, ctx):                  # ctx: the sink's properties
            self.batch_size = ctx.integer("batchSize", 100, minimum=1)
            self.prefix = ctx.string("prefix", required=True)   # problems are collected
        def deliver(self, events):                 # raise to roll the take back
            for e in events:
                print(self.prefix, e.body)

    register_sink("print", PrintSink)              # a1.sinks.k1.type = print

- a **sink** subclasses :class:`BatchSink` (take up to ``batch_size`` in one
  transaction, ``deliver``, commit) or :class:`Sink` (its own ``process()``
  returning ``Status.READY`` or ``Status.BACKOFF``); ``self.channel`` is set
  before ``start()``; count with ``self.counter.add("EventDrainSuccessCount")``.
- a **pollable source** subclasses :class:`PollableSource`: ``process()``
  reads a batch and calls ``self.channel_processor.process_event_batch``; if
  that raises a ChannelError it keeps the batch, returns BACKOFF and offers
  the same events next time.
- an **event-driven source** subclasses :class:`EventDrivenSource`, runs its
  own threads from ``start()`` and hands events to
  ``self.put_batch_retrying(events)`` (retries while the channel is full) or
  to the channel processor directly (and answers its client with the error).
- ``configure(ctx)`` never raises for a bad value: the typed getters of
  :class:`~fchannel.agent.properties.Context` (``string``, ``integer``,
  ``number``, ``boolean``, ``names``, ``regex``) record a problem naming the
  key and the value, and the agent reports all problems at once.
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

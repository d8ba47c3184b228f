"""The ``kafka`` source and sink of the agent, with Flume's property names.

Source (``type = kafka``)::

    a1.sources.k.type = kafka
    a1.sources.k.channels = c1                 # exactly one FileChannel
    a1.sources.k.kafka.bootstrap.servers = host:9092
    a1.sources.k.kafka.topics = orders,payments    # or kafka.topics.regex = ^orders-.*
    a1.sources.k.kafka.consumer.group.id = flume   # Flume's default
    a1.sources.k.batchSize = 1000
    a1.sources.k.batchDurationMillis = 1000
    a1.sources.k.setTopicHeader = true
    a1.sources.k.topicHeader = topic
    a1.sources.k.kafka.consumer.auto.offset.reset = earliest   # any kafka.consumer.* setting
    a1.sources.k.kafka.client = kafka          # or confluent (confluent-kafka, librdkafka)

The source spools through :class:`~fchannel.integrations.kafka.KafkaSpooler`:
exactly once into its channel, which must therefore be one channel with marks
(a FileChannel); the source's interceptors run on each batch. Several agents
with the same ``kafka.consumer.group.id`` share the topic's partitions.

Sink (``type = kafka``)::

    a1.sinks.out.type = kafka
    a1.sinks.out.channel = c1
    a1.sinks.out.kafka.bootstrap.servers = host:9092
    a1.sinks.out.kafka.topic = out            # Flume's default: default-flume-topic
    a1.sinks.out.flumeBatchSize = 100
    a1.sinks.out.kafka.producer.acks = all    # the default here; Flume's is 1
    a1.sinks.out.allowTopicOverride = true    # the topicHeader header picks the topic
    a1.sinks.out.topicHeader = topic
    a1.sinks.out.partitionIdHeader = part     # optional
    a1.sinks.out.defaultPartitionId = 0       # optional
    a1.sinks.out.keyHeader = key              # the message key comes from this header
    a1.sinks.out.kafka.producer.linger.ms = 5 # any kafka.producer.* setting
    a1.sinks.out.kafka.client = kafka         # or confluent

``kafka.topic`` takes Flume's escapes: ``%{header}`` is the event's header
(empty when missing, as in Flume), and the time escapes of the hdfs sink
(``%Y``, ``%m``, ...) use the event's ``timestamp`` header, or the sink's
clock when it has none. As in Flume, the escapes apply when the
``topicHeader`` header does not name the topic.

Each batch is taken in one transaction, sent, flushed, and every send is
checked before the take commits (at least once out of the channel).

``kafka.topics`` is Flume's comma list (commas and/or whitespace).

``kafka.client`` picks the Kafka library: ``kafka`` (kafka-python, the
default) or ``confluent`` (confluent-kafka, ``pip install
'fchannel[confluent]'``; the source spools with
:class:`~fchannel.integrations.confluent.ConfluentSpooler`, the sink checks
every delivery report). With kafka-python, Flume's dotted client settings
become keyword arguments (``auto.offset.reset`` -> ``auto_offset_reset``;
numbers and true/false are converted); with confluent-kafka they are passed
to librdkafka as they are (its property names are Kafka's). Register both with :func:`register` (the agent's registry does so
for the name ``kafka``), or name them by path:
``type = fchannel.integrations.kafka_agent.KafkaSource``.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Any

from fchannel.integrations._spool import ThreadSpooler
from fchannel.integrations.kafka import KafkaSpooler, ProducerTarget

from fchannel.agent.component import BatchSink, EventDrivenSource
from fchannel.agent.properties import Context
from fchannel.errors import ConfigError

__all__ = ["KafkaSink", "KafkaSource", "client_settings", "register"]

_INT = re.compile(r"^-?\d+$")
_LIST = re.compile(r"[,\s]+")
CLIENTS = ("kafka", "confluent")


def _client(ctx: Context) -> str:
    """The ``kafka.client`` property: ``kafka`` (kafka-python) or ``confluent``."""
    client = (ctx.string("kafka.client", "kafka", choices=CLIENTS) or "kafka").lower()
    if client == "confluent":
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            ctx.problem("kafka.client", "confluent needs confluent-kafka: "
                        "pip install 'fchannel[confluent]'")
    return client


def librdkafka_settings(ctx: Context) -> dict[str, str]:
    """Flume-style ``a.b.c = v`` client properties as librdkafka's config."""
    return {key: ctx.get(key).strip() for key in ctx}


def topic_renderer(template: str) -> Any:
    """None for a plain topic; else a function of an event rendering Flume's
    escapes in *template* (``%{header}``, time escapes from the event's
    ``timestamp`` header or the clock). A bad escape is a ConfigError."""
    from fchannel.sinks._pathescape import PathTemplate
    tmpl = PathTemplate(template)
    if tmpl.constant:
        return None

    def render(e: Any) -> str:
        ts = None
        if tmpl.needs_time:
            raw = e.headers.get("timestamp")
            ts = int(raw) if raw is not None and _INT.match(raw) else int(time.time() * 1000)
        return tmpl.render(e.headers, ts)
    return render


def client_settings(ctx: Context) -> dict[str, Any]:
    """Flume-style ``a.b.c = v`` client properties as kafka-python kwargs."""
    out: dict[str, Any] = {}
    for key in ctx:
        raw = ctx.get(key)
        value: Any = raw.strip()
        if _INT.match(value):
            value = int(value)
        elif value.lower() in ("true", "false"):
            value = value.lower() == "true"
        out[key.replace(".", "_").replace("-", "_")] = value
    return out


class KafkaSource(EventDrivenSource):
    """Flume's Kafka source, exactly once into one FileChannel."""

    def configure(self, ctx: Context) -> None:
        self.bootstrap = ctx.string("kafka.bootstrap.servers", required=True)
        self.client = _client(ctx)
        self.topics = [t for t in _LIST.split(ctx.string("kafka.topics", "") or "") if t]
        self.pattern = ctx.string("kafka.topics.regex")
        if self.pattern:
            ctx.regex("kafka.topics.regex")   # reports a bad expression
        if bool(self.topics) == bool(self.pattern):
            ctx.problem(None, "set exactly one of kafka.topics and kafka.topics.regex")
        self.batch_size = ctx.integer("batchSize", 1000, minimum=1)
        self.batch_duration = ctx.integer("batchDurationMillis", 1000, minimum=1) / 1000.0
        self.set_topic_header = ctx.boolean("setTopicHeader", True)
        self.topic_header = ctx.string("topicHeader", "topic")
        if self.client == "confluent":
            raw = librdkafka_settings(ctx.sub("kafka.consumer."))
            raw.setdefault("group.id", "flume")
            if raw.get("enable.auto.commit", "false").lower() != "false":
                ctx.problem("kafka.consumer.enable.auto.commit",
                            "must be false: the source commits offsets after the channel")
            raw["enable.auto.commit"] = "false"
            self.consumer_settings: dict[str, Any] = raw
        else:
            consumer = client_settings(ctx.sub("kafka.consumer."))
            consumer.setdefault("group_id", "flume")
            if consumer.get("enable_auto_commit"):
                ctx.problem("kafka.consumer.enable.auto.commit",
                            "must be false: the source commits offsets after the channel")
            consumer["enable_auto_commit"] = False
            for bad in ("key_deserializer", "value_deserializer"):
                if bad in consumer:
                    ctx.problem(f"kafka.consumer.{bad.replace('_', '.')}",
                                "is not supported: events carry the raw bytes")
            self.consumer_settings = consumer
        self._consumer: Any = None
        self._spooler: Any = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _channel(self) -> Any:
        assert self.channel_processor is not None
        channels = list(self.channel_processor.selector.channels.values())
        if len(channels) != 1 or not hasattr(channels[0], "marks"):
            raise ConfigError(
                f"kafka source {self.name!r} needs exactly one channel that keeps marks "
                f"(a file channel) to spool exactly once; it has {len(channels)} "
                f"({', '.join(type(c).__name__ for c in channels)})")
        return channels[0]

    def start(self) -> None:
        channel = self._channel()
        options = dict(topics=self.topics or None, pattern=self.pattern or None,
                       batch_size=self.batch_size, batch_duration=self.batch_duration,
                       set_topic_header=self.set_topic_header, topic_header=self.topic_header)
        if self.client == "confluent":
            from confluent_kafka import Consumer
            self._consumer = Consumer({"bootstrap.servers": self.bootstrap,
                                       **self.consumer_settings})
            make: Any = _confluent_spooler()
        else:
            from kafka import KafkaConsumer
            self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap,
                                           **self.consumer_settings)
            make = _InterceptingSpooler
        try:
            self._spooler = make(self, self._consumer, channel, **options)
        except BaseException:
            self._consumer.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"kafka-source-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._spooler is not None
        try:
            self._spooler.run()
        except BaseException as exc:  # reported, the agent keeps running
            self.error = exc
            self.log.exception("kafka source stopped on an error")

    def stop(self) -> None:
        self.request_stop()
        if self._spooler is not None:
            self._spooler.stop()
        if self._thread is not None:
            self._thread.join(60)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class _CountingSpooler(ThreadSpooler):
    """Mixed in before a client's spooler: it belongs to *source* and counts
    like a Flume source."""

    def __init__(self, source: KafkaSource, *args: Any, **kw: Any) -> None:
        self._source = source
        super().__init__(*args, **kw)

    def _event(self, r: Any) -> Any:
        e = super()._event(r)
        self._source.counter.add("EventReceivedCount")
        return e

    def flush(self) -> int:
        n = super().flush()
        if n:
            self._source.counter.add("EventAcceptedCount", n)
            self._source.counter.add("AppendBatchAcceptedCount")
        return n


class _Intercepting(_CountingSpooler):
    """Runs the source's interceptors on the events of each batch as it is
    committed.  A retried commit (a full channel) runs them again on the
    records' own events, never on what an earlier try made of them."""

    def _transform(self, events: list) -> list:
        proc = self._source.channel_processor
        if proc is not None and proc.interceptors:
            return list(proc.intercept(events))
        return events


class _InterceptingSpooler(_Intercepting, KafkaSpooler):
    """The KafkaSpooler of the agent: interceptors on each batch, Flume's counters."""


def _confluent_spooler() -> Any:
    """The ConfluentSpooler of the agent (built on first use: confluent-kafka
    is optional)."""
    from fchannel.integrations.confluent import ConfluentSpooler

    class _InterceptingConfluent(_Intercepting, ConfluentSpooler):
        pass
    return _InterceptingConfluent


class KafkaSink(BatchSink):
    """Flume's Kafka sink: a batch per transaction, every send acknowledged
    before the take commits."""

    def configure(self, ctx: Context) -> None:
        self.bootstrap = ctx.string("kafka.bootstrap.servers", required=True)
        self.client = _client(ctx)
        self.topic = ctx.string("kafka.topic", "default-flume-topic")
        try:
            self.render_topic = topic_renderer(self.topic or "")
        except ConfigError as exc:
            ctx.problem("kafka.topic", str(exc))
            self.render_topic = None
        self.batch_size = ctx.integer("flumeBatchSize", 100, minimum=1)
        self.allow_topic_override = ctx.boolean("allowTopicOverride", True)
        self.topic_header = ctx.string("topicHeader", "topic")
        self.partition_header = ctx.string("partitionIdHeader")
        self.default_partition = ctx.integer("defaultPartitionId", None, minimum=0)
        self.key_header = ctx.string("keyHeader", "key")
        self.timeout = ctx.integer("kafka.producer.timeoutMillis", 30000, minimum=1) / 1000.0
        if self.client == "confluent":
            raw = librdkafka_settings(ctx.sub("kafka.producer."))
            raw.pop("timeoutMillis", None)
            raw.setdefault("acks", "all")
            self.producer_settings: dict[str, Any] = raw
        else:
            producer = client_settings(ctx.sub("kafka.producer."))
            producer.pop("timeoutMillis", None)
            acks = str(producer.get("acks", "all")).lower()
            producer["acks"] = "all" if acks in ("all", "-1") else int(acks) \
                if _INT.match(acks) else acks
            for bad in ("key_serializer", "value_serializer"):
                if bad in producer:
                    ctx.problem(f"kafka.producer.{bad.replace('_', '.')}",
                                "is not supported: events are sent as raw bytes")
            self.producer_settings = producer
        self.configure_backoff(ctx)
        self._producer: Any = None
        self._target: Any = None

    def start(self) -> None:
        route = dict(allow_topic_override=self.allow_topic_override,
                     topic_header=self.topic_header, key_header=self.key_header,
                     partition_header=self.partition_header,
                     default_partition=self.default_partition, render_topic=self.render_topic)
        if self.client == "confluent":
            from confluent_kafka import Producer
            from fchannel.integrations.confluent import ProducerTarget as ConfluentTarget
            self._producer = Producer({"bootstrap.servers": self.bootstrap,
                                       **self.producer_settings})
            self._target = ConfluentTarget(self._producer, self.topic, timeout=self.timeout,
                                           **route)
            return
        from kafka import KafkaProducer
        self._producer = KafkaProducer(bootstrap_servers=self.bootstrap,
                                       **self.producer_settings)
        self._target = ProducerTarget(self._producer, self.topic, timeout=self.timeout,
                                      require_acks_all=False, **route)

    def deliver(self, events: list[Any]) -> None:
        assert self._target is not None
        self._target(events)

    def stop(self) -> None:
        if self._producer is not None:
            if self.client == "confluent":
                self._producer.flush(self.timeout)
            else:
                self._producer.close()
            self._producer = None


def register() -> None:
    """Register ``kafka`` as a source and a sink type (and Flume's class names)."""
    from fchannel.agent.registry import register as reg
    here = "fchannel.integrations.kafka_agent:"
    reg("source", "kafka", here + "KafkaSource",
        aliases=("org.apache.flume.source.kafka.KafkaSource",))
    reg("sink", "kafka", here + "KafkaSink",
        aliases=("org.apache.flume.sink.kafka.KafkaSink",))

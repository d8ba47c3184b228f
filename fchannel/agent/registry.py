"""The component registry: Flume type names to factories.

Built-in types are registered here by Flume's names (looked up without
regard to case, as Flume does for its aliases).  Integrations add theirs::

    from fchannel.agent import register_source
    register_source("kafka", KafkaSource)          # a class or any callable(name)

A type that is not registered may be a dotted Python path
(``package.module.ClassName`` or ``package.module:ClassName``), the way Flume
accepts a fully qualified Java class name.  Flume's own class names for the
built-in components are accepted as aliases, so configs that spell them out
run unchanged.

Factories: a source, sink or interceptor factory is called with the
component name and returns an object with ``configure(ctx)``; a channel
factory is called as ``factory(props, name=...)`` with the channel's
properties (without ``type``) and returns an open channel; a selector factory
is called as ``factory(source_name, channels)``; a sink processor factory as
``factory(group_name, sinks)``.
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from fchannel.errors import ConfigError

KINDS = ("source", "sink", "channel", "interceptor", "selector", "sinkprocessor")

_lock = threading.Lock()
_registry: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
_aliases: dict[str, dict[str, str]] = {k: {} for k in KINDS}


def register(kind: str, type_name: str, factory: Any, *, aliases: tuple[str, ...] = (),
             replace: bool = True) -> None:
    """Register *factory* (a callable or a ``"module:attr"`` string for a
    lazy import) as component *type_name* of *kind*."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
    if not isinstance(type_name, str) or not type_name.strip():
        raise ValueError(f"type name must be a non-empty str, got {type_name!r}")
    if not (callable(factory) or isinstance(factory, str)):
        raise TypeError(f"factory for {kind} type {type_name!r} must be callable, "
                        f"got {type(factory).__name__}")
    key = type_name.strip().lower()
    with _lock:
        if not replace and key in _registry[kind]:
            raise ValueError(f"{kind} type {type_name!r} is already registered")
        _registry[kind][key] = factory
        for a in aliases:
            _aliases[kind][a] = key


def _registrar(kind: str, what: str) -> Any:
    def register_kind(type_name: str, factory: Any) -> None:
        register(kind, type_name, factory)
    register_kind.__name__ = register_kind.__qualname__ = f"register_{what}"
    register_kind.__doc__ = (f"Register *factory* as the {what.replace('_', ' ')} type "
                             "*type_name* (see register).")
    return register_kind


register_source = _registrar("source", "source")
register_sink = _registrar("sink", "sink")
register_channel = _registrar("channel", "channel")
register_interceptor = _registrar("interceptor", "interceptor")
register_selector = _registrar("selector", "selector")
register_sink_processor = _registrar("sinkprocessor", "sink_processor")


def known_types(kind: str) -> list[str]:
    with _lock:
        return sorted(_registry[kind])


def _import_path(path: str) -> Any:
    if ":" in path:
        mod_name, _, attr = path.partition(":")
    else:
        mod_name, _, attr = path.rpartition(".")
    if not mod_name or not attr:
        raise ImportError(f"{path!r} is not a dotted path to a class")
    mod = importlib.import_module(mod_name)
    obj: Any = mod
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def canonical(kind: str, type_name: str) -> str:
    """The registered name *type_name* stands for (Flume class names resolved)."""
    name = type_name.strip()
    with _lock:
        return _aliases[kind].get(name, name.lower())


def lookup(kind: str, type_name: str) -> Callable[..., Any]:
    """The factory for *type_name*, or ConfigError naming it and the known types."""
    name = type_name.strip()
    with _lock:
        key = _aliases[kind].get(name, name.lower())
        factory = _registry[kind].get(key)
    if isinstance(factory, str):
        try:
            factory = _import_path(factory)
        except ImportError as exc:
            raise ConfigError(missing_extra(kind, name, exc)) from None
        with _lock:
            _registry[kind][key] = factory
    if factory is not None:
        return factory
    if "." in name or ":" in name:
        if name.startswith("org.apache.flume."):
            raise ConfigError(
                f"unsupported Flume {kind} type {name!r}: fchannel does not implement it; "
                f"supported: {', '.join(known_types(kind))}")
        try:
            obj = _import_path(name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"unknown {kind} type {name!r}: not registered, and not an "
                              f"importable Python path ({exc})") from None
        if not callable(obj):
            raise ConfigError(f"{kind} type {name!r} is not callable")
        return obj  # type: ignore[no-any-return]
    from fchannel.agent.properties import did_you_mean
    raise ConfigError(f"unknown {kind} type {name!r}; supported: "
                      f"{', '.join(known_types(kind))}, or a dotted Python path"
                      f"{did_you_mean(name.lower(), known_types(kind))}")


# the extra of pyproject.toml that installs each optional top-level module
EXTRAS = {
    "grpc": "agent", "google": "agent", "prometheus_client": "agent",
    "kafka": "kafka", "fsspec": "hdfs", "pyarrow": "hdfs", "s3fs": "s3",
    "fastavro": "formats", "zstandard": "formats", "faust": "faust",
    "confluent_kafka": "confluent", "aiokafka": "aiokafka", "quixstreams": "quix",
    "cryptography": "encryption",
}


def missing_extra(what: str, name: str, exc: ImportError) -> str:
    """One line naming the extra that provides the module *exc* misses."""
    mod = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(mod)
    if extra is None:
        return f"{what} {name} cannot be loaded: {exc}"
    return (f"{what} {name} needs `pip install 'fchannel[{extra}]'` "
            f"(module {mod!r} is not installed)")


# ---- built-ins -------------------------------------------------------------------

def _file_channel(props: Any, name: str = "file-channel") -> Any:
    from fchannel import FileChannel
    return FileChannel.from_properties(props, name=name)


def _validate_file_channel(props: Any, name: str = "file-channel") -> Any:
    """Check file channel properties without touching the disk: everything
    FileChannel checks before it opens its directories runs, then the open is
    stopped.  Returns the unopened instance (its capacity and
    transaction_capacity are read by the configuration)."""
    from fchannel import FileChannel  # type: ignore[attr-defined]

    class _Checked(Exception):
        pass

    class _DryFileChannel(FileChannel):  # type: ignore[misc, valid-type]
        def _open(self, *args: Any, **kwargs: Any) -> None:
            raise _Checked(self)   # everything before the open validated the settings

    if not hasattr(FileChannel, "_open"):  # a core without this hook: no dry check
        return None
    try:
        _DryFileChannel.from_properties(props, name=name)
    except _Checked as done:
        return _DryView(done.args[0])
    return None  # pragma: no cover - _open always runs


class _DryView:
    """Capacity and transaction capacity of a validated, unopened channel."""

    def __init__(self, ch: Any) -> None:
        self.name = ch.name
        self.capacity = _read(ch, "capacity", "_capacity")
        self.transaction_capacity = _read(ch, "transaction_capacity", "_transaction_capacity")

    def close(self) -> None:
        pass


def _read(obj: Any, *names: str) -> Any:
    for n in names:
        try:
            return getattr(obj, n)
        except Exception:
            continue
    return None


_file_channel.validate = _validate_file_channel  # type: ignore[attr-defined]


def _memory_channel(props: Any, name: str = "memory-channel") -> Any:
    from fchannel.memory import MemoryChannel
    return MemoryChannel.from_properties(props, name=name)


_memory_channel.validate = _memory_channel  # type: ignore[attr-defined]


F = "org.apache.flume."
#: (kind, type name, where it lives, Flume's class name for it or None)
_BUILTINS = [
    ("channel", "memory", _memory_channel, F + "channel.MemoryChannel"),
    ("channel", "file", _file_channel, F + "channel.file.FileChannel"),
    ("source", "seq", "fchannel.sources.seq:SequenceSource", F + "source.SequenceGeneratorSource"),
    ("source", "netcat", "fchannel.sources.netcat:NetcatSource", F + "source.NetcatSource"),
    ("source", "exec", "fchannel.sources.exec:ExecSource", F + "source.ExecSource"),
    ("source", "http", "fchannel.sources.http:HTTPSource", F + "source.http.HTTPSource"),
    ("source", "spooldir", "fchannel.sources.spooldir:SpoolDirectorySource",
     F + "source.SpoolDirectorySource"),
    ("source", "taildir", "fchannel.sources.taildir:TaildirSource",
     F + "source.taildir.TaildirSource"),
    ("source", "syslogtcp", "fchannel.sources.syslog:SyslogTcpSource",
     F + "source.SyslogTcpSource"),
    ("source", "multiport_syslogtcp", "fchannel.sources.syslog:MultiportSyslogTcpSource",
     F + "source.MultiportSyslogTCPSource"),
    ("source", "syslogudp", "fchannel.sources.syslog:SyslogUdpSource",
     F + "source.SyslogUDPSource"),
    ("source", "grpc", "fchannel.rpc.source:GrpcSource", None),   # multi-hop (fchannel.rpc)
    ("source", "kafka", "fchannel.integrations.kafka_agent:KafkaSource",
     F + "source.kafka.KafkaSource"),
    ("sink", "logger", "fchannel.sinks.logger:LoggerSink", F + "sink.LoggerSink"),
    ("sink", "null", "fchannel.sinks.null:NullSink", F + "sink.NullSink"),
    ("sink", "file_roll", "fchannel.sinks.file_roll:RollingFileSink", F + "sink.RollingFileSink"),
    ("sink", "http", "fchannel.sinks.http:HttpSink", F + "sink.http.HttpSink"),
    ("sink", "grpc", "fchannel.rpc.sink:GrpcSink", None),         # multi-hop (fchannel.rpc)
    ("sink", "kafka", "fchannel.integrations.kafka_agent:KafkaSink", F + "sink.kafka.KafkaSink"),
    ("sink", "hdfs", "fchannel.sinks.hdfs:HDFSEventSink", F + "sink.hdfs.HDFSEventSink"),
    ("selector", "replicating", "fchannel.agent.selectors:ReplicatingSelector",
     F + "channel.ReplicatingChannelSelector"),
    ("selector", "multiplexing", "fchannel.agent.selectors:MultiplexingSelector",
     F + "channel.MultiplexingChannelSelector"),
    ("sinkprocessor", "default", "fchannel.agent.sinkgroups:DefaultSinkProcessor",
     F + "sink.DefaultSinkProcessor"),
    ("sinkprocessor", "failover", "fchannel.agent.sinkgroups:FailoverSinkProcessor",
     F + "sink.FailoverSinkProcessor"),
    ("sinkprocessor", "load_balance", "fchannel.agent.sinkgroups:LoadBalancingSinkProcessor",
     F + "sink.LoadBalancingSinkProcessor"),
]


def _builtins() -> None:
    for kind, type_name, target, flume in _BUILTINS:
        register(kind, type_name, target, aliases=(flume,) if flume else ())
    from fchannel.agent import interceptors
    for tname, cls in interceptors.INTERCEPTORS.items():
        register("interceptor", tname, cls)
    for fqcn, tname in interceptors.FLUME_CLASS_NAMES.items():
        _aliases["interceptor"][fqcn] = tname


_builtins()

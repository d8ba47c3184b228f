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


def register_source(type_name: str, factory: Any) -> None:
    register("source", type_name, factory)


def register_sink(type_name: str, factory: Any) -> None:
    register("sink", type_name, factory)


def register_channel(type_name: str, factory: Any) -> None:
    register("channel", type_name, factory)


def register_interceptor(type_name: str, factory: Any) -> None:
    register("interceptor", type_name, factory)


def register_selector(type_name: str, factory: Any) -> None:
    register("selector", type_name, factory)


def register_sink_processor(type_name: str, factory: Any) -> None:
    register("sinkprocessor", type_name, factory)


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
    try:
        from fchannel import FileChannel  # type: ignore[attr-defined]
    except ImportError:
        raise ConfigError("channel type 'file' needs fchannel.FileChannel, which this "
                          "build of fchannel does not have") from None
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


def _builtins() -> None:
    register("channel", "memory", _memory_channel,
             aliases=("org.apache.flume.channel.MemoryChannel",))
    register("channel", "file", _file_channel,
             aliases=("org.apache.flume.channel.file.FileChannel",))

    src = "fchannel.sources."
    register("source", "seq", src + "seq:SequenceSource",
             aliases=("org.apache.flume.source.SequenceGeneratorSource",))
    register("source", "netcat", src + "netcat:NetcatSource",
             aliases=("org.apache.flume.source.NetcatSource",))
    register("source", "exec", src + "exec:ExecSource",
             aliases=("org.apache.flume.source.ExecSource",))
    register("source", "http", src + "http:HTTPSource",
             aliases=("org.apache.flume.source.http.HTTPSource",))
    register("source", "spooldir", src + "spooldir:SpoolDirectorySource",
             aliases=("org.apache.flume.source.SpoolDirectorySource",))
    register("source", "taildir", src + "taildir:TaildirSource",
             aliases=("org.apache.flume.source.taildir.TaildirSource",))
    register("source", "syslogtcp", src + "syslog:SyslogTcpSource",
             aliases=("org.apache.flume.source.SyslogTcpSource",))
    register("source", "multiport_syslogtcp", src + "syslog:MultiportSyslogTcpSource",
             aliases=("org.apache.flume.source.MultiportSyslogTCPSource",))
    register("source", "syslogudp", src + "syslog:SyslogUdpSource",
             aliases=("org.apache.flume.source.SyslogUDPSource",))
    register("source", "grpc", "fchannel.rpc.source:GrpcSource")  # multi-hop (fchannel.rpc)
    register("source", "kafka", "fchannel.integrations.kafka_agent:KafkaSource",
             aliases=("org.apache.flume.source.kafka.KafkaSource",))

    snk = "fchannel.sinks."
    register("sink", "logger", snk + "logger:LoggerSink",
             aliases=("org.apache.flume.sink.LoggerSink",))
    register("sink", "null", snk + "null:NullSink",
             aliases=("org.apache.flume.sink.NullSink",))
    register("sink", "file_roll", snk + "file_roll:RollingFileSink",
             aliases=("org.apache.flume.sink.RollingFileSink",))
    register("sink", "http", snk + "http:HttpSink",
             aliases=("org.apache.flume.sink.http.HttpSink",))
    register("sink", "grpc", "fchannel.rpc.sink:GrpcSink")  # multi-hop (fchannel.rpc)
    register("sink", "kafka", "fchannel.integrations.kafka_agent:KafkaSink",
             aliases=("org.apache.flume.sink.kafka.KafkaSink",))
    register("sink", "hdfs", snk + "hdfs:HDFSEventSink",
             aliases=("org.apache.flume.sink.hdfs.HDFSEventSink",))

    from fchannel.agent import interceptors
    for tname, cls in interceptors.INTERCEPTORS.items():
        register("interceptor", tname, cls)
    for fqcn, tname in interceptors.FLUME_CLASS_NAMES.items():
        _aliases["interceptor"][fqcn] = tname

    register("selector", "replicating", "fchannel.agent.selectors:ReplicatingSelector",
             aliases=("org.apache.flume.channel.ReplicatingChannelSelector",))
    register("selector", "multiplexing", "fchannel.agent.selectors:MultiplexingSelector",
             aliases=("org.apache.flume.channel.MultiplexingChannelSelector",))

    sg = "fchannel.agent.sinkgroups:"
    register("sinkprocessor", "default", sg + "DefaultSinkProcessor",
             aliases=("org.apache.flume.sink.DefaultSinkProcessor",))
    register("sinkprocessor", "failover", sg + "FailoverSinkProcessor",
             aliases=("org.apache.flume.sink.FailoverSinkProcessor",))
    register("sinkprocessor", "load_balance", sg + "LoadBalancingSinkProcessor",
             aliases=("org.apache.flume.sink.LoadBalancingSinkProcessor",))


_builtins()

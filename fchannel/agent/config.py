"""From Flume properties to a configured (not yet started) agent.

Reads the properties of one agent (``<agent>.sources``, ``<agent>.channels``,
``<agent>.sinks``, ``<agent>.sinkgroups`` and each component's properties),
builds every component and collects **every** problem before failing: the
:class:`~fchannel.errors.ConfigError` lists one problem per line, each
naming the full property key and its value.  Properties that nothing reads
(usually a typo, or a setting of a Flume feature fchannel does not have)
are logged as warnings, as Flume ignores them.
"""
from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fchannel.agent import registry
from fchannel.agent.component import Interceptor, Sink, Source
from fchannel.agent.counters import ChannelCounterView
from fchannel.agent.processor import ChannelProcessor
from fchannel.agent.properties import (
    Context,
    close_matches,
    did_you_mean,
    resolve_lookups,
    split_names,
)
from fchannel.agent.runners import SinkRunner, SourceRunner
from fchannel.agent.sinkgroups import DefaultSinkProcessor
from fchannel.errors import ConfigError

log = logging.getLogger("fchannel.agent")

CATEGORIES = ("sources", "channels", "sinks", "sinkgroups")


class _Unbuilt:
    """Stands for a channel that failed to build, so validation goes on."""

    transaction_capacity = None

    def __init__(self, name: str) -> None:
        self.name = name

    def close(self) -> None:
        pass


@dataclass
class AgentParts:
    name: str
    channels: dict[str, Any] = field(default_factory=dict)
    channel_views: dict[str, ChannelCounterView] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    sinks: dict[str, Any] = field(default_factory=dict)
    source_runners: list[SourceRunner] = field(default_factory=list)
    sink_runners: list[SinkRunner] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _names(agent_props: Mapping[str, str], agent: str, cat: str,
           problems: list[str]) -> list[str]:
    value = agent_props.get(cat, "")
    names = split_names(value)
    seen: set[str] = set()
    for n in names:
        if n in seen:
            problems.append(f"{agent}.{cat} = {value!r}: {n!r} is listed twice")
        seen.add(n)
    return list(dict.fromkeys(names))


def _component_props(agent_props: Mapping[str, str], cat: str, name: str) -> dict[str, str]:
    prefix = f"{cat}.{name}."
    return {k[len(prefix):]: v for k, v in agent_props.items() if k.startswith(prefix)}


def _make(kind: str, ctx: Context, type_value: str | None, *args: Any) -> Any:
    """Look up and call a factory, recording a problem instead of raising."""
    if type_value is None:
        return None
    try:
        factory = registry.lookup(kind, type_value)
    except ConfigError as exc:
        ctx.problem("type", str(exc))
        return None
    try:
        return factory(*args)
    except ConfigError as exc:
        ctx.problem(None, str(exc))
    except Exception as exc:
        ctx.problem("type", f"building the {kind} failed: {type(exc).__name__}: {exc}")
    return None


def _check_kind(obj: Any, base: type, ctx: Context, kind: str) -> Any:
    """A factory found by dotted path must build the right kind of component."""
    if obj is None or isinstance(obj, base):
        return obj
    ctx.problem("type", f"builds a {type(obj).__name__}, which is not a {kind} "
                        f"(subclass fchannel.agent.{base.__name__})")
    return None


def _configure(obj: Any, ctx: Context, what: str) -> None:
    conf = getattr(obj, "configure", None)
    if conf is None:
        return
    try:
        conf(ctx)
    except ConfigError as exc:
        ctx.problem(None, str(exc))
    except Exception as exc:  # a component's bug should still read as a config report
        ctx.problem(None, f"configuring {what} failed: {type(exc).__name__}: {exc}")


# Properties Flume documents for a source or sink type that have no effect
# here (a trailing "." stands for every key under it): warned about as such
# rather than as unknown.
COMPONENT_NO_EFFECT: dict[tuple[str, str], tuple[str, ...]] = {
    ("sink", "hdfs"): ("hdfs.minBlockReplicas", "hdfs.writeFormat", "hdfs.threadsPoolSize",
                       "hdfs.rollTimerPoolSize", "hdfs.kerberosPrincipal",
                       "hdfs.kerberosKeytab", "hdfs.proxyUser", "hdfs.callTimeout"),
    ("source", "http"): ("QueuedThreadPool.", "HttpConfiguration.", "SslContextFactory.",
                         "ServerConnector."),
}


def _no_effect(kind: str, type_value: str | None, key: str) -> bool:
    if not type_value:
        return False
    names = COMPONENT_NO_EFFECT.get((kind, registry.canonical(kind, type_value)), ())
    return any(key == n or (n.endswith(".") and key.startswith(n)) for n in names)


def _warn_unused(ctx: Context, parts: AgentParts, always_used: tuple[str, ...] = (),
                 kind: str = "", type_value: str | None = None) -> None:
    for k in ctx.unused():
        if k in always_used:
            continue
        if _no_effect(kind, type_value, k):
            parts.warnings.append(f"{ctx.key(k)} = {ctx.as_dict()[k]!r}: a Flume "
                                  f"{type_value} {kind} property that has no effect in "
                                  "fchannel; ignored")
            continue
        parts.warnings.append(f"{ctx.key(k)} = {ctx.as_dict()[k]!r} is not a property "
                              f"of {ctx.owner}; ignored{ctx.suggest(k)}")


# Properties Flume documents for a channel type that have no effect here:
# accepted with one warning each, and not passed to the channel.
NO_EFFECT: dict[str, dict[str, str]] = {
    "file": {
        "use-log-replay-v1": "fchannel has one replay",
        "compressBackupCheckpoint": "the backup checkpoint is kept uncompressed",
        "write-timeout": "deprecated in Flume; writes do not time out",
        "checkpoint-timeout": "deprecated in Flume; checkpoints do not time out",
    },
}

# Every property Flume documents for its file channel (for "did you mean")
FLUME_FILE_CHANNEL = (
    "type", "checkpointDir", "useDualCheckpoints", "backupCheckpointDir", "dataDirs",
    "transactionCapacity", "checkpointInterval", "maxFileSize", "minimumRequiredSpace",
    "capacity", "keep-alive", "use-log-replay-v1", "use-fast-replay", "checkpointOnClose",
    "compressBackupCheckpoint", "fsyncPerTransaction", "fsyncInterval",
    "encryption.activeKey", "encryption.cipherProvider", "encryption.keyProvider",
)
FLUME_MEMORY_CHANNEL = ("type", "capacity", "transactionCapacity", "keep-alive",
                        "byteCapacityBufferPercentage", "byteCapacity")
_KNOWN_CHANNEL_PROPS = {"file": FLUME_FILE_CHANNEL, "memory": FLUME_MEMORY_CHANNEL}


class _StandIn:
    """A validated but unopened channel: what the first (dry) configuration
    pass hands to sources and sinks, so nothing touches the disk before the
    whole configuration is known to be good."""

    def __init__(self, name: str, capacity: Any, transaction_capacity: Any) -> None:
        self.name = name
        self.capacity = capacity
        self.transaction_capacity = transaction_capacity

    def close(self) -> None:
        pass


def _channel_type_key(ctype: str) -> str:
    return registry.canonical("channel", ctype)


def _channel_props(ctx: Context, ctype: str, parts: AgentParts) -> dict[str, str]:
    """The properties to hand to the channel factory: documented Flume
    properties that have no effect here are dropped with one warning."""
    no_effect = NO_EFFECT.get(_channel_type_key(ctype), {})
    out: dict[str, str] = {}
    for k, v in ctx.as_dict().items():
        if k == "type":
            continue
        why = no_effect.get(k)
        if why is not None:
            ctx.used.add(k)
            parts.warnings.append(f"{ctx.key(k)} = {v!r}: a Flume {_channel_type_key(ctype)} "
                                  f"channel property that has no effect in fchannel ({why}); "
                                  "ignored")
            continue
        out[k] = v
    return out


def _channel_hints(ctx: Context, ctype: str, cprops: Mapping[str, str]) -> str:
    """" (did you mean ...)" for the properties that look like misspelt
    documented ones, to append to the channel's own error."""
    known = _KNOWN_CHANNEL_PROPS.get(_channel_type_key(ctype))
    if not known:
        return ""
    hints = []
    for k in cprops:
        if k in known or k.startswith("encryption."):
            continue
        found = close_matches(k, known)
        if found:
            hints.append(f"{ctx.key(k)}: did you mean "
                         + " or ".join(ctx.prefix + f for f in found) + "?")
    return f" ({'; '.join(hints)})" if hints else ""


def _validate_channel(factory: Any, cprops: dict[str, str], name: str) -> Any:
    """Check a channel's properties without opening it: a factory may offer
    ``validate(props, name=...)``, returning an unopened stand-in with
    ``capacity`` and ``transaction_capacity``, or None when it cannot check
    without opening (the channel is then checked when it is opened)."""
    validate = getattr(factory, "validate", None)
    if validate is not None:
        return validate(cprops, name=name)
    return None


def build_agent(props: Mapping[str, str], agent: str, *,
                environ: Mapping[str, str] | None = None,
                system: Mapping[str, str] | None = None) -> AgentParts:
    """Configure agent *agent* from *props*; raise ConfigError listing every problem.

    ``${env:NAME}`` and ``${sys:NAME}`` in the agent's values are resolved
    first (*environ* defaults to ``os.environ``, *system* holds the ``-D``
    settings).  The whole configuration is checked with stand-ins for the
    channels before any channel is opened (so a bad configuration creates no
    directory and writes no file); only then are the channels opened and the
    components configured with them.
    """
    import os
    prefix = agent + "."
    props, problems = resolve_lookups(props, os.environ if environ is None else environ,
                                      system or {}, prefix)
    agent_props = {k[len(prefix):]: v for k, v in props.items() if k.startswith(prefix)}
    if not agent_props:
        found = sorted({k.split(".", 1)[0] for k in props if "." in k})
        hint = did_you_mean(agent, found)
        raise ConfigError(f"no properties for agent {agent!r} (no key starts with {prefix!r}); "
                          f"agents in the file: {', '.join(found) or 'none'}{hint}")
    # pass 1: everything configured against stand-ins, nothing opened
    dry = _build(agent, agent_props, list(problems), open_channels=False)
    if dry.problems:
        _fail(agent, dry.problems, dry.parts)
    # pass 2: open the channels, configure the components with them
    real = _build(agent, agent_props, list(problems), open_channels=True)
    if real.problems:
        _fail(agent, real.problems, real.parts)
    return real.parts


class ChannelOpenError(Exception):
    """A channel whose configuration is good could not be opened: a
    permission problem, a lock held by another process, damage, a full disk.
    ``category`` says which kind of problem it is."""

    def __init__(self, channel: str, exc: BaseException) -> None:
        from fchannel.errors import ChannelLockedError, CorruptionError
        self.channel = channel
        self.cause = exc
        # the channel's own errors name the setting and keep the OSError as their cause
        os_exc = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        if isinstance(os_exc, PermissionError) or getattr(os_exc, "errno", None) == errno.EROFS:
            self.category = "permission problem"
        elif isinstance(exc, ChannelLockedError):
            self.category = "in use"
        elif isinstance(exc, CorruptionError):
            self.category = "damaged channel"
        elif isinstance(os_exc, OSError):
            self.category = "file system problem"
        else:
            self.category = "runtime failure"
        super().__init__(f"cannot open channel {channel!r}: {self.category}: "
                         f"{type(exc).__name__}: {exc}")


def _close_quietly(ch: Any) -> None:
    try:
        ch.close()
    except Exception as exc:  # pragma: no cover - reported, not raised
        log.warning("closing channel %r after a failed configuration: %s",
                    getattr(ch, "name", ch), exc)


def _fail(agent: str, problems: list[str], parts: AgentParts) -> None:
    for ch in parts.channels.values():
        _close_quietly(ch)
    n = len(problems)
    raise ConfigError(f"configuration of agent {agent!r} has {n} problem"
                      f"{'s' if n != 1 else ''}:\n  " + "\n  ".join(problems))


@dataclass
class _Built:
    parts: AgentParts
    problems: list[str]


def _build(agent: str, agent_props: dict[str, str], problems: list[str], *,
           open_channels: bool) -> _Built:
    prefix = agent + "."
    parts = AgentParts(agent)
    lists = {cat: _names(agent_props, agent, cat, problems) for cat in CATEGORIES}
    if not lists["channels"]:
        problems.append(f"{agent}.channels is missing: an agent needs at least one channel")
    if not lists["sources"] and not lists["sinks"]:
        problems.append(f"{agent}.sources and {agent}.sinks are both missing: "
                        "the agent would do nothing")

    # properties of components nobody listed, and unknown top-level keys
    for k, v in agent_props.items():
        cat, _, rest = k.partition(".")
        if cat in CATEGORIES and not rest:
            continue
        if cat in CATEGORIES:
            comp = rest.split(".", 1)[0]
            if comp not in lists[cat]:
                hint = did_you_mean(comp, lists[cat])
                parts.warnings.append(f"{prefix}{k} = {v!r}: {comp!r} is not listed in "
                                      f"{prefix}{cat}; ignored{hint}")
        else:
            hint = did_you_mean(cat, CATEGORIES, prefix)
            parts.warnings.append(f"{prefix}{k} = {v!r}: unknown key; ignored{hint}")

    def ctx_for(cat: str, name: str, kind: str) -> Context:
        return Context(_component_props(agent_props, cat, name), f"{prefix}{cat}.{name}.",
                       problems, owner=f"{kind} {name!r}")

    # ---- channels ------------------------------------------------------------
    used_channels: set[str] = set()
    channel_ctx: dict[str, Context] = {}
    for name in lists["channels"]:
        ctx = ctx_for("channels", name, "channel")
        channel_ctx[name] = ctx
        ctype = ctx.string("type", required=True)
        ch = None
        if ctype is not None:
            cprops = _channel_props(ctx, ctype, parts)
            for k in cprops:
                ctx.used.add(k)
            try:
                factory = registry.lookup("channel", ctype)
            except ConfigError as exc:
                ctx.problem("type", str(exc))
            else:
                try:
                    if open_channels:
                        ch = factory(cprops, name=name)
                    else:
                        ch = _validate_channel(factory, cprops, name)
                        if ch is None:  # no dry check offered: a stand-in with no limits
                            ch = _StandIn(name, None, None)
                except ConfigError as exc:
                    ctx.problem(None, str(exc) + _channel_hints(ctx, ctype, cprops))
                except Exception as exc:
                    if not open_channels:
                        ctx.problem(None, f"checking the channel failed: "
                                          f"{type(exc).__name__}: {exc}")
                    else:  # not a configuration problem: say what it is
                        for other in parts.channels.values():
                            _close_quietly(other)
                        raise ChannelOpenError(name, exc) from exc
        if ch is None:
            parts.channels[name] = _Unbuilt(name)
        else:
            parts.channels[name] = ch
            if open_channels:
                parts.channel_views[name] = ChannelCounterView(name, ch)

    def channel_refs(ctx: Context, key: str, names: list[str]) -> list[str]:
        ok = []
        for n in names:
            if n not in parts.channels:
                hint = did_you_mean(n, lists["channels"])
                ctx.problem(key, f"channel {n!r} is not defined in {prefix}channels "
                                 f"({' '.join(lists['channels']) or 'none'}){hint}")
            else:
                ok.append(n)
                used_channels.add(n)
        return ok

    # ---- sources -------------------------------------------------------------
    for name in lists["sources"]:
        ctx = ctx_for("sources", name, "source")
        stype = ctx.string("type", required=True)
        src = _check_kind(_make("source", ctx, stype, name), Source, ctx, "source")
        cnames = channel_refs(ctx, "channels", ctx.names("channels", required=True))
        chans = {n: parts.channels[n] for n in cnames}
        sel_ctx = ctx.sub("selector.")
        sel_type = sel_ctx.string("type", "replicating") or "replicating"
        selector = _make("selector", sel_ctx, sel_type, name, chans)
        if selector is not None:
            _configure(selector, sel_ctx, f"the selector of source {name!r}")
            _warn_unused(sel_ctx, parts)
        icps = []
        for iname in ctx.names("interceptors"):
            ictx = ctx.sub(f"interceptors.{iname}.")
            ictx.owner = f"interceptor {iname!r} of source {name!r}"
            itype = ictx.string("type", required=True)
            icp = _check_kind(_make("interceptor", ictx, itype, iname), Interceptor, ictx,
                              "interceptor")
            if icp is not None:
                _configure(icp, ictx, ictx.owner)
                _warn_unused(ictx, parts)
                icps.append(icp)
        for k in ctx:  # interceptors.<name>.* of unlisted interceptors
            if k.startswith("interceptors."):
                ctx.used.add(k)
        if src is not None:
            _configure(src, ctx, f"source {name!r}")
            _warn_unused(ctx, parts, kind="source", type_value=stype)
            if selector is not None:
                names_by_id = {id(c): n for n, c in chans.items()}
                src.channel_processor = ChannelProcessor(name, selector, icps, names_by_id)
                limit = src.channel_processor.max_batch
                bs = getattr(src, "batch_size", None)
                if limit is not None and isinstance(bs, int) and bs > limit:
                    small = min((n for n, c in chans.items()
                                 if getattr(c, "transaction_capacity", None) == limit),
                                default="?")
                    ctx.problem("batchSize" if "batchSize" in ctx else None,
                                f"batch size {bs} exceeds transactionCapacity {limit} of "
                                f"channel {small!r}; lower the batch size or raise the "
                                "channel's transactionCapacity")
            parts.sources[name] = src
            parts.source_runners.append(SourceRunner(src))

    # ---- sinks ---------------------------------------------------------------
    for name in lists["sinks"]:
        ctx = ctx_for("sinks", name, "sink")
        ktype = ctx.string("type", required=True)
        sink = _check_kind(_make("sink", ctx, ktype, name), Sink, ctx, "sink")
        cval = ctx.string("channel", required=True)
        if cval is not None and len(split_names(cval)) != 1:
            ctx.problem("channel", "a sink drains exactly one channel")
            cval = None
        cnames = channel_refs(ctx, "channel", [cval.strip()] if cval else [])
        if sink is not None:
            if cnames:
                sink.channel = parts.channels[cnames[0]]
                sink.channel_name = cnames[0]
            _configure(sink, ctx, f"sink {name!r}")
            _warn_unused(ctx, parts, kind="sink", type_value=ktype)
            parts.sinks[name] = sink

    # ---- sink groups ---------------------------------------------------------
    grouped: dict[str, str] = {}
    for gname in lists["sinkgroups"]:
        ctx = ctx_for("sinkgroups", gname, "sink group")
        members = []
        for s in ctx.names("sinks", required=True):
            if s not in lists["sinks"]:
                ctx.problem("sinks", f"sink {s!r} is not defined in {prefix}sinks")
            elif s in grouped:
                ctx.problem("sinks", f"sink {s!r} is already in sink group {grouped[s]!r}")
            else:
                grouped[s] = gname
                if s in parts.sinks:
                    members.append(parts.sinks[s])
        pctx = ctx.sub("processor.")
        pctx.owner = f"the processor of sink group {gname!r}"
        ptype = pctx.string("type", "default") or "default"
        proc = _make("sinkprocessor", pctx, ptype, gname, members)
        if proc is not None:
            _configure(proc, pctx, pctx.owner)
            _warn_unused(pctx, parts)
            parts.sink_runners.append(SinkRunner(gname, proc))
        _warn_unused(ctx, parts)
    for name, sink in parts.sinks.items():
        if name not in grouped:
            proc = DefaultSinkProcessor(name, [sink])
            parts.sink_runners.append(SinkRunner(name, proc))

    for name in lists["channels"]:
        if name not in used_channels:
            channel_ctx[name].problem(None, f"channel {name!r} is not used by any source or "
                                            "sink (list it in a source's channels or a "
                                            "sink's channel)")
    return _Built(parts, problems)

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

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fchannel.agent import registry
from fchannel.agent.component import Interceptor, Sink, Source
from fchannel.agent.counters import ChannelCounterView
from fchannel.agent.processor import ChannelProcessor
from fchannel.agent.properties import Context, split_names
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


def _warn_unused(ctx: Context, parts: AgentParts, always_used: tuple[str, ...] = ()) -> None:
    for k in ctx.unused():
        if k in always_used:
            continue
        parts.warnings.append(f"{ctx.key(k)} = {ctx.as_dict()[k]!r} is not a property "
                              f"of {ctx.owner}; ignored")


def build_agent(props: Mapping[str, str], agent: str) -> AgentParts:
    """Configure agent *agent* from *props*; raise ConfigError listing every problem."""
    problems: list[str] = []
    prefix = agent + "."
    agent_props = {k[len(prefix):]: v for k, v in props.items() if k.startswith(prefix)}
    if not agent_props:
        found = sorted({k.split(".", 1)[0] for k in props if "." in k})
        raise ConfigError(f"no properties for agent {agent!r} (no key starts with {prefix!r}); "
                          f"agents in the file: {', '.join(found) or 'none'}")
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
                parts.warnings.append(f"{prefix}{k} = {v!r}: {comp!r} is not listed in "
                                      f"{prefix}{cat}; ignored")
        else:
            parts.warnings.append(f"{prefix}{k} = {v!r}: unknown key; ignored")

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
        cprops = {k: v for k, v in ctx.as_dict().items() if k != "type"}
        ch = None
        if ctype is not None:
            try:
                factory = registry.lookup("channel", ctype)
            except ConfigError as exc:
                ctx.problem("type", str(exc))
            else:
                try:
                    ch = factory(cprops, name=name)
                except ConfigError as exc:
                    ctx.problem(None, str(exc))
                except Exception as exc:
                    ctx.problem(None, f"cannot open the channel: {type(exc).__name__}: {exc}")
        if ch is None:
            parts.channels[name] = _Unbuilt(name)
        else:
            parts.channels[name] = ch
            parts.channel_views[name] = ChannelCounterView(name, ch)

    def channel_refs(ctx: Context, key: str, names: list[str]) -> list[str]:
        ok = []
        for n in names:
            if n not in parts.channels:
                ctx.problem(key, f"channel {n!r} is not defined in {prefix}channels "
                                 f"({' '.join(lists['channels']) or 'none'})")
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
            _warn_unused(ctx, parts)
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
            _warn_unused(ctx, parts)
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
    if problems:
        for ch in parts.channels.values():
            try:
                ch.close()
            except Exception as exc:  # pragma: no cover - reported, not raised
                log.warning("closing channel %r after a failed configuration: %s",
                            getattr(ch, "name", ch), exc)
        n = len(problems)
        raise ConfigError(f"configuration of agent {agent!r} has {n} problem"
                          f"{'s' if n != 1 else ''}:\n  " + "\n  ".join(problems))
    return parts

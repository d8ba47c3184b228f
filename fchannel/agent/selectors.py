"""Channel selectors: which channels (required and optional) get an event.

- ``replicating`` (the default): every channel of the source; those listed
  in ``selector.optional`` are optional.
- ``multiplexing``: by the value of header ``selector.header``:
  ``selector.mapping.<value> = c1 c2`` (required), ``selector.optional.<value>
  = c3`` (optional), ``selector.default = c4`` (required when no mapping
  matches).  A channel both required and optional for a value is required.
"""
from __future__ import annotations

from typing import Any

from fchannel.agent.properties import Context, split_names


class ChannelSelector:
    """Base: ``channels`` maps a channel name to the channel object."""

    def __init__(self, source_name: str, channels: dict[str, Any]) -> None:
        self.source_name = source_name
        self.channels = channels

    def configure(self, ctx: Context) -> None:
        pass

    def required(self, event: Any) -> list[Any]:
        raise NotImplementedError

    def optional(self, event: Any) -> list[Any]:
        raise NotImplementedError

    def _resolve(self, ctx: Context, key: str, names: list[str]) -> list[Any]:
        out = []
        for n in names:
            if n not in self.channels:
                ctx.problem(key, f"channel {n!r} is not one of the source's channels "
                                 f"({' '.join(self.channels)})")
            elif self.channels[n] not in out:
                out.append(self.channels[n])
        return out


class ReplicatingSelector(ChannelSelector):

    def configure(self, ctx: Context) -> None:
        optional = self._resolve(ctx, "optional", ctx.names("optional"))
        self._optional = optional
        self._required = [c for c in self.channels.values() if c not in optional]

    def required(self, event: Any) -> list[Any]:
        return self._required

    def optional(self, event: Any) -> list[Any]:
        return self._optional


class MultiplexingSelector(ChannelSelector):

    def configure(self, ctx: Context) -> None:
        self.header = ctx.string("header", "flume.selector.header")
        self._default = self._resolve(ctx, "default", ctx.names("default"))
        self._mapping: dict[str, list[Any]] = {}
        self._optional: dict[str, list[Any]] = {}
        for key in ctx:
            if key.startswith("mapping."):
                ctx.used.add(key)
                value = key[len("mapping."):]
                chans = self._resolve(ctx, key, split_names(ctx.get(key, "")))
                if not chans:
                    ctx.problem(key, "names no channel")
                self._mapping[value] = chans
        for key in ctx:
            if key.startswith("optional."):
                ctx.used.add(key)
                value = key[len("optional."):]
                chans = self._resolve(ctx, key, split_names(ctx.get(key, "")))
                required = self._mapping.get(value, self._default)
                self._optional[value] = [c for c in chans if c not in required]
        if not self._mapping and not self._default:
            ctx.problem(None, "multiplexing selector has no selector.mapping.<value> "
                              "and no selector.default: every event would be dropped")

    def required(self, event: Any) -> list[Any]:
        value = event.headers.get(self.header)
        if value is None:
            return self._default
        return self._mapping.get(value, self._default)

    def optional(self, event: Any) -> list[Any]:
        value = event.headers.get(self.header)
        if value is None:
            return []
        return self._optional.get(value, [])

"""The channel processor: how a source's events reach its channels.

``process_event_batch(events)`` runs the interceptor chain, asks the
selector for each event's required and optional channels, then puts the
events in one transaction per channel.  Flume's semantics:

- a failure on a **required** channel rolls that channel's transaction back
  and raises (a :class:`~fchannel.errors.ChannelError`), so the source can
  retry the batch (channels that committed before it will see the events
  again: delivery is at least once);
- **optional** channels are tried once after the required ones; their
  failures are only logged.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fchannel.agent.component import Interceptor
from fchannel.agent.selectors import ChannelSelector
from fchannel.errors import ChannelError


class ChannelProcessor:

    def __init__(self, source_name: str, selector: ChannelSelector,
                 interceptors: Sequence[Interceptor] = (),
                 channel_names: dict[int, str] | None = None) -> None:
        self.source_name = source_name
        self.selector = selector
        self.interceptors = list(interceptors)
        self._names = channel_names or {}
        self.log = logging.getLogger(f"fchannel.source.{source_name}")

    @property
    def max_batch(self) -> int | None:
        """The smallest transaction capacity among the source's channels: the
        largest batch that goes into every channel as one transaction."""
        caps = [getattr(ch, "transaction_capacity", None) for ch in self.selector.channels.values()]
        known = [c for c in caps if isinstance(c, int) and c > 0]
        return min(known) if known else None

    def _name(self, ch: Any) -> str:
        return str(self._names.get(id(ch)) or getattr(ch, "name", None) or repr(ch))

    def intercept(self, events: list[Any]) -> list[Any]:
        for icp in self.interceptors:
            if not events:
                break
            events = icp.intercept_batch(events)
        return events

    def process_event(self, event: Any) -> None:
        self.process_event_batch([event])

    def process_event_batch(self, events: Sequence[Any]) -> None:
        batch = self.intercept(list(events))
        if not batch:
            return
        required: dict[int, tuple[Any, list[Any]]] = {}
        optional: dict[int, tuple[Any, list[Any]]] = {}
        for e in batch:
            for ch in self.selector.required(e):
                required.setdefault(id(ch), (ch, []))[1].append(e)
            for ch in self.selector.optional(e):
                optional.setdefault(id(ch), (ch, []))[1].append(e)
        for ch, evs in required.values():
            try:
                self._put(ch, evs)
            except ChannelError:
                raise
            except Exception as exc:
                raise ChannelError(f"unable to put batch on required channel "
                                   f"{self._name(ch)!r}: {exc}") from exc
        for ch, evs in optional.values():
            try:
                self._put(ch, evs)
            except Exception as exc:
                self.log.warning("optional channel %r refused %d event(s): %s",
                                 self._name(ch), len(evs), exc)

    @staticmethod
    def _put(ch: Any, events: list[Any]) -> None:
        # one transaction per channel; a batch larger than the channel's
        # transaction capacity is split into several transactions
        cap = getattr(ch, "transaction_capacity", None) or len(events)
        for i in range(0, len(events), cap):
            with ch.transaction() as tx:
                tx.put_batch(events[i:i + cap])

"""Taking a batch out of a channel and delivering it, the same for every
client: the take commits only after the delivery returned; any error rolls it
back (the events return to the head of the channel, in order) and is raised.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fchannel.errors import ConfigError
from fchannel.event import Event


def take_and_deliver(channel: Any, batch_size: int,
                     deliver: Callable[[list[Event]], Any]) -> int:
    """Take up to *batch_size* events in one transaction, hand a non-empty
    batch to *deliver*, and commit the take once it returned. Returns the
    number of events taken (0: the channel was empty)."""
    with channel.transaction() as tx:
        events = tx.take_batch(batch_size)
        if events:
            deliver(events)
    return len(events)


def drain_target(target: Any, topic: str | None, options: dict[str, Any],
                 producer_type: type, wrap: Callable[..., Any], short_name: str,
                 long_name: str, callable_kind: str = "callable") -> Any:
    """The delivery callable :func:`drain` uses: *target* itself, or a
    producer of *producer_type* wrapped as ``wrap(target, topic, **options)``.
    ConfigError for options without a producer or a target that is neither
    (*short_name* and *long_name* name the producer, with their article)."""
    if isinstance(target, producer_type):
        return wrap(target, topic, **options)
    if topic is not None or options:
        raise ConfigError(f"topic and target options apply only to {short_name} target")
    if not callable(target):
        raise ConfigError(f"target must be {callable_kind} or {long_name}, got {target!r}")
    return target


def drain_until_empty(drain_once: Callable[[], int],
                      stop: Callable[[], bool] | None) -> int:
    """Call *drain_once* until it delivers nothing (or *stop* returns true).
    Returns the number of events delivered."""
    total = 0
    while stop is None or not stop():
        n = drain_once()
        total += n
        if n == 0:
            break
    return total

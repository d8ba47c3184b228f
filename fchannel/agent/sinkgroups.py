"""Sink processors: how a sink runner drives one sink or a group of sinks.

- ``default``: one sink.
- ``failover``: the live sink of highest ``priority.<sink>`` takes the work;
  a sink that fails is set aside for ``min(maxpenalty, 2^failures s)`` and
  the next one takes over; a penalised sink is tried again once its penalty
  has passed and, if it works, goes back to the live list.
- ``load_balance``: spreads batches over the sinks (``selector =
  round_robin`` or ``random``); a failing sink is skipped for that batch,
  and with ``backoff = true`` it is left out for an exponentially growing
  time capped by ``selector.maxTimeOut`` (ms).

A processor raises :class:`EventDeliveryError` when no sink could process.
"""
from __future__ import annotations

import logging
import random
import time

from fchannel.agent.component import EventDeliveryError, Sink, Status
from fchannel.agent.properties import Context

FAILURE_PENALTY = 1.0   # seconds, doubled per consecutive failure
DEFAULT_MAX_PENALTY_MS = 30_000


class SinkProcessor:

    def __init__(self, name: str, sinks: list[Sink]) -> None:
        self.name = name
        self.sinks = list(sinks)
        self.log = logging.getLogger(f"fchannel.sinkgroup.{name}")

    def configure(self, ctx: Context) -> None:
        pass

    def start(self) -> None:
        started: list[Sink] = []
        try:
            for s in self.sinks:
                s.start()
                s.counter.started()
                started.append(s)
        except BaseException:
            for s in started:  # leave nothing half started: the start is retried
                try:
                    s.stop()
                except Exception:
                    s.log.exception("error while stopping")
            raise

    def stop(self) -> None:
        for s in self.sinks:
            try:
                s.stop()
            except Exception:
                s.log.exception("error while stopping")
            s.counter.stopped()

    def process(self) -> Status:
        raise NotImplementedError


class DefaultSinkProcessor(SinkProcessor):

    def __init__(self, name: str, sinks: list[Sink]) -> None:
        super().__init__(name, sinks)
        if len(self.sinks) == 1:
            self.log = self.sinks[0].log

    def configure(self, ctx: Context) -> None:
        if len(self.sinks) != 1:
            ctx.problem(None, f"the default sink processor drives exactly one sink, "
                              f"got {len(self.sinks)}")

    def process(self) -> Status:
        return self.sinks[0].process()


class FailoverSinkProcessor(SinkProcessor):

    def configure(self, ctx: Context) -> None:
        self.max_penalty = ctx.integer("maxpenalty", DEFAULT_MAX_PENALTY_MS, minimum=0) / 1000.0
        prio: dict[str, int] = {}
        for i, s in enumerate(self.sinks):
            # Flume: sinks without a priority rank by their order, lowest first
            p = ctx.integer(f"priority.{s.name}", None)
            prio[s.name] = p if p is not None else -(i + 1) - 1_000_000
        seen: dict[int, str] = {}
        for s in self.sinks:
            p = prio[s.name]
            if p in seen and f"priority.{s.name}" in ctx:
                ctx.problem(f"priority.{s.name}", f"same priority as sink {seen[p]!r}; "
                                                  "failover needs distinct priorities")
            seen[p] = s.name
        for key in ctx:
            if key.startswith("priority.") and key[len("priority."):] not in prio:
                ctx.used.add(key)
                ctx.problem(key, "names a sink that is not in the group")
        self.priority = prio
        # live: highest priority first; failed: name -> (refresh deadline, failures)
        self.live = sorted(self.sinks, key=lambda s: -prio[s.name])
        self.failed: dict[str, tuple[float, int]] = {}

    def _fail(self, sink: Sink, exc: BaseException) -> None:
        _, n = self.failed.get(sink.name, (0.0, 0))
        n += 1
        penalty = min(self.max_penalty, (1 << min(n, 30)) * FAILURE_PENALTY)
        self.failed[sink.name] = (time.monotonic() + penalty, n)
        if sink in self.live:
            self.live.remove(sink)
        sink.counter.add("ConnectionFailedCount")
        self.log.warning("sink %r failed (%s); set aside for %.1fs", sink.name, exc, penalty)

    def process(self) -> Status:
        now = time.monotonic()
        # penalised sinks whose time is up get one try; success puts them back
        for s in list(self.sinks):
            state = self.failed.get(s.name)
            if state is None or state[0] > now:
                continue
            try:
                status = s.process()
            except Exception as exc:
                self._fail(s, exc)
                continue
            del self.failed[s.name]
            self.live.append(s)
            self.live.sort(key=lambda x: -self.priority[x.name])
            self.log.info("sink %r is back", s.name)
            return status
        while self.live:
            s = self.live[0]
            try:
                return s.process()
            except Exception as exc:
                self._fail(s, exc)
        raise EventDeliveryError(f"sink group {self.name!r}: all sinks failed, "
                                 "nothing left to fail over to")


class LoadBalancingSinkProcessor(SinkProcessor):

    def configure(self, ctx: Context) -> None:
        sel = ctx.string("selector", "round_robin") or "round_robin"
        key = sel.strip().lower()
        if key in ("round_robin", "org.apache.flume.sink.loadbalancingsinkprocessor"
                                  "$roundrobinsinkselector"):
            self.random = False
        elif key == "random":
            self.random = True
        else:
            ctx.problem("selector", "unknown load_balance selector; known: round_robin, random")
            self.random = False
        self.backoff = ctx.boolean("backoff", False)
        self.max_timeout = ctx.integer("selector.maxTimeOut", 30_000, minimum=0) / 1000.0
        self._next = 0
        self._rng = random.Random()
        self.blacklist: dict[str, tuple[float, int]] = {}

    def _order(self) -> list[Sink]:
        n = len(self.sinks)
        if self.random:
            order = list(self.sinks)
            self._rng.shuffle(order)
        else:
            start = self._next % n
            self._next = (start + 1) % n
            order = self.sinks[start:] + self.sinks[:start]
        if not self.backoff:
            return order
        now = time.monotonic()
        return [s for s in order if self.blacklist.get(s.name, (0.0, 0))[0] <= now]

    def process(self) -> Status:
        tried = 0
        for s in self._order():
            tried += 1
            try:
                status = s.process()
            except Exception as exc:
                s.counter.add("ConnectionFailedCount")
                if self.backoff:
                    _, n = self.blacklist.get(s.name, (0.0, 0))
                    n += 1
                    wait = min(self.max_timeout, (1 << min(n, 30)) * FAILURE_PENALTY)
                    self.blacklist[s.name] = (time.monotonic() + wait, n)
                    self.log.warning("sink %r failed (%s); backing off %.1fs", s.name, exc, wait)
                else:
                    self.log.warning("sink %r failed (%s); trying the next", s.name, exc)
                continue
            self.blacklist.pop(s.name, None)
            return status
        if tried == 0:
            # every sink is backing off: nothing to do now
            return Status.BACKOFF
        raise EventDeliveryError(f"sink group {self.name!r}: all sinks failed")

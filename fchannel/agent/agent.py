"""The agent: a process hosting channels, sinks and sources.

``Agent.from_file(path, name)`` configures everything (raising one
ConfigError that lists every problem) and opens the channels; ``start()``
starts sinks, then sources, under the lifecycle supervisor
(:mod:`fchannel.agent.supervisor`: a component that fails to start or dies
is restarted with backoff while the rest keeps running); ``stop()`` stops
sources, lets each sink finish the batch in hand, then closes channels (a
FileChannel checkpoints on close).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from fchannel.agent.config import AgentParts, build_agent
from fchannel.agent.properties import load_properties
from fchannel.errors import ConfigError

log = logging.getLogger("fchannel.agent")


class Agent:

    def __init__(self, parts: AgentParts) -> None:
        self.parts = parts
        self.name = parts.name
        self.monitor: Any = None
        self._started = False
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        # only what is running is stopped (a source whose start failed must
        # not, say, overwrite its position file with nothing)
        self._units: list[Any] = []
        self.supervisor: Any = None

    @classmethod
    def from_properties(cls, props: Mapping[str, str], name: str, *,
                        environ: Mapping[str, str] | None = None,
                        system: Mapping[str, str] | None = None) -> Agent:
        """Configure from Flume properties (``${env:X}`` resolved from
        *environ*, default os.environ, ``${sys:X}`` from *system*)."""
        return cls(build_agent(props, name, environ=environ, system=system))

    @classmethod
    def from_file(cls, path: str, name: str) -> Agent:
        return cls.from_properties(load_properties(path), name)

    @property
    def channels(self) -> dict[str, Any]:
        return self.parts.channels

    @property
    def sources(self) -> dict[str, Any]:
        return self.parts.sources

    @property
    def sinks(self) -> dict[str, Any]:
        return self.parts.sinks

    def counter_groups(self) -> Iterable[Any]:
        yield from self.parts.channel_views.values()
        for s in self.parts.sources.values():
            yield s.counter
        for k in self.parts.sinks.values():
            yield k.counter

    def start_monitoring(self, host: str, port: int) -> int:
        from fchannel.agent.monitoring import MonitorServer
        self.monitor = MonitorServer(self.name, self.counter_groups, host, port)
        self.monitor.start()
        return int(self.monitor.port)

    def start(self) -> None:
        """Open for business: sinks first, then sources, each under the
        supervisor.  A component that fails to start is logged, counted and
        retried with backoff; it does not stop the others (nor this call).
        A ConfigError from a component's start is a configuration problem:
        everything is stopped and it is raised."""
        from fchannel.agent.supervisor import Supervised, Supervisor
        for w in self.parts.warnings:
            log.warning("%s", w)
        for name, view in self.parts.channel_views.items():
            view.started()
            ch = self.parts.channels[name]
            logging.getLogger(f"fchannel.channel.{name}").info(
                "started: %s (size %s of %s)", type(ch).__name__, ch.size, ch.capacity)
        units: list[Supervised] = []
        for r in self.parts.sink_runners:
            kind = "sink" if len(r.sinks) == 1 and r.sinks[0].name == r.name else "sink group"
            units.append(Supervised(kind, r.name, r, [s.counter for s in r.sinks],
                                    r.processor.log))
        for sr in self.parts.source_runners:
            units.append(Supervised("source", sr.name, sr, [sr.source.counter], sr.source.log))
        self._units = units

        def first_start(u: Supervised) -> None:
            if u.try_start(first=True):
                if u.kind == "source":
                    u.log.info("started")
                else:
                    u.log.info("started, draining %s", ", ".join(
                        sorted({s.channel_name for s in u.runner.sinks})))

        # sinks, then sources; within each, at once, so that one slow start
        # (a broker that does not answer) holds up no other component
        for group in ([u for u in units if u.kind != "source"],
                      [u for u in units if u.kind == "source"]):
            threads = [threading.Thread(target=first_start, args=(u,), daemon=True,
                                        name=f"start-{u.name}") for u in group[1:]]
            for t in threads:
                t.start()
            if group:
                first_start(group[0])
            for t in threads:
                t.join()
        wrong = [u for u in units if u.state == "misconfigured"]
        if wrong:
            self.stop()
            n = len(wrong)
            raise ConfigError(f"configuration of agent {self.name!r} has {n} problem"
                              f"{'s' if n != 1 else ''} found at start:\n  "
                              + "\n  ".join(f"{u.label}: {u.last_error}" for u in wrong))
        self.supervisor = Supervisor(units)
        self.supervisor.start()
        self._started = True
        failed = [u.label for u in units if u.state == "failed"]
        log.info("agent %r started: %d channel(s), %d sink runner(s), %d source(s)%s",
                 self.name, len(self.parts.channels), len(self.parts.sink_runners),
                 len(self.parts.source_runners),
                 f"; not running yet, retrying: {', '.join(failed)}" if failed else "")

    def stop(self) -> None:
        """Stop sources, then sinks (finishing their batch), then close channels."""
        with self._lock:
            if self._stopped.is_set():
                return
            log.info("agent %r stopping", self.name)
            if self.supervisor is not None:
                self.supervisor.halt()
            # sources first, so nothing new arrives while the sinks drain
            self._stop_units([u for u in self._units if u.kind == "source"])
            self._stop_units([u for u in self._units if u.kind != "source"])
            self._close_channels()
            if self.monitor is not None:
                self.monitor.stop()
            self._stopped.set()
            log.info("agent %r stopped", self.name)

    @staticmethod
    def _stop_units(units: list) -> None:
        for u in units:
            if u.state != "running":
                u.state = "stopped"
                continue
            try:
                u.stop()
                u.log.info("stopped")
            except Exception:
                u.log.exception("error while stopping")

    def _close_channels(self) -> None:
        for name, ch in self.parts.channels.items():
            clog = logging.getLogger(f"fchannel.channel.{name}")
            try:
                ch.close()
                view = self.parts.channel_views.get(name)
                if view is not None:
                    view.stopped()
                clog.info("closed")
            except Exception:
                clog.exception("error while closing")

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

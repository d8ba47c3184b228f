"""The agent: a process hosting channels, sinks and sources.

``Agent.from_file(path, name)`` configures everything (raising one
ConfigError that lists every problem); ``start()`` opens channels first,
then starts sinks, then sources; ``stop()`` stops sources, lets each sink
finish the batch in hand, then closes channels (a FileChannel checkpoints
on close).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from fchannel.agent.config import AgentParts, build_agent
from fchannel.agent.properties import load_properties

log = logging.getLogger("fchannel.agent")


class Agent:

    def __init__(self, parts: AgentParts) -> None:
        self.parts = parts
        self.name = parts.name
        self.monitor: Any = None
        self._started = False
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        # only what was started is stopped (a source never started must not,
        # say, overwrite its position file with nothing)
        self._started_sinks: list[Any] = []
        self._started_sources: list[Any] = []

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
        for w in self.parts.warnings:
            log.warning("%s", w)
        for name, view in self.parts.channel_views.items():
            view.started()
            ch = self.parts.channels[name]
            logging.getLogger(f"fchannel.channel.{name}").info(
                "started: %s (size %s of %s)", type(ch).__name__, ch.size, ch.capacity)
        started_sinks = self._started_sinks
        started_sources = self._started_sources
        try:
            for r in self.parts.sink_runners:
                r.start()
                started_sinks.append(r)
                r.processor.log.info("started, draining %s",
                                     ", ".join(sorted({s.channel_name for s in r.sinks})))
            for sr in self.parts.source_runners:
                sr.start()
                started_sources.append(sr)
                sr.source.log.info("started")
        except BaseException:
            self.stop()
            raise
        self._started = True
        log.info("agent %r started: %d channel(s), %d sink runner(s), %d source(s)",
                 self.name, len(self.parts.channels), len(self.parts.sink_runners),
                 len(self.parts.source_runners))

    def stop(self) -> None:
        """Stop sources, then sinks (finishing their batch), then close channels."""
        with self._lock:
            if self._stopped.is_set():
                return
            log.info("agent %r stopping", self.name)
            for sr in self._started_sources:
                try:
                    sr.stop()
                    sr.source.log.info("stopped")
                except Exception:
                    sr.source.log.exception("error while stopping")
            for r in self._started_sinks:
                try:
                    r.stop()
                    r.processor.log.info("stopped")
                except Exception:
                    r.processor.log.exception("error while stopping")
            self._close_channels()
            if self.monitor is not None:
                self.monitor.stop()
            self._stopped.set()
            log.info("agent %r stopped", self.name)

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

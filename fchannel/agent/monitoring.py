"""HTTP monitoring: Flume's JSON at ``/metrics``, Prometheus text at ``/prometheus``.

``/metrics`` answers what Flume's HTTP monitoring answers::

    {"CHANNEL.c1": {"Type": "CHANNEL", "ChannelSize": "0", ...},
     "SOURCE.r1": {"Type": "SOURCE", "EventReceivedCount": "12", ...}}

(values are strings, as in Flume).  ``/prometheus`` exposes the same
counters through prometheus_client's text exposition, one metric family per
name: counters as counters (``fchannel_source_event_received_total``),
gauges as gauges (``fchannel_channel_size``, ``fchannel_channel_fill_percentage``),
labelled ``{agent="a1",component="r1"}``.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fchannel.agent.counters import GAUGES

log = logging.getLogger("fchannel.monitoring")


def flume_json(groups: Iterable[Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for g in groups:
        snap = g.snapshot()
        entry = {"Type": g.kind}
        entry.update({k: _fmt(v) for k, v in snap.items()})
        out[f"{g.kind}.{g.name}"] = entry
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# counters only grow; everything else a component reports is a gauge
_COUNTER_SUFFIXES = ("Count", "Fail", "Errors", "Skipped", "Deleted", "Written", "Syncs")


def is_counter(name: str) -> bool:
    """True for a monotonic counter (Flume's ``...Count`` and ``...Fail``
    names, fchannel's ``...Written``, ``...Deleted``...), False for a gauge
    (sizes, capacities, fill, open connections, times, open figures)."""
    return name not in GAUGES and name.endswith(_COUNTER_SUFFIXES)


def metric_name(kind: str, counter: str) -> str:
    """``fchannel_<kind>_<name>`` in snake case, without repeating the kind
    (``ChannelSize`` of a channel is ``fchannel_channel_size``) and, for
    counters, without a trailing ``count`` (the exposition adds ``_total``)."""
    k = kind.lower()
    words = _snake(counter).split("_")
    if words and words[0] == k and len(words) > 1:
        words = words[1:]
    if is_counter(counter) and words[-1] == "count" and len(words) > 1:
        words = words[:-1]
    if counter == "OpenConnectionCount":
        words = ["open", "connections"]
    return f"fchannel_{k}_{'_'.join(words)}"


class _Collector:
    """A prometheus_client collector reading the counter groups at scrape time."""

    def __init__(self, agent_name: str, groups: Callable[[], Iterable[Any]]) -> None:
        self.agent_name = agent_name
        self.groups = groups

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        families: dict[str, Any] = {}
        for g in self.groups():
            for counter, value in g.snapshot().items():
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                base = metric_name(g.kind, counter)
                fam = families.get(base)
                if fam is None:
                    if is_counter(counter):
                        fam = CounterMetricFamily(
                            base, f"Flume {g.kind.lower()} counter {counter}",
                            labels=["agent", "component"])
                    else:
                        fam = GaugeMetricFamily(
                            base, f"Flume {g.kind.lower()} gauge {counter}",
                            labels=["agent", "component"])
                    families[base] = fam
                fam.add_metric([self.agent_name, g.name], float(value))
        yield from families.values()


class MonitorServer:
    """Serves the agent's counters over HTTP in a daemon thread."""

    def __init__(self, agent_name: str, groups: Callable[[], Iterable[Any]],
                 host: str = "0.0.0.0", port: int = 41414) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(agent_name, groups))  # type: ignore[arg-type]
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            server_version = "fchannel-monitor"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                if path == "/metrics":
                    body = json.dumps(flume_json(groups()), indent=None).encode()
                    ctype = "application/json"
                elif path == "/prometheus":
                    body = generate_latest(registry)
                    ctype = CONTENT_TYPE_LATEST
                else:
                    self.send_error(404, "try /metrics or /prometheus")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("%s " + fmt, self.address_string(), *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        name="monitoring-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("serving /metrics and /prometheus on port %d", self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

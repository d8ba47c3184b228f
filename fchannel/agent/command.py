"""``fchannel agent``: run a Flume-configured agent in the foreground.

    fchannel agent --conf-file example.conf --name a1 [--monitoring http --port 34545]

Flume's spellings work too: ``-f``/``-n``, ``-c DIR`` (accepted and unused:
there is no classpath here), ``-Dflume.monitoring.type=http
-Dflume.monitoring.port=34545``, and
``-DpropertiesImplementation=org.apache.flume.node.EnvVarResolverProperties``
(``${NAME}`` in values is replaced by environment variable NAME);
``${env:NAME}`` and ``${sys:NAME}`` (a ``-DNAME=value``) work without it, as
in Flume 1.10.  Monitoring without a port serves on Flume's 41414.  SIGTERM or
SIGINT stops the agent cleanly (exit status 0); a configuration problem
exits with status 2 after listing every problem; a channel that cannot be
opened (permission, lock, damage) exits with status 1 saying which.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from fchannel.errors import ChannelError, ConfigError

FORMAT = "%(asctime)s %(levelname)-5s [%(component)s] %(message)s"


class _ComponentFilter(logging.Filter):
    """Adds ``component`` (e.g. ``source.r1``) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name.startswith("fchannel."):
            name = name[len("fchannel."):]
        # the file channel's own lines read "<channel name>: ...": tag them as
        # the channel, [channel.c1], like every other component's lines
        if name.split(".")[0] == "file" and isinstance(record.msg, str) \
                and record.msg.startswith("%s: ") and isinstance(record.args, tuple) \
                and record.args and isinstance(record.args[0], str):
            name = f"channel.{record.args[0]}"
            record.msg = record.msg[4:]
            record.args = record.args[1:]
        record.component = name
        return True


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_ComponentFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "agent", help="run an agent configured by a Flume properties file",
        description="Run a Flume-style agent (sources -> channels -> sinks) configured "
                    "by a Flume properties file.")
    p.add_argument("-f", "--conf-file", required=True, metavar="FILE",
                   help="the properties file")
    p.add_argument("-n", "--name", required=True, metavar="AGENT",
                   help="the agent's name: the first part of its property keys")
    p.add_argument("-c", "--conf", metavar="DIR", help="Flume's conf dir (accepted, unused)")
    p.add_argument("--monitoring", choices=["http"], help="serve counters (http)")
    p.add_argument("--port", type=int, help="port of the monitoring server (41414)")
    p.add_argument("--monitoring-host", default="0.0.0.0", help="address to serve on")
    p.add_argument("-D", dest="defines", action="append", default=[], metavar="KEY=VALUE",
                   help="Flume system properties: flume.monitoring.type, "
                        "flume.monitoring.port, propertiesImplementation, and any NAME a "
                        "${sys:NAME} in the file refers to")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="stderr log level")
    p.add_argument("--no-reload-conf", action="store_true",
                   help="accepted for Flume compatibility (configuration is never reloaded)")
    p.set_defaults(func=run)


DEFAULT_MONITORING_PORT = 41414  # Flume's


def _system_properties(args: argparse.Namespace) -> dict[str, str]:
    """The ``-DKEY=VALUE`` settings, for ``${sys:KEY}`` lookups."""
    out = {}
    for d in args.defines:
        key, _, value = d.partition("=")
        out[key.strip()] = value
    return out


def _monitoring(args: argparse.Namespace) -> tuple[str | None, int | None]:
    kind, port = args.monitoring, args.port
    for d in args.defines:
        key, _, value = d.partition("=")
        if key == "flume.monitoring.type":
            kind = value.strip().lower()
        elif key == "flume.monitoring.port":
            try:
                port = int(value)
            except ValueError:
                raise ConfigError(f"-D{key} = {value!r}: must be a port number") from None
    if kind is not None and kind != "http":
        raise ConfigError(f"monitoring type {kind!r} is not supported; supported: http")
    if kind == "http" and port is None:
        port = DEFAULT_MONITORING_PORT
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"monitoring port {port} is not a port number (0-65535)")
    return kind, port


def run(args: argparse.Namespace) -> int:
    from fchannel.agent.agent import Agent
    from fchannel.agent.config import ChannelOpenError
    from fchannel.agent.properties import ENV_RESOLVER, load_properties, resolve_env
    from fchannel.agent.registry import missing_extra

    setup_logging(args.log_level)
    log = logging.getLogger("fchannel.agent")
    try:
        kind, port = _monitoring(args)
        if kind == "http":
            try:
                import prometheus_client  # noqa: F401
            except ImportError as exc:
                raise ConfigError(missing_extra("monitoring", "http", exc)) from None
        props = load_properties(args.conf_file)
        if f"propertiesImplementation={ENV_RESOLVER}" in args.defines:
            props = resolve_env(props, os.environ)
        agent = Agent.from_properties(props, args.name, environ=os.environ,
                                      system=_system_properties(args))
    except ConfigError as exc:
        log.error("configuration problem: %s", exc)
        return 2
    except ChannelOpenError as exc:
        log.error("%s", exc)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if kind == "http":
        try:
            agent.start_monitoring(args.monitoring_host, int(port or 0))
        except OSError as exc:
            log.error("cannot serve monitoring on port %s: %s", port, exc)
            agent.stop()
            return 1
    try:
        agent.start()
    except ConfigError as exc:
        log.error("configuration problem: %s", exc)
        return 2
    except (ChannelError, OSError) as exc:
        log.error("agent %r failed to start: %s", args.name, exc)
        agent.stop()
        return 1
    try:
        while not stop.wait(1.0):
            pass
    finally:
        agent.stop()
    return 0

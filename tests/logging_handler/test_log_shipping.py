"""examples/log_shipping.py run as a real process: its log records reach
rolling files, or a collector agent's grpc source, each once and in order."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

from fchannel.agent import Agent
from tests.conftest import wait_for
from tests.helpers import ROOT

EXAMPLE = os.path.join(ROOT, "examples", "log_shipping.py")


def _orders(directory: str) -> list[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*"))):
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break           # a line the sink is still writing
                body = json.loads(line)
                if body["logger"] == "shop.orders":
                    out.append(body["message"])
    return out


def _run(tmp_path, **env):
    full = dict(os.environ, LS_DIR=str(tmp_path / "app"), LS_COUNT="300", **env)
    full["PYTHONPATH"] = ROOT + os.pathsep + full.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, EXAMPLE], env=full, cwd=str(tmp_path),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()


def test_logs_reach_rolling_files(tmp_path):
    _run(tmp_path)
    assert _orders(str(tmp_path / "app" / "out")) == [f"order {i} accepted" for i in range(300)]


def test_logs_reach_a_collector_agent(tmp_path):
    out = tmp_path / "collector-out"
    collector = Agent.from_properties({
        "c.sources": "in", "c.channels": "mem", "c.sinks": "roll",
        "c.sources.in.type": "grpc", "c.sources.in.bind": "127.0.0.1",
        "c.sources.in.port": "0", "c.sources.in.channels": "mem",
        "c.channels.mem.type": "memory", "c.channels.mem.capacity": "10000",
        "c.channels.mem.transactionCapacity": "1000",
        "c.sinks.roll.type": "file_roll", "c.sinks.roll.channel": "mem",
        "c.sinks.roll.sink.directory": str(out), "c.sinks.roll.sink.rollInterval": "0",
    }, "c")
    collector.start()
    try:
        port = collector.sources["in"].bound_port
        _run(tmp_path, LS_COLLECTOR=f"127.0.0.1:{port}")
        want = [f"order {i} accepted" for i in range(300)]
        wait_for(lambda: len(_orders(str(out))) >= 300, 30, what="300 records at the collector")
    finally:
        collector.stop()
    assert _orders(str(out)) == want

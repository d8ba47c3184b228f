"""Throughput of one multi-hop hop: leaf file channel -> grpc -> collector file channel.

The leaf's file channel is filled with N events of 256 bytes beforehand (not
timed).  Then a collector agent (grpc source -> file channel, no sink) and
the leaf agent (file channel -> grpc sink) run as real ``fchannel agent``
subprocesses on loopback, and the collector's committed-event counter
(``EventAcceptedCount``, read from its monitoring endpoint every 10 ms) is
timed from the first committed event to the last: events/s through the hop,
with both file channels fsyncing every transaction.  Baseline in the same run:
the same filled leaf channel drained by a ``null`` sink (no hop).

    python benchmarks/rpc_hop.py                 # N=20000, 3 runs per row
    python benchmarks/rpc_hop.py --events 50000 --runs 5

Writes a markdown table to benchmarks/results/rpc_hop.md (and prints it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVENT_SIZE = 256
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def file_channel(agent: str, base: Path, capacity: int) -> str:
    return (f"{agent}.channels.c1.type = file\n"
            f"{agent}.channels.c1.checkpointDir = {base}/checkpoint\n"
            f"{agent}.channels.c1.dataDirs = {base}/data\n"
            f"{agent}.channels.c1.capacity = {capacity}\n"
            f"{agent}.channels.c1.transactionCapacity = 1000\n")


def fill(base: Path, n: int) -> None:
    from fchannel import Event, FileChannel
    ch = FileChannel(str(base / "checkpoint"), str(base / "data"), capacity=n + 1000,
                     transaction_capacity=1000)
    try:
        for start in range(0, n, 1000):
            batch = [Event(b"%08d" % i + b"x" * (EVENT_SIZE - 8))
                     for i in range(start, min(n, start + 1000))]
            with ch.transaction() as tx:
                tx.put_batch(batch)
    finally:
        ch.close()


class Agent:
    def __init__(self, conf: Path, name: str, cwd: Path) -> None:
        self.mon = free_port()
        self.log = open(cwd / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                 ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fchannel", "agent", "-f", str(conf), "-n", name,
             "--monitoring", "http", "--port", str(self.mon), "--monitoring-host", "127.0.0.1",
             "--log-level", "WARNING"], cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
            env=env)

    def metrics(self) -> dict | None:
        try:
            with _OPENER.open(f"http://127.0.0.1:{self.mon}/metrics", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}") from None
            return None

    def counter(self, group: str, name: str) -> int:
        m = self.metrics()
        if not m or group not in m:
            return 0
        return int(m[group].get(name, 0))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()


def timed(progress, n: int, timeout: float = 600) -> float:
    """events/s from the first counted event to the n-th (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    first = 0
    t0 = 0.0
    while True:
        now_count = progress()
        now = time.monotonic()
        if now_count > 0 and not t0:
            t0, first = now, now_count
        if now_count >= n:
            if now == t0 or now_count == first:
                return float("nan")
            return (n - first) / (now - t0)
        if now > deadline:
            raise TimeoutError(f"only {now_count} of {n} events after {timeout}s")
        time.sleep(0.01)


def run_hop(work: Path, n: int, batch: int, compression: str) -> float:
    leaf_base, col_base = work / "leaf", work / "col"
    fill(leaf_base, n)
    port = free_port()
    col_conf = work / "col.properties"
    col_conf.write_text(f"""col.sources = r1
col.channels = c1
col.sources.r1.type = grpc
col.sources.r1.bind = 127.0.0.1
col.sources.r1.port = {port}
col.sources.r1.channels = c1
""" + file_channel("col", col_base, n + 1000))
    leaf_conf = work / "leaf.properties"
    leaf_conf.write_text(f"""leaf.channels = c1
leaf.sinks = k1
leaf.sinks.k1.type = grpc
leaf.sinks.k1.channel = c1
leaf.sinks.k1.hostname = 127.0.0.1
leaf.sinks.k1.port = {port}
leaf.sinks.k1.batch-size = {batch}
leaf.sinks.k1.compression-type = {compression}
""" + file_channel("leaf", leaf_base, n + 1000))
    col = Agent(col_conf, "col", work)
    leaf = None
    try:
        # the collector listens before the leaf starts
        deadline = time.monotonic() + 60
        while col.metrics() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("collector did not start")
            time.sleep(0.05)
        leaf = Agent(leaf_conf, "leaf", work)
        return timed(lambda: col.counter("SOURCE.r1", "EventAcceptedCount"), n)
    finally:
        if leaf is not None:
            leaf.stop()
        col.stop()


def run_null(work: Path, n: int, batch: int) -> float:
    base = work / "leaf"
    fill(base, n)
    conf = work / "null.properties"
    conf.write_text(f"""leaf.channels = c1
leaf.sinks = k1
leaf.sinks.k1.type = null
leaf.sinks.k1.channel = c1
leaf.sinks.k1.batchSize = {batch}
""" + file_channel("leaf", base, n + 1000))
    leaf = Agent(conf, "leaf", work)
    try:
        return timed(lambda: leaf.counter("SINK.k1", "EventDrainSuccessCount"), n)
    finally:
        leaf.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rpc_hop.md"))
    args = ap.parse_args(argv)

    import grpc

    import fchannel
    rows = [("file channel -> null sink (no hop, baseline)", None, 100, "none"),
            ("file channel -> grpc -> file channel", "hop", 100, "none"),
            ("file channel -> grpc -> file channel", "hop", 1000, "none"),
            ("file channel -> grpc -> file channel", "hop", 1000, "deflate")]
    table = []
    for label, kind, batch, comp in rows:
        rates = []
        for _ in range(args.runs):
            work = Path(tempfile.mkdtemp(prefix="rpc_hop-", dir=args.dir))
            try:
                rate = (run_hop(work, args.events, batch, comp) if kind
                        else run_null(work, args.events, batch))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rates.append(rate)
            print(f"{label} batch={batch} compression={comp}: {rate:,.0f} events/s",
                  file=sys.stderr)
        rates.sort()
        table.append((label, batch, comp, rates))

    lines = [
        "# One hop: leaf file channel -> grpc -> collector file channel",
        "",
        f"{args.events} events of {EVENT_SIZE} bytes per run, {args.runs} runs per row; "
        "both agents are `fchannel agent` subprocesses on loopback, both file channels "
        "fsync every transaction (defaults). Rate = events / time from the first to the "
        "last event committed by the collector (the null-sink baseline: drained by the "
        "leaf's sink).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or 'n/a'}),"
        f" {platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"grpcio {grpc.__version__}; fchannel {getattr(fchannel, '__version__', '?')} "
        f"(compiled core: {getattr(fchannel, 'COMPILED', '?')}); "
        f"{time.strftime('%Y-%m-%d')}. A shared machine: other work ran at the same time.",
        "",
        "Event bodies are an 8-digit number padded with one repeated byte, so `deflate` "
        "compresses them far more than real data would; on loopback compression only "
        "costs CPU.",
        "",
        "| path | batch-size | compression | runs | median events/s | min | max | median MB/s |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for label, batch, comp, rates in table:
        med = statistics.median(rates)
        lines.append(f"| {label} | {batch} | {comp} | {len(rates)} | {med:,.0f} | "
                     f"{rates[0]:,.0f} | {rates[-1]:,.0f} | "
                     f"{med * EVENT_SIZE / 1e6:.1f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

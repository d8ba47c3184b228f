"""Multi-hop flows as real ``fchannel agent`` subprocesses on loopback:
fan-in, fan-out (replicating) and failover across hops with a collector
killed by SIGKILL mid-stream and restarted.  Every run counts the events the
collectors' file_roll sinks wrote: none may be lost; duplicates (allowed by
at-least-once delivery) are counted and reported in the terminal summary."""
from __future__ import annotations

import collections
import json
import threading
from pathlib import Path

import grpc  # noqa: F401 - the agent extra; missing, the tests fail (never skip)
import pytest

from tests.agent.helpers import free_port, send_lines, write_conf
from tests.conftest import wait_for
from tests.rpc.conftest import DELIVERY_REPORT


def file_channel(agent: str, ch: str, base: Path, capacity: int = 100_000) -> str:
    return f"""
{agent}.channels.{ch}.type = file
{agent}.channels.{ch}.checkpointDir = {base}/{ch}/checkpoint
{agent}.channels.{ch}.dataDirs = {base}/{ch}/data
{agent}.channels.{ch}.capacity = {capacity}
{agent}.channels.{ch}.transactionCapacity = 1000
"""


def collector_conf(tmp: Path, name: str, port: int) -> Path:
    """grpc source -> file channel -> file_roll (JSON lines, never rolled)."""
    base = tmp / name
    text = f"""
col.sources = r1
col.channels = c1
col.sinks = k1
col.sources.r1.type = grpc
col.sources.r1.bind = 127.0.0.1
col.sources.r1.port = {port}
col.sources.r1.channels = c1
col.sinks.k1.type = file_roll
col.sinks.k1.channel = c1
col.sinks.k1.sink.directory = {base}/out
col.sinks.k1.sink.rollInterval = 0
col.sinks.k1.sink.serializer = JSON
col.sinks.k1.sink.batchSize = 100
""" + file_channel("col", "c1", base)
    return write_conf(tmp / f"{name}.properties", text)


def grpc_sink(agent: str, sink: str, ch: str, port: int, batch: int = 100) -> str:
    return f"""
{agent}.sinks.{sink}.type = grpc
{agent}.sinks.{sink}.channel = {ch}
{agent}.sinks.{sink}.hostname = 127.0.0.1
{agent}.sinks.{sink}.port = {port}
{agent}.sinks.{sink}.batch-size = {batch}
{agent}.sinks.{sink}.connect-timeout = 1000
{agent}.sinks.{sink}.request-timeout = 5000
"""


def records(base: Path) -> list[tuple[str, str]]:
    """(leaf header, body) of every complete line the collector wrote."""
    out_dir = base / "out"
    if not out_dir.is_dir():
        return []
    got: list[tuple[str, str]] = []
    for p in sorted(out_dir.iterdir()):
        for line in p.read_bytes().split(b"\n"):
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:  # a line being written as we read
                continue
            got.append((obj["headers"].get("leaf", ""), obj["body"]))
    return got


def account(what: str, expected: set[tuple[str, str]], got: list[tuple[str, str]]) -> int:
    """Assert nothing was lost or invented; report and return the duplicates."""
    counts = collections.Counter(got)
    lost = expected - set(counts)
    extra = set(counts) - expected
    dups = sum(n - 1 for n in counts.values() if n > 1)
    line = (f"{what}: {len(expected)} events sent, {len(got)} written, "
            f"{len(counts)} distinct, {len(lost)} lost, {dups} duplicates")
    DELIVERY_REPORT.append(line)
    print(line)
    assert not lost, f"{what}: lost {len(lost)} events, e.g. {sorted(lost)[:5]}"
    assert not extra, f"{what}: unexpected events {sorted(extra)[:5]}"
    return dups


def covered(expected: set[tuple[str, str]], *bases: Path):
    def check() -> bool:
        seen: set[tuple[str, str]] = set()
        for b in bases:
            seen.update(records(b))
        return expected <= seen
    return check


def stop_all(*agents) -> None:
    for a in agents:
        assert a.terminate() == 0, a.output()


def test_fan_in_two_leaves_to_one_collector(agents, tmp_path):
    n = 3000
    port = free_port()
    col = agents(collector_conf(tmp_path, "col", port), "col", tmp_path)
    leaves = []
    for leaf in ("l1", "l2"):
        conf = write_conf(tmp_path / f"{leaf}.properties", f"""
{leaf}.sources = r1
{leaf}.channels = c1
{leaf}.sinks = k1
{leaf}.sources.r1.type = seq
{leaf}.sources.r1.totalEvents = {n}
{leaf}.sources.r1.batchSize = 100
{leaf}.sources.r1.channels = c1
{leaf}.sources.r1.interceptors = i1
{leaf}.sources.r1.interceptors.i1.type = static
{leaf}.sources.r1.interceptors.i1.key = leaf
{leaf}.sources.r1.interceptors.i1.value = {leaf}
""" + file_channel(leaf, "c1", tmp_path / leaf) + grpc_sink(leaf, "k1", "c1", port))
        leaves.append(agents(conf, leaf, tmp_path))
    expected = {(leaf, str(i)) for leaf in ("l1", "l2") for i in range(n)}
    wait_for(covered(expected, tmp_path / "col"), 90, interval=0.2,
             what="both leaves' events at the collector")
    stop_all(*leaves, col)
    account("fan-in (2 leaves -> 1 collector)", expected, records(tmp_path / "col"))


def test_fan_out_one_leaf_to_two_collectors(agents, tmp_path):
    n = 3000
    p1, p2 = free_port(), free_port()
    cols = [agents(collector_conf(tmp_path, "colA", p1), "col", tmp_path),
            agents(collector_conf(tmp_path, "colB", p2), "col", tmp_path)]
    conf = write_conf(tmp_path / "leaf.properties", """
leaf.sources = r1
leaf.channels = c1 c2
leaf.sinks = k1 k2
leaf.sources.r1.type = seq
leaf.sources.r1.totalEvents = {n}
leaf.sources.r1.batchSize = 100
leaf.sources.r1.channels = c1 c2
leaf.sources.r1.selector.type = replicating
leaf.sources.r1.interceptors = i1
leaf.sources.r1.interceptors.i1.type = static
leaf.sources.r1.interceptors.i1.key = leaf
leaf.sources.r1.interceptors.i1.value = leaf
""" + file_channel("leaf", "c1", tmp_path / "leaf") + file_channel("leaf", "c2", tmp_path / "leaf")
        + grpc_sink("leaf", "k1", "c1", p1) + grpc_sink("leaf", "k2", "c2", p2), n=n)
    leaf = agents(conf, "leaf", tmp_path)
    expected = {("leaf", str(i)) for i in range(n)}
    for b in ("colA", "colB"):
        wait_for(covered(expected, tmp_path / b), 90, interval=0.2,
                 what=f"every event at {b}")
    stop_all(leaf, *cols)
    account("fan-out (replicating) collector A", expected, records(tmp_path / "colA"))
    account("fan-out (replicating) collector B", expected, records(tmp_path / "colB"))


@pytest.mark.crash
def test_failover_across_hops_with_the_primary_killed_and_restarted(agents, tmp_path):
    """netcat -> file channel -> failover group (grpc k1 -> primary, grpc k2 ->
    backup).  The primary collector is SIGKILLed while events flow, the
    backup takes over, the primary restarts on the same directories (its file
    channel gives back what it had committed) and gets the work back."""
    p_port, b_port, nc_port = free_port(), free_port(), free_port()
    primary_conf = collector_conf(tmp_path, "primary", p_port)
    primary = agents(primary_conf, "col", tmp_path)
    backup = agents(collector_conf(tmp_path, "backup", b_port), "col", tmp_path)
    conf = write_conf(tmp_path / "leaf.properties", """
leaf.sources = r1
leaf.channels = c1
leaf.sinks = k1 k2
leaf.sinkgroups = g1
leaf.sources.r1.type = netcat
leaf.sources.r1.bind = 127.0.0.1
leaf.sources.r1.port = {nc}
leaf.sources.r1.channels = c1
leaf.sources.r1.interceptors = i1
leaf.sources.r1.interceptors.i1.type = static
leaf.sources.r1.interceptors.i1.key = leaf
leaf.sources.r1.interceptors.i1.value = leaf
leaf.sinkgroups.g1.sinks = k1 k2
leaf.sinkgroups.g1.processor.type = failover
leaf.sinkgroups.g1.processor.priority.k1 = 10
leaf.sinkgroups.g1.processor.priority.k2 = 5
leaf.sinkgroups.g1.processor.maxpenalty = 2000
""" + file_channel("leaf", "c1", tmp_path / "leaf")
        # small batches to the primary: the hop is busy for a while, so the kill
        # lands while the leaf still holds events for it
        + grpc_sink("leaf", "k1", "c1", p_port, batch=10)
        + grpc_sink("leaf", "k2", "c1", b_port, batch=50), nc=nc_port)
    leaf = agents(conf, "leaf", tmp_path)

    n = 4000
    killed, back = threading.Event(), threading.Event()
    failures: list[str] = []
    progress = [0]

    def send(lo: int, hi: int) -> None:
        for start in range(lo, hi, 25):
            lines = [str(i).encode() for i in range(start, min(hi, start + 25))]
            replies = send_lines(nc_port, lines)
            if replies != [b"OK"] * len(lines):
                failures.append(f"lines {start}..: replies {replies[:3]}")
                return
            progress[0] = start + len(lines)

    def sender() -> None:
        send(0, 2000)   # the kill comes while these flow
        if not killed.wait(60):
            failures.append("the primary was not killed within 60s")
            return
        send(2000, 3000)
        if not back.wait(60):
            failures.append("the primary did not come back within 60s")
            return
        send(3000, n)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(records(tmp_path / "primary")) >= 100, 60, interval=0.01,
                 what="the primary collector to receive events")
        primary.kill9()
        at_kill, acked_at_kill = len(records(tmp_path / "primary")), progress[0]
        killed.set()
        # mid-stream: the leaf had accepted more than the primary had written
        assert at_kill < acked_at_kill, (at_kill, acked_at_kill)
        wait_for(lambda: records(tmp_path / "backup"), 60, interval=0.1,
                 what="the backup collector to take over")
        restarted = agents(primary_conf, "col", tmp_path)
        wait_for(lambda: leaf.output().count("sink 'k1' is back") >= 1, 60, interval=0.1,
                 what="the leaf to fail back to the restarted primary")
        back.set()
        t.join(120)
        assert not t.is_alive(), "the sender did not finish"
        assert not failures, failures
        expected = {("leaf", str(i)) for i in range(n)}
        wait_for(covered(expected, tmp_path / "primary", tmp_path / "backup"), 90,
                 interval=0.2, what="every event at one collector or the other")
    finally:
        killed.set()
        back.set()
    stop_all(leaf, restarted, backup)
    p_recs, b_recs = records(tmp_path / "primary"), records(tmp_path / "backup")
    # the primary got work again after its restart (events sent after the fail-back)
    assert any(int(body) >= 3000 for _, body in p_recs), "no fail-back to the primary"
    assert b_recs, "the backup received nothing"
    dups = account(f"failover (primary SIGKILLed with {at_kill} written of {acked_at_kill} "
                   f"in the leaf, restarted): "
                   f"primary {len(p_recs)} + backup {len(b_recs)}",
                   expected, p_recs + b_recs)
    assert dups <= n

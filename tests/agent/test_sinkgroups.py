"""Sink groups (failover, load_balance) and sink semantics, driven step by step."""
from __future__ import annotations

import pytest

from fchannel import Event
from fchannel.agent import BatchSink, EventDeliveryError, Status
from fchannel.agent.config import build_agent
from fchannel.agent.properties import parse_properties


class FlakySink(BatchSink):
    """Delivers into a list, or fails while ``broken``."""

    def configure(self, ctx):
        self.batch_size = ctx.integer("batchSize", 10, minimum=1)
        self.broken = ctx.boolean("broken", False)
        self.delivered: list[bytes] = []
        self.attempts = 0

    def deliver(self, events):
        self.attempts += 1
        if self.broken:
            raise ConnectionError(f"{self.name} is down")
        self.delivered.extend(e.body for e in events)


BASE = """
a1.sinks = k1 k2 k3
a1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 1000
a1.channels.c1.transactionCapacity = 100
a1.channels.c1.keep-alive = 0
a1.sinkgroups = g1
a1.sinkgroups.g1.sinks = k1 k2 k3
"""
for _k in ("k1", "k2", "k3"):
    BASE += (f"a1.sinks.{_k}.type = tests.agent.test_sinkgroups.FlakySink\n"
             f"a1.sinks.{_k}.channel = c1\n")


@pytest.fixture
def group():
    built = []

    def make(extra: str):
        parts = build_agent(parse_properties(BASE + extra), "a1")
        built.append(parts)
        (runner,) = parts.sink_runners
        return parts, runner.processor

    yield make
    for parts in built:
        for ch in parts.channels.values():
            ch.close()


def fill(ch, n: int, start: int = 0) -> list[bytes]:
    bodies = [str(i).encode() for i in range(start, start + n)]
    with ch.transaction() as tx:
        tx.put_batch([Event(b) for b in bodies])
    return bodies


def test_failover_uses_the_highest_priority_sink(group):
    parts, proc = group("""
a1.sinkgroups.g1.processor.type = failover
a1.sinkgroups.g1.processor.priority.k1 = 5
a1.sinkgroups.g1.processor.priority.k2 = 10
a1.sinkgroups.g1.processor.priority.k3 = 1
""")
    sent = fill(parts.channels["c1"], 10)
    assert proc.process() is Status.READY
    assert parts.sinks["k2"].delivered == sent
    assert parts.sinks["k1"].attempts == 0 and parts.sinks["k3"].attempts == 0


def test_failover_moves_to_the_next_sink_and_loses_nothing(group):
    parts, proc = group("""
a1.sinkgroups.g1.processor.type = failover
a1.sinkgroups.g1.processor.priority.k1 = 10
a1.sinkgroups.g1.processor.priority.k2 = 5
a1.sinkgroups.g1.processor.priority.k3 = 1
a1.sinkgroups.g1.processor.maxpenalty = 100
a1.sinks.k1.broken = true
""")
    k1, k2 = parts.sinks["k1"], parts.sinks["k2"]
    sent = fill(parts.channels["c1"], 10)
    assert proc.process() is Status.READY
    # k1 failed: its take was rolled back and k2 delivered the same batch
    assert k1.attempts == 1 and k1.delivered == [] and k2.delivered == sent
    assert k1.counter.get("EventWriteFail") == 1
    assert "k1" in proc.failed
    # while penalised, k1 is not tried
    more = fill(parts.channels["c1"], 5, start=10)
    proc.process()
    assert k1.attempts == 1 and k2.delivered == sent + more


def test_failover_returns_to_the_primary_after_its_penalty(group):
    parts, proc = group("""
a1.sinkgroups.g1.processor.type = failover
a1.sinkgroups.g1.processor.priority.k1 = 10
a1.sinkgroups.g1.processor.priority.k2 = 5
a1.sinkgroups.g1.processor.maxpenalty = 50
a1.sinks.k1.broken = true
""")
    from tests.conftest import wait_for
    k1, k2 = parts.sinks["k1"], parts.sinks["k2"]
    first = fill(parts.channels["c1"], 3)
    proc.process()
    assert k2.delivered == first
    k1.broken = False
    wait_for(lambda: proc.failed["k1"][0] <= __import__("time").monotonic(), 5,
             what="k1's penalty (maxpenalty = 50 ms) to pass")
    second = fill(parts.channels["c1"], 3, start=3)
    proc.process()
    assert k1.delivered == second and "k1" not in proc.failed


def test_failover_with_every_sink_failing_raises_and_keeps_the_events(group):
    parts, proc = group("""
a1.sinkgroups.g1.processor.type = failover
a1.sinks.k1.broken = true
a1.sinks.k2.broken = true
a1.sinks.k3.broken = true
""")
    fill(parts.channels["c1"], 4)
    with pytest.raises(EventDeliveryError, match="all sinks failed"):
        proc.process()
    assert parts.channels["c1"].size == 4


def test_load_balance_round_robin_spreads_batches(group):
    parts, proc = group("""
a1.sinkgroups.g1.processor.type = load_balance
a1.sinkgroups.g1.processor.selector = round_robin
a1.sinks.k1.batchSize = 2
a1.sinks.k2.batchSize = 2
a1.sinks.k3.batchSize = 2
""")
    fill(parts.channels["c1"], 6)
    for _ in range(3):
        assert proc.process() is Status.READY
    assert [parts.sinks[k].delivered for k in ("k1", "k2", "k3")] == [
        [b"0", b"1"], [b"2", b"3"], [b"4", b"5"]]


def test_load_balance_random_delivers_everything(group):
    parts, proc = group("""
a1.sinkgroups.g1.processor.type = load_balance
a1.sinkgroups.g1.processor.selector = random
a1.sinks.k1.batchSize = 1
a1.sinks.k2.batchSize = 1
a1.sinks.k3.batchSize = 1
""")
    sent = fill(parts.channels["c1"], 30)
    for _ in range(30):
        proc.process()
    got = sorted(b for k in ("k1", "k2", "k3") for b in parts.sinks[k].delivered)
    assert got == sorted(sent)


def test_load_balance_skips_a_failing_sink_and_backs_it_off(group):
    parts, proc = group("""
a1.sinkgroups.g1.processor.type = load_balance
a1.sinkgroups.g1.processor.backoff = true
a1.sinkgroups.g1.processor.selector.maxTimeOut = 60000
a1.sinks.k1.broken = true
a1.sinks.k1.batchSize = 1
a1.sinks.k2.batchSize = 1
a1.sinks.k3.batchSize = 1
""")
    sent = fill(parts.channels["c1"], 9)
    for _ in range(9):
        assert proc.process() is Status.READY
    k1 = parts.sinks["k1"]
    assert k1.attempts == 1            # backed off after its first failure
    got = parts.sinks["k2"].delivered + parts.sinks["k3"].delivered
    assert sorted(got) == sorted(sent) and k1.delivered == []


def test_load_balance_without_backoff_retries_the_failing_sink_each_time(group):
    parts, proc = group("""
a1.sinkgroups.g1.processor.type = load_balance
a1.sinks.k1.broken = true
a1.sinks.k1.batchSize = 1
a1.sinks.k2.batchSize = 1
a1.sinks.k3.batchSize = 1
""")
    sent = fill(parts.channels["c1"], 6)
    for _ in range(6):
        proc.process()
    got = parts.sinks["k2"].delivered + parts.sinks["k3"].delivered
    assert sorted(got) == sorted(sent)
    assert parts.sinks["k1"].attempts >= 2


def test_a_sink_backs_off_on_an_empty_channel(group):
    parts, proc = group("a1.sinkgroups.g1.processor.type = failover\n")
    assert proc.process() is Status.BACKOFF
    assert parts.sinks["k1"].counter.get("BatchEmptyCount") == 1

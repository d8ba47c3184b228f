"""The spool and the drainer in process, with stand-in Faust events (no broker).

What is checked: one channel transaction per batch with per-partition marks;
acks only after the commit; redelivered offsets dropped (0 duplicates in the
channel, also across a reopen); a failing put retried, never skipped, and
back-pressure on the ingest side while the channel is full; the drainer
commits a take only after the sink succeeded and rolls back otherwise.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import faust  # noqa: F401 - the faust extra; missing, the tests fail (never skip)
import pytest
from fchannel.integrations.faust import (
    FaustDrainer,
    FaustSpool,
    event_from_message,
    mark_key,
)

from fchannel import ConfigError, Event, MemoryChannel
from tests.channels import open_channel, take_all


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp: float | None = 1700000000.5
    headers: list = field(default_factory=list)

    @property
    def tp(self):
        from faust.types import TP
        return TP(self.topic, self.partition)


class Ev:
    """Stands in for a faust Event: ``.message`` and ``.ack()``."""

    def __init__(self, msg: Msg, on_ack=None) -> None:
        self.message = msg
        self.acked = False
        self._on_ack = on_ack

    def ack(self) -> bool:
        if self._on_ack:
            self._on_ack(self)
        self.acked = True
        return True


def evs(topic, partition, offsets, on_ack=None):
    return [Ev(Msg(topic, partition, o, f"{partition}:{o}".encode()), on_ack) for o in offsets]


async def run_flusher(spool, body):
    task = asyncio.ensure_future(spool.run())
    try:
        return await body()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def test_event_from_message_headers_and_body():
    m = Msg("t", 2, 41, b"v", key=b"\xff\x00", headers=[("h", b"x"), ("bin", b"\xff")])
    e = event_from_message(m)
    assert e.body == b"v"
    assert e.headers == {"h": "x", "topic": "t", "partition": "2", "offset": "41",
                         "timestamp": "1700000000500", "key_base64": "/wA="}
    assert event_from_message(Msg("t", 0, 1, b"", key=b"k")).headers["key"] == "k"
    with pytest.raises(TypeError, match="value_serializer='raw'"):
        event_from_message(Msg("t", 0, 1, {"a": 1}))  # type: ignore[arg-type]


def test_config_errors(tmp_path):
    mem = MemoryChannel(capacity=10, transaction_capacity=10)
    with pytest.raises(ConfigError, match="marks"):
        FaustSpool(mem, batch_size=10)
    FaustSpool(mem, dedupe=False, batch_size=10)
    with pytest.raises(ConfigError, match="transaction_capacity"):
        FaustSpool(mem, dedupe=False, batch_size=11)
    with pytest.raises(ConfigError, match="batch_size"):
        FaustDrainer(mem, lambda b: None, batch_size=0)
    with pytest.raises(ConfigError, match="sink"):
        FaustDrainer(mem, 42, batch_size=10)


def test_batches_commit_with_marks_and_ack_after_commit(tmp_path):
    ch = open_channel(tmp_path)
    spool = FaustSpool(ch, batch_size=10, within=0.05)
    seen_at_ack = []

    def on_ack(ev):   # the event must already be in the channel, with its mark
        key = mark_key("t", ev.message.partition)
        seen_at_ack.append((ch.size, ch.marks.get(key, -1) > ev.message.offset))

    events = evs("t", 0, range(25), on_ack) + evs("t", 1, range(7), on_ack)

    async def body():
        for e in events:
            await spool.add(e)
        await until(lambda: spool.pending == 0, what="the spool to flush")

    asyncio.run(run_flusher(spool, body))
    assert all(e.acked for e in events)
    assert all(marked and size > 0 for size, marked in seen_at_ack)
    assert spool.stored == 32 and spool.duplicates == 0
    assert spool.batches == 4                  # 10 + 10 + 10 + the 2 left by `within`
    assert ch.marks == {mark_key("t", 0): 25, mark_key("t", 1): 7}
    got = take_all(ch)
    assert [(e.headers["partition"], e.headers["offset"]) for e in got] == \
        [(str(e.message.partition), str(e.message.offset)) for e in events]
    ch.close()


def test_redelivered_events_are_dropped_across_a_reopen(tmp_path):
    ch = open_channel(tmp_path)
    spool = FaustSpool(ch, batch_size=10, within=0.05)

    async def feed(sp, events):
        async def body():
            await asyncio.wait_for(_add_all(sp, events), 10)
            assert await sp.flush(5.0)
        await run_flusher(sp, body)

    asyncio.run(feed(spool, evs("t", 0, range(0, 15))))
    ch.close()
    ch = open_channel(tmp_path)                 # a restart: Faust redelivers from 5
    spool = FaustSpool(ch, batch_size=10, within=0.05)
    again = evs("t", 0, range(5, 30)) + evs("t", 0, [29, 3])   # and some repeats
    asyncio.run(feed(spool, again))
    assert all(e.acked for e in again)          # dropped ones are acked too
    assert spool.duplicates == 10 + 2 and spool.stored == 15
    offsets = [int(e.headers["offset"]) for e in take_all(ch)]
    assert offsets == list(range(30))           # 0 duplicates, none lost, in order
    ch.close()


def test_full_channel_put_is_retried_and_ingest_waits(tmp_path):
    ch = open_channel(tmp_path, capacity=20, transaction_capacity=10, keep_alive=0.05)
    spool = FaustSpool(ch, batch_size=10, within=0.02, max_pending=10,
                       backoff=(0.01, 0.05))
    events = evs("t", 0, range(45))

    async def body():
        adder = asyncio.ensure_future(_add_all(spool, events))
        await until(lambda: spool.failures >= 2, what="failed puts on the full channel")
        assert ch.size == 20 and not adder.done()          # ingest waits
        assert spool.pending == 10 and not any(e.acked for e in events[20:])
        drained = []
        while len(drained) < 45:                # make room; the spool catches up
            with ch.transaction() as tx:
                drained.extend(tx.take_batch(7))
            await asyncio.sleep(0.01)
            assert time.monotonic() < deadline, "the spool never caught up"
        await adder
        return drained

    deadline = time.monotonic() + 20
    drained = asyncio.run(run_flusher(spool, body))
    assert [int(e.headers["offset"]) for e in drained] == list(range(45))   # none skipped
    assert all(e.acked for e in events)
    ch.close()


async def _add_all(spool, events):
    for e in events:
        await spool.add(e)


def test_failing_store_flush_timeout_keeps_events_unacked(tmp_path):
    ch = open_channel(tmp_path)
    spool = FaustSpool(ch, batch_size=10, within=10, backoff=(0.01, 0.02))
    ch.close()                                   # every put now fails
    events = evs("t", 0, range(3))

    async def body():
        await _add_all(spool, events)
        assert not await spool.flush(0.2)

    asyncio.run(body())
    assert spool.failures >= 2 and spool.pending == 3
    assert not any(e.acked for e in events)


def test_cancelled_store_finishes_and_is_not_stored_twice(tmp_path):
    ch = open_channel(tmp_path)
    spool = FaustSpool(ch, batch_size=10, within=10)
    events = evs("t", 0, range(10))

    async def body():
        await _add_all(spool, events)
        t = asyncio.ensure_future(spool.flush())
        await asyncio.sleep(0)                  # the store has started
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert spool.pending == 10              # not acked yet...
        assert await spool.flush(5.0)           # ...the retry finds them stored

    asyncio.run(body())
    assert spool.stored == 10 and spool.duplicates == 10
    assert len(take_all(ch)) == 10
    ch.close()


def _fill(ch, n):
    with ch.transaction() as tx:
        tx.put_batch([Event(str(i).encode(), {"offset": str(i)}) for i in range(n)])


def test_drainer_commits_after_success_and_rolls_back_on_failure(tmp_path):
    ch = open_channel(tmp_path)
    _fill(ch, 25)
    got: list[bytes] = []
    fails = {"left": 2}

    async def sink(batch):
        if fails["left"]:
            fails["left"] -= 1
            got.extend(b"X" for _ in batch)     # a partial write, then an error
            raise OSError("destination down")
        got.extend(e.body for e in batch)

    drainer = FaustDrainer(ch, sink, batch_size=10, idle=0.01, backoff=(0.01, 0.02))

    async def body():
        task = asyncio.ensure_future(drainer.run())
        await until(lambda: drainer.delivered == 25, what="the drain")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(body())
    assert drainer.failures == 2
    assert [b for b in got if b != b"X"] == [str(i).encode() for i in range(25)]
    assert ch.size == 0
    ch.close()


def test_drainer_sync_sink_marks_commit_with_the_take(tmp_path):
    ch = open_channel(tmp_path)
    _fill(ch, 12)
    lines: list[str] = []

    def sink(batch):                             # plain function: runs in a thread
        lines.extend(e.headers["offset"] for e in batch)
        return {"sink:lines": len(lines)}

    drainer = FaustDrainer(ch, sink, batch_size=5)

    async def body():
        while await drainer.drain_once():
            pass

    asyncio.run(body())
    assert lines == [str(i) for i in range(12)]
    assert ch.marks["sink:lines"] == 12
    ch.close()
    ch = open_channel(tmp_path)
    assert ch.marks["sink:lines"] == 12 and ch.size == 0
    ch.close()


def test_drainer_stop_lets_the_batch_in_hand_commit(tmp_path):
    ch = open_channel(tmp_path)
    _fill(ch, 10)
    started = asyncio.Event

    async def body():
        gate = started()
        out = []

        async def slow_sink(batch):
            gate.set()
            await asyncio.sleep(0.2)
            out.extend(batch)

        drainer = FaustDrainer(ch, slow_sink, batch_size=10, stop_timeout=5.0)
        task = asyncio.ensure_future(drainer.run())
        await asyncio.wait_for(gate.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return out

    out = asyncio.run(body())
    assert len(out) == 10 and ch.size == 0       # delivered and committed, not redone
    ch.close()


def test_attach_registers_the_flusher_and_flushes_on_revoke_and_shutdown(tmp_path):
    ch = open_channel(tmp_path)
    app = faust.App("fchannel-unit", broker="kafka://127.0.0.1:9", store="memory://",
                    datadir=str(tmp_path / "faust"), web_enabled=False)
    spool = FaustSpool(ch, batch_size=10, within=60).attach(app)
    drainer = FaustDrainer(ch, lambda b: None, batch_size=10, spool=spool).attach(app)
    assert len(app._app_tasks) == 2
    topic = app.topic("t", value_serializer="raw")
    agent = spool.agent(topic, name="spool-unit")
    assert agent.name == "spool-unit"
    first, second = evs("t", 0, range(3)), evs("t", 0, range(3, 5))

    async def body():
        await _add_all(spool, first)                 # `within` is long: nothing flushes...
        await app.on_partitions_revoked.send(set())  # ...until the partitions are revoked
        assert spool.pending == 0 and all(e.acked for e in first)
        await _add_all(spool, second)
        await app.on_before_shutdown.send()          # and on shutdown
        assert spool.pending == 0 and all(e.acked for e in second)

    asyncio.run(body())
    assert [int(e.headers["offset"]) for e in take_all(ch)] == list(range(5))
    assert drainer.delivered == 0
    ch.close()


class FakeConsumer:
    def __init__(self):
        self.seeks = []

    async def _seek(self, tp, offset):
        self.seeks.append((tp.topic, tp.partition, offset))


class FakeApp:
    def __init__(self):
        self.consumer = FakeConsumer()


def test_assignment_behind_the_marks_seeks_forward(tmp_path):
    from faust.types import TP
    ch = open_channel(tmp_path)
    spool = FaustSpool(ch, batch_size=10, within=0.05)

    async def body():
        await _add_all(spool, evs("t", 0, range(8)) + evs("t", 1, range(4)))
        await until(lambda: spool.pending == 0, what="the spool to flush")
        spool._app = FakeApp()
        # a rebalance; Faust's committed offsets were 3 (p0) and 4 (p1)
        spool.on_assigned({TP("t", 0), TP("t", 1)})
        await _add_all(spool, evs("t", 0, range(3, 5)) + evs("t", 1, range(4, 6)))
        await until(lambda: spool.pending == 0, what="the spool to flush")
        return spool._app.consumer

    consumer = asyncio.run(run_flusher(spool, body))
    assert consumer.seeks == [("t", 0, 8)]          # p1 was not behind its mark
    assert spool.seeks == 1 and spool.skipped == 5 and spool.committed_past_marks == 0
    assert spool.duplicates == 2                    # 3 and 4 were in flight already
    assert [int(e.headers["offset"]) for e in take_all(ch)
            if e.headers["partition"] == "1"] == list(range(6))
    ch.close()


def test_assignment_past_the_marks_is_reported(tmp_path, caplog):
    from faust.types import TP
    ch = open_channel(tmp_path)
    spool = FaustSpool(ch, batch_size=10, within=0.05)

    async def body():
        await _add_all(spool, evs("t", 0, range(5)))
        await until(lambda: spool.pending == 0, what="the spool to flush")
        spool._app = FakeApp()
        spool.on_assigned({TP("t", 0), TP("t", 2)})
        # Faust committed up to 9 though the channel stored only up to 4
        await _add_all(spool, evs("t", 0, range(9, 12)) + evs("t", 2, range(50, 52)))
        await until(lambda: spool.pending == 0, what="the spool to flush")
        return spool._app.consumer

    with caplog.at_level("WARNING", logger="fchannel.integrations.faust"):
        consumer = asyncio.run(run_flusher(spool, body))
    assert consumer.seeks == []
    assert spool.committed_past_marks == 4          # offsets 5..8; p2 was never stored here
    assert "offsets 5..8 were committed without being stored" in caplog.text
    ch.close()


def test_concurrency_above_one_is_refused(tmp_path):
    import faust
    ch = open_channel(tmp_path)
    app = faust.App("fchannel-unit-c", broker="kafka://127.0.0.1:9", store="memory://",
                    datadir=str(tmp_path / "faust"), web_enabled=False)
    spool = FaustSpool(ch, batch_size=10)
    topic = app.topic("t", value_serializer="raw")
    with pytest.raises(ConfigError, match="concurrency must be 1, got 4"):
        spool.agent(topic, concurrency=4)
    spool.agent(topic, name="isolated", isolated_partitions=True)

    class Stream:
        concurrency_index = 1

    with pytest.raises(ConfigError, match="concurrency > 1"):
        asyncio.run(spool.consume(Stream()))
    ch.close()

"""Cancelling an awaited step of the asyncio face never corrupts the channel.

Each scenario runs one ``async with ch.atransaction()`` block and cancels its
task at a swept instant: after k event-loop iterations, or after a short delay.
Whatever the instant, the channel must afterwards hold exactly what it held
before the block or exactly what the block committed (a cancelled commit may
have completed; a block that returned normally must have committed), with
``size + remaining == capacity``; and at the end of the sweep the channel must
still take exactly ``capacity`` events (no room leaked).  The FileChannel
variant then runs the sweep in a child process, SIGKILLs it, and checks that
the reopened channel holds exactly what the live one reported.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time

import pytest

from fchannel import ChannelFullError, Event, FileChannel, MemoryChannel
from tests.helpers import Child

# cancel instants: ("iter", k) cancels after k loop iterations, ("delay", s) after s seconds
INSTANTS = ([("iter", k) for k in (0, 1, 2, 3, 4, 6, 9, 14, 20, 30)]
            + [("delay", s) for s in (0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06)])


def make_channel(kind: str, path, capacity: int, keep_alive: float = 0.5):
    if kind == "memory":
        return MemoryChannel(capacity=capacity, transaction_capacity=capacity,
                             keep_alive=keep_alive)
    return FileChannel(path / "checkpoint", [path / "data1", path / "data2"],
                       capacity=capacity, transaction_capacity=capacity,
                       keep_alive=keep_alive, minimum_required_space=0,
                       checkpoint_interval=3600)


def put_all(ch, bodies) -> None:
    if bodies:
        with ch.transaction() as tx:
            tx.put_batch([Event(b) for b in bodies])


def peek(ch) -> list[bytes]:
    """The queued bodies, head first (taken and rolled back)."""
    n = ch.size
    if n == 0:
        return []
    tx = ch.transaction()
    tx.begin()
    got = tx.take_batch(n)
    tx.rollback()
    tx.close()
    return [e.body for e in got]


def drain(ch) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(100):
        n = ch.size
        if n == 0:
            return out
        with ch.transaction() as tx:
            out += [e.body for e in tx.take_batch(min(n, ch.transaction_capacity))]
    raise AssertionError("the channel did not drain")


def taker_thread(ch, n: int, delay: float) -> threading.Thread:
    """Takes (and commits) n events after *delay* seconds: room for a waiting put."""
    def run() -> None:
        time.sleep(delay)
        with ch.transaction() as tx:
            got = tx.take_batch(n)
            assert len(got) == n
    t = threading.Thread(target=run)
    t.start()
    return t


# A scenario: (capacity, preload, block(ch) coroutine, helper threads, outcome if committed)
def scenario(name: str, kind: str):
    big = [b"x%04d" % i for i in range(1500)]
    if name == "put_waits_for_room":
        pre = [b"p0", b"p1", b"p2", b"p3"]

        async def block(ch):
            async with ch.atransaction() as tx:
                await tx.put(Event(b"new"))
        return 4, pre, block, lambda ch: [taker_thread(ch, 4, 0.004)], [b"new"], []
    if name == "put_batch_waits_for_room":
        pre = [b"p0", b"p1", b"p2"]

        async def block(ch):
            async with ch.atransaction() as tx:
                await tx.put_batch([Event(b"n0"), Event(b"n1"), Event(b"n2")])
        return 4, pre, block, lambda ch: [taker_thread(ch, 3, 0.004)], \
            [b"n0", b"n1", b"n2"], []
    if name == "commit_of_puts":
        async def block(ch):
            async with ch.atransaction() as tx:
                await tx.put_batch(Event(b) for b in big)
        return 4000, [], block, lambda ch: [], big, []
    if name == "take_batch":
        async def block(ch):
            async with ch.atransaction() as tx:
                got = await tx.take_batch(200)
                assert len(got) == 200
                await asyncio.sleep(0.01)     # a cancel here rolls the take back
        return 4000, big, block, lambda ch: [], big[200:], big
    if name == "commit_of_takes":
        async def block(ch):
            async with ch.atransaction() as tx:
                got = await tx.take_batch(1400)
                assert len(got) == 1400
        return 4000, big, block, lambda ch: [], big[1400:], big
    raise AssertionError(name)


SCENARIOS = ["put_waits_for_room", "put_batch_waits_for_room", "commit_of_puts",
             "take_batch", "commit_of_takes"]


async def run_cancelled(block, ch, instant) -> bool:
    """Run *block* and cancel it at *instant*; True if it ran to its end."""
    task = asyncio.ensure_future(block(ch))
    how, v = instant
    if how == "iter":
        for _ in range(v):
            if task.done():
                break
            await asyncio.sleep(0)
    else:
        await asyncio.wait({task}, timeout=v)
    task.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(task), 30)
    except asyncio.CancelledError:
        return False
    except ChannelFullError:   # a put that timed out (keep_alive) before the cancel
        return False
    return True


def sweep(ch, name: str, kind: str, keep_last: bool = False) -> list[bytes]:
    """Run the scenario at every instant; check the channel after each.  Returns
    what the channel holds at the end (drained unless *keep_last*)."""
    capacity, pre, block, helpers, after_put, before_take = scenario(name, kind)
    is_take = bool(before_take)
    outcomes = set()
    held: list[bytes] = []
    for i, instant in enumerate(INSTANTS):
        assert ch.size == 0 and ch.remaining == capacity, (name, instant)
        put_all(ch, pre)
        threads = helpers(ch)
        done = asyncio.run(run_cancelled(block, ch, instant))
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        # what the helper threads took is gone either way
        base = pre[len(pre) if threads else 0:] if not is_take else []
        if is_take:
            before, committed = before_take, after_put
        else:
            before, committed = base, base + after_put
        held = peek(ch)
        outcomes.add(("committed" if held == committed else "not") + ("" if done else "+c"))
        assert ch.size + ch.remaining == capacity, (name, instant, ch.size, ch.remaining)
        assert ch.size == len(held), (name, instant)
        if done:
            assert held == committed, (name, instant, len(held))
        else:
            assert held in (before, committed), (name, instant, len(held))
        if keep_last and i == len(INSTANTS) - 1:
            return held
        drain(ch)
    # no room leaked: exactly `capacity` events fit, one more does not
    put_all(ch, [b"f%d" % i for i in range(capacity)])
    assert ch.size == capacity and ch.remaining == 0
    tx = ch.transaction()
    tx.begin()
    with pytest.raises(ChannelFullError):
        tx.put(Event(b"one too many"))
        tx.commit()
    tx.rollback()
    tx.close()
    drain(ch)
    assert ch.size == 0 and ch.remaining == capacity
    print("outcomes", name, sorted(outcomes))
    return held


@pytest.mark.parametrize("kind", ["file", "memory"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_cancel_sweep_leaves_size_and_capacity_exact(kind, name, tmp_path):
    capacity = scenario(name, kind)[0]
    ch = make_channel(kind, tmp_path, capacity, keep_alive=0.3)
    try:
        sweep(ch, name, kind)
    finally:
        ch.close()


class SlowSteps(concurrent.futures.Executor):
    """An executor (``ch.atransaction(executor)``) whose steps each take 50 ms
    more, and that records how many run at once."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(4)
        self._lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.started = 0
        self.steps: list[str] = []

    def submit(self, fn, /, *args, **kwargs):
        name = getattr(getattr(fn, "func", fn), "__name__", "?")

        def step():
            with self._lock:
                self.running += 1
                self.started += 1
                self.max_running = max(self.max_running, self.running)
                self.steps.append(name)
            try:
                time.sleep(0.05)
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.running -= 1
        return self._pool.submit(step)

    def shutdown(self, wait=True, **kw):
        self._pool.shutdown(wait)


@pytest.mark.parametrize("kind", ["file", "memory"])
@pytest.mark.parametrize("cancel_in", ["put_batch", "put commit", "take_batch", "take commit"])
def test_no_step_runs_beside_one_in_flight(kind, cancel_in, tmp_path):
    """Cancel while a step is in flight in its thread: the task ends only
    after that step, nothing (no rollback) ran beside it, and the channel
    shows the step's real outcome."""
    ch = make_channel(kind, tmp_path, 1000)
    pool = SlowSteps()
    takes = cancel_in.startswith("take")
    if takes:
        put_all(ch, [b"%d" % i for i in range(100)])
    nth = 1 if cancel_in.endswith("batch") else 2     # the step to cancel in

    async def block():
        async with ch.atransaction(pool) as tx:
            if takes:
                assert len(await tx.take_batch(60)) == 60
            else:
                await tx.put_batch(Event(b"%d" % i) for i in range(60))

    async def main():
        task = asyncio.ensure_future(block())
        for _ in range(2000):
            if pool.started >= nth:
                break
            await asyncio.sleep(0.001)
        assert pool.started == nth and pool.running == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.running == 0      # the step in flight had finished

    try:
        asyncio.run(main())
        assert pool.max_running == 1, pool.steps
        committed = nth == 2          # a commit in flight completes; a batch is rolled back
        want = (40 if committed else 100) if takes else (60 if committed else 0)
        assert ch.size == want, (pool.steps, ch.size)
        assert ch.size + ch.remaining == 1000
        assert pool.steps[-1] == ("rollback" if nth == 1 else "commit"), pool.steps
    finally:
        pool.shutdown()
        ch.close()


CHILD = """
import json, sys
from pathlib import Path
from tests.core.test_aio_cancel import SCENARIOS, make_channel, scenario, sweep
root = Path(sys.argv[1])
for name in SCENARIOS:
    ch = make_channel("file", root / name, scenario(name, "file")[0], keep_alive=0.3)
    held = sweep(ch, name, "file", keep_last=True)
    print("STATE " + json.dumps({"name": name, "size": ch.size, "remaining": ch.remaining,
                                 "bodies": [b.decode() for b in held]}), flush=True)
print("READY", flush=True)
sys.stdin.read()
"""


def test_cancel_sweep_then_sigkill_reopens_what_the_live_channel_reported(tmp_path):
    child = Child(CHILD, str(tmp_path))
    try:
        states = [json.loads(child.expect("STATE ", timeout=300)[6:]) for _ in SCENARIOS]
        child.expect("READY", timeout=60)
    finally:
        child.kill()
    for st in states:
        name = st["name"]
        capacity = scenario(name, "file")[0]
        assert st["size"] + st["remaining"] == capacity
        ch = make_channel("file", tmp_path / name, capacity)
        try:
            assert ch.size == st["size"], name
            assert ch.remaining == st["remaining"], name
            assert [b.decode() for b in drain(ch)] == st["bodies"], name
            put_all(ch, [b"f%d" % i for i in range(capacity)])
            assert ch.remaining == 0
        finally:
            ch.close()

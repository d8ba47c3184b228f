"""8 producer and 8 consumer threads on one FileChannel, with rollbacks on
both sides, a checkpoint every 100 ms and explicit checkpoints from another
thread (DESIGN §5 under concurrency).

At the end (and after a close and reopen) the set of events taken plus the
events left equals the set committed; no event is delivered twice; nothing
rolled back appears; every thread finishes within a bounded time (no
deadlock: on a hang the test dumps every thread's stack and fails).

``FCHANNEL_STRESS_SECONDS`` sets the duration (default 15).
"""
from __future__ import annotations

import faulthandler
import os
import random
import sys
import threading
import time

import pytest

from fchannel import ChannelFullError, Event, FileChannel

SECONDS = float(os.environ.get("FCHANNEL_STRESS_SECONDS", "15"))
PRODUCERS = CONSUMERS = 8


def open_ch(tmp_path, **kw) -> FileChannel:
    return FileChannel(tmp_path / "ck", [tmp_path / "d0", tmp_path / "d1"], capacity=20_000,
                       transaction_capacity=100, checkpoint_interval=0.1,
                       max_file_size=256 * 1024, minimum_required_space=0, keep_alive=0.2,
                       backup_checkpoint_dir=tmp_path / "bk", **kw)


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync-per-txn", "fsync-interval"])
def test_many_producers_and_consumers_lose_and_duplicate_nothing(tmp_path, fsync):
    ch = open_ch(tmp_path, fsync_per_transaction=fsync, fsync_interval=0.05)
    seconds = SECONDS / 2
    stop = threading.Event()
    committed: list[set[bytes]] = [set() for _ in range(PRODUCERS)]
    rolled: list[set[bytes]] = [set() for _ in range(PRODUCERS)]
    taken: list[list[bytes]] = [[] for _ in range(CONSUMERS)]
    errors: list[BaseException] = []
    stats = {"take_rollbacks": 0, "full": 0, "checkpoints": 0}
    lock = threading.Lock()

    def producer(p: int) -> None:
        rng = random.Random(p)
        n = 0
        try:
            while not stop.is_set():
                batch = [b"%d-%d" % (p, n + i) for i in range(rng.randint(1, 20))]
                n += len(batch)
                rollback = rng.random() < 0.15
                try:
                    with ch.transaction() as tx:
                        tx.put_batch([Event(b, {"p": str(p)}) for b in batch])
                        if rollback:
                            raise _Rollback
                except _Rollback:
                    rolled[p].update(batch)
                    continue
                except ChannelFullError:
                    with lock:
                        stats["full"] += 1
                    rolled[p].update(batch)
                    continue
                committed[p].update(batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def consumer(c: int) -> None:
        rng = random.Random(100 + c)
        try:
            while not stop.is_set():
                tx = ch.transaction()
                tx.begin()
                got = tx.take_batch(rng.randint(1, 30))
                if got and rng.random() < 0.2:
                    tx.rollback()
                    tx.close()
                    with lock:
                        stats["take_rollbacks"] += 1
                    continue
                tx.commit()
                tx.close()
                taken[c].extend(e.body for e in got)
                if not got:
                    time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def checkpointer() -> None:
        try:
            while not stop.wait(0.25):
                ch.checkpoint()
                stats["checkpoints"] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = ([threading.Thread(target=producer, args=(p,)) for p in range(PRODUCERS)]
               + [threading.Thread(target=consumer, args=(c,)) for c in range(CONSUMERS)]
               + [threading.Thread(target=checkpointer)])
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [t for t in threads if t.is_alive()]
    if hung:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        pytest.fail(f"{len(hung)} thread(s) still running 60 s after stop: deadlock?")
    assert not errors, errors
    all_committed = set().union(*committed)
    all_rolled = set().union(*rolled)
    flat = [b for part in taken for b in part]
    assert len(flat) == len(set(flat)), "an event was delivered twice"
    assert not set(flat) & all_rolled, "a rolled-back put was delivered"
    assert set(flat) <= all_committed
    assert stats["take_rollbacks"] > 0 and len(flat) > 1000
    counters = ch.counters
    assert counters["checkpoint_count"] >= 5
    assert counters["checkpoint_write_errors"] == 0
    left_before = ch.size
    ch.close()
    # what was not taken is all there after a reopen, once
    ch = open_ch(tmp_path)
    assert ch.damage == []
    rest = []
    for _ in range(10_000):
        with ch.transaction() as tx:
            got = tx.take_batch(100)
        if not got:
            break
        rest.extend(e.body for e in got)
    ch.close()
    assert len(rest) == left_before
    assert len(rest) == len(set(rest)) and not set(rest) & set(flat)
    assert set(rest) | set(flat) == all_committed
    print(f"{len(all_committed)} committed, {len(flat)} taken during the run, {len(rest)} after "
          f"reopen, {stats}")


class _Rollback(Exception):
    pass

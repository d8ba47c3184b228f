"""close() while transactions are open or committing (issue 14, point 3).

The issue's case: put 5, hold them in a take, a large put commit in one
thread, close() in another, roll the take back: the reopen held 1 event, not
6 (close marked the channel closed before its checkpoint, and the rollback
then neither re-queued the taken events nor left them in flight).  Here the
rollback's instant is swept across close(); after a plain reopen, and after
a SIGKILL of a child process that ran the scenario, the channel holds the 5
and the committed put, each once, in order.  Then many put and take
transactions commit in threads while close() runs: the reopened channel holds
exactly what the threads were told was committed and not taken.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from fchannel import ChannelClosedError, Event, FileChannel
from tests.hardening import close_child as child

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def short(body: bytes) -> bytes:
    return b"BIG" if body == child.BIG else body


def drain(ch: FileChannel) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(10_000):   # bounded
        with ch.transaction() as tx:
            got = tx.take_batch(ch.transaction_capacity)
        if not got:
            return out
        out += [e.body for e in got]
    raise AssertionError("drain did not end")


def reopened(base: str) -> list[bytes]:
    ch = child.open_ch(base)
    try:
        return [short(b) for b in drain(ch)]
    finally:
        ch.close()


DELAYS = [0.0, 0.0005, 0.002, 0.01, 0.05]


@pytest.mark.parametrize("delay", DELAYS)
def test_a_take_rolled_back_while_close_runs_is_kept(tmp_path, delay):
    told = child.scenario(str(tmp_path), delay)
    assert told == {"put": "committed", "close": "ok", "rollback": "ok"}, told
    assert reopened(str(tmp_path)) == child.FIRST + [b"BIG"]


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.02])
def test_a_take_rolled_back_while_close_runs_is_kept_after_sigkill(tmp_path, delay):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "close_child.py"),
                             str(tmp_path), str(delay)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        assert ready, "the child did not report within 90 s"
        line = proc.stdout.readline()
        assert line, "the child died: " + proc.stderr.read().decode(errors="replace")
        told = json.loads(line)
        os.kill(proc.pid, signal.SIGKILL)   # after close() returned
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
    assert told == {"put": "committed", "close": "ok", "rollback": "ok"}, told
    assert reopened(str(tmp_path)) == child.FIRST + [b"BIG"]


# ---- close() beside committing threads ------------------------------------------------
def _open_busy(base: str, fsync: bool = True) -> FileChannel:
    return FileChannel(os.path.join(base, "ck"),
                       [os.path.join(base, "d0"), os.path.join(base, "d1")],
                       capacity=20_000, transaction_capacity=50, checkpoint_interval=0.05,
                       max_file_size=64 << 10, fsync_per_transaction=fsync,
                       fsync_interval=0.05)


def _run_threads(base: str, close_after: int, fsync: bool) -> tuple[list, list, list]:
    ch = _open_busy(base, fsync)
    prefill = [b"pre-%d" % i for i in range(200)]
    for k in range(0, len(prefill), 50):
        with ch.transaction() as tx:
            tx.put_batch([Event(b) for b in prefill[k:k + 50]])
    committed: list[list[bytes]] = [[] for _ in range(4)]   # per producer
    taken: list[bytes] = []
    errors: list[str] = []
    lock = threading.Lock()
    commits = [0]

    def producer(p: int) -> None:
        seq = 0
        for _ in range(100_000):   # bounded; ends when the channel closes
            batch = [b"p%d-%d" % (p, seq + i) for i in range(1 + seq % 7)]
            try:
                tx = ch.transaction()
                tx.begin()
                tx.put_batch([Event(b) for b in batch])
            except ChannelClosedError:
                return
            try:
                tx.commit()
            except ChannelClosedError:
                tx.rollback()
                return
            except BaseException as exc:
                errors.append(f"producer {p}: commit raised {exc!r}")
                return
            with lock:
                committed[p].extend(batch)
                commits[0] += 1
            seq += len(batch)

    def consumer(c: int) -> None:
        for _ in range(100_000):
            try:
                tx = ch.transaction()
                tx.begin()
                got = [e.body for e in tx.take_batch(1 + c * 3)]
            except ChannelClosedError:
                return
            try:
                tx.commit()
            except ChannelClosedError:
                try:
                    tx.rollback()
                except BaseException as exc:
                    errors.append(f"consumer {c}: rollback raised {exc!r}")
                return
            except BaseException as exc:
                errors.append(f"consumer {c}: commit raised {exc!r}")
                return
            with lock:
                taken.extend(got)
                commits[0] += 1

    threads = [threading.Thread(target=producer, args=(p,), daemon=True) for p in range(4)]
    threads += [threading.Thread(target=consumer, args=(c,), daemon=True) for c in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while commits[0] < close_after:   # bounded by the deadline
        assert time.monotonic() < deadline, "the threads made no progress"
        time.sleep(0.001)
    ch.close()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), f"{t.name} still running 60 s after close()"
    assert errors == []
    return prefill, committed, taken


@pytest.mark.parametrize("close_after,fsync", [(5, True), (60, True), (200, True),
                                               (60, False)])
def test_close_beside_committing_threads_never_loses_or_duplicates(tmp_path, close_after,
                                                                   fsync):
    prefill, committed, taken = _run_threads(str(tmp_path), close_after, fsync)
    ch = _open_busy(str(tmp_path))
    try:
        left = drain(ch)
    finally:
        ch.close()
    put = prefill + [b for p in committed for b in p]
    assert len(set(put)) == len(put)
    assert len(left) == len(set(left)), "an event is in the channel twice"
    assert len(taken) == len(set(taken)), "an event was delivered twice"
    assert not set(left) & set(taken), "a taken event came back"
    assert sorted(left + taken) == sorted(put), (
        f"lost: {sorted(set(put) - set(left) - set(taken))[:10]}, "
        f"invented: {sorted((set(left) | set(taken)) - set(put))[:10]}")
    # (no FIFO check: takes rolled back by several threads at once go back to
    # the head in the order of their rollbacks, by design)

"""close() racing a take rollback (issue 14, point 3): the scenario, run in
the test's process or, as a script, in a child that is SIGKILLed after
``close()`` returned.

Put 5 events, hold them in a take; a thread commits a large put; once its
records are written, another thread calls ``close()``; ``delay`` seconds
after the channel reports closed, the take is rolled back.  Returns what each
party was told.  Every wait is bounded.

As a script: ``close_child.py BASE DELAY`` prints the outcome as one JSON
line after close returned, then waits (for its SIGKILL) on stdin.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from fchannel import ChannelClosedError, Event, FileChannel

#: one event big enough that its put is written early (over the 4 MiB flush)
#: and its commit's fdatasync takes a while: close() meets the commit in flight
BIG = b"big:" + b"x" * (32 << 20)
FIRST = [b"e%d" % i for i in range(5)]
TIMEOUT = 60.0


def open_ch(base: str) -> FileChannel:
    return FileChannel(os.path.join(base, "ck"),
                       [os.path.join(base, "d0"), os.path.join(base, "d1")],
                       capacity=100, transaction_capacity=10, checkpoint_interval=3600)


def _wait(pred: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {TIMEOUT}s waiting for {what}")
        time.sleep(0.0005)


def scenario(base: str, delay: float) -> dict[str, str]:
    ch = open_ch(base)
    with ch.transaction() as tx:
        tx.put_batch([Event(b) for b in FIRST])
    take = ch.transaction()
    take.begin()
    got = [e.body for e in take.take_batch(5)]
    assert got == FIRST, got
    told: dict[str, str] = {}
    staged = threading.Event()
    flushed = [0]

    def putter() -> None:
        tx = ch.transaction()
        tx.begin()
        tx.put(Event(BIG))             # written to the log now, not synced
        flushed[0] = ch.counters["log_bytes_written"]
        staged.set()
        try:
            tx.commit()
            told["put"] = "committed"
        except ChannelClosedError:
            told["put"] = "closed"
            tx.rollback()
        except BaseException as exc:   # reported, and the test fails on it
            told["put"] = f"error {exc!r}"
            return
        tx.close()

    def closer() -> None:
        try:
            staged.wait(TIMEOUT)
            # the commit record is in the log: the commit is syncing
            _wait(lambda: ch.counters["log_bytes_written"] > flushed[0] or "put" in told,
                  "the put commit's write")
            ch.close()
            told["close"] = "ok"
        except BaseException as exc:
            told["close"] = f"error {exc!r}"

    tp = threading.Thread(target=putter, name="putter", daemon=True)
    tc = threading.Thread(target=closer, name="closer", daemon=True)
    tp.start()
    tc.start()
    _wait(lambda: ch.closed or "close" in told, "close() to begin")
    if delay:
        time.sleep(delay)   # where in close() the rollback lands: swept by the test
    try:
        take.rollback()
        take.close()
        told["rollback"] = "ok"
    except BaseException as exc:
        told["rollback"] = f"error {exc!r}"
    for t in (tp, tc):
        t.join(TIMEOUT)
        if t.is_alive():
            told[t.name] = "still running"
    return told


if __name__ == "__main__":
    out = scenario(sys.argv[1], float(sys.argv[2]))
    print(json.dumps(out), flush=True)
    sys.stdin.read()    # wait for the SIGKILL

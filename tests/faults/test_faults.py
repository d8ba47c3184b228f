"""Fault injection at every write and sync site, then SIGKILL and reopen:
what the live channel told its caller is what the reopened channel holds
(DESIGN §5.7).

For every N from 1 to the number of write/sync calls the workload makes,
the N-th call fails (EIO, and ENOSPC for a sample); the child reports each
transaction's outcome as the live channel told it; the parent kills the
child with SIGKILL, reopens the channel and checks: a committed put is there
unless a committed take took it; a rolled-back put never is; a committed
take's events are gone; a rolled-back take's events are back; an outcome
reported as unknown may go either way, but nothing is there twice and
nothing is invented.  ``FCHANNEL_FAULT_STRIDE`` (default 1) thins the sweep.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from fchannel import FileChannel

CHILD = os.path.join(os.path.dirname(__file__), "child.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _run_child(tmp, fail_at: int, err: str) -> list[str]:
    cfg = {"ckpt": str(tmp / "ck"), "data": [str(tmp / "d1"), str(tmp / "d2")],
           "backup": str(tmp / "bk"), "fail_at": fail_at, "errno": err}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, CHILD, json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    lines: list[str] = []
    # a child that hangs without a word is killed at the deadline, which ends
    # the blocking readline below (the pipe closes)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline().decode().strip()
            if not line:
                break
            lines.append(line)
            if line == "DONE":
                break
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGKILL)
        _out, err_text = proc.communicate(timeout=30)
    if not (lines and lines[-1] == "DONE"):
        pytest.fail(f"child failed at fail_at={fail_at}: {lines[-3:]}\n{err_text.decode()[-1200:]}", pytrace=False)
    return lines


def _check(tmp, lines: list[str]) -> None:
    present_must: set[int] = set()
    absent_must: set[int] = set()
    maybe: set[int] = set()
    put_ids: set[int] = set()
    for line in lines:
        if not line.startswith(("put ", "take ")):
            continue
        kind, outcome, *rest = line.split(" ")
        ids = {int(x) for x in rest[0].split(",")} if rest and rest[0] else set()
        if kind == "put":
            put_ids |= ids
            if outcome == "committed":
                present_must |= ids
            elif outcome == "rolled_back":
                absent_must |= ids
            else:
                maybe |= ids
        else:
            if outcome == "committed":
                present_must -= ids
                absent_must |= ids
                maybe -= ids
            elif outcome == "unknown":
                present_must -= ids
                maybe |= ids
            # rolled back: the events stay where they were
    ch = FileChannel(tmp / "ck", [tmp / "d1", tmp / "d2"], capacity=400,
                     transaction_capacity=50, max_file_size=6000, checkpoint_interval=3600,
                     minimum_required_space=0, backup_checkpoint_dir=tmp / "bk")
    try:
        got: list[int] = []
        for _ in range(100):
            with ch.transaction() as tx:
                batch = tx.take_batch(50)
            if not batch:
                break
            got += [int(e.headers["i"]) for e in batch]
        assert ch.size == 0
    finally:
        ch.close()
    have = set(got)
    assert len(got) == len(have), "an event came back twice"
    assert have <= put_ids, "an event that was never put"
    assert present_must <= have, f"lost: {sorted(present_must - have)}"
    assert not (absent_must & have), f"revived: {sorted(absent_must & have)}"
    definite = [i for i in got if i not in maybe]
    assert definite == sorted(definite), "FIFO order broken"


def _calls(tmp) -> int:
    lines = _run_child(tmp, fail_at=0, err="EIO")
    _check(tmp, lines)
    return int(next(x for x in lines if x.startswith("calls ")).split()[1])


@pytest.mark.crash
def test_every_write_and_sync_site_fails_once_then_sigkill(tmp_path):
    total = _calls(tmp_path / "dry")
    assert total > 50   # the workload reaches many sites
    stride = int(os.environ.get("FCHANNEL_FAULT_STRIDE", "1"))
    for n in range(1, total + 1, stride):
        err = "ENOSPC" if n % 5 == 0 else "EIO"
        tmp = tmp_path / f"n{n}"
        _check(tmp, _run_child(tmp, n, err))

"""The logging handler in a real process killed with SIGKILL.

A child logs numbered records through a :class:`ChannelHandler` (half of the
time calling ``flush()``, half of the time leaving the commits to the
committer's interval) and reports, in a progress file, what each call
returned. After N logging calls have returned, it is killed mid-stream, as
soon as it next reports a ``flush()`` (so a flush that returned early would
leave its records uncommitted, the committer's interval being longer). The
reopened channel must hold, in order and once each, exactly a prefix of the
records logged, and that prefix must cover every record that a ``flush()``
returned True for or that the committer reported committed.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from fchannel import FileChannel
from tests.helpers import ROOT

pytestmark = pytest.mark.crash

LINE = re.compile(r"^(logged|flushed|committed) (\d+) (\d+)$")


def _progress(path: str, rnd: int) -> dict[str, int]:
    """The highest number reported per kind in round *rnd* (-1: none)."""
    out = {"logged": -1, "flushed": -1, "committed": 0}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f.read().splitlines():
            m = LINE.match(line)
            if m and int(m.group(2)) == rnd:
                out[m.group(1)] = max(out[m.group(1)], int(m.group(3)))
    return out


def _take_all(directory: str) -> list[str]:
    ch = FileChannel(os.path.join(directory, "checkpoint"), os.path.join(directory, "data"))
    try:
        out = []
        for _ in range(10_000):
            with ch.transaction() as tx:
                got = tx.take_batch(500)
            if not got:
                return out
            out.extend(json.loads(e.body)["message"] for e in got)
        raise AssertionError("channel did not empty")
    finally:
        ch.close()


@pytest.mark.parametrize("n", [int(os.environ.get("FCHANNEL_LOG_KILL_N", "400"))])
def test_every_flushed_or_committed_record_survives_sigkill(tmp_path, n):
    directory = str(tmp_path / "spool")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rounds = int(os.environ.get("FCHANNEL_LOG_KILL_ROUNDS", "3"))
    for rnd in range(rounds):
        progress = str(tmp_path / f"progress-{rnd}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.logging_handler.log_child", directory, progress,
             str(rnd)], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while _progress(progress, rnd)["logged"] < n:
                if proc.poll() is not None:
                    pytest.fail(f"child exited ({proc.returncode}):\n"
                                f"{proc.stderr.read().decode()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"child did not log {n} records in 60 s: "
                                f"{_progress(progress, rnd)}")
                time.sleep(0.01)
            flushed = _progress(progress, rnd)["flushed"]
            while _progress(progress, rnd)["flushed"] == flushed:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"child did not flush again: {_progress(progress, rnd)}")
                time.sleep(0.001)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        seen = _progress(progress, rnd)
        got = _take_all(directory)
        # exactly a prefix of what was logged, in order, once each
        assert got == [f"r{rnd}-{i}" for i in range(len(got))], got[:20]
        # records 0..logged were reported, and the call after them may have
        # handed its record off before the kill cut its report
        assert len(got) <= (seen["logged"] + 1) + 1
        must = max(seen["flushed"] + 1, seen["committed"])
        assert must > 0 and seen["flushed"] >= 0, seen
        assert len(got) >= must, (f"round {rnd}: {len(got)} records in the channel, but "
                                  f"{must} were reported durable ({seen})")

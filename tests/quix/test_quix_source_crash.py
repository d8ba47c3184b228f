"""A Quix app fed by a FileChannelSource, its whole process group (the app
and the source's own process) SIGKILLed twice while the source delivers:
every event of the channel reaches the topic (at least once) and the channel
ends empty, so no take was committed before its messages were delivered."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from fchannel import Event, FileChannel
from tests.helpers import ROOT

pytestmark = pytest.mark.crash

APP = os.path.join(ROOT, "tests", "quix", "quix_source_app.py")
DELIVERED = re.compile(rb"QS delivered=(\d+)")


def _log(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_sigkill_while_delivering_loses_nothing(kafka, tmp_path):
    n = int(os.environ.get("FCHANNEL_QUIX_SOURCE_KILL_N", "3000"))
    d = str(tmp_path / "spool")
    with FileChannel(os.path.join(d, "checkpoint"), os.path.join(d, "data")) as ch:
        for first in range(0, n, 1000):
            with ch.transaction() as tx:
                tx.put_batch([Event(b"e%d" % i) for i in range(first, min(first + 1000, n))])
    topic = kafka.create_topic("qs-kill", partitions=1)
    env = dict(os.environ, QS_BROKER=kafka.bootstrap, QS_TOPIC=topic, QS_DIR=d,
               QS_GROUP=kafka.name("qs-kill-group"),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONWARNINGS", None)
    proc = None
    try:
        for run in range(3):
            log = str(tmp_path / f"app-{run}.log")
            with open(log, "wb") as out:
                proc = subprocess.Popen([sys.executable, APP], env=env, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            deadline = time.monotonic() + 90
            if run < 2:      # kill once this run has delivered some batches, mid-channel
                while len(DELIVERED.findall(_log(log))) < 3:
                    assert proc.poll() is None, _log(log)[-3000:].decode(errors="replace")
                    assert time.monotonic() < deadline, "no progress before the kill"
                    time.sleep(0.01)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                assert b"QS empty" not in _log(log), "the kill came after the channel emptied"
            else:
                while b"QS empty" not in _log(log):
                    assert proc.poll() is None, _log(log)[-3000:].decode(errors="replace")
                    assert time.monotonic() < deadline, "the channel did not empty"
                    time.sleep(0.05)
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            # the source's process died with the group: the channel opens again
            deadline = time.monotonic() + 10
            while True:
                try:
                    ch = FileChannel(os.path.join(d, "checkpoint"), os.path.join(d, "data"))
                    break
                except Exception:
                    assert time.monotonic() < deadline, "the channel stayed locked"
                    time.sleep(0.1)
            left = ch.size
            ch.close()
            if run < 2:
                assert 0 < left < n
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert left == 0
    want = {b"e%d" % i for i in range(n)}
    got, total = _read_until(kafka, topic, want, timeout=60)
    assert got >= want, f"{len(want - got)} events never reached the topic"
    print(f"{total} messages for {n} events ({total - n} delivered twice)")


def _read_until(kafka, topic, want, timeout):
    """(set of values, number of records) of *topic* read from the beginning
    until the values cover *want* or *timeout* passes."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        c.assign([TopicPartition(topic, 0)])
        got: set = set()
        total = 0
        deadline = time.monotonic() + timeout
        while not got >= want and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                total += len(recs)
                got.update(r.value for r in recs)
        return got, total
    finally:
        c.close()

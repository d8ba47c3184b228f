"""Log files written into preallocated space (docs/FORMAT.md, "Preallocation")."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

from fchannel import Event, FileChannel
from fchannel.file.log import PREALLOC_STEP, list_logs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def open_ch(tmp_path, **kw):
    kw.setdefault("minimum_required_space", 0)
    kw.setdefault("checkpoint_interval", 3600)
    return FileChannel(tmp_path / "ck", [tmp_path / "d"], **kw)


def drain(ch):
    out = []
    while True:
        with ch.transaction() as tx:
            got = tx.take_batch(100)
        if not got:
            return out
        out += got


def _logs(tmp_path):
    return [p for _f, _d, p in list_logs([str(tmp_path / "d")])]


def test_the_writer_keeps_zeros_ahead_and_a_closed_log_is_trimmed(tmp_path):
    ch = open_ch(tmp_path)
    with ch.transaction() as tx:
        tx.put(Event(b"x" * 100))
    (path,) = _logs(tmp_path)
    assert os.path.getsize(path) >= PREALLOC_STEP     # zeros ahead of the writer
    ch.close()
    assert os.path.getsize(path) < 1000                # cut back to its last record


def test_a_rolled_log_is_trimmed(tmp_path):
    ch = open_ch(tmp_path, max_file_size=64 << 10)
    for _ in range(40):
        with ch.transaction() as tx:
            tx.put_batch([Event(b"y" * 500)] * 10)
    logs = _logs(tmp_path)
    assert len(logs) > 2
    for p in logs[:-1]:
        assert os.path.getsize(p) <= 64 << 10
    ch.close()


def test_a_log_left_with_its_zero_tail_by_a_kill_opens_clean(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from fchannel import Event, FileChannel
        ch = FileChannel({str(tmp_path / "ck")!r}, [{str(tmp_path / "d")!r}],
                         minimum_required_space=0, checkpoint_interval=3600)
        for i in range(30):
            with ch.transaction() as tx:
                tx.put(Event(b"%d" % i))
        print("OK", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    watchdog = threading.Timer(60, proc.kill)   # a hung child ends the readline
    watchdog.start()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"OK"
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert any(os.path.getsize(p) >= PREALLOC_STEP for p in _logs(tmp_path))
    ch = open_ch(tmp_path)
    try:
        # (the kill may cut the first checkpoint short: that is the checkpoint's
        # business, not the log's)
        assert [d for d in ch.damage if "log-" in d] == []
        assert ch.counters["open_torn_tails"] == 0      # zeros are the clean end
        assert [e.body for e in drain(ch)] == [b"%d" % i for i in range(30)]
    finally:
        ch.close()


def _zero(path, start, end):
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(end - start))


def test_a_commit_torn_by_a_power_loss_is_dropped_whole(tmp_path):
    # a power loss can keep the commit record of one write into preallocated
    # space and lose an earlier block of it, which then reads as zeros
    ch = open_ch(tmp_path, checkpoint_on_close=False)
    with ch.transaction() as tx:
        tx.put_batch([Event(b"a%d" % i) for i in range(3)])
    with ch.transaction() as tx:
        tx.put_batch([Event(b"b%d" % i + b"." * 5000) for i in range(3)])
    ch._release()                                        # the process dies
    (path,) = _logs(tmp_path)
    with open(path, "rb") as f:
        at = f.read().find(b"b0")
    page = (at + 4096) // 4096 * 4096                     # a lost page inside b0's body
    _zero(path, page, page + 4096)
    ch = open_ch(tmp_path)
    try:
        assert [e.body for e in drain(ch)] == [b"a0", b"a1", b"a2"]
        assert ch.counters["open_torn_tails"] == 1
    finally:
        ch.close()


def test_bit_rot_in_one_record_keeps_the_rest_of_its_transaction(tmp_path):
    ch = open_ch(tmp_path, checkpoint_on_close=False)
    with ch.transaction() as tx:
        tx.put_batch([Event(b"c%d" % i + b"." * 100) for i in range(3)])
    ch._release()
    (path,) = _logs(tmp_path)
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        at = data.find(b"c1")
        data[at + 10] ^= 0x40
        f.seek(0)
        f.write(data)
    ch = open_ch(tmp_path)
    try:
        assert [e.body[:2] for e in drain(ch)] == [b"c0", b"c2"]
    finally:
        ch.close()

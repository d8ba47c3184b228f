"""Recovery from damaged files, and agreement of the compiled codec and
queue with their pure twins."""
import json
import os
import subprocess
import sys

import pytest

from fchannel import Event, FileChannel
from fchannel.file import format as F
from fchannel.file.tools import check


def ev(i):
    return Event(b"event-%05d" % i + b"." * 40, {"i": str(i)})


def open_ch(tmp_path, **kw):
    kw.setdefault("capacity", 1000)
    kw.setdefault("transaction_capacity", 100)
    kw.setdefault("minimum_required_space", 0)
    kw.setdefault("checkpoint_interval", 3600)
    return FileChannel(tmp_path / "ck", [tmp_path / "d0", tmp_path / "d1"], **kw)


def fill(tmp_path, n=200, taken=30, **kw):
    """n events put, `taken` taken, one open take and one open put at the checkpoint."""
    ch = open_ch(tmp_path, **kw)
    for k in range(0, n, 10):
        with ch.transaction() as tx:
            tx.put_batch(ev(i) for i in range(k, k + 10))
    with ch.transaction() as tx:
        assert len(tx.take_batch(taken)) == taken
    ch.close()
    return [ev(i) for i in range(taken, n)]


def drain(ch):
    out = []
    for _ in range(10_000):
        with ch.transaction() as tx:
            got = tx.take_batch(100)
        if not got:
            return out
        out += got
    raise AssertionError("drain did not finish")


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


@pytest.mark.parametrize("victim,how", [
    ("checkpoint", "flip-ring"), ("checkpoint", "flip-header"), ("checkpoint", "truncate"),
    ("checkpoint.meta", "flip"), ("checkpoint.meta", "delete"),
    ("inflightputs", "truncate"), ("inflighttakes", "flip"),
])
@pytest.mark.parametrize("backup", [True, False])
def test_damaged_checkpoint_files_fall_back_without_loss(tmp_path, victim, how, backup):
    bk = {"backup_checkpoint_dir": tmp_path / "bk"} if backup else {}
    expected = fill(tmp_path, **bk)
    path = tmp_path / "ck" / victim
    if how == "flip-ring":
        flip(path, F.CHECKPOINT_HEADER_SIZE + 8 * 35 + 3)  # a queued slot
    elif how == "flip-header":
        flip(path, 24)   # the queue size
    elif how == "flip":
        flip(path, os.path.getsize(path) - 2)
    elif how == "truncate":
        os.truncate(path, os.path.getsize(path) // 2)
    else:
        os.unlink(path)
    ch = open_ch(tmp_path, **bk)
    assert ch.counters["open_mode"] == ("backup" if backup else "full")
    assert any(victim in d for d in ch.damage)
    assert drain(ch) == expected
    ch.close()


def test_truncated_log_meta_is_reported_and_loses_nothing(tmp_path):
    expected = fill(tmp_path)
    metas = sorted((tmp_path / "d0").glob("log-*.meta"))
    os.truncate(metas[0], 5)
    ch = open_ch(tmp_path)
    assert any(".meta" in d for d in ch.damage)
    assert drain(ch) == expected
    ch.close()


def test_flipped_byte_in_a_log_loses_only_that_record(tmp_path):
    ch = open_ch(tmp_path)
    for k in range(0, 100, 10):
        with ch.transaction() as tx:
            tx.put_batch(ev(i) for i in range(k, k + 10))
    ch.close()
    for name in ("checkpoint", "checkpoint.meta"):   # force a full replay
        os.unlink(tmp_path / "ck" / name)
    # find the put record of event 42 and damage its body
    target = None
    for d in ("d0", "d1"):
        for p in (tmp_path / d).glob("log-*"):
            if p.suffix == ".meta":
                continue
            data = p.read_bytes()
            at = data.find(b"event-00042")
            if at >= 0:
                target = (p, at)
    assert target is not None
    flip(*target)
    problems, _notes = check(str(tmp_path / "ck"), [str(tmp_path / "d0"), str(tmp_path / "d1")])
    assert any("damaged record" in p and str(target[0]) in p for p in problems)
    ch = open_ch(tmp_path)
    assert ch.counters["open_corrupt_records"] == 1
    assert drain(ch) == [ev(i) for i in range(100) if i != 42]
    ch.close()


def test_torn_tail_is_cut_off_silently(tmp_path):
    ch = open_ch(tmp_path, checkpoint_on_close=False)
    with ch.transaction() as tx:
        tx.put_batch([ev(1), ev(2)])
    ch.close()
    # a half-written record at the end of a log, as a crash leaves it
    logs = sorted((tmp_path / "d0").glob("log-*[0-9]")) + sorted((tmp_path / "d1").glob("log-*[0-9]"))
    with open(logs[-1], "ab") as f:
        f.write(bytes([0xFC, 0x1A, 1, 0, 200, 0, 0, 0]) + b"\x01" * 30)
    for name in ("checkpoint", "checkpoint.meta"):
        os.unlink(tmp_path / "ck" / name)
    for p in logs:   # a crash leaves no closed meta for the file being written
        meta = p.with_name(p.name + ".meta")
        if meta.exists():
            os.unlink(meta)
    ch = open_ch(tmp_path)
    assert ch.counters["open_corrupt_records"] == 0
    assert ch.counters["open_torn_tails"] >= 1
    assert drain(ch) == [ev(1), ev(2)]
    ch.close()


def test_inspect_and_check_commands(tmp_path):
    fill(tmp_path, n=50, taken=5)
    args = [str(tmp_path / "ck"), str(tmp_path / "d0"), str(tmp_path / "d1")]
    r = subprocess.run([sys.executable, "-m", "fchannel", "inspect", "--json", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["checkpoint"]["valid"] and data["checkpoint"]["queue_size"] == 45
    assert sum(lg["queued_events"] for lg in data["logs"]) == 45
    r = subprocess.run([sys.executable, "-m", "fchannel", "check", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "0 problem(s)" in r.stdout
    flip(tmp_path / "ck" / "checkpoint.meta", 20)
    r = subprocess.run([sys.executable, "-m", "fchannel", "check", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "DAMAGED: checkpoint" in r.stdout
    # both are read-only: the channel still opens from its backup-less state
    ch = open_ch(tmp_path)
    assert ch.size == 45
    ch.close()

"""Regression tests for bugs the reliability suites (tests/crash,
tests/corruption, tests/fuzz, tests/stress) found in the FileChannel.  Each
names the bug it pins."""
from __future__ import annotations

import os
import threading

from fchannel.file import format as F
from fchannel.file.log import LogFile, read_log_meta


def test_concurrent_log_meta_writes_do_not_collide(tmp_path):
    """Bug: the checkpointer and a log roll wrote the same ``log-N.meta``
    through the same ``.tmp`` name at once; one rename failed (the checkpoint
    failed) and the meta could end up with the older state (closed=False)."""
    path = str(tmp_path / "log-7")
    open(path, "wb").close()
    info = LogFile(7, 0, path, created_woid=1, last_woid=0, closed=False)
    errors = []

    def writer(close_at):
        try:
            for k in range(300):
                if k == close_at:
                    info.last_woid = 99
                    info.closed = True
                info.write_meta()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (150, 10**9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    meta = read_log_meta(path, 7)
    assert meta.closed and meta.last_write_order_id == 99
    assert not (tmp_path / ("log-7" + F.META_SUFFIX + ".tmp")).exists()


def test_log_created_during_a_checkpoint_is_replayed_from_its_start(tmp_path, monkeypatch):
    """Bug: a checkpoint set the .meta position of every log file it listed
    to the file's size when it wrote the metas, including files created by a
    roll *after* it captured the queue; replay from that checkpoint then
    skipped the records written there in between (lost puts, resurrected
    takes).  Found by the crash harness (kill during a log roll)."""
    from fchannel import Event, FileChannel

    def open_ch():
        return FileChannel(tmp_path / "ck", [tmp_path / "d0"], capacity=1000,
                           transaction_capacity=100, max_file_size=1024,
                           minimum_required_space=0, checkpoint_interval=3600,
                           checkpoint_on_close=False)

    ch = open_ch()
    with ch.transaction() as tx:
        tx.put_batch([Event(b"before %d" % i) for i in range(3)])
    orig_sync_all = ch._log.sync_all
    late = [Event(b"late %d" % i + b"x" * 200) for i in range(12)]   # rolls several times

    def sync_all():
        # the checkpoint has captured the queue; commits go on meanwhile
        if threading.current_thread() is threading.main_thread() and late[0] not in done:
            for e in late:
                with ch.transaction() as tx:
                    tx.put(e)
                done.append(e)
        return orig_sync_all()

    done: list = []
    monkeypatch.setattr(ch._log, "sync_all", sync_all)
    files_before = len(ch._log.files)
    ch.checkpoint()
    assert len(ch._log.files) > files_before   # the late puts rolled to new files
    monkeypatch.undo()
    ch.close()
    ch = open_ch()
    assert ch.counters["open_mode"] == "checkpoint"
    with ch.transaction() as tx:
        got = tx.take_batch(100)
    assert [e.body for e in got] == [b"before %d" % i for i in range(3)] + [e.body for e in late]
    ch.close()


def test_take_rolled_back_after_a_checkpoint_then_taken_again_stays_taken(tmp_path):
    """Bug: a take transaction open at a checkpoint is saved as in-flight;
    when it was rolled back (no record is written) and another transaction
    then took and committed the same events, replay from that checkpoint
    could not find them in the queue (they were in the in-flight list) and
    brought them back at the head.  Found by the crash harness."""
    from fchannel import Event, FileChannel

    def open_ch():
        return FileChannel(tmp_path / "ck", [tmp_path / "d0", tmp_path / "d1"], capacity=100,
                           transaction_capacity=100, minimum_required_space=0,
                           checkpoint_interval=3600, checkpoint_on_close=False)

    ch = open_ch()
    with ch.transaction() as tx:
        tx.put_batch([Event(b"%d" % i) for i in range(5)])
    t1 = ch.transaction()
    t1.begin()
    assert len(t1.take_batch(5)) == 5
    ch.checkpoint()                   # t1's takes are in flight
    t1.rollback()
    t1.close()
    with ch.transaction() as tx:      # the same events, taken for good
        assert [e.body for e in tx.take_batch(2)] == [b"0", b"1"]
    ch.close()
    ch = open_ch()
    assert ch.counters["open_mode"] == "checkpoint"
    with ch.transaction() as tx:
        assert [e.body for e in tx.take_batch(10)] == [b"2", b"3", b"4"]
    ch.close()


def test_log_torn_at_creation_is_removed_not_reported_as_damaged_later(tmp_path):
    """Bug: a kill inside a log roll can leave ``log-N`` with no (or half a)
    header.  Replay counted it as a torn tail, but kept it; the next
    checkpoint wrote a .meta for it, and every later open reported the log's
    header as damaged.  Found by the crash harness (kill during a roll)."""
    from fchannel import Event, FileChannel

    def open_ch():
        return FileChannel(tmp_path / "ck", [tmp_path / "d0"], capacity=100,
                           transaction_capacity=100, minimum_required_space=0,
                           checkpoint_interval=3600)

    ch = open_ch()
    with ch.transaction() as tx:
        tx.put(Event(b"kept"))
    ch.close()
    (tmp_path / "d0" / "log-50").write_bytes(b"FCLG\x01")   # the roll died here
    ch = open_ch()
    assert ch.counters["open_torn_tails"] == 1 and ch.damage == []
    assert not (tmp_path / "d0" / "log-50").exists()
    ch.checkpoint()
    ch.close()
    ch = open_ch()
    assert ch.damage == [] and ch.counters["open_corrupt_records"] == 0
    with ch.transaction() as tx:
        assert tx.take().body == b"kept"
    ch.close()


def test_gc_removes_the_meta_before_the_log(tmp_path, monkeypatch):
    """A kill between the two unlinks of a log deletion must not leave a
    .meta whose log is gone (nothing would ever remove it)."""
    from fchannel.file import log as logmod

    path = tmp_path / "log-3"
    path.write_bytes(b"")
    (tmp_path / "log-3.meta").write_bytes(b"")
    lg = logmod.Log([str(tmp_path)], 4096, 0, "t")
    lg.files[3] = logmod.LogFile(3, 0, str(path), created_woid=1, last_woid=1, closed=True)
    order = []
    monkeypatch.setattr(logmod.os, "unlink", lambda p: order.append(os.path.basename(p)))
    lg.delete(3)
    assert order == ["log-3.meta", "log-3"]


def test_gc_keeps_up_with_two_data_dirs_and_full_replay_stays_exact(tmp_path):
    """Bug: log GC deleted only a prefix of *all* files whose newest record
    was older than the oldest kept file's first; with two data dirs rolling
    at different times that never holds again after a while, and log files
    piled up without bound (95 files for an empty channel after 60 rounds).
    GC now goes per data dir and keeps a file only while one of its take
    records points into a file that stays."""
    from fchannel import Event, FileChannel

    def open_ch():
        return FileChannel(tmp_path / "ck", [tmp_path / "d0", tmp_path / "d1"], capacity=1000,
                           transaction_capacity=1000, max_file_size=4096,
                           minimum_required_space=0, checkpoint_interval=3600)

    ch = open_ch()
    n = taken = 0
    kept = []
    for r in range(60):
        with ch.transaction() as tx:
            tx.put_batch([Event(b"%d" % i + b"p" * (i % 90)) for i in range(n, n + 25)])
        n += 25
        for _ in range(2):
            with ch.transaction() as tx:
                taken += len(tx.take_batch(12 if r % 5 else 11))
        ch.checkpoint()
        if r > 20:
            assert len(ch._log.files) <= 12, (r, sorted(ch._log.files))
    assert ch.counters["log_files_deleted"] > 30
    tx = ch.transaction()
    tx.begin()
    kept = [e.body for e in tx.take_batch(1000)]
    tx.rollback()
    tx.close()
    ch.close()
    assert len(kept) == n - taken
    for name in ("checkpoint", "checkpoint.meta"):
        os.unlink(tmp_path / "ck" / name)
    ch = open_ch()                       # a full replay of what GC left
    assert ch.counters["open_mode"] == "full"
    with ch.transaction() as tx:
        assert [e.body for e in tx.take_batch(1000)] == kept
    ch.close()


def _two_logs_after_checkpoint(tmp_path):
    from fchannel import Event, FileChannel

    def open_ch():
        return FileChannel(tmp_path / "ck", [tmp_path / "d0"], capacity=100,
                           transaction_capacity=100, minimum_required_space=0,
                           checkpoint_interval=3600, checkpoint_on_close=False,
                           max_file_size=1024)

    ch = open_ch()
    ch.checkpoint()
    for i in range(12):
        with ch.transaction() as tx:
            tx.put(Event(b"%d" % i + b"z" * 150))
    ch.close()
    logs = sorted(int(n[4:]) for n in os.listdir(tmp_path / "d0")
                   if n.startswith("log-") and not n.endswith(".meta"))
    return open_ch, [tmp_path / "d0" / f"log-{n}" for n in logs]


def test_log_truncated_at_a_record_boundary_is_reported(tmp_path):
    """Bug: a log cut cleanly between two records (all that is left is
    valid) lost its last records silently; the .meta knows better."""
    open_ch, logs = _two_logs_after_checkpoint(tmp_path)
    os.truncate(logs[0], F.LOG_HEADER_SIZE)
    ch = open_ch()
    assert any(str(logs[0]) in d and "truncated" in d for d in ch.damage), ch.damage
    assert ch.counters["open_corrupt_records"] >= 1
    ch.close()


def test_deleted_log_with_records_after_the_checkpoint_is_reported(tmp_path):
    """Bug: deleting a log whose records came after the checkpoint lost them
    silently; replay now reports the gap in write-order ids."""
    open_ch, logs = _two_logs_after_checkpoint(tmp_path)
    assert len(logs) >= 3
    os.unlink(logs[1])
    os.unlink(str(logs[1]) + ".meta")
    ch = open_ch()
    assert any("missing" in d and "write-order ids" in d for d in ch.damage), ch.damage
    ch.close()


def test_marks_survive_a_full_replay_after_gc_deleted_their_commit(tmp_path):
    """Bug: a mark lives in the commit record that set it; when log GC
    deleted that file, a full replay (checkpoint lost) lost the mark.  Found
    by the crash harness (long run, a kill inside a checkpoint)."""
    from fchannel import Event, FileChannel

    def open_ch():
        return FileChannel(tmp_path / "ck", [tmp_path / "d0", tmp_path / "d1"], capacity=1000,
                           transaction_capacity=100, max_file_size=2048,
                           minimum_required_space=0, checkpoint_interval=3600)

    ch = open_ch()
    with ch.transaction() as tx:
        tx.put(Event(b"first"))
        tx.set_mark("offset", 41)
    for i in range(60):            # roll, take everything, checkpoint: GC deletes old logs
        with ch.transaction() as tx:
            tx.put(Event(b"x" * 200))
        with ch.transaction() as tx:
            tx.take_batch(10)
        if i % 10 == 9:
            ch.checkpoint()
    assert ch.counters["log_files_deleted"] > 0
    ch.close()
    for name in ("checkpoint", "checkpoint.meta"):
        os.unlink(tmp_path / "ck" / name)
    ch = open_ch()
    assert ch.counters["open_mode"] == "full"
    assert ch.marks == {"offset": 41}
    ch.close()

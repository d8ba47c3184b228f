"""FileChannel behaviour: durability, FIFO across restarts, data dirs,
rolling and log GC, capacity, disk space, config, locks, marks."""
import json
import os
import threading
import time

import pytest

from fchannel import (
    ChannelError,
    ChannelFullError,
    ChannelLockedError,
    ConfigError,
    Event,
    FileChannel,
    TransactionError,
)
from fchannel.file import format as F
from tests.channels import move_concurrently
from tests.helpers import Child


def ev(i, size=0):
    return Event(b"e%06d" % i + b"x" * size, {"i": str(i)})


def open_ch(tmp_path, **kw):
    kw.setdefault("capacity", 10_000)
    kw.setdefault("transaction_capacity", 1000)
    kw.setdefault("keep_alive", 0.05)
    kw.setdefault("minimum_required_space", 0)
    kw.setdefault("checkpoint_interval", 3600)
    dirs = kw.pop("dirs", 2)
    return FileChannel(tmp_path / "ck", [tmp_path / f"d{i}" for i in range(dirs)], **kw)


def drain(ch, n=1000):
    out = []
    for _ in range(100_000):
        with ch.transaction() as tx:
            got = tx.take_batch(min(n, ch.transaction_capacity))
        if not got:
            return out
        out.extend(got)
    raise AssertionError("drain did not finish")


def put_all(ch, events, batch=100):
    for k in range(0, len(events), batch):
        with ch.transaction() as tx:
            tx.put_batch(events[k:k + batch])


def log_files(tmp_path):
    return sorted(name for d in tmp_path.glob("d*") for name in os.listdir(d)
                  if name.startswith("log-") and not name.endswith(".meta"))


def remove_checkpoint(tmp_path):
    for name in ("checkpoint", "checkpoint.meta"):
        os.unlink(tmp_path / "ck" / name)


@pytest.mark.parametrize("checkpoint", [True, False])
def test_events_survive_close_and_reopen_in_fifo_order(tmp_path, checkpoint):
    ch = open_ch(tmp_path)
    events = [ev(i) for i in range(500)]
    put_all(ch, events)
    with ch.transaction() as tx:
        assert tx.take_batch(50) == events[:50]
    ch.close()
    if not checkpoint:
        remove_checkpoint(tmp_path)
    ch = open_ch(tmp_path)
    assert ch.counters["open_mode"] == ("checkpoint" if checkpoint else "full")
    assert ch.size == 450
    assert drain(ch) == events[50:]
    ch.close()


def test_fast_replay_gives_the_same_queue(tmp_path):
    ch = open_ch(tmp_path)
    events = [ev(i) for i in range(300)]
    put_all(ch, events, batch=7)
    with ch.transaction() as tx:
        tx.take_batch(20)
    ch.close()
    remove_checkpoint(tmp_path)
    ch = open_ch(tmp_path, use_fast_replay=True)
    assert ch.counters["open_mode"] == "fast-full"
    assert drain(ch) == events[20:]
    ch.close()


CHILD = """
import sys
from fchannel import Event, FileChannel
ck, d1, d2 = sys.argv[1:4]
ch = FileChannel(ck, [d1, d2], capacity=10000, transaction_capacity=1000,
                 minimum_required_space=0, checkpoint_interval=float(sys.argv[4]))
n = 0
for k in range(20):
    with ch.transaction() as tx:
        tx.put_batch([Event(b"%d" % (n + i)) for i in range(50)])
    n += 50
    print("committed", n, flush=True)
with ch.transaction() as tx:
    tx.take_batch(100)
print("took 100", flush=True)
tx = ch.transaction()
tx.begin()
tx.put_batch([Event(b"uncommitted") for i in range(30)])
tx2 = ch.transaction()
tx2.begin()
tx2.take_batch(40)
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("interval", ["3600", "0.05"])
def test_sigkill_keeps_committed_and_hides_uncommitted(tmp_path, interval):
    child = Child(CHILD, str(tmp_path / "ck"), str(tmp_path / "d0"), str(tmp_path / "d1"),
                  interval)
    try:
        child.expect("holding")
    finally:
        child.kill()
    ch = open_ch(tmp_path)
    got = [e.body for e in drain(ch)]
    # the 40 events of the open take come back at the head, in order
    assert got == [b"%d" % i for i in range(100, 1000)]
    ch.close()


def test_transactions_go_to_data_dir_by_id(tmp_path):
    ch = open_ch(tmp_path, dirs=3)
    seen = set()
    for _ in range(30):
        tx = ch.transaction()
        seen.add(tx.id % 3)
        with tx:
            tx.put(ev(1, 100))
    ch.close()
    assert seen == {0, 1, 2}
    for i in range(3):
        sizes = [os.path.getsize(tmp_path / f"d{i}" / n) for n in os.listdir(tmp_path / f"d{i}")
                 if n.startswith("log-") and not n.endswith(".meta")]
        assert max(sizes) > F.LOG_HEADER_SIZE, f"d{i} got no records"


def test_small_files_roll_and_gc_deletes_exactly_the_unneeded(tmp_path):
    ch = open_ch(tmp_path, dirs=1, max_file_size=1024)
    events = [ev(i, 200) for i in range(40)]   # ~260 bytes a record: 3 per file
    put_all(ch, events, batch=4)
    files_before = log_files(tmp_path)
    assert len(files_before) >= 10
    taken = []
    with ch.transaction() as tx:
        taken += tx.take_batch(20)
    ch.checkpoint()
    remaining = drain(ch, 5)
    assert taken + remaining == events
    # every file that held only taken events and was finished before the oldest
    # kept one started is gone; the rest are kept
    ch.close()
    ch = open_ch(tmp_path, dirs=1, max_file_size=1024)
    assert ch.size == 0
    ch.close()
    ch = open_ch(tmp_path, dirs=1, max_file_size=1024)
    put_all(ch, [ev(i, 200) for i in range(6)], batch=2)
    ch.checkpoint()
    assert ch.counters["log_files_deleted"] > 0
    ids = sorted(int(n[4:]) for n in log_files(tmp_path))
    ch.close()
    # nothing referenced was deleted: a full replay (checkpoint removed) still has all 6
    for name in ("checkpoint", "checkpoint.meta"):
        os.unlink(tmp_path / "ck" / name)
    ch = open_ch(tmp_path, dirs=1, max_file_size=1024)
    assert ch.counters["open_mode"] == "full"
    assert [e.body for e in drain(ch)] == [ev(i, 200).body for i in range(6)]
    ch.close()
    assert ids


def test_gc_after_checkpoint_full_replay_never_resurrects(tmp_path):
    ch = open_ch(tmp_path, max_file_size=2048)
    put_all(ch, [ev(i, 100) for i in range(200)], batch=10)
    got = []
    for _ in range(10):
        with ch.transaction() as tx:
            got += tx.take_batch(15)
        ch.checkpoint()
    ch.close()
    assert ch.counters["log_files_deleted"] > 0
    for name in ("checkpoint", "checkpoint.meta"):
        os.unlink(tmp_path / "ck" / name)
    ch = open_ch(tmp_path, max_file_size=2048)
    rest = drain(ch)
    ch.close()
    assert [e.body for e in got + rest] == [ev(i, 100).body for i in range(200)]


def test_full_channel_waits_keep_alive_then_refuses(tmp_path):
    ch = open_ch(tmp_path, capacity=10, transaction_capacity=10, keep_alive=0.2)
    put_all(ch, [ev(i) for i in range(10)], batch=10)
    t0 = time.monotonic()
    with pytest.raises(ChannelFullError, match="capacity=10"), ch.transaction() as tx:
        tx.put(ev(99))
    assert time.monotonic() - t0 >= 0.19
    assert ch.remaining == 0 and ch.size == 10

    def consume():
        time.sleep(0.1)
        with ch.transaction() as tx:
            tx.take()

    t = threading.Thread(target=consume)
    t.start()
    ch._settings.keep_alive = 5   # now a put waits for the consumer's commit
    with ch.transaction() as tx:
        tx.put(ev(100))
    t.join(5)
    assert ch.size == 10
    ch.close()


def test_minimum_required_space_fails_puts_cleanly_and_recovers(tmp_path):
    ch = open_ch(tmp_path)
    put_all(ch, [ev(i) for i in range(10)])
    ch._log.minimum_required_space = 1 << 62   # more than any disk has
    tx = ch.transaction()
    tx.begin()
    tx.put(ev(10))
    with pytest.raises(ChannelFullError, match="minimum_required_space"):
        tx.commit()
    assert tx.state == "OPEN"
    tx.rollback()
    tx.close()
    with ch.transaction() as tx:          # takes still work so the channel can drain
        assert tx.take() == ev(0)
    ch._log.minimum_required_space = 0     # space came back
    with ch.transaction() as tx:
        tx.put(ev(11))
    ch.close()
    ch = open_ch(tmp_path)
    assert [e.headers["i"] for e in drain(ch)] == \
        [str(i) for i in range(1, 10)] + ["11"]
    ch.close()


def test_oversized_event_is_refused_and_transaction_stays_usable(tmp_path):
    ch = open_ch(tmp_path, max_file_size=1024)
    with ch.transaction() as tx:
        tx.put(ev(1))
        with pytest.raises(ChannelError, match="max_file_size=1024"):
            tx.put(Event(b"z" * 2000))
        tx.put(ev(2))
    assert drain(ch) == [ev(1), ev(2)]
    assert ch.remaining == ch.capacity
    ch.close()


def test_big_transactions_flush_early_and_survive(tmp_path, monkeypatch):
    from fchannel.file import transaction as chmod
    monkeypatch.setattr(chmod, "FLUSH_BYTES", 2000)
    ch = open_ch(tmp_path, checkpoint_on_close=False)
    events = [ev(i, 100) for i in range(200)]
    tx = ch.transaction()
    tx.begin()
    tx.put_batch(events[:100])
    ch.checkpoint()             # its flushed puts are in-flight at the checkpoint
    tx.put_batch(events[100:])
    tx.commit()
    tx.close()
    t2 = ch.transaction()
    t2.begin()
    t2.put_batch([ev(999, 100)] * 50)   # flushed, then rolled back
    t2.rollback()
    t2.close()
    ch.close()
    ch = open_ch(tmp_path)
    assert drain(ch) == events
    ch.close()


@pytest.mark.parametrize("per_txn", [True, False])
def test_fsync_modes_both_keep_data_on_close(tmp_path, per_txn):
    ch = open_ch(tmp_path, fsync_per_transaction=per_txn, fsync_interval=0.05)
    put_all(ch, [ev(i) for i in range(100)])
    ch.close()
    ch = open_ch(tmp_path)
    assert len(drain(ch)) == 100
    ch.close()


def test_marks_are_committed_atomically_and_survive(tmp_path):
    ch = open_ch(tmp_path, checkpoint_on_close=False)
    with ch.transaction() as tx:
        tx.put(ev(1))
        tx.set_mark("topic/0", 11)
    with pytest.raises(RuntimeError), ch.transaction() as tx:
        tx.put(ev(2))
        tx.set_mark("topic/0", 12)
        raise RuntimeError
    assert ch.marks == {"topic/0": 11}
    ch.checkpoint()
    with ch.transaction() as tx:
        tx.put(ev(3))
        tx.set_mark("topic/1", 5)
    ch.close()
    ch = open_ch(tmp_path)
    assert ch.marks == {"topic/0": 11, "topic/1": 5}
    with ch.transaction() as tx, pytest.raises(TypeError):
        tx.set_mark("k", "not an int")
    ch.close()
    remove_checkpoint(tmp_path)
    ch = open_ch(tmp_path)   # a full replay finds them in the commit records
    assert ch.marks == {"topic/0": 11, "topic/1": 5}
    ch.close()


LOCKER = """
import sys
from fchannel import FileChannel
ch = FileChannel(sys.argv[1], [sys.argv[2]], minimum_required_space=0)
print("open", flush=True)
sys.stdin.read()
"""


def test_second_process_is_locked_out_until_the_owner_dies(tmp_path):
    child = Child(LOCKER, str(tmp_path / "ck"), str(tmp_path / "d0"))
    try:
        child.expect("open")
        with pytest.raises(ChannelLockedError, match=r"in use by another process \(pid \d+"):
            FileChannel(tmp_path / "ck", [tmp_path / "d0"], minimum_required_space=0)
    finally:
        child.kill()
    ch = FileChannel(tmp_path / "ck", [tmp_path / "d0"], minimum_required_space=0)
    ch.close()


@pytest.mark.parametrize("kwargs,needle", [
    ({"capacity": 0}, "capacity"),
    ({"capacity": 10, "transaction_capacity": 11}, "transaction_capacity (11)"),
    ({"checkpoint_interval": 0}, "checkpoint_interval"),
    ({"max_file_size": 10}, "max_file_size"),
    ({"max_file_size": 1 << 33}, "max_file_size"),
    ({"minimum_required_space": -1}, "minimum_required_space"),
    ({"keep_alive": "soon"}, "'soon'"),
    ({"fsync_interval": -1}, "fsync_interval"),
    ({"fsync_per_transaction": "maybe"}, "'maybe'"),
    ({"name": ""}, "name"),
])
def test_bad_settings_name_field_and_value(tmp_path, kwargs, needle):
    with pytest.raises(ConfigError) as ei:
        FileChannel(tmp_path / "ck", [tmp_path / "d"], **kwargs)
    assert needle in str(ei.value)


def test_bad_directories(tmp_path):
    with pytest.raises(ConfigError, match="data_dirs"):
        FileChannel(tmp_path / "ck", [])
    with pytest.raises(ConfigError, match="used twice"):
        FileChannel(tmp_path / "ck", [tmp_path / "d", tmp_path / "d"])
    with pytest.raises(ConfigError, match="backup_checkpoint_dir"):
        FileChannel(tmp_path / "ck", [tmp_path / "d"], backup_checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        FileChannel(42, [tmp_path / "d"])


def test_from_properties_takes_flume_names_and_units(tmp_path):
    ch = FileChannel.from_properties({
        "type": "file", "checkpointDir": str(tmp_path / "ck"),
        "dataDirs": f"{tmp_path / 'a'}, {tmp_path / 'b'}", "capacity": "5000",
        "transactionCapacity": "500", "checkpointInterval": "250", "maxFileSize": "4096",
        "minimumRequiredSpace": "0", "keep-alive": "1", "useDualCheckpoints": "true",
        "backupCheckpointDir": str(tmp_path / "bk"), "fsyncPerTransaction": "false",
        "fsyncInterval": "2", "checkpointOnClose": "true", "use-fast-replay": "false",
    }, name="c1")
    assert (ch.capacity, ch.transaction_capacity, ch.name) == (5000, 500, "c1")
    assert ch._settings.checkpoint_interval == 0.25 and ch._settings.max_file_size == 4096
    assert ch.data_dirs == [str(tmp_path / "a"), str(tmp_path / "b")]
    ch.close()
    assert (tmp_path / "bk" / "backupComplete").exists()
    with pytest.raises(ConfigError) as ei:
        FileChannel.from_properties({"checkpointDir": str(tmp_path / "ck"),
                                     "dataDirs": str(tmp_path / "a"), "capacityy": "1",
                                     "checkpointInterval": "-5"})
    assert "capacityy" in str(ei.value) and "checkpointInterval" in str(ei.value)
    with pytest.raises(ConfigError, match="backupCheckpointDir"):
        FileChannel.from_properties({"useDualCheckpoints": "true"})


def test_transaction_misuse_after_close(tmp_path):
    ch = open_ch(tmp_path)
    tx = ch.transaction()
    tx.begin()
    tx.put(ev(1))
    ch.close()
    ch.close()
    from fchannel import ChannelClosedError
    with pytest.raises(ChannelClosedError):
        tx.commit()
    tx.rollback()
    tx.close()
    with pytest.raises(ChannelClosedError):
        ch.transaction()
    with pytest.raises(TransactionError):
        tx.put(ev(2))


def test_concurrent_producers_and_consumers_with_checkpoints(tmp_path):
    ch = open_ch(tmp_path, capacity=5000, transaction_capacity=50, checkpoint_interval=0.05,
                 max_file_size=64 * 1024, keep_alive=0.5)
    per, producers = 1000, 4
    taken, errors, alive = move_concurrently(ch, producers=producers, per=per, put_batch=25,
                                             consumers=4, take_batch=20, roll_back_every=7)
    assert not errors and not alive
    assert len(taken) == per * producers
    assert set(taken) == {b"%d-%d" % (p, i) for p in range(producers) for i in range(per)}
    assert len(set(taken)) == len(taken)   # no event twice, despite the rollbacks
    assert ch.counters["checkpoint_count"] > 0
    ch.close()


@pytest.mark.parametrize("kind", ["put", "take"])
def test_failed_sync_stops_the_channel_and_never_claims_a_rollback(tmp_path, monkeypatch, kind):
    # DESIGN §5.7 / issue 14 points 1-2: after a failed fdatasync nothing proves
    # what reached the disk, so the outcome is "unknown" until a reopen decides
    ch = open_ch(tmp_path)
    with ch.transaction() as tx:
        tx.put_batch([ev(1), ev(2)])

    def broken(fid, offset, others=False):
        raise ChannelError("syncing log-1 failed: EIO")

    monkeypatch.setattr(ch._log, "sync", broken)
    tx = ch.transaction()
    tx.begin()
    if kind == "put":
        tx.put(ev(3))
    else:
        assert tx.take() == ev(1)
    with pytest.raises(ChannelError, match="unknown"):
        tx.commit()
    with pytest.raises(ChannelError, match="reopen"):
        tx.rollback()                 # never "rolled back"
    tx.close()
    with pytest.raises(ChannelError, match="refuses work"), ch.transaction() as t2:
        t2.put(ev(4))
    monkeypatch.undo()
    ch.close()                        # no checkpoint of a state the disk may not have
    ch = open_ch(tmp_path)            # the reopen decides from the disk
    got = drain(ch)
    ch.close()
    # the records did reach the disk here (the sync was only reported failed)
    assert got == ([ev(1), ev(2), ev(3)] if kind == "put" else [ev(2)])

def test_a_log_started_after_the_checkpoint_snapshot_is_replayed_in_full(tmp_path, monkeypatch):
    """Regression: a log rolled while a checkpoint was being written got a
    .meta claiming the checkpoint covered it to its end, so its records
    (all newer than the checkpoint) were skipped by the next replay."""
    ch = open_ch(tmp_path, dirs=1, max_file_size=1024, checkpoint_on_close=False)
    put_all(ch, [ev(i, 200) for i in range(3)], batch=1)
    real_sync_all = ch._log.sync_all

    def sync_all_after_more_commits():
        # commits that roll to new logs land between the snapshot and the metas
        put_all(ch, [ev(i, 200) for i in range(3, 12)], batch=1)
        real_sync_all()

    monkeypatch.setattr(ch._log, "sync_all", sync_all_after_more_commits)
    ch.checkpoint()
    monkeypatch.undo()
    ch.close()      # no checkpoint on close: the next open replays from that checkpoint
    ch = open_ch(tmp_path, dirs=1, max_file_size=1024)
    assert ch.counters["open_mode"] == "checkpoint"
    assert [e.body for e in drain(ch)] == [ev(i, 200).body for i in range(12)]
    ch.close()



def test_a_commit_cut_short_by_a_failed_write_can_only_be_rolled_back(tmp_path, monkeypatch):
    """Regression: a commit whose write failed after part of it reached the
    log stayed OPEN and could be committed again, writing those put records
    a second time, so a replay committed the events twice."""
    from fchannel.file.log import Log
    ch = open_ch(tmp_path, dirs=1, max_file_size=1024, checkpoint_on_close=False)
    real_roll = Log._roll
    calls = {"n": 0}

    def roll_fails_once(self, i, next_woid):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ChannelFullError("no room for a new log (simulated)")
        return real_roll(self, i, next_woid)

    tx = ch.transaction()
    tx.begin()
    tx.put_batch([ev(i, 200) for i in range(6)])   # ~1.5 KiB: it needs a roll part way
    monkeypatch.setattr(Log, "_roll", roll_fails_once)
    with pytest.raises(ChannelFullError):
        tx.commit()
    monkeypatch.undo()
    with pytest.raises(TransactionError, match="roll the transaction back"):
        tx.commit()
    tx.rollback()
    tx.close()
    assert ch.size == 0 and ch.remaining == ch.capacity
    with ch.transaction() as t2:      # the channel goes on
        t2.put(ev(99))
    ch.close()
    remove_checkpoint(tmp_path)
    ch = open_ch(tmp_path, dirs=1, max_file_size=1024)
    assert [e.headers["i"] for e in drain(ch)] == ["99"]   # nothing of the failed one
    ch.close()


def test_a_log_deletion_cut_short_is_finished_at_the_next_open(tmp_path, monkeypatch):
    """Regression: GC deleted logs one by one; with two data dirs their take
    records can point into each other, so a kill between two deletions could
    leave the puts of a taken event without its take, and a later full
    replay brought the event back.  The set is now journalled and finished
    at the next open."""
    from fchannel.file.log import Log
    ch = open_ch(tmp_path, max_file_size=1024)
    put_all(ch, [ev(i, 200) for i in range(30)], batch=2)
    taken = drain(ch, 3)
    assert len(taken) == 30
    with ch.transaction() as tx:        # something stays queued in a new log
        tx.put(ev(100, 200))
    real_delete = Log.delete
    deleted = []

    def killed_after_one(self, fid):
        if deleted:
            raise RuntimeError("killed in the middle of log GC (simulated)")
        deleted.append(fid)
        real_delete(self, fid)

    monkeypatch.setattr(Log, "delete", killed_after_one)
    with pytest.raises(RuntimeError, match="simulated"):
        ch.checkpoint()
    monkeypatch.undo()
    planned = json.loads((tmp_path / "ck" / "gc-pending").read_text())["delete"]
    assert len(planned) >= 2 and len(deleted) == 1 and deleted[0] in planned
    ch._release()                        # the process dies: no close, no checkpoint
    remove_checkpoint(tmp_path)          # and the next open must replay every log
    ch = open_ch(tmp_path, max_file_size=1024)
    left = {int(n.split("-")[1]) for n in log_files(tmp_path)}
    assert not left & set(planned), "the interrupted deletion was not finished"
    assert not (tmp_path / "ck" / "gc-pending").exists()
    assert [e.headers["i"] for e in drain(ch)] == ["100"]   # no taken event came back
    ch.close()


def test_a_with_block_whose_commit_outcome_is_unknown_still_closes(tmp_path, monkeypatch):
    ch = open_ch(tmp_path)

    def broken(fid, offset, others=False):
        raise ChannelError("syncing failed: EIO")

    monkeypatch.setattr(ch._log, "sync", broken)
    tx = ch.transaction()
    with pytest.raises(ChannelError, match="reopen"), tx:
        tx.put(ev(1))
    assert tx.state == "CLOSED"
    monkeypatch.undo()
    ch.close()

"""Damage every kind of file the FileChannel keeps, in every way, and reopen
(DESIGN §5, guarantee 4).

File kinds: a log, a log's .meta, the checkpoint, checkpoint.meta,
inflightputs, inflighttakes, the backup checkpoint.  Damage: truncation, a
flipped bit, a zeroed range, random garbage, deletion.  For each, the
reopened channel must:

- open (a ``CorruptionError`` is accepted only if it names the file);
- lose no event whose records are intact: an event may be missing only if
  its put record or its transaction's commit record was damaged, and may
  come back after being taken only if one of its take records or that
  transaction's commit record was damaged;
- keep FIFO order and deliver no event twice;
- report the damage (``ch.damage`` names the file, the counter counts it),
  except where it is harmless and normal (a missing log .meta);
- keep working (put and take after the open).

``FCHANNEL_CORRUPTION_ROUNDS`` (default 2) sets how many random variants of
each case run; ``FCHANNEL_CORRUPTION_REPORT`` names a JSON file for figures.
"""
from __future__ import annotations

import collections
import json
import os
import random
import shutil

import pytest

from fchannel import CorruptionError, Event, FileChannel
from fchannel._compat import codec
from fchannel.file import format as F
from fchannel.file import transaction as chmod
from fchannel.file.log import list_logs

ROUNDS = int(os.environ.get("FCHANNEL_CORRUPTION_ROUNDS", "2"))
REPORT = os.environ.get("FCHANNEL_CORRUPTION_REPORT")
KINDS = ("log", "log-meta", "checkpoint", "checkpoint-meta", "inflightputs", "inflighttakes",
         "backup-checkpoint")
DAMAGES = ("truncate", "flip", "zero", "garbage", "delete")
FIGURES: collections.Counter = collections.Counter()


def event_for(i: int) -> Event:
    return Event(b"%d:" % i + b"y" * (i * 13 % 150), {"i": str(i)})


def open_ch(base, backup: bool, **kw) -> FileChannel:
    kw.setdefault("checkpoint_on_close", False)
    return FileChannel(os.path.join(base, "ck"), [os.path.join(base, "d0"),
                                                  os.path.join(base, "d1")],
                       capacity=1000, transaction_capacity=1000, max_file_size=4096,
                       minimum_required_space=0, keep_alive=0, checkpoint_interval=3600,
                       backup_checkpoint_dir=os.path.join(base, "bk") if backup else None, **kw)


def put(ch, ids):
    with ch.transaction() as tx:
        tx.put_batch([event_for(i) for i in ids])


def take(ch, n):
    with ch.transaction() as tx:
        return tx.take_batch(n)


def build(base: str, backup: bool) -> None:
    """A channel whose last checkpoint has queued events, in-flight puts and
    in-flight takes, with records before and after it, and GC'd logs."""
    old = chmod.FLUSH_BYTES
    chmod.FLUSH_BYTES = 1500       # so an open put transaction is in the log
    try:
        ch = open_ch(base, backup)
        for k in range(0, 300, 10):
            put(ch, range(k, k + 10))
        for _ in range(20):
            take(ch, 10)
        ch.checkpoint()
        take(ch, 20)
        ch.checkpoint()
        put(ch, range(300, 310))
        held_take = ch.transaction()
        held_take.begin()
        held_take.take_batch(10)
        held_put = ch.transaction()
        held_put.begin()
        held_put.put_batch([event_for(i) for i in range(1000, 1030)])
        ch.checkpoint()            # both transactions are in flight here
        held_take.commit()
        held_take.close()
        held_put.commit()
        held_put.close()
        for k in range(2000, 2050, 10):
            put(ch, range(k, k + 10))
        take(ch, 10)
        rolled = ch.transaction()
        rolled.begin()
        rolled.take_batch(5)
        rolled.rollback()
        rolled.close()
        assert ch.counters["log_files_deleted"] > 0
        ch.close()
    finally:
        chmod.FLUSH_BYTES = old


def drain_ids(ch) -> list[int]:
    tx = ch.transaction()
    tx.begin()
    got = tx.take_batch(ch.capacity)
    tx.rollback()
    tx.close()
    ids = []
    for e in got:
        i = int(e.headers["i"])
        assert e == event_for(i), f"event {i} came back altered: {e!r}"
        ids.append(i)
    return ids


class LogIndex:
    """Where every record of the pristine logs is: for the attribution of
    lost and resurrected events to damaged records."""

    def __init__(self, base: str) -> None:
        self.records: dict[int, list[tuple[int, int, int, int, int]]] = {}  # fid -> recs
        self.put_of: dict[int, tuple[int, int, int]] = {}      # event id -> (fid, off, txn)
        self.event_at: dict[tuple[int, int], int] = {}           # (fid, off) -> event id
        self.commit_of: dict[int, tuple[int, int]] = {}         # txn -> (fid, off)
        self.takes: dict[int, list[tuple[int, int, int]]] = collections.defaultdict(list)
        self.last_woid: dict[int, int] = {}
        for fid, _di, path in list_logs([os.path.join(base, "d0"), os.path.join(base, "d1")]):
            with open(path, "rb") as f:
                data = f.read()
            recs, _end, damage = codec.scan(data, F.LOG_HEADER_SIZE, -1, fid)
            assert not damage, (path, damage)
            rows = []
            for k in range(0, len(recs), 5):
                rtype, txn, woid, off, aux = recs[k:k + 5]
                length = codec.decode_record(data, off, None, fid)[3]
                rows.append((rtype, txn, off, length, aux))
                self.last_woid[fid] = woid
                if rtype == F.REC_PUT:
                    i = int(codec.decode_record(data, off, None, fid)[4].headers["i"])
                    self.put_of[i] = (fid, off, txn)
                    self.event_at[(fid, off)] = i
                elif rtype == F.REC_COMMIT:
                    self.commit_of[txn] = (fid, off)
            self.records[fid] = rows
        for fid, rows in self.records.items():
            for rtype, txn, off, _len, aux in rows:
                if rtype == F.REC_TAKE:
                    ev = self.event_at.get((aux >> 32, aux & 0xFFFFFFFF))
                    if ev is not None:
                        self.takes[ev].append((fid, off, txn))

    def damaged(self, fid: int, lo: int, hi: int) -> set[tuple[int, int]]:
        """(fid, offset) of the records overlapping bytes [lo, hi) of log fid."""
        return {(fid, off) for _t, _x, off, length, _a in self.records.get(fid, ())
                if off < hi and off + length > lo}

    def may_lose(self, bad: set) -> set[int]:
        out = set()
        for i, (fid, off, txn) in self.put_of.items():
            if (fid, off) in bad or self.commit_of.get(txn) in bad:
                out.add(i)
        return out

    def may_resurrect(self, bad: set) -> set[int]:
        out = set()
        for i, takes in self.takes.items():
            for fid, off, txn in takes:
                if (fid, off) in bad or self.commit_of.get(txn) in bad:
                    out.add(i)
        return out


@pytest.fixture(scope="module", params=[False, True], ids=["no-backup", "backup"])
def pristine(request, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("pristine"))
    build(base, request.param)
    ref = str(tmp_path_factory.mktemp("reference"))
    shutil.copytree(base, ref, dirs_exist_ok=True)
    ch = open_ch(ref, request.param)
    assert ch.damage == []
    expected = drain_ids(ch)
    ch.close()
    assert len(expected) > 100
    return {"base": base, "backup": request.param, "expected": expected,
            "index": LogIndex(base)}


def target_file(base: str, kind: str, rng: random.Random, index: LogIndex) -> tuple[str, int]:
    """The file to damage and the start of the bytes that matter in it."""
    ck = os.path.join(base, "ck")
    if kind in ("log", "log-meta"):
        logs = [(fid, path) for fid, _d, path in
                list_logs([os.path.join(base, "d0"), os.path.join(base, "d1")])
                if any(r[0] == F.REC_PUT for r in index.records.get(fid, ()))]
        fid, path = rng.choice(logs)
        return (path, 0) if kind == "log" else (path + F.META_SUFFIX, 0)
    name = {"checkpoint": F.CHECKPOINT_FILE, "checkpoint-meta": F.CHECKPOINT_META_FILE,
            "inflightputs": F.INFLIGHT_PUTS_FILE, "inflighttakes": F.INFLIGHT_TAKES_FILE,
            "backup-checkpoint": F.CHECKPOINT_FILE}[kind]
    d = os.path.join(base, "bk") if kind == "backup-checkpoint" else ck
    return os.path.join(d, name), 0


def live_range(path: str, kind: str) -> tuple[int, int]:
    """Bytes whose change must be noticed (the checkpoint's reserved header
    bytes and unused ring slots are not checked, by design)."""
    size = os.path.getsize(path)
    if kind in ("checkpoint", "backup-checkpoint"):
        with open(path, "rb") as f:
            head = F.CHECKPOINT_HEADER.unpack(f.read(F.CHECKPOINT_HEADER_SIZE))
        qsize, qhead = head[5], head[6]
        assert qhead + qsize <= head[3]   # no wrap in this set-up
        return F.CHECKPOINT_HEADER_SIZE + 8 * qhead, F.CHECKPOINT_HEADER_SIZE + 8 * (qhead + qsize)
    return 0, size


def damage(path: str, kind: str, how: str, rng: random.Random,
           index: LogIndex) -> tuple[int, int]:
    """Apply the damage; returns the byte range [lo, hi) it changed."""
    size = os.path.getsize(path)
    if how == "delete":
        os.unlink(path)
        return 0, size
    lo, hi = live_range(path, kind)
    if kind in ("checkpoint", "backup-checkpoint"):
        # the header or a queued slot: never the reserved bytes 56..64 or the marker
        spots = [*range(0, 40), *range(48, 56), *range(lo, hi)]
    else:
        spots = list(range(lo, hi))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if how == "truncate":
        cut = rng.choice(spots) if kind not in ("checkpoint", "backup-checkpoint") \
            else rng.randrange(0, size)
        if kind == "log" and rng.random() < 0.5:   # cleanly, at a record boundary
            rows = index.records.get(log_id(path), ())
            cut = rng.choice([off for _t, _x, off, _l, _a in rows])
        os.truncate(path, cut)
        return cut, size
    for _ in range(1000):
        at = rng.choice(spots)
        n = 1 if how == "flip" else rng.randint(1, 64)
        n = min(n, hi - at) if kind not in ("checkpoint", "backup-checkpoint") else n
        old = bytes(data[at:at + n])
        if how == "flip":
            new = bytes([old[0] ^ (1 << rng.randrange(8))])
        elif how == "zero":
            new = bytes(len(old))
        else:
            new = rng.randbytes(len(old))
        if new != old:
            data[at:at + n] = new
            with open(path, "r+b") as f:
                f.seek(at)
                f.write(new)
            return at, at + len(old)
    raise AssertionError("could not find bytes to change")


def log_id(path: str) -> int:
    return int(os.path.basename(path).split("-")[1].split(".")[0])


def scanned_from(base: str, path: str) -> int | None:
    """Where replay from the (intact) checkpoint starts reading this log;
    None if it skips the file (closed and wholly before the checkpoint)."""
    from fchannel.file import fchannel_pb2 as pb
    from fchannel.file.log import read_framed, read_log_meta
    ck = read_framed(os.path.join(base, "ck", F.CHECKPOINT_META_FILE),
                     F.CHECKPOINT_META_MAGIC, pb.CheckpointMeta)
    try:
        meta = read_log_meta(path, log_id(path))
    except CorruptionError:
        return 0
    if meta.closed and meta.last_write_order_id <= ck.write_order_id:
        return None
    if meta.checkpoint_write_order_id == ck.write_order_id:
        return meta.checkpoint_position
    return 0


def ckpt_woid(base: str) -> int:
    from fchannel.file import fchannel_pb2 as pb
    from fchannel.file.log import read_framed
    return read_framed(os.path.join(base, "ck", F.CHECKPOINT_META_FILE),
                       F.CHECKPOINT_META_MAGIC, pb.CheckpointMeta).write_order_id


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_damage_is_survived_and_reported(pristine, tmp_path, kind, how):
    if kind == "backup-checkpoint" and not pristine["backup"]:
        pytest.skip("no backup checkpoint in this set-up")
    index: LogIndex = pristine["index"]
    expected: list[int] = pristine["expected"]
    for rnd in range(ROUNDS):
        rng = random.Random(f"{kind}/{how}/{rnd}/{pristine['backup']}")
        base = str(tmp_path / f"r{rnd}")
        shutil.copytree(pristine["base"], base)
        path, _ = target_file(base, kind, rng, index)
        if kind == "backup-checkpoint":
            # the main checkpoint was being rewritten when the process died
            with open(os.path.join(base, "ck", F.CHECKPOINT_FILE), "r+b") as f:
                f.seek(F.CHECKPOINT_MARKER_OFFSET)
                f.write(F.CHECKPOINT_INCOMPLETE.to_bytes(8, "little"))
        start = scanned_from(base, path) if kind == "log" else 0
        lo, hi = damage(path, kind, how, rng, index)
        where = f"{kind}/{how}/round {rnd}: {os.path.relpath(path, base)} bytes {lo}..{hi}"
        bad: set = set()
        if kind == "log":
            bad = index.damaged(log_id(path), lo, hi)
        may_lose, may_return = index.may_lose(bad), index.may_resurrect(bad)
        # must the open itself report it?  Not a missing log .meta (normal
        # before a log's first checkpoint), nor log bytes replay never reads
        # (it skips a log the checkpoint covers wholly): those are for
        # `fchannel check`, and for the take that meets a damaged event.
        must_report = not (kind == "log-meta" and how == "delete")
        if kind == "log" and how != "delete":
            must_report = start is not None and hi > start
        elif kind == "log":   # a deleted log is noticed if it mattered
            fid = log_id(path)
            must_report = index.last_woid.get(fid, 0) > ckpt_woid(base) or any(
                index.put_of[i][0] == fid for i in expected)
        problems, notes = _check_tool(base)
        # check reads every record, so it finds all damage; a deleted file is
        # a problem where it lost something, a note where a replay recovers
        # (a lost checkpoint), and nothing where it held nothing needed
        if how != "delete":
            assert problems, (where, "fchannel check found nothing")
        elif kind == "checkpoint" or must_report and kind != "log-meta":
            assert problems or notes, (where, "fchannel check said nothing")
        try:
            ch = open_ch(base, pristine["backup"])
        except CorruptionError as exc:
            assert os.path.basename(path) in str(exc), (where, exc)
            FIGURES[f"{kind}: refused"] += 1
            continue
        try:
            ids = drain_ids(ch)
            reported = ch.damage
            counters = ch.counters
            assert len(set(ids)) == len(ids), (where, "an event is there twice")
            lost = set(expected) - set(ids)
            assert lost <= may_lose, (where, "events in intact records were lost",
                                      sorted(lost - may_lose))
            extra = set(ids) - set(expected)
            assert extra <= may_return, (where, "taken events came back",
                                         sorted(extra - may_return))
            kept = [i for i in ids if i in set(expected)]
            assert kept == [i for i in expected if i in set(kept)], (where, "FIFO order broken")
            name = "log-%d" % log_id(path) if kind.startswith("log") else os.path.basename(path)
            if must_report:
                if kind == "log" and how == "delete":   # its name is gone with it
                    assert any("missing" in d for d in reported), (where, reported)
                else:
                    assert any(name in d for d in reported), (where, "not reported", reported)
                assert counters["open_corrupt_records"] >= 1, where
            if lost:   # events that cannot be delivered are never dropped silently
                assert reported or counters["corrupt_events_skipped"] >= len(lost), where
            # it keeps working
            size = ch.size   # undeliverable (damaged) events stay queued until a take commits
            put(ch, [999_999])
            assert ch.size == size + 1
            FIGURES[kind] += 1
            FIGURES["events verified"] += len(ids)
            FIGURES["events lost (in damaged records)"] += len(lost)
            FIGURES["events back (damaged take records)"] += len(extra)
        finally:
            ch.close()
        ch = open_ch(base, pristine["backup"])   # and it opens again afterwards
        assert drain_ids(ch)[-1] == 999_999, where
        ch.close()


def _check_tool(base: str) -> tuple[list[str], list[str]]:
    """The problems and the notes of ``fchannel check``."""
    from fchannel.file.tools import check
    return check(os.path.join(base, "ck"), [os.path.join(base, "d0"), os.path.join(base, "d1")])


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if REPORT and FIGURES:
        with open(REPORT, "a", encoding="utf-8") as f:
            f.write(json.dumps({"rounds": ROUNDS, **FIGURES}) + "\n")

"""Replay: rebuild the event queue from a checkpoint and the log records
written after it (or from all logs when there is no usable checkpoint).

Rules (docs/FORMAT.md, "Replay"):

- records are applied in write-order id order across all data directories;
  with a checkpoint at id W only records with an id above W are applied;
- a put is pending until its transaction's commit appends it to the tail;
  a commit of takes removes the taken events; a rollback drops the pending
  records; a transaction with no commit is as if it never happened;
- events taken by transactions that were open at the checkpoint (the
  in-flight takes) go back to the head, in order, unless their commit follows;
- a damaged record is skipped and reported; a damaged tail (nothing valid
  after it: the normal result of a crash) is cut off.
"""
from __future__ import annotations

import heapq
import logging
import mmap
import os
import time
from dataclasses import dataclass, field

from fchannel._compat import codec
from fchannel.errors import ChannelError, CorruptionError
from fchannel.file import format as F
from fchannel.file.checkpoint import LoadedCheckpoint
from fchannel.file.log import (
    Log,
    LogFile,
    decode_log_header_version,
    list_logs,
    read_log_meta,
    scan_log,
)

log = logging.getLogger("fchannel.file")
_PAGE = 4096


@dataclass
class Damage:
    path: str
    start: int
    end: int
    kind: str           # "corrupt" record(s), damaged "tail", "torn" tail, "header", "meta"
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.kind} at bytes {self.start}..{self.end} {self.detail}".rstrip()


@dataclass
class ReplayResult:
    mode: str
    records: int = 0
    events: int = 0
    seconds: float = 0.0
    marks: dict[str, int] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    torn_tails: int = 0
    unmatched_takes: int = 0
    max_txn_id: int = 0

    @property
    def corrupt(self) -> list[Damage]:
        return [d for d in self.damage if d.kind != "torn"]


def _scan_file(fid: int, di: int, path: str, ckpt_woid: int, have_ckpt: bool,
               result: ReplayResult, zero_gaps: dict[int, list[int]]):
    """Register the file and return ``(info, records, mmap)`` (records None
    when nothing after the checkpoint can be in it)."""
    meta = None
    if os.path.exists(path + F.META_SUFFIX):
        try:
            meta = read_log_meta(path, fid)
        except CorruptionError as exc:
            result.damage.append(Damage(path + F.META_SUFFIX, 0, 0, "meta", str(exc)))
    size = os.path.getsize(path)
    created = None
    version = F.LOG_VERSION
    with open(path, "rb") as f:
        header = f.read(F.LOG_HEADER_SIZE)
    try:
        hid, created, version = decode_log_header_version(header, path)
        if hid != fid:
            raise CorruptionError(f"{path}: header names log {hid}")
    except CorruptionError as exc:
        if size >= F.LOG_HEADER_SIZE or meta is not None:
            result.damage.append(Damage(path, 0, F.LOG_HEADER_SIZE, "header", str(exc)))
        else:  # created and never finished: a crash while rolling
            result.damage.append(Damage(path, 0, size, "torn", "(empty log, removed)"))
            result.torn_tails += 1
            # it holds nothing; kept, it would get a .meta at the next checkpoint
            # and then look like a log whose header was destroyed
            os.unlink(path)
            return None, None, None
    if created is None:
        created = meta.created_write_order_id if meta is not None else 0
    info = LogFile(fid, di, path, created_woid=created,
                   last_woid=meta.last_write_order_id if meta is not None else 0, closed=True,
                   version=version)
    if meta is not None:
        info.ckpt_position = meta.checkpoint_position
        info.ckpt_woid = meta.checkpoint_write_order_id
        info.last_record = meta.last_record_position
    start = F.LOG_HEADER_SIZE
    if have_ckpt and meta is not None:
        if meta.closed and meta.last_write_order_id <= ckpt_woid:
            return info, None, None
        if meta.checkpoint_write_order_id == ckpt_woid and \
                F.LOG_HEADER_SIZE <= meta.checkpoint_position <= size:
            start = meta.checkpoint_position
    if size <= start:
        short = _truncated(meta, start, None)
        if short is not None:
            result.damage.append(Damage(path, size, size, "tail", short))
        return info, None, None
    fd = os.open(path, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    recs, good_end, damage = scan_log(mm, start, fid, version,
                                      hint=meta.last_record_position if meta is not None else 0)
    if version == F.LOG_VERSION and not len(recs) and damage and created is None:
        # a damaged header hides the version: a log of version 1 reads as one
        old = codec.scan_v1(mm, start)
        if len(old[0]):
            recs, good_end, damage = old
            info.version = 1
    short = _truncated(meta, start, recs[len(recs) - F.REC_FIELDS + F.REC_WOID] if len(recs) else None)
    for dstart, dend, kind in damage:
        if kind == "corrupt" and _has_zero_page(mm, dstart, dend):
            zero_gaps.setdefault(fid, []).append(dstart)
        if kind == "tail" and not (meta is not None and meta.closed) and short is None:
            result.damage.append(Damage(path, dstart, dend, "torn", "(cut off)"))
            result.torn_tails += 1
        else:
            result.damage.append(Damage(path, dstart, dend, "corrupt" if kind == "corrupt"
                                        else "tail", "(skipped)"))
    if short is not None and not any(kind == "tail" for _s, _e, kind in damage):
        result.damage.append(Damage(path, good_end, size, "tail", short))
    if len(recs):
        info.last_woid = max(info.last_woid, recs[len(recs) - F.REC_FIELDS + F.REC_WOID])
        if created == 0 or created > recs[F.REC_WOID]:
            info.created_woid = min(created or recs[F.REC_WOID], recs[F.REC_WOID])
    return info, recs, mm


def _has_zero_page(mm, start: int, end: int) -> bool:
    """A whole page of zeros lies in ``mm[start:end]``: what a write into
    preallocated space that a power loss cut short leaves (its lost pages
    still hold the zeros), and what bit rot in a record does not."""
    a = (start + _PAGE - 1) // _PAGE * _PAGE
    while a + _PAGE <= end:
        if not any(mm[a:a + _PAGE]):
            return True
        a += _PAGE
    return False


def _truncated(meta, start: int, last_woid: int | None) -> str | None:
    """Why the file is shorter than its .meta says (records the .meta knew
    of are gone), or None.  A torn tail after a crash never trips this: the
    .meta only counts records that were wholly written."""
    if meta is None:
        return None
    if last_woid is not None:
        have = last_woid
    elif start > F.LOG_HEADER_SIZE:   # from the checkpoint position, nothing after it
        have = meta.checkpoint_write_order_id
    else:
        have = meta.created_write_order_id - 1
    if meta.last_write_order_id <= have:
        return None
    return (f"(truncated: its .meta knows records up to write-order id "
            f"{meta.last_write_order_id}, the last one left is {have})")


def replay(lg: Log, queue, ckpt: LoadedCheckpoint | None, *, fast: bool, mode: str,
           name: str) -> ReplayResult:
    """Fill *queue* (already loaded from *ckpt* if there is one) and register
    every log file in *lg*; set lg.next_woid and lg.next_file_id."""
    t0 = time.monotonic()
    result = ReplayResult(mode=mode)
    woid_floor = ckpt.write_order_id if ckpt is not None else 0
    max_woid = woid_floor
    max_fid = 0
    streams: list[tuple[int, object]] = []
    maps: dict[int, mmap.mmap] = {}
    zero_gaps: dict[int, list[int]] = {}   # per file: where whole zeroed regions start
    try:
        for fid, di, path in list_logs(lg.data_dirs):
            max_fid = max(max_fid, fid)
            info, recs, mm = _scan_file(fid, di, path, woid_floor, ckpt is not None, result,
                                        zero_gaps)
            if info is None:
                continue
            lg.files[fid] = info
            # a log created at id C means ids below C were handed out, even when
            # the logs that held them are gone: never hand them out again
            max_woid = max(max_woid, info.last_woid, info.created_woid - 1)
            if recs is not None and len(recs):
                streams.append((fid, recs))
                maps[fid] = mm  # type: ignore[assignment]
            elif mm is not None:
                mm.close()
        versions = {fid: lg.files[fid].version for fid, _r in streams}
        _apply(streams, maps, versions, queue, ckpt, woid_floor, fast, result, zero_gaps)
    finally:
        for mm in maps.values():
            mm.close()
    for d in result.damage:
        if d.kind == "torn":
            log.info("%s: %s", name, d)
        else:
            log.warning("%s: damaged data skipped: %s", name, d)
    lg.next_woid = max_woid + 1
    lg.next_file_id = max_fid + 1
    result.events = queue.size
    result.seconds = time.monotonic() - t0
    return result


def _ordered(streams):
    """Yield ``(fid, recs, index)`` in write-order id order across files.
    Files whose id ranges do not overlap are read one after the other."""
    spans = sorted((recs[F.REC_WOID], recs[len(recs) - F.REC_FIELDS + F.REC_WOID], fid, recs) for fid, recs in streams)
    overlap = any(spans[k][1] > spans[k + 1][0] for k in range(len(spans) - 1))
    step = F.REC_FIELDS
    if not overlap:
        for _first, _last, fid, recs in spans:
            for i in range(0, len(recs), step):
                yield fid, recs, i
        return

    def walk(fid, recs):
        for i in range(0, len(recs), step):
            yield recs[i + F.REC_WOID], fid, i

    by_fid = {fid: recs for _f, _l, fid, recs in spans}
    for _w, fid, i in heapq.merge(*(walk(fid, recs) for _f, _l, fid, recs in spans)):
        yield fid, by_fid[fid], i


def _drop_inflight(ckpt_takes: dict[int, list[int]], ptr: int) -> bool:
    """Remove *ptr* from the takes that were in flight at the checkpoint.

    Their transaction was rolled back later (a rolled-back take writes no
    record), the events went back to the head and another transaction took
    and committed them: they must not come back at the end of replay."""
    for ptrs in ckpt_takes.values():
        if ptr in ptrs:
            ptrs.remove(ptr)
            return True
    return False


def _gap_before(zero_gaps: dict[int, list[int]], fid: int, offset: int) -> bool:
    return any(g < offset for g in zero_gaps.get(fid, ()))


def _commit_marks(mm, offset: int, fid: int, version: int) -> dict[str, int]:
    if version == 1:
        return codec.decode_record_v1(mm, offset)[4][2]
    return codec.decode_record(mm, offset, None, fid)[4][2]


def _apply(streams, maps, versions, queue, ckpt, woid_floor, fast, result, zero_gaps) -> None:
    pending_puts: dict[int, list[int]] = {}
    pending_takes: dict[int, list[int]] = {}
    ckpt_takes: dict[int, list[int]] = {}
    marks: dict[str, int] = {}
    if ckpt is not None:
        for txn, ptrs in ckpt.inflight_puts.items():
            pending_puts[txn] = list(ptrs)
        ckpt_takes = {txn: list(ptrs) for txn, ptrs in ckpt.inflight_takes.items()}
        marks.update(ckpt.marks)
    alive: dict[int, None] | None = {} if fast and ckpt is None else None
    n = 0
    unmatched = 0
    max_txn = max([*pending_puts, *ckpt_takes, 0])
    expect = woid_floor + 1 if ckpt is not None else None
    # the loop runs once per record: constants and methods as locals
    r_txn, r_woid, r_type, r_off = F.REC_TXN, F.REC_WOID, F.REC_TYPE, F.REC_OFFSET
    rec_put = F.REC_PUT
    get_pending = pending_puts.get
    for fid, recs, i in _ordered(streams):
        txn = recs[i + r_txn]
        if txn > max_txn:
            max_txn = txn
        woid = recs[i + r_woid]
        if woid <= woid_floor:
            continue
        if expect is not None:
            # every id after the checkpoint went to a record: a gap is a lost record
            if woid > expect:
                result.damage.append(Damage(
                    "(logs)", 0, 0, "missing",
                    f"records with write-order ids {expect}..{woid - 1} written after the "
                    f"checkpoint are in no log file (a log file deleted or damaged?)"))
            if woid >= expect:
                expect = woid + 1
        n += 1
        rtype = recs[i + r_type]
        if rtype == rec_put:
            ptrs = get_pending(txn)
            if ptrs is None:
                pending_puts[txn] = [(fid << 32) | recs[i + r_off]]
            else:
                ptrs.append((fid << 32) | recs[i + r_off])
        elif rtype == F.REC_TAKE:
            pending_takes.setdefault(txn, []).append(recs[i + F.REC_AUX])
        elif rtype == F.REC_COMMIT:
            aux = recs[i + F.REC_AUX]
            kind, count = aux & 0xFF, aux >> 16
            staged = (pending_puts.get(txn) if kind == F.COMMIT_PUTS
                      else pending_takes.get(txn)) or ()
            if len(staged) != count and _gap_before(zero_gaps, fid, recs[i + F.REC_OFFSET]):
                # a commit whose records did not all reach the disk: a power loss
                # can keep a later block of one write into preallocated space and
                # lose an earlier one, whose page then reads as zeros.  It was never
                # acknowledged, so it never happened.  (Records lost to other
                # damage are bit rot: the intact ones of the transaction stay.)
                pending_puts.pop(txn, None)
                pending_takes.pop(txn, None)
                result.damage.append(Damage(
                    f"log-{fid}", recs[i + F.REC_OFFSET], recs[i + F.REC_OFFSET], "torn",
                    f"(transaction {txn} commits {count} record(s), {len(staged)} found: "
                    "dropped)"))
                result.torn_tails += 1
                continue
            if (aux >> 8) & 1:
                try:
                    marks.update(_commit_marks(maps[fid], recs[i + F.REC_OFFSET], fid,
                                               versions.get(fid, F.LOG_VERSION)))
                except CorruptionError:  # pragma: no cover - scan validated it
                    pass
            if kind == F.COMMIT_PUTS:
                ptrs = pending_puts.pop(txn, None)
                if ptrs:
                    if alive is not None:
                        alive.update(dict.fromkeys(ptrs))
                    else:
                        try:
                            queue.add_tail(ptrs)
                        except OverflowError:
                            raise ChannelError(
                                f"the logs hold more committed events than capacity="
                                f"{queue.capacity}; reopen with a larger capacity") from None
            else:
                taken = pending_takes.pop(txn, ())
                held = set(ckpt_takes.pop(txn, ()))
                for p in taken:
                    if p in held:
                        continue
                    if alive is not None:
                        if alive.pop(p, 0) is not None:
                            unmatched += 1
                    elif not queue.remove(p) and not _drop_inflight(ckpt_takes, p):
                        unmatched += 1
        elif rtype == F.REC_ROLLBACK:
            pending_puts.pop(txn, None)
            pending_takes.pop(txn, None)
            ckpt_takes.pop(txn, None)
    if alive is not None:
        if len(alive) > queue.capacity:
            raise ChannelError(f"the logs hold {len(alive)} committed events, more than "
                               f"capacity={queue.capacity}; reopen with a larger capacity")
        queue.add_tail(list(alive))
    # takes that were open at the checkpoint and never committed come back
    back = [p for ptrs in ckpt_takes.values() for p in ptrs]
    if back:
        queue.add_head(back)
    result.records = n
    result.unmatched_takes = unmatched
    result.max_txn_id = max_txn
    result.marks = marks

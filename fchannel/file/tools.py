"""``fchannel inspect`` and ``fchannel check``: read-only views of a
FileChannel's directories.  Neither writes anything nor holds a lock, so both
can run beside a live channel (what they see of the files being written may
then be a moment old).

``fchannel check`` exits 2, checking nothing, for directories that hold no
channel (missing, empty, no checkpoint and no log, or the checkpoint dir and a
data dir swapped); 1 if anything is damaged or lost: a damaged record or
metadata file, a log cut short of what its ``.meta`` says it holds, a log the
checkpoint says holds queued events that none of the data dirs given has (also
what a data dir left out of the command line looks like); else 0.  Beside a
live channel (one holding ``in_use.lock``, probed with a shared lock that is
dropped at once) a log deleted by GC while being read is skipped with a note, a
checkpoint being written is a note, not damage, and a log still being written
is not judged against its ``.meta``.  It ends with one line saying how much it
read."""
from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from fchannel._compat import codec
from fchannel.errors import ChannelError, CorruptionError
from fchannel.file import format as F
from fchannel.file import identity
from fchannel.file.checkpoint import CheckpointStore
from fchannel.file.log import (
    _sealed_payload,
    decode_log_header_version,
    first_sealed_put,
    list_logs,
    read_log_meta,
    scan_log,
)


def _checkpoint_state(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, F.CHECKPOINT_FILE)
    out: dict[str, Any] = {"dir": directory}
    try:
        with open(path, "rb") as f:
            head = f.read(F.CHECKPOINT_HEADER_SIZE)
        (_m, _v, _r, capacity, _w, _s, _h, marker, _rc, _hc, _r2) = \
            F.CHECKPOINT_HEADER.unpack(head)
    except (OSError, Exception) as exc:  # struct.error on a short file
        out.update(valid=False, problem=f"{path}: unreadable ({exc})")
        return out
    out["incomplete"] = marker != F.CHECKPOINT_COMPLETE
    store = CheckpointStore(directory, capacity)
    try:
        ck = store.load(directory)
    except (CorruptionError, OSError) as exc:
        out.update(valid=False, problem=str(exc), capacity=capacity)
        return out
    out.update(valid=True, capacity=capacity, write_order_id=ck.write_order_id,
               queue_size=ck.size, queue_head=ck.head, marks=ck.marks,
               log_refs={str(k): v for k, v in sorted(ck.log_refs.items())},
               inflight_puts=sum(map(len, ck.inflight_puts.values())),
               inflight_takes=sum(map(len, ck.inflight_takes.values())))
    return out


def records(recs: Any) -> Iterator[tuple[int, int, int]]:
    """``(record type, write-order id, offset)`` of each record of a
    ``codec.scan`` result (a flat array, ``F.REC_FIELDS`` numbers per record)."""
    for k in range(0, len(recs), F.REC_FIELDS):
        yield recs[k + F.REC_TYPE], recs[k + F.REC_WOID], recs[k + F.REC_OFFSET]


def _open_sealed(mm, recs, fid: int, version: int, sealer: Any, problems: list[str],
                 unopened: dict[str, int] | None = None) -> int:
    """Open every sealed put with *sealer*: one that does not open under the
    key given for its alias is a problem; those whose alias no ``--key``
    gives (or all, without a sealer) are counted per alias in *unopened*.
    Returns how many sealed puts there are."""
    from fchannel.errors import KeyMissingError
    from fchannel.file.crypto import key_alias
    if version < 2:
        return 0
    n = 0
    for k in range(0, len(recs), F.REC_FIELDS):
        if recs[k + F.REC_TYPE] != F.REC_PUT or not recs[k + F.REC_AUX] & F.FLAG_SEALED:
            continue
        n += 1
        off = recs[k + F.REC_OFFSET]
        try:
            if sealer is None:
                alias = key_alias(_sealed_payload(mm, off, fid), f"log-{fid} offset {off}")
                if unopened is not None:
                    unopened[alias] = unopened.get(alias, 0) + 1
                continue
            codec.decode_record(mm, off, _opener(sealer), fid)
        except KeyMissingError:
            alias = key_alias(_sealed_payload(mm, off, fid), f"log-{fid} offset {off}")
            if unopened is not None:
                unopened[alias] = unopened.get(alias, 0) + 1
        except Exception as exc:   # DecryptionError, CorruptionError (they name the place)
            problems.append(f"encrypted event does not open: {exc}")
    return n


def _log_key(path: str, fid: int, sealer: Any) -> dict[str, Any]:
    """The key a log's events are encrypted with (readable without it), and
    with *sealer*, whether it opens them."""
    from fchannel.file.crypto import key_alias
    try:
        found = first_sealed_put(path, fid)
    except CorruptionError:
        found = None
    if found is None:
        return {}
    off, sealed = found
    out: dict[str, Any] = {"key": key_alias(sealed, f"{path} offset {off}")}
    if sealer is not None:
        try:
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            try:
                codec.decode_record(mm, off, _opener(sealer), fid)
            finally:
                mm.close()
            out["key_opens"] = True
        except Exception as exc:   # DecryptionError, KeyMissingError
            out["key_opens"] = False
            out["key_problem"] = str(exc)
    return out


def _opener(sealer: Any):
    def opener(sealed, aad, pointer):
        return sealer.open(sealed, aad, f"log-{pointer >> 32} offset {pointer & 0xFFFFFFFF}")
    return opener


def _scan_log(fid: int, path: str, live: bool = False, sealer: Any = None,
              unopened: dict[str, int] | None = None,
              ) -> tuple[dict[str, Any], list[str], list[str]]:
    """Facts about one log, its problems, and its notes (torn tails).  The
    ``.meta`` is read before the log, so on a live channel the log can only
    hold more than its ``.meta`` says, never less.  FileNotFoundError if the
    log is gone (a live channel's GC)."""
    problems: list[str] = []
    notes: list[str] = []
    size = os.path.getsize(path)
    info: dict[str, Any] = {"id": fid, "path": path, "bytes": size, "files": 1}
    meta = None
    if os.path.exists(path + F.META_SUFFIX):
        try:
            meta = read_log_meta(path, fid)
            info.update(closed=meta.closed, checkpoint_position=meta.checkpoint_position,
                        checkpoint_write_order_id=meta.checkpoint_write_order_id)
            info["files"] = 2
            info["bytes"] += os.path.getsize(path + F.META_SUFFIX)
        except FileNotFoundError:
            pass   # deleted since exists(): the log goes too (GC), seen below
        except CorruptionError as exc:
            if not os.path.exists(path):
                raise FileNotFoundError(path) from None
            problems.append(str(exc))
    with open(path, "rb") as f:
        header = f.read(F.LOG_HEADER_SIZE)
    created = 0
    version = F.LOG_VERSION
    try:
        hid, created, version = decode_log_header_version(header, path)
        info["version"] = version
        if hid != fid:
            problems.append(f"{path}: header names log {hid}")
        info["created_write_order_id"] = created
    except CorruptionError as exc:
        if size == 0 and meta is None:
            notes.append(f"{path}: empty (a crash while it was being created)")
        else:
            problems.append(str(exc))
    counts = dict.fromkeys(F.RECORD_TYPES.values(), 0)
    last_woid = 0
    nrecs = 0
    if size > F.LOG_HEADER_SIZE:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        try:
            recs, good_end, damage = scan_log(
                mm, F.LOG_HEADER_SIZE, fid, version,
                hint=meta.last_record_position if meta is not None else 0)
            sealed = _open_sealed(mm, recs, fid, version, sealer, problems, unopened)
        finally:
            mm.close()
        if sealed:
            info["sealed_puts"] = sealed
        woids = []
        for rtype, woid, _pos in records(recs):
            counts[F.RECORD_TYPES[rtype]] += 1
            if rtype == F.REC_TAKE and version >= 2:
                continue   # named by its commit record, not a record of its own
            nrecs += 1
            woids.append(woid)
            if woid > last_woid:
                last_woid = woid
        info["write_order_ids"] = woids
        info["valid_bytes"] = good_end
        for start, end, kind in damage:
            where = f"{path}: bytes {start}..{end}"
            if kind == "corrupt":
                problems.append(f"{where}: damaged record(s), skipped on replay")
            elif meta is not None and meta.closed:
                problems.append(f"{where}: damaged tail of a closed log, cut off on replay")
            elif live:
                notes.append(f"{where}: being written by the live channel")
            else:
                notes.append(f"{where}: torn tail (a crash while writing), cut off on replay")
    info["records"] = counts
    info["record_count"] = nrecs
    info["last_write_order_id"] = last_woid
    # the .meta names the highest write-order id the file held when it was
    # written (at a checkpoint, a roll or close): records up to it were
    # written before, so the file must still hold them.  A closed log is
    # final; an open one of a live channel is judged only when closed.
    if meta is not None and (meta.closed or not live) \
            and meta.last_write_order_id > max(last_woid, created):
        problems.append(
            f"{path}: cut short: its .meta says it holds records up to write-order id "
            f"{meta.last_write_order_id}, the last one in the file is "
            f"{last_woid or 'none'} ({size} bytes{', closed log' if meta.closed else ''})")
    return info, problems, notes


def inspect(checkpoint_dir: str, data_dirs: list[str],
            backup_dir: str | None = None, *, sealer: Any = None) -> dict[str, Any]:
    """What is in a channel's directories (queue size, head, log files and
    reference counts, checkpoint state)."""
    out: dict[str, Any] = {"checkpoint": _checkpoint_state(checkpoint_dir)}
    if backup_dir:
        out["backup"] = _checkpoint_state(backup_dir)
        out["backup"]["complete_marker"] = os.path.exists(
            os.path.join(backup_dir, F.BACKUP_COMPLETE_FILE))
    refs = out["checkpoint"].get("log_refs", {})
    logs = []
    for fid, _di, path in list_logs(data_dirs):
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            continue   # deleted since the listing (GC of a live channel)
        info = {"id": fid, "path": path, "bytes": size,
                "queued_events": refs.get(str(fid), 0)}
        info.update(_log_key(path, fid, sealer))
        try:
            meta = read_log_meta(path, fid)
            info.update(closed=meta.closed, last_write_order_id=meta.last_write_order_id)
        except CorruptionError:
            if not os.path.exists(path):
                continue
            info["meta"] = "missing or damaged"
        logs.append(info)
    out["logs"] = logs
    return out


class CheckResult:
    """What ``fchannel check`` found: ``refused`` (these directories hold no
    channel: nothing was checked), ``problems`` (damage or loss, each with its
    file and place), ``notes`` (what a crash or a live channel leaves
    normally), and how much it read."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.files = 0
        self.records = 0
        self.bytes = 0
        self.queued: int | None = None
        self.live = False
        #: encrypted events not opened (no --key for their alias), per alias
        self.unopened: dict[str, int] = {}

    @property
    def exit_code(self) -> int:
        return 2 if self.refused else (1 if self.problems else 0)

    def summary(self) -> str:
        queued = "unknown (no usable checkpoint)" if self.queued is None else str(self.queued)
        return (f"read {self.files} file(s), {self.records} record(s), {self.bytes} byte(s); "
                f"events queued: {queued}; {len(self.problems)} problem(s), "
                f"{len(self.notes)} note(s)" + ("; the channel is open in another process"
                                                if self.live else "") + self._unopened())

    def _unopened(self) -> str:
        if not self.unopened:
            return ""
        n = sum(self.unopened.values())
        keys = ", ".join(f"{a!r}" for a in sorted(self.unopened))
        return (f"; {n} encrypted event(s) not opened (key {keys}: give --key ALIAS=PATH "
                "to check them too)")

    def as_dict(self) -> dict[str, Any]:
        return {"refused": self.refused, "problems": self.problems, "notes": self.notes,
                "files": self.files, "records": self.records, "bytes": self.bytes,
                "events_queued": self.queued, "live": self.live,
                "encrypted_not_opened": dict(self.unopened),
                "summary": self.summary()}


def _entries(d: str) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def _has_logs(names: list[str]) -> bool:
    return any(n.startswith(F.LOG_PREFIX) and n[len(F.LOG_PREFIX):].isdigit() for n in names)


def _refusals(checkpoint_dir: str, data_dirs: list[str]) -> list[str]:
    """Why these directories are not a FileChannel's (empty: they may be)."""
    out: list[str] = []
    for what, d in [("checkpoint dir", checkpoint_dir)] + [("data dir", d) for d in data_dirs]:
        if not os.path.exists(d):
            out.append(f"{what} {d!r} does not exist")
        elif not os.path.isdir(d):
            out.append(f"{what} {d!r} is not a directory")
    if out:
        return out
    seen: dict[str, str] = {}
    for d in data_dirs:
        real = os.path.realpath(d)
        if real in seen:
            out.append(f"data dir {d!r} is given twice (as {seen[real]!r} too)")
        seen[real] = d
    ck_names = _entries(checkpoint_dir)
    ck_has_checkpoint = F.CHECKPOINT_FILE in ck_names or F.CHECKPOINT_META_FILE in ck_names
    data_names = {d: _entries(d) for d in data_dirs}
    any_logs = any(_has_logs(n) for n in data_names.values())
    if not ck_names:
        out.append(f"checkpoint dir {checkpoint_dir!r} is empty: no FileChannel here")
    elif not ck_has_checkpoint and _has_logs(ck_names) and \
            os.path.realpath(checkpoint_dir) not in seen:
        out.append(f"checkpoint dir {checkpoint_dir!r} holds log files and no checkpoint: "
                   "it looks like a data dir (the checkpoint dir comes first)")
    elif not ck_has_checkpoint and not any_logs:
        out.append(f"checkpoint dir {checkpoint_dir!r} holds no checkpoint and the data dirs "
                   "hold no log file: no FileChannel here")
    for d, names in data_names.items():
        if _has_logs(names):
            continue
        if F.CHECKPOINT_FILE in names or F.CHECKPOINT_META_FILE in names:
            out.append(f"data dir {d!r} holds a checkpoint and no log file: it looks like a "
                       "checkpoint dir (the checkpoint dir comes first)")
        elif not names:
            out.append(f"data dir {d!r} is empty: no FileChannel's data dir "
                       "(a data dir always holds the log it writes to)")
        else:
            out.append(f"data dir {d!r} holds no log file: no FileChannel's data dir")
    if not out:   # the set of directories the channel recorded (identity.json)
        try:
            ck = identity.look("checkpoint_dir", checkpoint_dir, "checkpoint", "check")
            data = [identity.look(f"data_dirs[{i}]", d, "data", "check")
                    for i, d in enumerate(data_dirs)]
            identity.decide(ck, data, "check")
        except ChannelError as exc:
            out.append(str(exc))
    return out

def _stable_checkpoint(checkpoint_dir: str, data_dirs: list[str], res: CheckResult,
                       attempts: int = 40) -> tuple[dict[str, Any], set[int]]:
    """The checkpoint and the ids of the logs present at one moment.  Beside a
    live channel the checkpoint is read again after the listing, and the pair
    is taken only if it did not change in between (a newer checkpoint may let
    GC delete logs the older one references); a checkpoint being written
    (marker INCOMPLETE while the channel holds its lock) is waited for a
    moment, then noted."""
    ck: dict[str, Any] = {}
    present: set[int] = set()
    for i in range(attempts):
        ck = _checkpoint_state(checkpoint_dir)
        present = {fid for fid, _di, _p in list_logs(data_dirs)}
        if not res.live:
            return ck, present
        again = _checkpoint_state(checkpoint_dir)
        if ck.get("valid") and again.get("valid") and \
                again["write_order_id"] == ck["write_order_id"]:
            return ck, present
        time.sleep(min(0.005 * (i + 1), 0.05))
    return ck, present


def check_channel(checkpoint_dir: str, data_dirs: list[str],
                  backup_dir: str | None = None, *, sealer: Any = None) -> CheckResult:
    """Check a FileChannel's directories without writing anything (see the
    module docstring); safe beside a live channel."""
    res = CheckResult()
    checkpoint_dir = os.fspath(checkpoint_dir)
    data_dirs = [os.fspath(d) for d in data_dirs]
    res.refused = _refusals(checkpoint_dir, data_dirs)
    if res.refused:
        return res
    res.live = identity.lock_held(checkpoint_dir)
    ck, present = _stable_checkpoint(checkpoint_dir, data_dirs, res)
    ck_path = os.path.join(checkpoint_dir, F.CHECKPOINT_FILE)
    if ck.get("valid"):
        res.queued = ck["queue_size"]
        for name in (F.CHECKPOINT_FILE, F.CHECKPOINT_META_FILE, F.INFLIGHT_PUTS_FILE,
                     F.INFLIGHT_TAKES_FILE):
            try:
                res.bytes += os.path.getsize(os.path.join(checkpoint_dir, name))
                res.files += 1
            except OSError:
                pass
    elif not os.path.exists(ck_path):
        res.notes.append(f"checkpoint: {ck['problem']} (the next open replays every log)")
    elif res.live and (ck.get("incomplete") or "incomplete" in ck.get("problem", "")):
        res.notes.append(f"checkpoint in progress in the live channel ({ck['problem']})")
    elif ck.get("incomplete") and not os.path.exists(
            os.path.join(checkpoint_dir, F.CHECKPOINT_META_FILE)):
        res.notes.append(f"checkpoint: {ck['problem']} before its first checkpoint; "
                         "the next open replays every log")
    else:
        res.problems.append(f"checkpoint: {ck['problem']}")
    if backup_dir and os.path.exists(os.path.join(backup_dir, F.BACKUP_COMPLETE_FILE)):
        bk = _checkpoint_state(backup_dir)
        if not bk["valid"]:
            if res.live:   # the live channel may be copying it right now
                res.notes.append(f"backup checkpoint not usable at this moment: "
                                 f"{bk['problem']}")
            else:
                res.problems.append(f"backup checkpoint: {bk['problem']}")
    # the checkpoint's references: a log it says holds queued or in-flight
    # events must be in one of the data dirs given
    if ck.get("valid"):
        for sfid, n in ck["log_refs"].items():
            if n and int(sfid) not in present:
                res.problems.append(
                    f"log-{sfid}: in none of the data dirs given ({', '.join(data_dirs)}), "
                    f"yet the checkpoint says {n} queued or in-flight event(s) are in it "
                    "(a data dir left out, or a deleted log): those events cannot be "
                    "delivered")
    after: list[int] = []   # write-order ids after the checkpoint's
    for fid, _di, path in list_logs(data_dirs):
        try:
            info, p, n = _scan_log(fid, path, live=res.live, sealer=sealer,
                                       unopened=res.unopened)
            for _ in range(5):
                # a live channel may be writing this log: records land a moment
                # apart, so damage seen in an open log is looked at again
                if not (p and res.live and not info.get("closed")):
                    break
                time.sleep(0.02)
                info, p, n = _scan_log(fid, path, live=res.live, sealer=sealer,
                                       unopened=res.unopened)
        except FileNotFoundError:
            res.notes.append(f"{path}: deleted while being checked (GC of the live "
                             "channel); skipped")
            continue
        res.problems += p
        res.notes += n
        res.files += info["files"]
        res.bytes += info["bytes"]
        res.records += info["record_count"]
        if ck.get("valid"):
            after += [w for w in info.get("write_order_ids", ()) if w > ck["write_order_id"]]
    if ck.get("valid") and not res.live:
        _woid_gaps(ck["write_order_id"], after, res)
    return res


def _woid_gaps(floor: int, after: list[int], res: CheckResult) -> None:
    """Every write-order id after the checkpoint's went to a record (a
    failed write gives its ids back): a gap is a lost record, e.g. a
    deleted log.  A torn tail (a crash mid-write) can explain one, so then
    it is a note."""
    expect = floor + 1
    torn = any("torn tail" in n for n in res.notes)
    for w in sorted(after):
        if w > expect:
            msg = (f"records with write-order ids {expect}..{w - 1}, written after the "
                   "checkpoint, are in no log file given (a deleted or left-out log?)")
            (res.notes if torn else res.problems).append(msg)
        expect = max(expect, w + 1)


def check(checkpoint_dir: str, data_dirs: list[str],
          backup_dir: str | None = None, *, sealer: Any = None) -> tuple[list[str], list[str]]:
    """Read every record and file; return ``(problems, notes)``.  Problems
    are damage (each with its file and place) and directories that hold no
    channel; notes are what a crash leaves behind normally (torn tails)."""
    res = check_channel(checkpoint_dir, data_dirs, backup_dir, sealer=sealer)
    return [f"refused: {r}" for r in res.refused] + res.problems, res.notes


# ---- command line -------------------------------------------------------------------
def _add_dirs(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint_dir", help="the channel's checkpoint directory")
    p.add_argument("data_dirs", nargs="+", help="the channel's data directories")
    p.add_argument("--backup-dir", help="the backup checkpoint directory, if any")
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show a FileChannel's queue, logs and checkpoint "
                       "(read-only)")
    _add_dirs(p)
    p.set_defaults(func=_inspect_cmd)
    p = sub.add_parser("check", help="verify every record and file of a FileChannel "
                       "(read-only); exit 1 if anything is damaged or lost, 2 if the "
                       "directories hold no channel")
    _add_dirs(p)
    p.set_defaults(func=_check_cmd)


def _inspect_cmd(args: argparse.Namespace) -> int:
    data = inspect(args.checkpoint_dir, args.data_dirs, args.backup_dir,
                   sealer=getattr(args, "sealer", None))
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    ck = data["checkpoint"]
    if ck["valid"]:
        print(f"checkpoint: valid, write-order id {ck['write_order_id']}, queue size "
              f"{ck['queue_size']} (head {ck['queue_head']}, capacity {ck['capacity']}), "
              f"in-flight puts {ck['inflight_puts']}, takes {ck['inflight_takes']}")
        if ck["marks"]:
            print("marks: " + ", ".join(f"{k}={v}" for k, v in sorted(ck["marks"].items())))
    else:
        print(f"checkpoint: not usable ({ck['problem']}); the next open replays the logs")
    if "backup" in data:
        bk = data["backup"]
        print(f"backup: {'valid' if bk['valid'] else 'not usable: ' + bk['problem']}")
    print(f"{'log':>8} {'bytes':>12} {'queued':>8}  state")
    for lg in data["logs"]:
        state = "closed" if lg.get("closed") else ("open or crashed" if "meta" not in lg
                                                    else "no meta")
        key = ""
        if "key" in lg:
            key = f"  key {lg['key']!r}" + {True: " (opens)", False: " (does NOT open: "
                                            + lg.get("key_problem", "") + ")",
                                            None: ""}[lg.get("key_opens")]
        print(f"{lg['id']:>8} {lg['bytes']:>12} {lg['queued_events']:>8}  {state}  "
              f"{lg['path']}{key}")
    return 0


def _check_cmd(args: argparse.Namespace) -> int:
    res = check_channel(args.checkpoint_dir, args.data_dirs, args.backup_dir,
                        sealer=getattr(args, "sealer", None))
    if args.json:
        print(json.dumps(res.as_dict(), indent=2))
        return res.exit_code
    if res.refused:
        for r in res.refused:
            print(f"fchannel check: {r}", file=sys.stderr)
        print("fchannel check: nothing checked (usage: fchannel check CHECKPOINT_DIR "
              "DATA_DIR [DATA_DIR ...])", file=sys.stderr)
        return 2
    for n in res.notes:
        print(f"note: {n}")
    for p in res.problems:
        print(f"DAMAGED: {p}")
    print(res.summary())
    return res.exit_code

"""``fchannel inspect`` and ``fchannel check``: read-only views of a
FileChannel's directories.  Neither takes the channel's locks nor writes
anything, so both can run beside a live channel (what they see of the files
being written may then be a moment old)."""
from __future__ import annotations

import argparse
import json
import mmap
import os
from typing import Any

from fchannel._compat import codec
from fchannel.errors import CorruptionError
from fchannel.file import format as F
from fchannel.file.checkpoint import CheckpointStore
from fchannel.file.log import decode_log_header, list_logs, read_log_meta


def _checkpoint_state(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, F.CHECKPOINT_FILE)
    out: dict[str, Any] = {"dir": directory}
    try:
        with open(path, "rb") as f:
            head = f.read(F.CHECKPOINT_HEADER_SIZE)
        (_m, _v, _r, capacity, _w, _s, _h, _mk, _rc, _hc, _r2) = \
            F.CHECKPOINT_HEADER.unpack(head)
    except (OSError, Exception) as exc:  # struct.error on a short file
        out.update(valid=False, problem=f"{path}: unreadable ({exc})")
        return out
    store = CheckpointStore(directory, capacity)
    try:
        ck = store.load(directory)
    except CorruptionError as exc:
        out.update(valid=False, problem=str(exc), capacity=capacity)
        return out
    out.update(valid=True, capacity=capacity, write_order_id=ck.write_order_id,
               queue_size=ck.size, queue_head=ck.head, marks=ck.marks,
               log_refs={str(k): v for k, v in sorted(ck.log_refs.items())},
               inflight_puts=sum(map(len, ck.inflight_puts.values())),
               inflight_takes=sum(map(len, ck.inflight_takes.values())))
    return out


def _scan_log(fid: int, path: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """Facts about one log, its problems, and its notes (torn tails)."""
    problems: list[str] = []
    notes: list[str] = []
    size = os.path.getsize(path)
    info: dict[str, Any] = {"id": fid, "path": path, "bytes": size}
    meta = None
    if os.path.exists(path + F.META_SUFFIX):
        try:
            meta = read_log_meta(path, fid)
            info.update(closed=meta.closed, checkpoint_position=meta.checkpoint_position,
                        checkpoint_write_order_id=meta.checkpoint_write_order_id)
        except CorruptionError as exc:
            problems.append(str(exc))
    with open(path, "rb") as f:
        header = f.read(F.LOG_HEADER_SIZE)
    try:
        hid, created = decode_log_header(header, path)
        if hid != fid:
            problems.append(f"{path}: header names log {hid}")
        info["created_write_order_id"] = created
    except CorruptionError as exc:
        if size == 0 and meta is None:
            notes.append(f"{path}: empty (a crash while it was being created)")
        else:
            problems.append(str(exc))
    counts = dict.fromkeys(F.RECORD_TYPES.values(), 0)
    if size > F.LOG_HEADER_SIZE:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        try:
            recs, good_end, damage = codec.scan(mm, F.LOG_HEADER_SIZE)
        finally:
            mm.close()
        for i in range(0, len(recs), 5):
            counts[F.RECORD_TYPES[recs[i]]] += 1
        info["valid_bytes"] = good_end
        for start, end, kind in damage:
            where = f"{path}: bytes {start}..{end}"
            if kind == "corrupt":
                problems.append(f"{where}: damaged record(s), skipped on replay")
            elif meta is not None and meta.closed:
                problems.append(f"{where}: damaged tail of a closed log, cut off on replay")
            else:
                notes.append(f"{where}: torn tail (a crash while writing), cut off on replay")
    info["records"] = counts
    return info, problems, notes


def inspect(checkpoint_dir: str, data_dirs: list[str],
            backup_dir: str | None = None) -> dict[str, Any]:
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
        info = {"id": fid, "path": path, "bytes": os.path.getsize(path),
                "queued_events": refs.get(str(fid), 0)}
        try:
            meta = read_log_meta(path, fid)
            info.update(closed=meta.closed, last_write_order_id=meta.last_write_order_id)
        except CorruptionError:
            info["meta"] = "missing or damaged"
        logs.append(info)
    out["logs"] = logs
    return out


def check(checkpoint_dir: str, data_dirs: list[str],
          backup_dir: str | None = None) -> tuple[list[str], list[str]]:
    """Read every record and file; return ``(problems, notes)``.  Problems
    are damage (each with its file and place); notes are what a crash
    leaves behind normally (torn tails)."""
    problems: list[str] = []
    notes: list[str] = []
    ck = _checkpoint_state(checkpoint_dir)
    if not ck["valid"]:
        target = problems if os.path.exists(os.path.join(checkpoint_dir, F.CHECKPOINT_FILE)) \
            else notes
        target.append(f"checkpoint: {ck['problem']}")
    if backup_dir and os.path.exists(os.path.join(backup_dir, F.BACKUP_COMPLETE_FILE)):
        bk = _checkpoint_state(backup_dir)
        if not bk["valid"]:
            problems.append(f"backup checkpoint: {bk['problem']}")
    for fid, _di, path in list_logs(data_dirs):
        _info, p, n = _scan_log(fid, path)
        problems += p
        notes += n
    return problems, notes


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
                       "(read-only); exit 1 if anything is damaged")
    _add_dirs(p)
    p.set_defaults(func=_check_cmd)


def _inspect_cmd(args: argparse.Namespace) -> int:
    data = inspect(args.checkpoint_dir, args.data_dirs, args.backup_dir)
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
        print(f"{lg['id']:>8} {lg['bytes']:>12} {lg['queued_events']:>8}  {state}  {lg['path']}")
    return 0


def _check_cmd(args: argparse.Namespace) -> int:
    problems, notes = check(args.checkpoint_dir, args.data_dirs, args.backup_dir)
    if args.json:
        print(json.dumps({"problems": problems, "notes": notes}, indent=2))
    else:
        for n in notes:
            print(f"note: {n}")
        for p in problems:
            print(f"DAMAGED: {p}")
        print(f"{len(problems)} problem(s), {len(notes)} note(s)")
    return 1 if problems else 0

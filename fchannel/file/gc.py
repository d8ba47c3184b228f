"""Log GC: which log files a checkpoint has freed (:func:`plan`, a pure
function) and their deletion as one journalled step.

Rules (docs/FORMAT.md, "Log GC"):

- in each data dir the oldest files go while none is being written, none
  holds a queued or in-flight event, and all their records are covered by
  the checkpoint (a transaction's records all live in one dir, so no kept
  file holds a commit for a deleted one's puts);
- a candidate stays, with every newer file of its dir, while one of its take
  records points into a file that stays: a full replay of what remains must
  never bring back a taken event;
- the take records of two logs can point into each other (two data dirs), so
  no order of deleting them one by one is safe: the set is named in the
  journal ``gc-pending`` first, and an open finishes a deletion a stop
  interrupted (:func:`finish`).  The journal is cleared only once the
  deletions are durable (the data dirs fsynced).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping

from fchannel.file import format as F
from fchannel.file.log import ANY_FILE, LogFile, fsync_dir, list_logs

log = logging.getLogger("fchannel.file")


def plan(files: Mapping[int, LogFile], current: set[int], refs: Mapping[int, int],
         woid: int, dir_count: int,
         take_targets: Callable[[int], set[int]]) -> list[int]:
    """The ids of the log files to delete after a checkpoint at write-order
    id *woid*, whose queued and in-flight events point into the files
    counted in *refs*; *current* are the files being written;
    ``take_targets(fid)`` names the files *fid*'s take records point into
    (``ANY_FILE`` among them when the file is damaged)."""
    cand: set[int] = set()
    for i in range(dir_count):
        for fid in sorted(f for f, inf in files.items() if inf.dir_index == i):
            info = files[fid]
            if fid in current or refs.get(fid) or not info.closed or info.last_woid > woid:
                break
            cand.add(fid)

    def needs(fid: int) -> set[int]:
        """The files that must go no later than *fid*."""
        targets = take_targets(fid)
        if ANY_FILE in targets:   # damaged: any file it may have taken from
            last = files[fid].last_woid
            return {f for f, inf in files.items() if inf.created_woid <= last} - {fid}
        return {t for t in targets if t in files and t != fid}

    for _ in range(len(cand) + 1):
        blocked = next((f for f in sorted(cand) if not needs(f) <= cand), None)
        if blocked is None:
            break
        di = files[blocked].dir_index
        cand -= {f for f in cand if f >= blocked and files[f].dir_index == di}
    return sorted(cand)


# ---- the journal -----------------------------------------------------------------
def _journal(checkpoint_dir: str) -> str:
    return os.path.join(checkpoint_dir, F.GC_JOURNAL_FILE)


def write_journal(checkpoint_dir: str, file_ids: Iterable[int]) -> None:
    """Name, durably, the logs about to be deleted together."""
    path = _journal(checkpoint_dir)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        json.dump({"delete": sorted(file_ids)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(checkpoint_dir)


def clear_journal(checkpoint_dir: str, data_dirs: Iterable[str]) -> None:
    """Make the deletions durable, then drop the journal."""
    for d in data_dirs:
        fsync_dir(d)
    try:
        os.unlink(_journal(checkpoint_dir))
    except FileNotFoundError:
        pass


def finish(checkpoint_dir: str, data_dirs: list[str], name: str) -> list[int]:
    """Delete the logs (and their .meta) of a deletion a stop interrupted;
    returns their ids.  A journal that cannot be read is dropped: it is
    written whole (tmp + rename), so that is not a half-done deletion."""
    path = _journal(checkpoint_dir)
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="ascii") as f:
            ids = [int(i) for i in json.load(f)["delete"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: ignoring unreadable %s: %s", name, path, exc)
        ids = []
    wanted = set(ids)
    for fid, _di, lpath in list_logs(data_dirs):
        if fid in wanted:
            for p in (lpath + F.META_SUFFIX, lpath):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
    if ids:
        log.info("%s: finished deleting %d log file(s) a stop interrupted: %s", name,
                 len(ids), ", ".join(f"log-{i}" for i in ids))
    clear_journal(checkpoint_dir, data_dirs if ids else [])
    return ids


def collect(lg, checkpoint_dir: str, woid: int, refs: Mapping[int, int]) -> list[int]:
    """Plan and carry out the deletion after a checkpoint; returns the ids."""
    with lg.lock:   # a commit may start a new log meanwhile
        current = lg.current_ids()
        files = dict(lg.files)
    doomed = plan(files, current, refs, woid, len(lg.data_dirs), lg.take_targets)
    if doomed:
        write_journal(checkpoint_dir, doomed)
        for fid in doomed:
            lg.delete(fid)
        clear_journal(checkpoint_dir, lg.data_dirs)
    return doomed

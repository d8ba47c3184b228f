"""Which directories make up a FileChannel, and refusing a set that does not.

Every channel has an identity, a random uuid, written at its creation in a
small file ``identity.json`` in its checkpoint dir and in each of its data
dirs (docs/FORMAT.md, "Channel identity"):

- checkpoint dir: ``{"fchannel": "identity", "version": 1, "role":
  "checkpoint", "channel": ID, "data_dirs": [paths, in order]}`` (the paths
  as last opened; only their number and order matter, the paths are shown in
  messages);
- data dir #i: ``{"fchannel": "identity", "version": 1, "role": "data",
  "channel": ID, "index": i, "count": N}``.

Opening reads what the directories hold *before anything is created or
written* (:func:`check`) and refuses, with one ConfigError naming each
directory and what is wrong with it, a data dir or checkpoint dir that does
not exist while the others hold a channel, a data dir that is empty (emptied,
or added), one that holds another channel (or logs but no identity), data
dirs left out or given in another order.  Directory settings that cannot be
used at all (a file, a path under a file, a read-only file system, no
permission) are refused with an error naming the setting and the path
(:func:`look`, :func:`dir_errors`).  Under the directories' locks
:func:`establish` decides again and writes the identity files that are
missing:

- nothing anywhere (no identity, no log, no checkpoint): a new channel, a
  new id;
- logs or a checkpoint but no identity anywhere: a channel of an earlier
  version, adopted (every data dir must hold logs);
- the data dirs' identity but an empty checkpoint dir: the checkpoint was
  lost; the channel is rebuilt by a full replay under the data dirs' id;
- an adoption or creation a crash cut short (identity files are written data
  dirs first, the checkpoint dir's last) is finished.

Each file is written to ``identity.json.tmp``, fsync'd, renamed, and the
directory fsync'd.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fchannel.errors import ChannelError, ChannelLockedError, ConfigError, from_os_error
from fchannel.file import format as F
from fchannel.file.config import Settings

IDENTITY_FILE = "identity.json"
VERSION = 1
_CHECKPOINT_FILES = (F.CHECKPOINT_FILE, F.CHECKPOINT_META_FILE, F.INFLIGHT_PUTS_FILE,
                     F.INFLIGHT_TAKES_FILE)
_LOG_NAME = re.compile(re.escape(F.LOG_PREFIX) + r"\d+$")


@dataclass
class Seen:
    """What one directory holds (read without writing anything)."""

    setting: str                  # "checkpoint_dir", "data_dirs[1]", "backup_checkpoint_dir"
    path: str
    exists: bool = False
    ident: dict[str, Any] | None = None
    damaged: str | None = None    # why its identity file could not be read
    has_data: bool = False        # log files (data dir) or checkpoint files (checkpoint dir)

    def __str__(self) -> str:
        return f"{self.setting} {self.path!r}"


@dataclass
class Plan:
    """What :func:`decide` concluded: the channel's id and the identity
    files to write (path of the directory → content)."""

    channel: str
    how: str                      # "new", "adopted", "known"
    writes: dict[str, dict[str, Any]] = field(default_factory=dict)


def settings(s: Settings) -> list[tuple[str, str]]:
    """``(setting, path)`` of every directory of the channel."""
    out = [("checkpoint_dir", s.checkpoint_dir)]
    out += [(f"data_dirs[{i}]", d) for i, d in enumerate(s.data_dirs)]
    if s.backup_dir:
        out.append(("backup_checkpoint_dir", s.backup_dir))
    return out


# ---- errors naming the setting ------------------------------------------------------
def os_problem(setting: str, path: str, exc: OSError, channel: str) -> ChannelError:
    """The library's error for *exc*, met using directory *path* of *setting*."""
    code = exc.errno
    what = f"channel {channel!r}: {setting} {path!r}"
    if code == errno.EEXIST or (code == errno.ENOTDIR and os.path.exists(path)
                                and not os.path.isdir(path)):
        return ConfigError(f"{what} is a file, not a directory")
    if code == errno.ENOTDIR:
        parent = _file_above(path)
        return ConfigError(f"{what} lies under {parent!r}, which is a file, not a directory"
                           if parent else f"{what}: a part of the path is not a directory")
    return from_os_error(exc, channel, f"in {setting} {path!r}")


@contextlib.contextmanager
def dir_errors(setting: str, path: str, channel: str) -> Iterator[None]:
    """Turn an OSError met while creating or writing in *path* into the
    library's error naming the setting and the path."""
    try:
        yield
    except OSError as exc:
        raise os_problem(setting, path, exc, channel) from exc


def _file_above(path: str) -> str | None:
    """The nearest existing ancestor of *path* when it is not a directory."""
    p = os.path.dirname(path)
    while p and p != os.path.dirname(p):
        if os.path.lexists(p):
            return p if not os.path.isdir(p) else None
        p = os.path.dirname(p)
    return None


# ---- reading -------------------------------------------------------------------------
def look(setting: str, path: str, role: str, channel: str) -> Seen:
    """What *path* holds; a path that cannot be a directory (a file, under a
    file, not readable) is refused here, before anything is written."""
    seen = Seen(setting, path)
    with dir_errors(setting, path, channel):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            parent = _file_above(path)
            if parent:
                raise ConfigError(f"channel {channel!r}: {setting} {path!r} lies under "
                                  f"{parent!r}, which is a file, not a directory") from None
            return seen
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"channel {channel!r}: {setting} {path!r} is a file, "
                              "not a directory")
        names = os.listdir(path)
    seen.exists = True
    if role == "checkpoint":
        seen.has_data = any(n in names for n in _CHECKPOINT_FILES)
    elif role == "data":
        seen.has_data = any(_LOG_NAME.match(n) for n in names)
    if IDENTITY_FILE in names and role != "backup":
        seen.ident, seen.damaged = _read(os.path.join(path, IDENTITY_FILE), setting, channel)
    return seen


def _read(path: str, setting: str, channel: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        with dir_errors(setting, os.path.dirname(path), channel), open(path, "rb") as f:
            raw = f.read(1 << 16)
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"cannot be parsed ({exc})"
    if not isinstance(obj, dict) or obj.get("fchannel") != "identity":
        return None, "is not an fchannel identity file"
    if obj.get("version") != VERSION:
        return None, f"has version {obj.get('version')!r}, this fchannel reads {VERSION}"
    ok = isinstance(obj.get("channel"), str) and obj.get("role") in ("checkpoint", "data")
    if ok and obj["role"] == "checkpoint":
        dd = obj.get("data_dirs")
        ok = isinstance(dd, list) and bool(dd) and all(isinstance(d, str) for d in dd)
    elif ok:
        i, n = obj.get("index"), obj.get("count")
        ok = (type(i) is int and type(n) is int and 0 <= i < n)
    return (obj, None) if ok else (None, f"has missing or wrong fields ({obj!r})")


def observe(s: Settings, channel: str) -> tuple[Seen, list[Seen]]:
    """The checkpoint dir and the data dirs as they are now; refuses a
    directory setting that cannot be a directory (the backup dir included)."""
    ck = look("checkpoint_dir", s.checkpoint_dir, "checkpoint", channel)
    data = [look(f"data_dirs[{i}]", d, "data", channel) for i, d in enumerate(s.data_dirs)]
    if s.backup_dir:
        look("backup_checkpoint_dir", s.backup_dir, "backup", channel)
    return ck, data


# ---- deciding ------------------------------------------------------------------------
def decide(ck: Seen, data: list[Seen], channel: str) -> Plan:
    """The channel these directories hold, or a ConfigError listing every
    directory that does not fit (see the module's docstring)."""
    n = len(data)
    paths = [d.path for d in data]
    damaged = [f"{s}: its {IDENTITY_FILE} {s.damaged}; if the directory is the right one, "
               f"remove that file and the checkpoint dir's {IDENTITY_FILE} to have them "
               "written again" for s in (ck, *data) if s.damaged]
    if damaged:
        _refuse(channel, None, damaged)
    any_data = ck.has_data or any(d.has_data for d in data)
    if ck.ident is None and all(d.ident is None for d in data):
        if not any_data:
            cid = str(uuid.uuid4())
            return Plan(cid, "new", _all_writes(cid, ck, data))
        return _adopt(ck, data, channel)

    problems: list[str] = []
    data_ids = collections.Counter(d.ident["channel"] for d in data
                                   if d.ident is not None and d.ident["role"] == "data")
    if ck.ident is not None:
        cid = ck.ident["channel"]
    elif data_ids:
        cid = data_ids.most_common(1)[0][0]
    else:   # only checkpoint identities, found in data dirs
        cid = next(d.ident["channel"] for d in data if d.ident is not None)
    recorded: list[str] | None = None
    if ck.ident is not None:
        if ck.ident["role"] != "checkpoint":
            problems.append(f"{ck} holds the identity of a data dir (#{ck.ident['index']} of "
                            f"channel {ck.ident['channel']}), not of a checkpoint dir: "
                            "checkpoint_dir and a data dir swapped?")
            cid = data_ids.most_common(1)[0][0] if data_ids else ck.ident["channel"]
        elif data_ids and cid not in data_ids:
            other = data_ids.most_common(1)[0][0]
            problems.append(f"{ck} belongs to channel {cid}, but the data dirs hold channel "
                            f"{other}: a checkpoint dir of another channel?")
            cid = other
        else:
            recorded = list(ck.ident["data_dirs"])
    counts = {d.ident["count"] for d in data if d.ident is not None
              and d.ident["role"] == "data" and d.ident["channel"] == cid}
    count = len(recorded) if recorded is not None else (max(counts) if counts else n)
    if len(counts - {count}) > 0:
        problems.append(f"the data dirs of channel {cid} disagree on how many there are "
                        f"({sorted(counts | {count})})")

    if not ck.exists:
        problems.append(f"{ck} does not exist, but the data dirs hold channel {cid}: a typo, "
                        "or an unmounted disk? If the checkpoint was lost, create the directory "
                        "empty: the channel then rebuilds it by a full replay of the logs")
    if n != count:
        problems.append(f"data_dirs names {n} director{'y' if n == 1 else 'ies'}, but channel "
                        f"{cid} has {count}" + (f" (last opened as {recorded})" if recorded
                                                 else ""))
    where: dict[int, int] = {}
    flagged: set[int] = set()
    for i, d in enumerate(data):
        if not d.exists:
            problems.append(f"{d} does not exist: " + (
                f"this channel's data dir #{i} is missing (an unmounted disk, or a typo?)"
                if i < count else f"an extra entry (channel {cid} has {count} data dirs)?"))
            flagged.add(i)
        elif d.ident is None:
            if (d.has_data and ck.ident is None) or not any_data:
                continue    # an adoption or a creation cut short: finished below
            flagged.add(i)
            if d.has_data:
                problems.append(f"{d} holds log files but no identity: it is not one of "
                                f"channel {cid}'s data dirs")
            else:
                problems.append(f"{d} is empty (no identity, no log files): an emptied "
                                "directory, one added to data_dirs, or another path than the "
                                f"one channel {cid} was created with")
        elif d.ident["role"] != "data":
            flagged.add(i)
            problems.append(f"{d} is the checkpoint dir of channel {d.ident['channel']}, not a "
                            "data dir: checkpoint_dir and a data dir swapped?")
        elif d.ident["channel"] != cid:
            flagged.add(i)
            problems.append(f"{d} holds data dir #{d.ident['index']} of another channel "
                            f"({d.ident['channel']}), not of channel {cid}")
        else:
            k = d.ident["index"]
            if k in where:
                flagged.add(i)
                problems.append(f"{d} and {data[where[k]]} both hold data dir #{k} of channel "
                                f"{cid} (a copy?)")
            else:
                where[k] = i
    moved = sorted((i, k) for k, i in where.items() if k != i)
    if moved:
        problems.append("data_dirs are not in the channel's order: " + "; ".join(
            f"{data[i]} is its data dir #{k}" + (f" (where data_dirs[{k}] {paths[k]!r} is given)"
                                                 if k < n else "")
            for i, k in moved) + "; give them in their recorded order")
    for k in range(count):
        if k not in where and not (k < n and k in flagged) and not (k < n and data[k].ident
                                                                    is None):
            known = f" (last opened as {recorded[k]!r})" if recorded and k < len(recorded) else ""
            problems.append(f"data dir #{k} of channel {cid}{known} is in none of data_dirs: "
                            "left out?")
    if problems:
        _refuse(channel, cid, problems)

    writes: dict[str, dict[str, Any]] = {}
    for i, d in enumerate(data):
        if d.ident is None:
            writes[d.path] = _data_ident(cid, i, n)
    if ck.ident is None or recorded != paths:
        writes[ck.path] = _ckpt_ident(cid, paths)
    return Plan(cid, "known" if ck.ident is not None else "adopted", writes)


def _adopt(ck: Seen, data: list[Seen], channel: str) -> Plan:
    """Directories of a channel written before identities existed."""
    problems = []
    if not ck.exists:
        problems.append(f"{ck} does not exist, but the data dirs hold a channel's logs: a "
                        "typo, or an unmounted disk? If the checkpoint was lost, create the "
                        "directory empty: the channel then rebuilds it by a full replay")
    holding = [d for d in data if d.has_data]
    for d in data:
        if not d.exists:
            problems.append(f"{d} does not exist (an unmounted disk, or a typo?)")
        elif not d.has_data:
            problems.append(f"{d} holds no log files, while "
                            + (", ".join(str(h) for h in holding) if holding else str(ck))
                            + " hold the channel's files: an emptied directory, one added "
                            "to data_dirs, or not this channel's (every data dir of a "
                            "channel holds at least one log file)")
    if problems:
        _refuse(channel, None, problems)
    cid = str(uuid.uuid4())
    return Plan(cid, "adopted", _all_writes(cid, ck, data))


def _all_writes(cid: str, ck: Seen, data: list[Seen]) -> dict[str, dict[str, Any]]:
    writes = {d.path: _data_ident(cid, i, len(data)) for i, d in enumerate(data)}
    writes[ck.path] = _ckpt_ident(cid, [d.path for d in data])   # last: see the docstring
    return writes


def _data_ident(cid: str, index: int, count: int) -> dict[str, Any]:
    return {"fchannel": "identity", "version": VERSION, "role": "data", "channel": cid,
            "index": index, "count": count}


def _ckpt_ident(cid: str, paths: list[str]) -> dict[str, Any]:
    return {"fchannel": "identity", "version": VERSION, "role": "checkpoint", "channel": cid,
            "data_dirs": list(paths)}


def _refuse(channel: str, cid: str | None, problems: list[str]) -> None:
    who = f" (channel id {cid})" if cid else ""
    raise ConfigError(f"channel {channel!r}: the directories given do not match the channel "
                      f"they hold{who}; nothing was written:\n- " + "\n- ".join(problems))


# ---- the two steps of opening --------------------------------------------------------
def check(s: Settings, channel: str) -> None:
    """Before anything is created or written: refuse directories that
    cannot be used or do not match.  When the directories are in use by a
    live channel, that is the error (ChannelLockedError), not a mismatch
    seen half way through its creation."""
    try:
        ck, data = observe(s, channel)
        decide(ck, data, channel)
    except ConfigError:
        for setting, d in settings(s):
            if lock_held(d):
                raise ChannelLockedError(f"directory {d!r} ({setting}) is in use by another "
                                         "process") from None
        raise


def establish(s: Settings, channel: str) -> Plan:
    """Under the directories' locks: decide again and write the identity
    files that are missing (data dirs first, the checkpoint dir last)."""
    ck, data = observe(s, channel)
    plan = decide(ck, data, channel)
    names = {d.path: d.setting for d in (ck, *data)}
    for path, content in plan.writes.items():
        with dir_errors(names[path], path, channel):
            write(path, content)
    return plan


def write(directory: str, content: dict[str, Any]) -> None:
    """Write ``identity.json`` in *directory* durably (tmp, fsync, rename,
    fsync the directory)."""
    path = os.path.join(directory, IDENTITY_FILE)
    tmp = path + ".tmp"
    data = (json.dumps(content, indent=1, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            k = os.write(fd, view)
            if k <= 0:
                raise OSError(errno.EIO, "write returned 0", tmp)
            view = view[k:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read(directory: str) -> dict[str, Any] | None:
    """The identity recorded in *directory*, or None (none or unreadable)."""
    try:
        obj, _why = _read(os.path.join(directory, IDENTITY_FILE), "directory", "?")
    except (OSError, ChannelError):
        return None
    return obj


def lock_held(d: str) -> bool:
    """Whether a live channel holds directory *d* (its ``in_use.lock``): a
    shared lock is tried and, when it is granted, dropped at once."""
    try:
        fd = os.open(os.path.join(d, F.LOCK_FILE), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)   # closing drops the shared lock if it was granted
    return False

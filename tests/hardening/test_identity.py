"""The channel knows its directories (issue 14, point 5).

A channel records its identity (a uuid) and its data dirs, in order, in
``identity.json`` in its checkpoint dir and in each data dir.  Opening with a
missing, extra, emptied or foreign directory, or with the data dirs in
another order, is refused with a ConfigError naming the directory, before
anything is created or written.  A fresh channel is created as before; a
channel written before identities existed is adopted; a lost checkpoint
(checkpoint dir emptied, data dirs intact) is rebuilt by a full replay.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fchannel import ChannelLockedError, ConfigError, Event, FileChannel
from fchannel.file import identity

IDENT = identity.IDENTITY_FILE
CKPT_FILES = ("checkpoint", "checkpoint.meta", "inflightputs", "inflighttakes")


def open_ch(ck, dirs, **kw) -> FileChannel:
    kw.setdefault("capacity", 1000)
    kw.setdefault("transaction_capacity", 100)
    kw.setdefault("checkpoint_interval", 3600)
    return FileChannel(ck, [str(d) for d in dirs], **kw)


def put_each(ch: FileChannel, bodies) -> None:
    """One transaction per event, so the events spread over the data dirs."""
    for b in bodies:
        with ch.transaction() as tx:
            tx.put(Event(b))


def take(ch: FileChannel, n: int) -> list[bytes]:
    with ch.transaction() as tx:
        return [e.body for e in tx.take_batch(n)]


def drain(ch: FileChannel) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(10_000):   # bounded
        got = take(ch, 100)
        if not got:
            return out
        out += got
    raise AssertionError("drain did not end")


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file and directory under *root* with its size, mtime and (for
    small files) content: what 'nothing was written' is checked against."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            body = b""
            if os.path.isfile(p) and st.st_size < 4096:
                with open(p, "rb") as f:
                    body = f.read()
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, body)
    return out


@pytest.fixture
def made(tmp_path):
    """A closed channel with 2 data dirs holding e0..e9 spread over both."""
    ck, d0, d1 = tmp_path / "ck", tmp_path / "d0", tmp_path / "d1"
    ch = open_ch(ck, [d0, d1])
    put_each(ch, [b"e%d" % i for i in range(10)])
    ch.close()
    assert any(n.startswith("log-") for n in os.listdir(d0))
    assert any(n.startswith("log-") for n in os.listdir(d1))
    return tmp_path, ck, d0, d1


def refused(tmp_path: Path, ck, dirs, *must_name: str) -> str:
    """Open must raise ConfigError naming each of *must_name*, and write nothing."""
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as err:
        open_ch(ck, dirs)
    msg = str(err.value)
    for s in must_name:
        assert s in msg, f"{s!r} not in {msg!r}"
    assert snapshot(tmp_path) == before, "a refused open wrote or created something"
    return msg


def ident(d) -> dict:
    with open(os.path.join(d, IDENT)) as f:
        return json.load(f)


# ---- creation ------------------------------------------------------------------------
def test_a_fresh_channel_records_its_identity_and_its_data_dirs(made):
    _tmp, ck, d0, d1 = made
    c, i0, i1 = ident(ck), ident(d0), ident(d1)
    assert c["role"] == "checkpoint" and c["data_dirs"] == [str(d0), str(d1)]
    assert (i0["role"], i0["index"], i0["count"]) == ("data", 0, 2)
    assert (i1["role"], i1["index"], i1["count"]) == ("data", 1, 2)
    assert len({c["channel"], i0["channel"], i1["channel"]}) == 1
    ch = open_ch(ck, [d0, d1])
    try:
        assert drain(ch) == [b"e%d" % i for i in range(10)]
    finally:
        ch.close()
    assert ident(ck)["channel"] == c["channel"]     # the same channel after a reopen


def test_two_channels_get_different_ids(tmp_path):
    for name in ("a", "b"):
        open_ch(tmp_path / name / "ck", [tmp_path / name / "d"]).close()
    assert ident(tmp_path / "a" / "ck")["channel"] != ident(tmp_path / "b" / "ck")["channel"]


def test_a_creation_cut_short_is_finished(tmp_path):
    """A crash after the first identity file of a new channel (no log yet,
    no checkpoint): the next open finishes it under the same id."""
    ck, d0, d1 = tmp_path / "ck", tmp_path / "d0", tmp_path / "d1"
    for d in (ck, d0, d1):
        d.mkdir()
    identity.write(str(d0), identity._data_ident("the-id", 0, 2))
    ch = open_ch(ck, [d0, d1])
    try:
        put_each(ch, [b"x"])
    finally:
        ch.close()
    assert ident(ck)["channel"] == ident(d1)["channel"] == "the-id"


# ---- refusals -------------------------------------------------------------------------
def test_a_missing_data_dir_is_refused_and_not_created(made):
    tmp_path, ck, d0, d1 = made
    typo = tmp_path / "d1-typo"
    refused(tmp_path, ck, [d0, typo], "data_dirs[1]", str(typo), "does not exist")
    assert not typo.exists()
    # an unmounted disk: the data dir's path is gone
    d1.rename(tmp_path / "elsewhere")
    refused(tmp_path, ck, [d0, d1], "data_dirs[1]", str(d1), "does not exist")
    assert not d1.exists()


def test_a_data_dir_left_out_is_refused(made):
    tmp_path, ck, d0, d1 = made
    msg = refused(tmp_path, ck, [d0], "data dir #1", str(d1), "left out")
    assert "names 1 directory" in msg and "has 2" in msg


def test_an_extra_data_dir_is_refused(made):
    tmp_path, ck, d0, d1 = made
    new = tmp_path / "d2"
    refused(tmp_path, ck, [d0, d1, new], "data_dirs[2]", str(new), "does not exist")
    assert not new.exists()
    new.mkdir()
    msg = refused(tmp_path, ck, [d0, d1, new], "data_dirs[2]", str(new), "empty")
    assert "names 3" in msg and "has 2" in msg


def test_an_emptied_data_dir_is_refused(made):
    tmp_path, ck, d0, d1 = made
    shutil.rmtree(d1)
    d1.mkdir()     # e.g. a fresh file system mounted at the same path
    refused(tmp_path, ck, [d0, d1], "data_dirs[1]", str(d1), "empty")


def test_a_data_dir_of_another_channel_is_refused(made):
    tmp_path, ck, d0, d1 = made
    other = open_ch(tmp_path / "other-ck", [tmp_path / "other-d0", tmp_path / "other-d1"])
    put_each(other, [b"o"])
    other.close()
    refused(tmp_path, ck, [d0, tmp_path / "other-d1"], "data_dirs[1]",
            str(tmp_path / "other-d1"), "another channel")


def test_logs_without_identity_beside_an_identified_channel_are_refused(made):
    """A data dir of a channel written by the previous version, given with
    the dirs of this one."""
    tmp_path, ck, d0, d1 = made
    old = open_ch(tmp_path / "old-ck", [tmp_path / "old-d"])
    put_each(old, [b"o"])
    old.close()
    os.unlink(tmp_path / "old-d" / IDENT)
    refused(tmp_path, ck, [d0, tmp_path / "old-d"], "data_dirs[1]",
            str(tmp_path / "old-d"), "no identity")


def test_a_checkpoint_dir_of_another_channel_is_refused(made):
    tmp_path, ck, d0, d1 = made
    open_ch(tmp_path / "other-ck", [tmp_path / "other-d0", tmp_path / "other-d1"]).close()
    refused(tmp_path, tmp_path / "other-ck", [d0, d1], "checkpoint_dir",
            str(tmp_path / "other-ck"), "another channel")


def test_a_checkpoint_dir_and_a_data_dir_swapped_are_refused(made):
    tmp_path, ck, d0, d1 = made
    refused(tmp_path, d0, [ck, d1], "checkpoint_dir", str(d0), "swapped")


def test_data_dirs_in_another_order_are_refused_naming_both(made):
    tmp_path, ck, d0, d1 = made
    msg = refused(tmp_path, ck, [d1, d0], "order")
    assert f"data_dirs[0] {str(d1)!r} is its data dir #1" in msg
    assert f"data_dirs[1] {str(d0)!r} is its data dir #0" in msg


def test_a_missing_checkpoint_dir_is_refused(made):
    tmp_path, ck, d0, d1 = made
    typo = tmp_path / "ck-typo"
    refused(tmp_path, typo, [d0, d1], "checkpoint_dir", str(typo), "does not exist",
            "create the directory empty")
    assert not typo.exists()


def test_a_damaged_identity_file_is_refused(made):
    tmp_path, ck, d0, d1 = made
    (d1 / IDENT).write_text("{not json")
    refused(tmp_path, ck, [d0, d1], "data_dirs[1]", str(d1), IDENT, "cannot be parsed")


# ---- adoption and recovery ----------------------------------------------------------
def test_a_channel_of_the_previous_version_is_adopted(made):
    tmp_path, ck, d0, d1 = made
    for d in (ck, d0, d1):
        os.unlink(d / IDENT)
    ch = open_ch(ck, [d0, d1])
    try:
        assert drain(ch) == [b"e%d" % i for i in range(10)]
    finally:
        ch.close()
    assert ident(ck)["channel"] == ident(d0)["channel"] == ident(d1)["channel"]
    assert ident(d1)["index"] == 1
    # and from now on it is known: an order change is refused
    refused(tmp_path, ck, [d1, d0], "order")


def test_a_previous_version_channel_with_a_missing_or_empty_data_dir_is_refused(made):
    tmp_path, ck, d0, d1 = made
    for d in (ck, d0, d1):
        os.unlink(d / IDENT)
    refused(tmp_path, ck, [d0, tmp_path / "nope"], "data_dirs[1]", "does not exist")
    (tmp_path / "empty").mkdir()
    refused(tmp_path, ck, [d0, d1, tmp_path / "empty"], "data_dirs[2]", "no log files")


def test_an_adoption_cut_short_is_finished(made):
    """Identity files are written data dirs first: a crash after d0's
    leaves d1 with logs and no identity, and the checkpoint dir without."""
    tmp_path, ck, d0, d1 = made
    cid = ident(d0)["channel"]
    os.unlink(ck / IDENT)
    os.unlink(d1 / IDENT)
    ch = open_ch(ck, [d0, d1])
    try:
        assert drain(ch) == [b"e%d" % i for i in range(10)]
    finally:
        ch.close()
    assert ident(ck)["channel"] == ident(d1)["channel"] == cid


def test_a_lost_checkpoint_is_rebuilt_from_the_data_dirs_by_a_full_replay(made):
    tmp_path, ck, d0, d1 = made
    cid = ident(d0)["channel"]
    ch = open_ch(ck, [d0, d1])
    assert take(ch, 3) == [b"e0", b"e1", b"e2"]
    ch.close()
    shutil.rmtree(ck)
    ck.mkdir()     # the checkpoint's disk was replaced
    ch = open_ch(ck, [d0, d1])
    try:
        assert ch.counters["open_mode"] in ("full", "fast-full")
        assert drain(ch) == [b"e%d" % i for i in range(3, 10)]
    finally:
        ch.close()
    assert ident(ck)["channel"] == cid and ident(ck)["data_dirs"] == [str(d0), str(d1)]


def test_the_issue_scenario_a_missing_data_dir_with_the_checkpoint_gone_is_refused(made):
    """Issue 14 point 5: with the checkpoint gone, a full replay over the
    remaining data dir brought back taken events.  Now it is refused, and the
    right set of directories still gives exactly what was not taken."""
    tmp_path, ck, d0, d1 = made
    ch = open_ch(ck, [d0, d1])
    assert take(ch, 6) == [b"e%d" % i for i in range(6)]
    ch.close()
    for name in os.listdir(ck):    # the checkpoint is gone (its identity too)
        os.unlink(ck / name)
    refused(tmp_path, ck, [d0], "data dir #1", "left out")
    refused(tmp_path, ck, [d1], "data_dirs[0]", "data dir #1", "data dir #0")
    moved = tmp_path / "unmounted"
    d1.rename(moved)
    refused(tmp_path, ck, [d0, d1], "data_dirs[1]", str(d1), "does not exist")
    moved.rename(d1)
    ch = open_ch(ck, [d0, d1])
    try:
        assert drain(ch) == [b"e%d" % i for i in range(6, 10)]
    finally:
        ch.close()


def test_directories_in_use_by_a_live_channel_say_so_before_any_mismatch(made):
    """The lock is the first thing to report: a second opener of a live
    channel gets ChannelLockedError, whatever it gave as data_dirs."""
    tmp_path, ck, d0, d1 = made
    ch = open_ch(ck, [d0, d1])
    try:
        for dirs in ([d0, d1], [d0], [d1, d0]):
            with pytest.raises(ChannelLockedError):
                open_ch(ck, dirs)
        assert take(ch, 1) == [b"e0"]    # the live channel is unharmed
    finally:
        ch.close()


def test_a_checkpoint_dir_given_as_the_only_data_dir_is_refused(made):
    tmp_path, ck, d0, d1 = made
    new = tmp_path / "new-ck"
    msg = refused(tmp_path, new, [ck], "data_dirs[0]", str(ck), "not a data dir")
    assert not new.exists(), msg

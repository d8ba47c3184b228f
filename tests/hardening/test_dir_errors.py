"""Directory errors name the setting (issue 14, point 7).

A directory setting that is a file, lies under a file, or is on a read-only
file system used to surface as a raw FileExistsError, NotADirectoryError or
OSError(EROFS) naming no setting.  Now: ConfigError for a file or a path
under a file, ChannelError saying "read-only" for EROFS, each naming the
setting (checkpoint_dir, data_dirs, backup_checkpoint_dir) and the path, and
nothing is created first.  (EACCES cannot be tested as root, who may write
anywhere: a read-only bind mount gives EROFS whatever the user.)
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from fchannel import ChannelError, ConfigError, Event, FileChannel


def open_ch(ck, dirs, backup=None) -> FileChannel:
    return FileChannel(ck, [str(d) for d in dirs], capacity=100, transaction_capacity=10,
                       checkpoint_interval=3600, backup_checkpoint_dir=backup)


def check_error(err: BaseException, cls: type, *must_name: str) -> None:
    assert type(err) is cls or isinstance(err, cls), repr(err)
    assert not isinstance(err, OSError), "a raw OSError escaped"
    for s in must_name:
        assert s in str(err), f"{s!r} not in {str(err)!r}"


@pytest.fixture
def layout(tmp_path):
    f = tmp_path / "a-file"
    f.write_bytes(b"not a directory")
    return tmp_path, f


@pytest.mark.parametrize("where", ["checkpoint_dir", "data_dirs", "backup_checkpoint_dir"])
def test_a_directory_setting_that_is_a_file_is_a_config_error(layout, where):
    tmp_path, f = layout
    ck, dirs, backup = tmp_path / "ck", [tmp_path / "d0", tmp_path / "d1"], tmp_path / "bk"
    if where == "checkpoint_dir":
        ck = f
    elif where == "data_dirs":
        dirs[1] = f
    else:
        backup = f
    with pytest.raises(ConfigError) as err:
        open_ch(ck, dirs, backup)
    check_error(err.value, ConfigError, where, str(f), "is a file")
    assert sorted(os.listdir(tmp_path)) == ["a-file"], "something was created"


@pytest.mark.parametrize("where", ["checkpoint_dir", "data_dirs", "backup_checkpoint_dir"])
def test_a_directory_setting_under_a_file_is_a_config_error(layout, where):
    tmp_path, f = layout
    under = f / "sub" / "dir"
    ck, dirs, backup = tmp_path / "ck", [tmp_path / "d0", tmp_path / "d1"], tmp_path / "bk"
    if where == "checkpoint_dir":
        ck = under
    elif where == "data_dirs":
        dirs[0] = under
    else:
        backup = under
    with pytest.raises(ConfigError) as err:
        open_ch(ck, dirs, backup)
    check_error(err.value, ConfigError, where, str(under), "lies under", str(f))
    assert sorted(os.listdir(tmp_path)) == ["a-file"], "something was created"


def test_a_file_where_an_existing_channel_had_a_data_dir_is_a_config_error(tmp_path):
    ck, d0 = tmp_path / "ck", tmp_path / "d0"
    ch = open_ch(ck, [d0])
    with ch.transaction() as tx:
        tx.put(Event(b"x"))
    ch.close()
    d0.rename(tmp_path / "moved")
    d0.write_bytes(b"")
    with pytest.raises(ConfigError) as err:
        open_ch(ck, [d0])
    check_error(err.value, ConfigError, "data_dirs[0]", str(d0), "is a file")


# ---- read-only file system -------------------------------------------------------------
def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.fixture
def ro_mount(tmp_path):
    """``mount_ro(src)`` bind-mounts *src* read-only and returns the mount
    point; unmounted at teardown.  Skips only when mounting is not permitted."""
    mounted: list[Path] = []

    def mount_ro(src: Path) -> Path:
        mnt = tmp_path / f"ro{len(mounted)}"
        mnt.mkdir()
        r = _run("mount", "--bind", str(src), str(mnt))
        if r.returncode != 0:
            pytest.skip(f"cannot bind-mount (not permitted here?): {r.stderr.strip()}")
        mounted.append(mnt)
        r = _run("mount", "-o", "remount,ro,bind", str(mnt))
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
        try:    # the mount must really refuse writes, else the test proves nothing
            os.mkdir(mnt / ".probe")
        except OSError as exc:
            assert exc.errno == errno.EROFS, exc
        else:
            pytest.fail("the read-only bind mount accepted a write")
        return mnt

    try:
        yield mount_ro
    finally:
        for mnt in reversed(mounted):
            if _run("umount", str(mnt)).returncode != 0:
                _run("umount", "-l", str(mnt))


@pytest.mark.parametrize("where", ["checkpoint_dir", "data_dirs", "backup_checkpoint_dir"])
@pytest.mark.parametrize("exists", [False, True], ids=["to-create", "existing"])
def test_a_directory_on_a_read_only_file_system_names_the_setting(tmp_path, ro_mount, where,
                                                                   exists):
    src = tmp_path / "src"
    src.mkdir()
    if exists:
        (src / "dir").mkdir()
    mnt = ro_mount(src)
    ro_dir = mnt / "dir"
    ck, dirs, backup = tmp_path / "ck", [tmp_path / "d0"], tmp_path / "bk"
    if where == "checkpoint_dir":
        ck = ro_dir
    elif where == "data_dirs":
        dirs.append(ro_dir)
    else:
        backup = ro_dir
    with pytest.raises(ChannelError) as err:
        open_ch(ck, dirs, backup)
    check_error(err.value, ChannelError, where, str(ro_dir), "read-only")
    assert isinstance(err.value.__cause__, OSError) and err.value.__cause__.errno == errno.EROFS


def test_an_existing_channel_on_a_read_only_file_system_names_the_setting(tmp_path, ro_mount):
    src = tmp_path / "src"
    ch = open_ch(src / "ck", [src / "d0"])
    with ch.transaction() as tx:
        tx.put(Event(b"x"))
    ch.close()
    mnt = ro_mount(src)
    with pytest.raises(ChannelError) as err:
        open_ch(mnt / "ck", [mnt / "d0"])
    check_error(err.value, ChannelError, "checkpoint_dir", str(mnt / "ck"), "read-only")
    # nothing was lost: the same channel opens where it is writable
    ch = open_ch(src / "ck", [src / "d0"])
    try:
        with ch.transaction() as tx:
            assert [e.body for e in tx.take_batch(10)] == [b"x"]
    finally:
        ch.close()

"""Running out of disk (DESIGN §5, guarantee 5) on a really small file
system made by the test: a size-limited tmpfs and a loop-mounted ext4 image.

- with ``minimum_required_space``: puts fail cleanly with ChannelFullError
  before the disk is full, the failed transaction stays usable (rolled
  back), takes go on, nothing committed is lost, and puts work again once
  the channel's own GC frees space;
- with ``minimum_required_space=0`` the real ENOSPC path: the same, the
  space coming back when a ballast file is removed; a fresh channel on a
  full disk fails to open with ChannelFullError (never a SIGBUS through the
  checkpoint's mmap);
- a SIGKILL while the disk is full, then a reopen, gives exactly what was
  committed.

Mounting needs root (or the right capabilities): elsewhere the tests skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from fchannel import ChannelFullError, Event, FileChannel
from tests.helpers import ROOT, Child

MiB = 1 << 20


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture(params=["tmpfs", "ext4"])
def tiny_fs(request, tmp_path):
    """A mounted file system of 8 MiB; unmounted (and its image removed) after."""
    if not sys.platform.startswith("linux"):
        pytest.skip("needs Linux mounts")
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    image = None
    if request.param == "tmpfs":
        r = _run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt))
    else:
        if not shutil.which("mkfs.ext4"):
            pytest.skip("mkfs.ext4 is not installed")
        image = tmp_path / f"fs-{uuid.uuid4().hex}.img"
        with open(image, "wb") as f:
            f.truncate(8 * MiB)
        r = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
        if r.returncode == 0:
            r = _run("mount", "-o", "loop", str(image), str(mnt))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a {request.param} here: {r.stderr.strip()}")
    try:
        yield str(mnt)
    finally:
        if _run("umount", str(mnt)).returncode != 0:
            _run("umount", "-l", str(mnt))
        if image is not None:
            image.unlink()


def ev(i: int) -> Event:
    return Event(b"%d:" % i + b"f" * 3000, {"i": str(i)})


def open_ch(root: str, **kw) -> FileChannel:
    kw.setdefault("keep_alive", 0)
    kw.setdefault("checkpoint_interval", 3600)
    return FileChannel(os.path.join(root, "ck"), [os.path.join(root, "d0"),
                                                  os.path.join(root, "d1")],
                       capacity=5000, transaction_capacity=5000, max_file_size=256 * 1024, **kw)


def fill(ch, start: int, limit: int = 10_000) -> tuple[list[int], ChannelFullError | None]:
    """Put 5-event transactions until the channel refuses one; returns the
    committed ids and the error.  The refused transaction must roll back."""
    ids: list[int] = []
    n = start
    for _ in range(limit):
        tx = ch.transaction()
        tx.begin()
        batch = list(range(n, n + 5))
        n += 5
        try:
            tx.put_batch([ev(i) for i in batch])
            tx.commit()
        except ChannelFullError as exc:
            assert tx.state == "OPEN"     # a failed commit leaves it to roll back
            tx.rollback()
            tx.close()
            return ids, exc
        tx.close()
        ids.extend(batch)
    if limit < 10_000:
        return ids, None
    raise AssertionError("the small file system never filled up")


def drain_ids(ch) -> list[int]:
    out: list[int] = []
    for _ in range(10_000):
        with ch.transaction() as tx:
            got = tx.take_batch(100)
        if not got:
            return out
        for e in got:
            assert e == ev(int(e.headers["i"]))
            out.append(int(e.headers["i"]))
    raise AssertionError("drain did not end")


def peek_ids(ch) -> list[int]:
    tx = ch.transaction()
    tx.begin()
    got = [int(e.headers["i"]) for e in tx.take_batch(ch.capacity)]
    tx.rollback()
    tx.close()
    return got


def test_minimum_required_space_fails_puts_cleanly_and_recovers(tiny_fs):
    ch = open_ch(tiny_fs, minimum_required_space=3 * MiB)
    ids, err = fill(ch, 0)
    assert "minimum_required_space" in str(err) and "nothing was lost" in str(err)
    assert len(ids) > 100
    assert peek_ids(ch) == ids
    # takes go on while puts are refused, and the channel's GC gives space back
    with ch.transaction() as tx:
        assert [int(e.headers["i"]) for e in tx.take_batch(100)] == ids[:100]
    with ch.transaction() as tx:
        tx.take_batch(100)
    ch.checkpoint()
    assert ch.counters["log_files_deleted"] > 0
    more, _err = fill(ch, 100_000)
    assert len(more) > 0
    expected = ids[200:] + more
    ch.close()
    ch = open_ch(tiny_fs, minimum_required_space=3 * MiB)
    assert ch.damage == []
    assert drain_ids(ch) == expected
    ch.close()


def test_real_enospc_fails_cleanly_and_recovers_when_space_returns(tiny_fs):
    ch = open_ch(tiny_fs, minimum_required_space=0, checkpoint_interval=0.05)
    ballast = os.path.join(tiny_fs, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"b" * (4 * MiB))
    ids, err = fill(ch, 0)
    assert "no space left" in str(err) and "nothing committed was lost" in str(err)
    for k in range(5):   # retries fail cleanly (or fit in what is left), nothing else
        more, _err = fill(ch, 50_000 + 1000 * k)
        ids += more
    assert peek_ids(ch) == ids
    os.unlink(ballast)   # space comes back
    more, _err = fill(ch, 100_000, limit=20)
    assert len(more) == 100
    ch.close()           # its final checkpoint may or may not find room
    ch = open_ch(tiny_fs, minimum_required_space=0)
    assert [d for d in ch.damage if "incomplete" not in d] == []
    assert drain_ids(ch) == ids + more
    ch.close()


OPEN_ON_FULL = """
import sys
from fchannel import ChannelFullError, FileChannel
try:
    ch = FileChannel(sys.argv[1] + "/ck2", [sys.argv[1] + "/d9"], capacity=200_000,
                     minimum_required_space=0, checkpoint_interval=0.05)
except ChannelFullError as exc:
    print("refused:", exc, flush=True)
else:
    ch.close()
    print("opened", flush=True)
"""


def test_opening_on_a_full_disk_is_refused_cleanly(tiny_fs):
    with open(os.path.join(tiny_fs, "ballast"), "wb") as f:
        try:
            f.write(b"b" * (8 * MiB))
        except OSError:
            pass
    child = Child(OPEN_ON_FULL, tiny_fs)
    code, err = child.finish(timeout=60)
    assert code == 0, f"the process died (exit {code}): {err}"   # -7 would be SIGBUS


FILLER = """
import sys
from fchannel import ChannelFullError, Event, FileChannel
root = sys.argv[1]
ch = FileChannel(root + "/ck", [root + "/d0", root + "/d1"], capacity=5000,
                 transaction_capacity=100, max_file_size=256 * 1024, keep_alive=0,
                 minimum_required_space=int(sys.argv[2]), checkpoint_interval=0.05)
n = 0
full = 0
for _ in range(100_000):
    ids = list(range(n, n + 5))
    n += 5
    tx = ch.transaction()
    tx.begin()
    try:
        tx.put_batch([Event(b"%d:" % i + b"f" * 3000, {"i": str(i)}) for i in ids])
        print("try " + ",".join(map(str, ids)), flush=True)
        tx.commit()
        print("ok", flush=True)
    except ChannelFullError:
        tx.rollback()
        full += 1
        if full == 3:
            print("full", flush=True)
    tx.close()
"""


@pytest.mark.crash
@pytest.mark.parametrize("min_space", [0, 3 * MiB], ids=["enospc", "minimum-space"])
def test_kill_while_the_disk_is_full_then_replay(tiny_fs, min_space):
    ballast = os.path.join(tiny_fs, "ballast")
    if min_space == 0:
        with open(ballast, "wb") as f:
            f.write(b"b" * (4 * MiB))
    lines = _run_until_full_then_kill(FILLER, tiny_fs, str(min_space))
    acked: list[int] = []
    pending: list[int] = []
    for line in lines:
        if line.startswith("try "):
            pending = [int(x) for x in line[4:].split(",")]
        elif line == "ok":
            acked.extend(pending)
            pending = []
    assert len(acked) > 100
    if os.path.exists(ballast):
        os.unlink(ballast)
    ch = open_ch(tiny_fs, minimum_required_space=0)
    assert [d for d in ch.damage if "incomplete" not in d] == []
    got = drain_ids(ch)
    assert got in (acked, acked + pending), (len(got), len(acked), len(pending))
    with ch.transaction() as tx:       # and it works
        tx.put(ev(1))
    ch.close()


def _run_until_full_then_kill(code: str, *args: str) -> list[str]:
    """Run *code*, read its lines until it says "full" (plus a moment of
    failing puts), SIGKILL it and return every line it wrote."""
    import select
    import signal
    import time
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    out = b""
    kill_at = None
    deadline = time.monotonic() + 120
    try:
        while True:
            now = time.monotonic()
            if kill_at is not None and now >= kill_at:
                break
            if now > deadline:
                raise AssertionError("the child never reported a full disk")
            ready, _, _ = select.select([proc.stdout], [], [], 0.05)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"child exited: {proc.stderr.read().decode()}")
                out += chunk
                if kill_at is None and b"\nfull\n" in b"\n" + out:
                    kill_at = time.monotonic() + 0.2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        out += proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    return out.decode().splitlines()

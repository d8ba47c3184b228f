"""Encryption at rest, end to end through the public API (issue 19): what a
user of ``FileChannel(..., encryption=...)`` relies on.  Runs on both builds
(the pure one with FCHANNEL_NO_EXTENSIONS=1)."""
from __future__ import annotations

import asyncio
import hashlib
import os
import signal

import pytest

from fchannel import ConfigError, Event, FileChannel
from fchannel.cli import main as cli_main
from fchannel.errors import DecryptionError, KeyMissingError
from fchannel.file.crypto import write_key_file
from fchannel.file.tools import inspect
from tests.channels import take_all
from tests.helpers import Child


def enc(active: str, **files) -> dict:
    """The ``encryption`` argument: *active* seals, every alias=path reads."""
    return {"active_key": active, "keys": {alias: str(p) for alias, p in files.items()}}


@pytest.fixture
def keys(tmp_path):
    """Key files: k1, k2, and other-k1 (different key material, to be given as k1)."""
    d = tmp_path / "keys"
    d.mkdir()
    out = {name: d / f"{name}.key" for name in ("k1", "k2", "other-k1")}
    for p in out.values():
        write_key_file(str(p))
    assert out["k1"].read_bytes() != out["other-k1"].read_bytes()
    return out


def open_ch(tmp_path, encryption, **kw) -> FileChannel:
    kw.setdefault("capacity", 10_000)
    kw.setdefault("transaction_capacity", 1000)
    kw.setdefault("keep_alive", 0.05)
    kw.setdefault("minimum_required_space", 0)
    kw.setdefault("checkpoint_interval", 3600)
    return FileChannel(tmp_path / "ck", [tmp_path / "d0", tmp_path / "d1"],
                       encryption=encryption, **kw)


def secret(i: int) -> Event:
    """An event whose body, header name and header value are all distinctive."""
    return Event(b"body-secret-%05d" % i, {"x-customer-ref": "hdrval-%05d" % i, "i": str(i)})


def put_all(ch, events, batch=20):
    for k in range(0, len(events), batch):
        with ch.transaction() as tx:
            tx.put_batch(events[k:k + batch])


def peek_all(ch) -> list[Event]:
    """Everything queued, head first, left in the channel (a rolled-back take)."""
    tx = ch.transaction()
    tx.begin()
    try:
        return tx.take_batch(ch.transaction_capacity)
    finally:
        tx.rollback()
        tx.close()


def log_paths(tmp_path) -> list:
    return sorted(p for d in ("d0", "d1") for p in (tmp_path / d).glob("log-*")
                  if p.name[len("log-"):].isdigit())


def remove_checkpoint(tmp_path) -> None:
    """Force a full replay of the logs at the next open."""
    for name in ("checkpoint", "checkpoint.meta"):
        os.unlink(tmp_path / "ck" / name)


def listing(tmp_path) -> dict[str, str]:
    """Every file of the channel's directories and a digest of its content
    (the lock files, rewritten with the opener's pid, by name only)."""
    out = {}
    for d in ("ck", "d0", "d1"):
        for p in sorted((tmp_path / d).rglob("*")):
            if p.is_file():
                rel = str(p.relative_to(tmp_path))
                out[rel] = "lock" if p.name.endswith(".lock") or p.name == "in_use.lock" \
                    else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_nothing_in_clear(tmp_path, events) -> None:
    """No body, header name or value in any file the channel wrote (every
    log-N, its .meta, the checkpoint files)."""
    assert log_paths(tmp_path), "no log file written"
    blob = b"".join(p.read_bytes() for d in ("ck", "d0", "d1")
                    for p in (tmp_path / d).rglob("*") if p.is_file())
    for e in events:
        assert e.body not in blob, f"body {e.body!r} is in a log file in clear"
        for k, v in e.headers.items():
            if k == "i":
                continue   # a digit string: too short to mean anything in the bytes
            assert k.encode() not in blob, f"header name {k!r} is in a log file in clear"
            assert v.encode() not in blob, f"header value {v!r} is in a log file in clear"


# ---- round trip -------------------------------------------------------------------

@pytest.mark.parametrize("fast", [False, True], ids=["full", "fast-full"])
def test_round_trip_nothing_in_clear_then_same_events_after_reopen_and_full_replay(
        tmp_path, keys, fast):
    e1 = enc("k1", k1=keys["k1"])
    events = [secret(i) for i in range(60)]
    ch = open_ch(tmp_path, e1)
    put_all(ch, events)
    ch.close()
    assert_nothing_in_clear(tmp_path, events)
    # the same channel unencrypted does write them in clear: the grep can see them
    plain = tmp_path / "plain"
    plain.mkdir()
    ch = open_ch(plain, None)
    put_all(ch, events[:1])
    ch.close()
    assert any(events[0].body in p.read_bytes() for p in log_paths(plain))

    ch = open_ch(tmp_path, e1)
    assert ch.size == 60
    assert peek_all(ch) == events
    ch.close()
    remove_checkpoint(tmp_path)
    ch = open_ch(tmp_path, e1, use_fast_replay=fast)
    try:
        assert ch.counters["open_mode"] == ("fast-full" if fast else "full"), ch.counters
        assert ch.size == 60
        assert take_all(ch) == events
    finally:
        ch.close()


# ---- SIGKILL mid-stream -----------------------------------------------------------

CHILD = """
import os, sys
from fchannel import Event, FileChannel
ck, d0, d1, key, first = sys.argv[1:6]
ch = FileChannel(ck, [d0, d1], capacity=100_000, transaction_capacity=100,
                 minimum_required_space=0, checkpoint_interval=0.2, max_file_size=8192,
                 encryption={"active_key": "k1", "keys": {"k1": key}})
os.write(1, b"READY\\n")
i = int(first)
while True:
    with ch.transaction() as tx:
        tx.put_batch([Event(b"body-secret-%05d" % j, {"x-customer-ref": "hdrval-%05d" % j,
                                                      "i": str(j)}) for j in range(i, i + 3)])
    i += 3
    os.write(1, b"OK %d\\n" % i)   # events first..i-1 are acknowledged
"""


def _run_and_kill(tmp_path, key, first: int, until: int) -> int:
    """Start the child putting events first, first+1, ... (3 a commit); SIGKILL
    it once *until* are acknowledged, while it goes on; return the number of
    the first event never acknowledged."""
    child = Child(CHILD, str(tmp_path / "ck"), str(tmp_path / "d0"), str(tmp_path / "d1"),
                  str(key), str(first))
    acked = first
    try:
        child.expect("READY")
        for _ in range(10_000):
            acked = int(child.expect("OK ").split()[1])
            if acked >= until:
                break
        os.kill(child.proc.pid, signal.SIGKILL)
        assert child.proc.wait(30) == -signal.SIGKILL
        for _ in range(100_000):   # the acknowledgements still in the pipe count too
            try:
                acked = int(child.expect("OK ", timeout=5).split()[1])
            except AssertionError:   # the pipe is empty: the child is dead
                break
    finally:
        child.kill()
    assert acked >= until
    return acked


def test_sigkill_mid_stream_keeps_every_acknowledged_event_exactly_once(tmp_path, keys):
    e1 = enc("k1", k1=keys["k1"])
    big = {"capacity": 100_000, "transaction_capacity": 100_000}   # as the child's
    queue: list[int] = []
    for _round in range(2):   # the second process goes on from what the first left
        first = queue[-1] + 1 if queue else 0
        acked = _run_and_kill(tmp_path, keys["k1"], first, first + 300)
        ch = open_ch(tmp_path, e1, **big)
        try:
            got = peek_all(ch)
        finally:
            ch.close()
        ids = [int(e.headers["i"]) for e in got]
        # every acknowledged event once, in order; besides, at most the one
        # commit that was in flight when the kill came
        assert ids in (queue + list(range(first, acked)), queue + list(range(first, acked + 3))), \
            (first, acked, ids[-5:])
        assert got == [secret(i) for i in ids]
        queue = ids
    assert_nothing_in_clear(tmp_path, got)
    remove_checkpoint(tmp_path)   # and a full replay of the same logs agrees
    ch = open_ch(tmp_path, e1, **big)
    try:
        assert take_all(ch) == got
    finally:
        ch.close()


# ---- a wrong, unknown or missing key at open ---------------------------------------

@pytest.mark.parametrize("case", ["wrong key material", "unknown alias", "no encryption"])
def test_bad_key_at_open_is_a_clear_error_and_writes_nothing(tmp_path, keys, case):
    right = enc("k1", k1=keys["k1"])
    events = [secret(i) for i in range(25)]
    ch = open_ch(tmp_path, right)
    put_all(ch, events)
    ch.close()
    before = listing(tmp_path)
    logs = [str(p) for p in log_paths(tmp_path)]
    if case == "wrong key material":
        bad, err = enc("k1", k1=keys["other-k1"]), DecryptionError
    elif case == "unknown alias":
        bad, err = enc("k2", k2=keys["k2"]), KeyMissingError
    else:
        bad, err = None, ConfigError
    for _ in range(2):   # the second attempt finds the same: the first changed nothing
        with pytest.raises(err) as info:
            open_ch(tmp_path, bad)
        msg = str(info.value)
        assert "'k1'" in msg, msg
        assert any(p in msg or os.path.basename(p) in msg for p in logs), msg
        assert listing(tmp_path) == before
    # every one is a configuration problem (the agent exits 2 for it)
    assert isinstance(info.value, ConfigError)
    ch = open_ch(tmp_path, right)
    try:
        assert take_all(ch) == events
    finally:
        ch.close()


# ---- rotation -----------------------------------------------------------------------

def _log_keys(tmp_path) -> dict[int, str]:
    """The key alias of each log file that holds encrypted puts."""
    data = inspect(str(tmp_path / "ck"), [str(tmp_path / "d0"), str(tmp_path / "d1")])
    return {lg["id"]: lg["key"] for lg in data["logs"] if "key" in lg}


def test_rotation_old_keys_read_new_key_writes_old_key_needed_until_its_logs_go(
        tmp_path, keys):
    a = [secret(i) for i in range(10)]
    b = [secret(i) for i in range(100, 110)]
    ch = open_ch(tmp_path, enc("k1", k1=keys["k1"]))
    put_all(ch, a)
    ch.close()
    both = enc("k2", k1=keys["k1"], k2=keys["k2"])
    ch = open_ch(tmp_path, both)
    put_all(ch, b)
    ch.close()
    assert sorted(set(_log_keys(tmp_path).values())) == ["k1", "k2"]

    before = listing(tmp_path)
    with pytest.raises(KeyMissingError) as info:   # k1's logs still hold A
        open_ch(tmp_path, enc("k2", k2=keys["k2"]))
    assert "'k1'" in str(info.value)
    assert listing(tmp_path) == before

    ch = open_ch(tmp_path, both)
    try:
        assert take_all(ch) == a + b
        ch.checkpoint()   # nothing needs k1's logs any more: deleted
        assert "k1" not in _log_keys(tmp_path).values(), _log_keys(tmp_path)
    finally:
        ch.close()
    ch = open_ch(tmp_path, enc("k2", k2=keys["k2"]))
    try:
        assert ch.size == 0
        put_all(ch, a)
        ch.close()
        ch = open_ch(tmp_path, enc("k2", k2=keys["k2"]))
        assert take_all(ch) == a
    finally:
        ch.close()


def test_turning_encryption_on_keeps_the_plain_events_and_seals_the_new_ones(tmp_path, keys):
    a = [secret(i) for i in range(5)]
    b = [secret(i) for i in range(200, 205)]
    ch = open_ch(tmp_path, None)
    put_all(ch, a)
    ch.close()
    e1 = enc("k1", k1=keys["k1"])
    ch = open_ch(tmp_path, e1)
    put_all(ch, b)
    ch.close()
    blob = b"".join(p.read_bytes() for p in log_paths(tmp_path))
    assert all(e.body in blob for e in a)   # written before: in clear
    for e in b:   # (the header name is A's too, in clear in A's records)
        assert e.body not in blob and e.headers["x-customer-ref"].encode() not in blob
    ch = open_ch(tmp_path, e1)
    try:
        assert take_all(ch) == a + b
    finally:
        ch.close()


# ---- marks ----------------------------------------------------------------------------

def test_marks_survive_reopen_and_full_replay_with_encryption(tmp_path, keys):
    e1 = enc("k1", k1=keys["k1"])
    ch = open_ch(tmp_path, e1)
    with ch.transaction() as tx:
        tx.put_batch([secret(1), secret(2)])
        tx.set_mark("source-offset", 2)
    with ch.transaction() as tx:
        tx.put(secret(3))
        tx.set_mark("source-offset", 3)
        tx.set_mark("other", 7)
    ch.close()
    ch = open_ch(tmp_path, e1)
    assert ch.marks == {"source-offset": 3, "other": 7}
    ch.close()
    remove_checkpoint(tmp_path)
    ch = open_ch(tmp_path, e1)
    try:
        assert ch.marks == {"source-offset": 3, "other": 7}
        assert take_all(ch) == [secret(1), secret(2), secret(3)]
    finally:
        ch.close()


# ---- fchannel inspect / check ---------------------------------------------------------

def test_inspect_and_check_with_and_without_the_key(tmp_path, keys, capfd):
    events = [secret(i) for i in range(15)]
    ch = open_ch(tmp_path, enc("k1", k1=keys["k1"]))
    put_all(ch, events, batch=5)
    ch.close()
    dirs = [str(tmp_path / "ck"), str(tmp_path / "d0"), str(tmp_path / "d1")]
    logs = [str(p) for p in log_paths(tmp_path)]
    capfd.readouterr()

    assert cli_main(["inspect", *dirs]) == 0
    out = capfd.readouterr().out
    keyed = [ln for ln in out.splitlines() if "key 'k1'" in ln]
    assert keyed and all(any(p in ln for p in logs) for ln in keyed), out
    assert cli_main(["inspect", *dirs, "--key", f"k1={keys['k1']}"]) == 0
    out = capfd.readouterr().out
    assert "key 'k1' (opens)" in out, out
    assert cli_main(["inspect", *dirs, "--key", f"k1={keys['other-k1']}"]) == 0
    out = capfd.readouterr().out
    assert "key 'k1' (does NOT open" in out, out

    assert cli_main(["check", *dirs, "--key", f"k1={keys['k1']}"]) == 0
    out = capfd.readouterr().out
    assert "0 problem(s)" in out, out

    assert cli_main(["check", *dirs, "--key", f"k1={keys['other-k1']}"]) == 1
    out = capfd.readouterr().out
    damaged = [ln for ln in out.splitlines() if ln.startswith("DAMAGED:")]
    assert len(damaged) == len(events), out   # one put record per event
    for ln in damaged:
        assert "encrypted event does not open" in ln and " offset " in ln, ln
        assert any(f"log-{os.path.basename(p)[4:]} " in ln for p in logs), ln

    # without a key, check reads the layout (in clear) and cannot open the events
    assert cli_main(["check", *dirs]) == 0
    out = capfd.readouterr().out
    assert "0 problem(s)" in out, out

    # a key the channel never used opens nothing: the records name k1, which
    # was not given, so they are counted as not opened (not damage)
    assert cli_main(["check", *dirs, "--key", f"k2={keys['k2']}"]) == 0
    out = capfd.readouterr().out
    assert "15 encrypted event(s) not opened (key 'k1'" in out, out


def test_check_without_a_key_says_how_many_encrypted_events_it_did_not_open(
        tmp_path, keys, capfd):
    ch = open_ch(tmp_path, enc("k1", k1=keys["k1"]))
    put_all(ch, [secret(i) for i in range(15)], batch=5)
    ch.close()
    capfd.readouterr()
    assert cli_main(["check", str(tmp_path / "ck"), str(tmp_path / "d0"),
                     str(tmp_path / "d1")]) == 0
    out = capfd.readouterr().out
    assert any("15" in ln and "encrypted" in ln for ln in out.splitlines()), out


# ---- the asyncio face ---------------------------------------------------------------

def test_asyncio_round_trip_over_an_encrypted_channel(tmp_path, keys):
    e1 = enc("k1", k1=keys["k1"])
    ch = open_ch(tmp_path, e1)

    async def put_then_take():
        async with ch.atransaction() as tx:
            await tx.put(secret(1))
            await tx.put_batch([secret(2), secret(3)])
        async with ch.atransaction() as tx:
            got = await tx.take_batch(10)
        async with ch.atransaction() as tx:   # left in the channel, sealed on disk
            await tx.put(secret(4))
        return got

    try:
        assert asyncio.run(put_then_take()) == [secret(1), secret(2), secret(3)]
    finally:
        ch.close()
    assert_nothing_in_clear(tmp_path, [secret(4)])
    ch = open_ch(tmp_path, e1)
    try:
        assert take_all(ch) == [secret(4)]
    finally:
        ch.close()


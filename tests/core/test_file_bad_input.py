"""Bad configuration and bad input (DESIGN §5, guarantee 6): every setting
with a wrong type, range or combination gets a ConfigError naming the
setting and the value; a bad put gets a clear error and leaves the
transaction usable (or cleanly rolled back)."""
from __future__ import annotations

import math

import pytest

from fchannel import (
    ChannelError,
    ConfigError,
    Event,
    FileChannel,
    TransactionError,
)

BAD_SETTINGS = [
    ("checkpoint_dir", 42), ("checkpoint_dir", b"/tmp/x"), ("checkpoint_dir", ""),
    ("checkpoint_dir", None),
    ("data_dirs", []), ("data_dirs", 42), ("data_dirs", [42]), ("data_dirs", [""]),
    ("data_dirs", b"/tmp/x"), ("data_dirs", None),
    ("capacity", 0), ("capacity", -5), ("capacity", "lots"), ("capacity", 1.5),
    ("capacity", True), ("capacity", None),
    ("transaction_capacity", 0), ("transaction_capacity", "x"), ("transaction_capacity", 2.5),
    ("checkpoint_interval", 0), ("checkpoint_interval", -1), ("checkpoint_interval", "soon"),
    ("checkpoint_interval", math.nan), ("checkpoint_interval", math.inf),
    ("max_file_size", 10), ("max_file_size", 1 << 33), ("max_file_size", "big"),
    ("max_file_size", True), ("max_file_size", -1),
    ("minimum_required_space", -1), ("minimum_required_space", "x"),
    ("minimum_required_space", 0.5),
    ("keep_alive", -1), ("keep_alive", "soon"), ("keep_alive", math.nan),
    ("backup_checkpoint_dir", 42), ("backup_checkpoint_dir", ""),
    ("fsync_per_transaction", "maybe"), ("fsync_per_transaction", 2),
    ("fsync_interval", 0), ("fsync_interval", -1), ("fsync_interval", "x"),
    ("checkpoint_on_close", "perhaps"), ("checkpoint_on_close", None),
    ("use_fast_replay", "x"), ("use_fast_replay", 1.0),
    ("name", ""), ("name", 42), ("name", None),
]


def kwargs(tmp_path, **over):
    kw = {"checkpoint_dir": tmp_path / "ck", "data_dirs": [tmp_path / "d"],
          "minimum_required_space": 0}
    kw.update(over)
    return kw


@pytest.mark.parametrize("field,value", BAD_SETTINGS,
                         ids=[f"{f}={v!r}" for f, v in BAD_SETTINGS])
def test_every_bad_setting_is_a_config_error_naming_it(tmp_path, field, value):
    with pytest.raises(ConfigError) as ei:
        FileChannel(**kwargs(tmp_path, **{field: value}))
    msg = str(ei.value)
    assert field in msg, msg
    shown = value[0] if isinstance(value, list) and value else value
    if shown not in ("", None, []) and not isinstance(shown, bool):
        assert repr(shown) in msg or str(shown) in msg, msg
    assert not (tmp_path / "ck").exists(), "a refused config must not touch the disk"


@pytest.mark.parametrize("over,names", [
    ({"capacity": 10, "transaction_capacity": 11}, ["transaction_capacity", "capacity"]),
    ({"backup_checkpoint_dir": "CK"}, ["backup_checkpoint_dir", "checkpoint_dir"]),
    ({"data_dirs": ["D", "D"]}, ["used twice"]),
    ({"data_dirs": ["CK"]}, ["used twice"]),
    ({"backup_checkpoint_dir": "D"}, ["used twice"]),
])
def test_bad_combinations_name_both_sides(tmp_path, over, names):
    sub = {"CK": tmp_path / "ck", "D": tmp_path / "d"}
    for k, v in list(over.items()):
        if isinstance(v, list):
            over[k] = [sub.get(x, x) for x in v]
        else:
            over[k] = sub.get(v, v)
    with pytest.raises(ConfigError) as ei:
        FileChannel(**kwargs(tmp_path, **over))
    for n in names:
        assert n in str(ei.value)


@pytest.mark.parametrize("prop,value", [
    ("capacity", "-3"), ("transactionCapacity", "zero"), ("checkpointInterval", "0"),
    ("maxFileSize", "1e99"), ("minimumRequiredSpace", "-1"), ("keep-alive", "x"),
    ("useDualCheckpoints", "maybe"), ("fsyncPerTransaction", "2"), ("fsyncInterval", "-1"),
    ("checkpointOnClose", ""), ("use-fast-replay", "yes please"), ("dataDirs", ""),
    ("checkpointDir", " "), ("backupCheckpointDir", ""), ("capacityy", "10"),
])
def test_every_bad_property_names_the_property(tmp_path, prop, value):
    props = {"checkpointDir": str(tmp_path / "ck"), "dataDirs": str(tmp_path / "d"),
             "minimumRequiredSpace": "0", prop: value}
    with pytest.raises(ConfigError) as ei:
        FileChannel.from_properties(props)
    assert prop in str(ei.value) and repr(value) in str(ei.value), str(ei.value)


def test_properties_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        FileChannel.from_properties([("capacity", "1")])


@pytest.fixture
def ch(tmp_path):
    c = FileChannel(tmp_path / "ck", [tmp_path / "d"], capacity=100, transaction_capacity=10,
                    max_file_size=4096, minimum_required_space=0, keep_alive=0,
                    checkpoint_interval=3600)
    yield c
    c.close()


def _with_header(key, value) -> Event:
    e = Event(b"body", {"ok": "yes"})
    e.headers[key] = value     # the dict is the event's own: it can be spoiled after checks
    return e


@pytest.mark.parametrize("bad,exc,needle", [
    ("not an event", TypeError, "put needs an Event"),
    (None, TransactionError, "cannot put None"),
    (b"bytes", TypeError, "put needs an Event"),
    (Event(b"z" * 5000), ChannelError, "max_file_size=4096"),
    (_with_header("n", 5), TypeError, "Event header 'n'"),
    (_with_header(7, "v"), TypeError, "Event header 7"),
    (_with_header("s", "\ud800"), ValueError, "Event header 's' is not valid UTF-8"),
], ids=["str", "None", "bytes", "oversized", "int-value", "int-key", "surrogate"])
@pytest.mark.parametrize("batch", [False, True], ids=["put", "put_batch"])
def test_bad_put_is_a_clear_error_and_the_transaction_goes_on(ch, bad, exc, needle, batch):
    tx = ch.transaction()
    tx.begin()
    tx.put(Event(b"first"))
    with pytest.raises(exc) as ei:
        if batch:
            tx.put_batch([Event(b"a"), bad, Event(b"b")])
        else:
            tx.put(bad)
    assert needle in str(ei.value)
    assert ch.remaining == ch.capacity - 1     # the refused put holds no room
    tx.put(Event(b"last"))
    tx.commit()
    tx.close()
    with ch.transaction() as tx:
        assert [e.body for e in tx.take_batch(10)] == [b"first", b"last"]
    assert ch.remaining == ch.capacity


def test_bad_put_inside_with_rolls_back_cleanly(ch):
    with pytest.raises(TypeError), ch.transaction() as tx:
        tx.put(Event(b"kept?"))
        tx.put(_with_header("n", 5))
    assert ch.size == 0 and ch.remaining == ch.capacity
    with ch.transaction() as tx:
        tx.put(Event(b"fine"))
    assert ch.size == 1


@pytest.mark.parametrize("n,exc", [("3", TypeError), (2.5, TypeError), (-1, ValueError),
                                   (11, TransactionError)])
def test_bad_take_batch_argument(ch, n, exc):
    with ch.transaction() as tx:
        tx.put(Event(b"x"))
    tx = ch.transaction()
    tx.begin()
    with pytest.raises(exc):
        tx.take_batch(n)
    assert tx.take().body == b"x"      # still usable
    tx.commit()
    tx.close()


@pytest.mark.parametrize("key,value", [("", 1), (5, 1), ("k", "1"), ("k", 1 << 63),
                                       ("k", True), ("k", 1.0)])
def test_bad_marks(ch, key, value):
    with ch.transaction() as tx:
        with pytest.raises(TypeError, match="mark"):
            tx.set_mark(key, value)
        tx.put(Event(b"x"))
    assert ch.marks == {}

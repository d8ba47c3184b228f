"""set_mark refuses a key the log cannot store (issue 14, point 7): a key
with a lone surrogate is not UTF-8, so it is refused at set_mark with a
ValueError naming the key; the transaction stays usable and nothing of the
bad mark reaches the log or the channel's marks."""
from __future__ import annotations

import pytest

from fchannel import Event, FileChannel


@pytest.fixture
def ch(tmp_path):
    c = FileChannel(tmp_path / "ck", [tmp_path / "d0"], capacity=100, transaction_capacity=10)
    yield c
    c.close()


@pytest.mark.parametrize("key", ["k\ud800", "\udcff", "offset:\ud83d"])
def test_a_key_that_is_not_utf8_is_refused_at_set_mark(ch, tmp_path, key):
    tx = ch.transaction()
    tx.begin()
    with pytest.raises(ValueError, match="mark key") as err:
        tx.set_mark(key, 1)
    assert repr(key) in str(err.value)
    # the transaction is still usable and commits without the bad mark
    tx.set_mark("good", 7)
    tx.put(Event(b"x"))
    tx.commit()
    tx.close()
    assert ch.marks == {"good": 7}
    assert ch.size == 1
    ch.close()
    again = FileChannel(tmp_path / "ck", [tmp_path / "d0"], capacity=100,
                        transaction_capacity=10)
    try:
        assert again.marks == {"good": 7} and again.size == 1
    finally:
        again.close()


def test_a_key_that_is_not_utf8_is_refused_in_a_take_transaction(ch):
    with ch.transaction() as tx:
        tx.put(Event(b"x"))
    tx = ch.transaction()
    tx.begin()
    assert tx.take().body == b"x"
    with pytest.raises(ValueError, match="k\\\\ud800"):
        tx.set_mark("k\ud800", 1)
    tx.commit()
    tx.close()
    assert ch.size == 0 and ch.marks == {}

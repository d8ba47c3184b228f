"""The spoolers' shared batch state (integrations/_spool.py), without a broker."""
from __future__ import annotations

import pytest
from fchannel.integrations._spool import SpoolState

from fchannel import Event, FileChannel


@pytest.fixture
def full(tmp_path):
    """A full FileChannel (capacity 2) and a SpoolState on it."""
    ch = FileChannel(tmp_path / "ck", [tmp_path / "d"], capacity=2, transaction_capacity=2,
                     keep_alive=0, minimum_required_space=0)
    try:
        with ch.transaction() as tx:
            tx.put_batch([Event(b"a"), Event(b"b")])
        yield ch, SpoolState(ch, batch_size=10, batch_duration=0.0, max_backoff=0.01)
    finally:
        ch.close()


def test_a_rebalance_that_empties_a_batch_held_for_a_full_channel_resumes_fetching(full):
    # the channel is full, the batch in hand waits for room; a rebalance then
    # revokes its partition: with nothing held, the spooler must take records
    # again (it used to stay "full" and paused for good)
    _, st = full
    assert st.add(("t", 0), 5, lambda: Event(b"c"))
    assert st.commit() is None and st.full and st.room() == 0
    st.revoke([("t", 0)])
    assert not st.full and st.room() == 10
    assert st.add(("t", 1), 0, lambda: Event(b"d"))   # fetching goes on


def test_a_retried_commit_transforms_the_records_own_events_once(full):
    # the agent's interceptors run as the batch's transform: a commit retried
    # after a full channel must not run them on what the first try made
    ch, st = full
    st.add(("t", 0), 0, lambda: Event(b"x"))
    st.add(("t", 0), 1, lambda: Event(b"y"))

    def tag(events):   # an interceptor that drops y and changes x
        return [Event(b"seen-" + e.body) for e in events if e.body != b"y"]

    assert st.commit(tag) is None                  # full: the batch stays in hand
    with ch.transaction() as tx:
        assert len(tx.take_batch(2)) == 2          # room again
    assert st.commit(tag) == (2, {("t", 0): 2})
    with ch.transaction() as tx:
        assert [e.body for e in tx.take_batch(2)] == [b"seen-x"]

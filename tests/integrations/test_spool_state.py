"""The spoolers' shared batch state (integrations/_spool.py), without a broker."""
from __future__ import annotations

from fchannel.integrations._spool import SpoolState

from fchannel import Event, FileChannel


def test_a_rebalance_that_empties_a_batch_held_for_a_full_channel_resumes_fetching(tmp_path):
    # the channel is full, the batch in hand waits for room; a rebalance then
    # revokes its partition: with nothing held, the spooler must take records
    # again (it used to stay "full" and paused for good)
    ch = FileChannel(tmp_path / "ck", [tmp_path / "d"], capacity=2, transaction_capacity=2,
                     keep_alive=0, minimum_required_space=0)
    try:
        with ch.transaction() as tx:
            tx.put_batch([Event(b"a"), Event(b"b")])
        st = SpoolState(ch, batch_size=10, batch_duration=0.0, max_backoff=0.01)
        assert st.add(("t", 0), 5, lambda: Event(b"c"))
        assert st.commit() is None and st.full and st.room() == 0
        st.revoke([("t", 0)])
        assert not st.full and st.room() == 10
        assert st.add(("t", 1), 0, lambda: Event(b"d"))   # fetching goes on
    finally:
        ch.close()

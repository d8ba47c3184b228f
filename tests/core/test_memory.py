import threading
import time

import pytest

from fchannel import ChannelClosedError, ChannelFullError, ConfigError, Event, MemoryChannel
from tests.channels import move_concurrently


def ev(i):
    return Event(b"%d" % i)


def test_defaults_follow_flume():
    ch = MemoryChannel()
    assert (ch.capacity, ch.transaction_capacity) == (100, 100)
    assert ch.remaining == 100 and ch.fill_percentage == 0.0


def test_full_channel_waits_keep_alive_then_raises():
    ch = MemoryChannel(capacity=2, transaction_capacity=2, keep_alive=0.2)
    with ch.transaction() as tx:
        tx.put_batch([ev(1), ev(2)])
    t0 = time.monotonic()
    with pytest.raises(ChannelFullError, match="capacity=2"), ch.transaction() as tx:
        tx.put(ev(3))
    assert time.monotonic() - t0 >= 0.19
    assert ch.size == 2


def test_commit_waits_for_room_freed_by_a_take():
    ch = MemoryChannel(capacity=1, transaction_capacity=1, keep_alive=5)
    with ch.transaction() as tx:
        tx.put(ev(1))
    taken = threading.Event()

    def consumer():
        time.sleep(0.1)
        with ch.transaction() as tx:
            tx.take()
        taken.set()

    t = threading.Thread(target=consumer)
    t.start()
    with ch.transaction() as tx:
        tx.put(ev(2))
    t.join(5)
    assert taken.is_set()
    with ch.transaction() as tx:
        assert tx.take() == ev(2)


def test_take_waits_keep_alive_for_an_event():
    ch = MemoryChannel(keep_alive=5)

    def producer():
        time.sleep(0.1)
        with ch.transaction() as tx:
            tx.put(ev(7))

    t = threading.Thread(target=producer)
    t.start()
    with ch.transaction() as tx:
        assert tx.take() == ev(7)
    t.join(5)
    quick = MemoryChannel(keep_alive=0.05)
    t0 = time.monotonic()
    with quick.transaction() as tx:
        assert tx.take() is None
    assert 0.04 <= time.monotonic() - t0 < 2


def test_taken_slots_stay_used_until_commit():
    ch = MemoryChannel(capacity=2, transaction_capacity=2, keep_alive=0)
    with ch.transaction() as tx:
        tx.put_batch([ev(1), ev(2)])
    tx = ch.transaction()
    tx.begin()
    tx.take()
    assert ch.size == 1 and ch.remaining == 0
    with pytest.raises(ChannelFullError), ch.transaction() as t2:
        t2.put(ev(3))
    tx.commit()
    tx.close()
    assert ch.remaining == 1


def test_byte_capacity_with_buffer_percentage():
    # 1000 bytes less 20% for headers leaves 800 bytes of body
    ch = MemoryChannel(capacity=100, byte_capacity=1000, keep_alive=0)
    with ch.transaction() as tx:
        tx.put(Event(b"x" * 800))
    with pytest.raises(ChannelFullError, match="byte_capacity"), ch.transaction() as tx:
        tx.put(Event(b"y"))
    with ch.transaction() as tx:
        tx.take()
    with ch.transaction() as tx:
        tx.put(Event(b"y" * 800))
    assert ch.counters["channel_bytes"] == 800


def test_counters_follow_flume_semantics():
    ch = MemoryChannel(keep_alive=0)
    with ch.transaction() as tx:
        tx.put(ev(1))
        tx.put(ev(2))
    with pytest.raises(RuntimeError), ch.transaction() as tx:
        tx.put(ev(3))
        raise RuntimeError
    with ch.transaction() as tx:
        tx.take()
        tx.take()
        tx.take()   # empty: an attempt, no success
    c = ch.counters
    assert c["event_put_attempt_count"] == 3
    assert c["event_put_success_count"] == 2
    assert c["event_take_attempt_count"] == 3
    assert c["event_take_success_count"] == 2
    assert c["rollback_count"] == 1 and c["commit_count"] == 2
    assert c["channel_size"] == 0 and c["channel_fill_percentage"] == 0.0


def test_closed_channel_refuses_work():
    ch = MemoryChannel()
    tx = ch.transaction()
    tx.begin()
    ch.close()
    ch.close()  # idempotent
    with pytest.raises(ChannelClosedError):
        tx.put(ev(1))
    tx.rollback()
    tx.close()
    with pytest.raises(ChannelClosedError):
        ch.transaction()


@pytest.mark.parametrize("kwargs,needle", [
    ({"capacity": 0}, "capacity"),
    ({"capacity": "lots"}, "'lots'"),
    ({"capacity": 10, "transaction_capacity": 11}, "transaction_capacity (11)"),
    ({"keep_alive": -1}, "keep_alive"),
    ({"byte_capacity": -5}, "byte_capacity"),
    ({"byte_capacity_buffer_percentage": 100}, "byte_capacity_buffer_percentage"),
])
def test_bad_settings_name_field_and_value(kwargs, needle):
    with pytest.raises(ConfigError) as ei:
        MemoryChannel(**kwargs)
    assert needle in str(ei.value)


def test_from_properties_uses_flume_names():
    ch = MemoryChannel.from_properties({"type": "memory", "capacity": "500",
                                        "transactionCapacity": "50", "keep-alive": "1"})
    assert (ch.capacity, ch.transaction_capacity) == (500, 50)
    with pytest.raises(ConfigError, match="capacityy"):
        MemoryChannel.from_properties({"capacityy": "5"})


def test_many_producers_and_consumers_move_every_event_once():
    total, producers, consumers = 100_000, 8, 8
    ch = MemoryChannel(capacity=10_000, transaction_capacity=100, keep_alive=0.01)
    per = total // producers
    taken, errors, alive = move_concurrently(ch, producers=producers, per=per, put_batch=100,
                                             consumers=consumers, take_batch=100)
    assert not errors
    assert not alive
    assert len(taken) == total
    assert set(taken) == {b"%d-%d" % (p, i) for p in range(producers) for i in range(per)}

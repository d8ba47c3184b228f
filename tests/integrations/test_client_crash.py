"""The confluent-kafka and aiokafka spoolers under SIGKILL, as
test_kafka_crash.py does for kafka-python: killed five times (in the window
between the channel commit and the Kafka commit, and at random moments while
spooling), the channel ends up with every message exactly once in partition
order; two spoolers in one group, one killed, together hold everything."""
from __future__ import annotations

import os
import random
import time

import pytest

from tests.conftest import wait_for
from tests.helpers import Child
from tests.integrations.test_kafka_crash import (
    _assigned,
    _by_partition,
    _committed,
    _read_channel,
)

pytestmark = pytest.mark.crash

CHILD = "from tests.integrations.client_spool_child import main; main()"
CLIENTS = ["confluent", "aiokafka"]


def _spooler(client, kafka, topic, group, root, mode, batch_size, target=None):
    args = [client, kafka.bootstrap, topic, group, str(root), mode, str(batch_size)]
    if target is not None:
        args.append(str(target))
    return Child(CHILD, *args)


@pytest.mark.parametrize("client", CLIENTS)
def test_sigkill_spooler_five_times_exactly_once(client, kafka, tmp_path):
    """Five spooling processes (``FCHANNEL_SPOOL_KILLS``) are SIGKILLed: odd
    rounds exactly between the channel commit and the Kafka commit, even
    rounds at a random moment while they spool; new messages arrive before each round. A last process
    spools the rest: the channel holds every message once, in partition
    order, and the marks are at the end of every partition."""
    seed = int(os.environ.get("FCHANNEL_TEST_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    print(f"seed={seed}")
    # FCHANNEL_SPOOL_KILLS=50 (say) runs a longer variant
    parts, chunk, rounds = 3, 450, int(os.environ.get("FCHANNEL_SPOOL_KILLS", "5"))
    topic = kafka.create_topic(partitions=parts)
    sent = 0

    def produce(count):
        nonlocal sent
        kafka.produce(topic, [(i % parts, None, f"{i % parts}:{i // parts}".encode())
                              for i in range(sent, sent + count)])
        sent += count
    group = kafka.name("g")
    root = tmp_path / "spool"
    for round_ in range(rounds):
        produce(chunk)
        mode = "window" if round_ % 2 == 0 else "random"
        child = _spooler(client, kafka, topic, group, root, mode, rng.randint(5, 40))
        try:
            child.expect("ready", 30)
            if mode == "window":
                child.expect("between-commits", 60)
            else:
                child.expect("size", 60)
                time.sleep(rng.uniform(0, 0.2))
        finally:
            child.kill()
    produce(chunk)
    n, per_part = sent, sent // parts
    child = _spooler(client, kafka, topic, group, root, "finish", 50, target=n)
    try:
        done = child.expect("done", 120)
        code, err = child.finish()
    finally:
        child.kill()
    assert code == 0, err
    assert done == f"done {n}"
    events, marks = _read_channel(root)
    assert len(events) == n
    for p, evs in _by_partition(events).items():
        assert [int(e.headers["offset"]) for e in evs] == list(range(per_part))
        assert [e.body for e in evs] == [f"{p}:{i}".encode() for i in range(per_part)]
        assert marks[f"kafka:{topic}:{p}"] == per_part


@pytest.mark.parametrize("client", CLIENTS)
def test_two_spoolers_one_killed_union_holds_everything(client, kafka, tmp_path):
    """Two spooling processes with their own channels in one group split the
    partitions; A is SIGKILLed mid-stream and B takes its partitions over.
    The union of both channels holds every message; each channel alone has
    no duplicate and keeps partition order."""
    parts, chunk = 4, 400
    topic = kafka.create_topic(partitions=parts)
    sent = 0

    def produce():
        nonlocal sent
        kafka.produce(topic, [(i % parts, None, f"m{i}".encode())
                              for i in range(sent, sent + chunk)])
        sent += chunk
    group = kafka.name("g")
    a = _spooler(client, kafka, topic, group, tmp_path / "a", "run", 10)
    b = None
    try:
        a.expect("ready", 30)
        _assigned(a, parts)
        produce()
        a.expect("size", 30)
        b = _spooler(client, kafka, topic, group, tmp_path / "b", "run", 10)
        b.expect("ready", 30)
        got_b = _assigned(b, 2)
        got_a = _assigned(a, 2)
        assert got_a.isdisjoint(got_b) and len(got_a | got_b) == parts
        produce()
        b.expect("size", 30)
        a.expect("size", 30)
        a.kill()
        produce()
        assert len(_assigned(b, parts)) == parts
        ends = sent // parts
        wait_for(lambda: all(v == ends for v in _committed(kafka, group, topic, parts).values()),
                 90, interval=0.2, what="the group to have spooled every partition")
        code, err = b.finish()
        assert code == 0, err
    finally:
        a.kill()
        if b is not None:
            b.kill()
    ev_a, _ = _read_channel(tmp_path / "a")
    ev_b, marks_b = _read_channel(tmp_path / "b")
    for events in (ev_a, ev_b):
        for evs in _by_partition(events).values():
            offs = [int(e.headers["offset"]) for e in evs]
            assert offs == sorted(set(offs))
    seen = {(int(e.headers["partition"]), int(e.headers["offset"])) for e in ev_a + ev_b}
    assert seen == {(p, o) for p in range(parts) for o in range(ends)}
    assert all(marks_b[f"kafka:{topic}:{p}"] == ends for p in range(parts))

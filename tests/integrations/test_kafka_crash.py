"""SIGKILL the spooling process at random points and in the window between
the channel commit and the Kafka offset commit: after a restart the channel
holds every message exactly once, in partition order. Two spoolers in one
group split the partitions and, when one dies, the other takes its
partitions over with nothing lost.

The two scenarios (``sigkill_rounds``, ``two_spoolers_one_killed``) serve
every client: test_client_crash.py runs them for confluent-kafka and aiokafka.
"""
from __future__ import annotations

import os
import random
import time

import pytest

from fchannel import FileChannel
from tests.conftest import wait_for
from tests.helpers import Child

pytestmark = pytest.mark.crash

CHILD = "from tests.integrations.client_spool_child import main; main()"


def spooler(client, kafka, topic, group, root, mode, batch_size, target=None):
    """A child process spooling *topic* with *client*'s spooler (see
    client_spool_child.py for its argv and the lines it prints)."""
    args = [client, kafka.bootstrap, topic, group, str(root), mode, str(batch_size)]
    if target is not None:
        args.append(str(target))
    return Child(CHILD, *args)


def read_channel(root):
    ch = FileChannel(os.path.join(root, "ckpt"), os.path.join(root, "data"),
                     minimum_required_space=0)
    try:
        out = []
        while True:
            with ch.transaction() as tx:
                got = tx.take_batch(1000)
            if not got:
                return out, ch.marks
            out.extend(got)
    finally:
        ch.close()


def by_partition(events):
    parts: dict[int, list] = {}
    for e in events:
        parts.setdefault(int(e.headers["partition"]), []).append(e)
    return parts


def assigned(child, want: int, timeout: float = 60) -> set:
    """Read ``assigned`` lines until one names *want* partitions."""
    deadline = time.monotonic() + timeout
    while True:
        line = child.expect("assigned", max(0.1, deadline - time.monotonic()))
        got = {p for p in line.split(" ", 1)[1].split(",") if p} if " " in line else set()
        if len(got) == want:
            return got


def sigkill_rounds(client, kafka, tmp_path, *, parts: int, chunk: int, rounds: int) -> None:
    """*rounds* spooling processes are SIGKILLed: even rounds exactly between
    the channel commit and the Kafka commit, odd ones at a random moment while
    they spool; *chunk* new messages arrive before each round. A last process
    spools the rest: the channel holds every message once, in partition
    order, and the marks are at the end of every partition."""
    seed = int(os.environ.get("FCHANNEL_TEST_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    print(f"seed={seed}")
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
        child = spooler(client, kafka, topic, group, root, mode, rng.randint(5, 40))
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
    child = spooler(client, kafka, topic, group, root, "finish", 50, target=n)
    try:
        done = child.expect("done", 120)
        code, err = child.finish()
    finally:
        child.kill()
    assert code == 0, err
    assert done == f"done {n}"
    events, marks = read_channel(root)
    assert len(events) == n
    for p, evs in by_partition(events).items():
        assert [int(e.headers["offset"]) for e in evs] == list(range(per_part))
        assert [e.body for e in evs] == [f"{p}:{i}".encode() for i in range(per_part)]
        assert marks[f"kafka:{topic}:{p}"] == per_part


def two_spoolers_one_killed(client, kafka, tmp_path) -> None:
    """Two spooling processes, each with its own channel, in one group: they
    split the partitions; A is killed mid-stream and B takes its partitions
    over. Together the channels hold every message; each channel alone has no
    duplicate and keeps partition order."""
    parts, chunk = 4, 400
    topic = kafka.create_topic(partitions=parts)
    sent = 0

    def produce():
        nonlocal sent
        kafka.produce(topic, [(i % parts, None, f"m{i}".encode())
                              for i in range(sent, sent + chunk)])
        sent += chunk
    group = kafka.name("g")
    a = spooler(client, kafka, topic, group, tmp_path / "a", "run", 10)
    b = None
    try:
        a.expect("ready", 30)
        assigned(a, parts)
        produce()
        a.expect("size", 30)
        b = spooler(client, kafka, topic, group, tmp_path / "b", "run", 10)
        b.expect("ready", 30)
        got_b = assigned(b, 2)
        got_a = assigned(a, 2)
        assert got_a.isdisjoint(got_b) and len(got_a | got_b) == parts
        produce()                      # both spool their half ...
        b.expect("size", 30)
        a.expect("size", 30)
        a.kill()                       # ... and A dies in the middle
        produce()
        assert len(assigned(b, parts)) == parts   # B takes A's partitions over
        ends = sent // parts
        wait_for(lambda: all(v == ends for v in kafka.committed(group, topic, parts).values()),
                 90, interval=0.2, what="the group to have spooled every partition")
        code, err = b.finish()
        assert code == 0, err
    finally:
        a.kill()
        if b is not None:
            b.kill()
    ev_a, _ = read_channel(tmp_path / "a")
    ev_b, marks_b = read_channel(tmp_path / "b")
    for events in (ev_a, ev_b):    # each channel: no duplicates, partition order
        for evs in by_partition(events).values():
            offs = [int(e.headers["offset"]) for e in evs]
            assert offs == sorted(set(offs))
    seen = {(int(e.headers["partition"]), int(e.headers["offset"])) for e in ev_a + ev_b}
    assert seen == {(p, o) for p in range(parts) for o in range(ends)}   # nothing lost
    assert all(marks_b[f"kafka:{topic}:{p}"] == ends for p in range(parts))


def test_sigkill_spooler_repeatedly_exactly_once(kafka, tmp_path):
    """Six kafka-python spooling processes are killed with SIGKILL, three
    exactly between the channel commit and the Kafka commit, three at a
    random moment while they spool; new messages arrive before each round. A
    last process spools the rest: the channel holds every message once, in
    partition order."""
    sigkill_rounds("kafka", kafka, tmp_path, parts=3, chunk=600, rounds=6)


def test_two_spoolers_split_partitions_and_survive_one_death(kafka, tmp_path):
    """Two kafka-python spooling processes in one group split the partitions;
    when one is killed the other takes its partitions over. Together the
    channels hold every message (each channel once, in partition order); only
    what the dead one had not committed to Kafka may be in both."""
    two_spoolers_one_killed("kafka", kafka, tmp_path)

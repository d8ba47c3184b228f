"""A producing process for the SpooledProducer tests: ``main()`` reads
``client bootstrap topic channel_dir mode count parts [pace]`` from argv
(client: ``kafka``, ``confluent`` or ``aiokafka``) and prints:

- ``ready`` once the SpooledProducer runs;
- ``sent I`` each time ``send`` of record I returned (mode ``send``: records
  0..count-1, value ``b"I"``, key ``k<I % parts>``, partition ``I % parts``,
  a header ``n = I``; *pace* seconds between sends);
- ``done B failed_batches=F`` after ``flush()`` returned with backlog B (mode ``send`` after
  the last send; mode ``drain`` sends nothing and only flushes what the
  channel holds from an earlier run).
"""
from __future__ import annotations

import logging
import os
import sys
import time


def _channel(root: str):
    from fchannel import FileChannel
    return FileChannel(os.path.join(root, "ckpt"), os.path.join(root, "data"),
                       minimum_required_space=0, checkpoint_interval=1.0)


def _record(i: int, parts: int) -> dict:
    return dict(value=str(i).encode(), key=f"k{i % parts}".encode(), partition=i % parts,
                headers=[("n", str(i).encode())])


def run_sync(client, bootstrap, topic, root, mode, count, parts, pace) -> None:
    ch = _channel(root)
    if client == "kafka":
        from fchannel.integrations.kafka import SpooledProducer
        from kafka import KafkaProducer
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                 enable_idempotence=False,
                                 max_in_flight_requests_per_connection=1,
                                 request_timeout_ms=2000, delivery_timeout_ms=4000,
                                 max_block_ms=2000, reconnect_backoff_max_ms=500,
                                 metadata_max_age_ms=2000, api_version=(2, 8, 0))
        sp = SpooledProducer(producer, ch, batch_size=200, max_backoff=0.5)

        def send(i):
            sp.send(topic, **_record(i, parts))
    else:
        from fchannel.integrations.confluent import SpooledProducer as CSP
        sp = CSP({"bootstrap.servers": bootstrap, "message.timeout.ms": 4000,
                  "reconnect.backoff.max.ms": 500, "topic.metadata.refresh.interval.ms": 2000,
                  "log_level": 0}, ch, batch_size=200, max_backoff=0.5)

        def send(i):
            r = _record(i, parts)
            sp.produce(topic, value=r["value"], key=r["key"], partition=r["partition"],
                       headers=r["headers"])
    print("ready", flush=True)
    if mode == "send":
        for i in range(count):
            send(i)
            print(f"sent {i}", flush=True)
            if pace:
                time.sleep(pace)
    left = sp.flush(180)
    sp.close(5)
    if client == "kafka":
        producer.close(5)
    ch.close()
    print(f"done {left} failed_batches={sp.stats['failed_batches']}", flush=True)


def run_aiokafka(bootstrap, topic, root, mode, count, parts, pace) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer
    from fchannel.integrations.aiokafka import SpooledProducer

    async def main() -> None:
        ch = _channel(root)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    request_timeout_ms=3000, retry_backoff_ms=200,
                                    metadata_max_age_ms=2000, api_version=(2, 8, 0))
        sp = SpooledProducer(producer, ch, batch_size=200, max_backoff=0.5)
        await sp.start()      # sends are durable at once; delivery waits for the producer

        async def start_producer() -> None:
            while True:   # aiokafka's start() needs the broker: retry until it answers
                try:
                    await producer.start()
                    return
                except Exception as exc:   # KafkaConnectionError and the like
                    logging.info("producer start failed (%s); retrying", exc)
                    await asyncio.sleep(0.5)
        starting = asyncio.get_running_loop().create_task(start_producer())
        print("ready", flush=True)
        if mode == "send":
            for i in range(count):
                await sp.send(topic, **_record(i, parts))
                print(f"sent {i}", flush=True)
                if pace:
                    await asyncio.sleep(pace)
        await starting
        left = await sp.flush(180)
        await sp.stop(5)
        await producer.stop()
        ch.close()
        print(f"done {left} failed_batches={sp.stats['failed_batches']}", flush=True)

    asyncio.run(main())


def main() -> None:
    client, bootstrap, topic, root, mode, count, parts = sys.argv[1:8]
    pace = float(sys.argv[8]) if len(sys.argv) > 8 else 0.0
    os.makedirs(root, exist_ok=True)
    logging.basicConfig(filename=os.path.join(root, f"child-{os.getpid()}.log"),
                        level=logging.INFO,
                        format="%(asctime)s %(threadName)s %(name)s %(message)s")
    if client == "aiokafka":
        run_aiokafka(bootstrap, topic, root, mode, int(count), int(parts), pace)
    else:
        run_sync(client, bootstrap, topic, root, mode, int(count), int(parts), pace)


if __name__ == "__main__":
    main()

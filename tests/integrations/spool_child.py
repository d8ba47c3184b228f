"""A spooling process for the crash tests: ``main()`` reads its settings from
argv (bootstrap topic group channel_dir mode batch_size [target]) and prints
progress lines the parent waits for:

- ``assigned t:p,...`` after every partition assignment,
- ``size N`` after every batch committed to the channel,
- ``between-commits`` (mode ``window``): the channel has committed a batch and
  the Kafka offset commit is about to start; the child then hangs there so the
  parent can kill it in exactly that window,
- ``done N`` (mode ``finish``): the channel holds ``target`` events; the
  spooler stopped cleanly and the channel is closed.

Closing the child's stdin stops it cleanly in every mode.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time


def main() -> None:
    bootstrap, topic, group, root, mode, batch_size = sys.argv[1:7]
    target = int(sys.argv[7]) if len(sys.argv) > 7 else None
    os.makedirs(root, exist_ok=True)
    logging.basicConfig(filename=os.path.join(root, f"child-{os.getpid()}.log"),
                        level=getattr(logging, os.environ.get("SPOOL_CHILD_LOG", "INFO")),
                        format="%(asctime)s %(threadName)s %(name)s %(message)s")
    from fchannel.integrations.kafka import KafkaSpooler
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    from fchannel import FileChannel

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
            print("between-commits", flush=True)
            time.sleep(3600)          # the parent kills us here
            return plain_commit(offsets, **kw)
        consumer.commit = commit

    ch = FileChannel(os.path.join(root, "ckpt"), os.path.join(root, "data"),
                     minimum_required_space=0, checkpoint_interval=0.5)
    sp = KafkaSpooler(consumer, ch, topics=[topic], listener=Report(),
                      batch_size=int(batch_size), batch_duration=0.05)

    def watch_stdin():
        sys.stdin.read()
        sp.stop()
    threading.Thread(target=watch_stdin, daemon=True).start()

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
    consumer.close()


if __name__ == "__main__":
    main()

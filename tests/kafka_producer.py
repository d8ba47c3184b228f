"""A background producer for the crash tests of the stream-processor
integrations (Faust, Quix): values ``m<i>`` to partition ``i % partitions``
at a steady rate, held mid-stream until the test releases it."""
from __future__ import annotations

import threading
import time


class Producer(threading.Thread):
    """Produce *n* values ``m<i>`` to partition ``i % partitions`` at about
    *rate* messages per second (acks=all), in the background; after *hold*
    messages it waits for :meth:`release`, so whatever the test does before
    releasing happens mid-stream however slow the machine is."""

    def __init__(self, kafka, topic: str, n: int, partitions: int, rate: float,
                 hold: int) -> None:
        super().__init__(daemon=True)
        self.kafka, self.topic, self.n, self.partitions, self.rate = \
            kafka, topic, n, partitions, rate
        self.hold = hold
        self._released = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    @property
    def holding(self) -> bool:
        """Waiting at *hold* for :meth:`release`."""
        return self.sent >= self.hold and not self._released.is_set()

    def release(self) -> None:
        self._released.set()

    def run(self) -> None:
        from kafka import KafkaProducer
        try:
            p = KafkaProducer(bootstrap_servers=self.kafka.bootstrap, acks="all")
            try:
                start = time.monotonic()
                chunk = 20
                for first in range(0, self.n, chunk):
                    futures = [p.send(self.topic, value=b"m%d" % i, partition=i % self.partitions)
                               for i in range(first, min(first + chunk, self.n))]
                    p.flush(30)
                    for f in futures:
                        f.get(30)
                    self.sent = min(first + chunk, self.n)
                    if self.sent >= self.hold and not self._released.is_set():
                        if not self._released.wait(120):
                            raise TimeoutError("the test never released the producer")
                        start = time.monotonic() - self.sent / self.rate
                    ahead = start + self.sent / self.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            finally:
                p.close()
        except BaseException as exc:   # reported by the test
            self.error = exc

    def expected(self) -> set[tuple[int, int]]:
        """(partition, offset) of every message (offsets count from 0 per partition)."""
        return {(p, o) for p in range(self.partitions)
                for o in range(len(range(p, self.n, self.partitions)))}

    def finish(self, timeout: float = 60.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "producer did not finish"
        if self.error:
            raise self.error

"""Child process of the SIGKILL test: logs numbered records through a
ChannelHandler into a FileChannel and writes its progress to a file.

Usage: ``python -m tests.logging_handler.log_child DIR PROGRESS ROUND``

Records are ``r<ROUND>-<i>``. Progress lines (appended to PROGRESS, each
written with one ``os.write`` after the fact it reports):

- ``flushed <ROUND> <i>``: ``handler.flush()`` returned True after record i
- ``committed <ROUND> <c>``: the committer has committed the first c records
- ``logged <ROUND> <i>``: the logging call of record i returned

Records alternate, 50 at a time, between phases that call ``flush()`` and
phases that leave the commits to the committer's interval (and wait for
them), until the process is killed.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from fchannel.integrations.logging import ChannelHandler

from fchannel import FileChannel


def main() -> None:
    directory, progress, rnd = sys.argv[1], sys.argv[2], sys.argv[3]
    fd = os.open(progress, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def say(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    ch = FileChannel(os.path.join(directory, "checkpoint"), os.path.join(directory, "data"),
                     checkpoint_interval=0.5)
    h = ChannelHandler(ch, flush_interval=0.3, batch_size=40, capacity=1000)
    log = logging.getLogger("app")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(h)
    reported = 0
    i = 0
    while True:
        log.info("r%s-%d", rnd, i)
        say(f"logged {rnd} {i}")
        phase = (i // 50) % 2          # 0: flush() every 7 records, 1: the committer alone
        if phase == 0 and i % 7 == 6:
            if h.flush(10):
                say(f"flushed {rnd} {i}")
        elif phase == 1 and i % 50 == 49:
            # the committer's interval commits this phase without flush()
            deadline = time.monotonic() + 10
            while h.committed < i + 1 and time.monotonic() < deadline:
                time.sleep(0.005)
        c = h.committed
        if c != reported:
            reported = c
            say(f"committed {rnd} {c}")
        i += 1


if __name__ == "__main__":
    main()

"""The process the fault-injection suite kills.

Run as ``python child.py CONFIG_JSON``.  It opens a FileChannel, arranges
for the N-th call among the channel's write and sync sites (``codec.pwrite_all``,
``codec.fdatasync``, ``os.fsync``, ``os.replace``) to fail with EIO or ENOSPC (a
failing pwrite writes half its bytes first), and runs a fixed workload: put
transactions, take transactions (some rolled back), checkpoints, log rolls
(a small max_file_size), GC and a backup checkpoint.  After each transaction
it writes one line on stdout saying what the live channel told it:
``put committed|rolled_back|unknown ids`` or ``take ... ids``.  Then it
prints ``DONE`` and waits to be killed.
"""
from __future__ import annotations

import errno
import json
import os
import sys
import time


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main() -> None:
    cfg = json.loads(sys.argv[1])
    from fchannel import ChannelError, Event, FileChannel
    from fchannel._compat import codec

    calls = [0]
    fail_at = cfg["fail_at"]
    err = errno.ENOSPC if cfg["errno"] == "ENOSPC" else errno.EIO

    def hit() -> bool:
        calls[0] += 1
        return calls[0] == fail_at

    def wrap(owner, name, partial_write=False):
        real = getattr(owner, name)

        def faulty(*args):
            if hit():
                if partial_write:    # fd, data, offset: write half, then fail
                    fd, data, offset = args
                    real(fd, bytes(data)[:len(data) // 2], offset)
                raise OSError(err, os.strerror(err))
            return real(*args)
        setattr(owner, name, faulty)

    ch = FileChannel(cfg["ckpt"], cfg["data"], capacity=400, transaction_capacity=50,
                     max_file_size=6000, checkpoint_interval=3600, keep_alive=0,
                     minimum_required_space=0, backup_checkpoint_dir=cfg["backup"])
    wrap(codec, "pwrite_all", partial_write=True)
    wrap(codec, "fdatasync")
    wrap(os, "fsync")
    wrap(os, "replace")

    def run(kind, ids, body):
        tx = ch.transaction()
        tx.begin()
        try:
            got = body(tx)
            tx.commit()
            outcome = "committed"
        except ChannelError:
            got = ids if kind == "put" else locals().get("got", [])
            try:
                tx.rollback()
                outcome = "rolled_back"
            except ChannelError:
                outcome = "unknown"
        say(f"{kind} {outcome} {','.join(map(str, got))}")

    def put(ids):
        def body(tx):
            tx.put_batch([Event(b"e%d" % i + b"." * 150, {"i": str(i)}) for i in ids])
            return ids
        run("put", ids, body)

    def take(n, roll=False):
        tx = ch.transaction()
        tx.begin()
        got: list[int] = []
        try:
            got = [int(e.headers["i"]) for e in tx.take_batch(n)]
            if roll:
                tx.rollback()
                say(f"take rolled_back {','.join(map(str, got))}")
                return
            tx.commit()
            outcome = "committed"
        except ChannelError:
            try:
                tx.rollback()
                outcome = "rolled_back"
            except ChannelError:
                outcome = "unknown"
        say(f"take {outcome} {','.join(map(str, got))}")

    i = 0
    for step in range(12):
        put(list(range(i, i + 7)))
        i += 7
        take(3, roll=(step % 4 == 1))
        if step % 3 == 2:
            try:
                ch.checkpoint()
            except ChannelError:
                pass
    say(f"calls {calls[0]}")
    say("DONE")
    time.sleep(60)


if __name__ == "__main__":
    main()

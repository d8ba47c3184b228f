"""The process the crash harness kills.

Run as ``python child.py CONFIG_JSON``.  It opens a FileChannel and runs a
random mix of put / take / commit / rollback / checkpoint forever, telling
the parent on stdout what it is about to do and what has been acknowledged:

- ``PUT id,id,...``  a put transaction holding these events is about to commit
- ``TAKE h|t id,...`` a take transaction (``h`` held open across operations,
  ``t`` transient) took these events (not committed yet)
- ``TCOMMIT h|t``    that take transaction is about to commit
- ``TROLLBACK h|t``  that take transaction was rolled back (events back at the head)
- ``OK``             the commit announced last returned (it is acknowledged)
- ``M phase``        a hook: the process is entering a checkpoint, a log roll or a
  log-file deletion (GC) and will pause there briefly so the parent can kill it

Every line is written with one ``os.write`` so lines from the checkpointer
thread never interleave with the main thread's.  The parent only believes
an ``OK``: a commit that was announced but not acknowledged may or may not
have happened.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def event_for(i: int):
    from fchannel import Event
    return Event(b"%d:" % i + b"x" * (i * 7 % 181), {"i": str(i)})


def install_hooks(phase: str, pause: float, rng: random.Random) -> None:
    """Make the instants the parent wants to hit last long enough to be hit."""
    from fchannel.file import checkpoint as ckmod
    from fchannel.file import log as logmod
    from fchannel.file import transaction as chmod

    def nap() -> None:
        time.sleep(rng.random() * pause)

    if phase == "checkpoint":
        orig_finish = ckmod.CheckpointStore.finish
        orig_framed = ckmod.write_framed

        def finish(self, *a, **kw):
            say("M checkpoint")
            nap()
            return orig_finish(self, *a, **kw)

        def framed(*a, **kw):
            nap()
            return orig_framed(*a, **kw)

        ckmod.CheckpointStore.finish = finish
        ckmod.write_framed = framed
    elif phase == "roll":
        orig_roll = logmod.Log._roll

        def roll(self, i, next_woid):
            if self.writers[i] is not None:
                say("M roll")
                nap()
            w = orig_roll(self, i, next_woid)
            nap()
            return w

        logmod.Log._roll = roll
    elif phase == "gc":
        orig_delete = logmod.Log.delete
        orig_unlink = logmod.os.unlink

        def delete(self, file_id):
            say("M gc")
            nap()
            return orig_delete(self, file_id)

        logmod.Log.delete = delete

        class _Os:  # the log module's view of os: unlink pauses between log and .meta
            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def unlink(path):
                orig_unlink(path)
                nap()

        logmod.os = _Os()
    if phase != "none":
        chmod.FLUSH_BYTES = rng.choice([chmod.FLUSH_BYTES, 1500])


def main() -> None:
    cfg = json.loads(sys.argv[1])
    rng = random.Random(cfg["seed"])
    install_hooks(cfg["phase"], cfg["pause"], rng)
    from fchannel import ChannelFullError, FileChannel

    ch = FileChannel(cfg["checkpoint_dir"], cfg["data_dirs"], capacity=cfg["capacity"],
                     transaction_capacity=cfg["capacity"],
                     checkpoint_interval=cfg["checkpoint_interval"],
                     max_file_size=cfg["max_file_size"], minimum_required_space=0,
                     keep_alive=0.0, backup_checkpoint_dir=cfg["backup_dir"],
                     fsync_per_transaction=cfg["fsync_per_transaction"], fsync_interval=0.05,
                     use_fast_replay=cfg["fast"])
    tx = ch.transaction()   # tell the parent what we found, without consuming it
    tx.begin()
    found = tx.take_batch(cfg["capacity"])
    tx.rollback()
    tx.close()
    say("READY %s %s" % (ch.counters["open_mode"], ",".join(e.headers["i"] for e in found)))
    next_id = cfg["first_id"]
    held_put = held_take = None
    held_put_ids: list[int] = []
    low, high = cfg["low"], cfg["high"]
    for _step in range(10_000_000):   # the parent kills us long before this ends
        size = ch.size
        r = rng.random()
        if r < 0.05:
            ch.checkpoint()
        elif r < 0.12:   # a put transaction left open across operations
            if held_put is None:
                held_put = ch.transaction()
                held_put.begin()
                k = rng.randint(1, 8)
                held_put_ids = list(range(next_id, next_id + k))
                next_id += k
                try:
                    held_put.put_batch([event_for(i) for i in held_put_ids])
                except ChannelFullError:
                    held_put.rollback()
                    held_put.close()
                    held_put = None
            else:
                if rng.random() < 0.7:
                    held_put.set_mark("put", held_put_ids[-1])
                    say("PUT " + ",".join(map(str, held_put_ids)))
                    held_put.commit()
                    say("OK")
                else:
                    held_put.rollback()
                held_put.close()
                held_put = None
        elif r < 0.19:   # a take transaction left open across operations
            if held_take is None:
                held_take = ch.transaction()
                held_take.begin()
                got = held_take.take_batch(rng.randint(1, 8))
                if got:
                    say("TAKE h " + ",".join(e.headers["i"] for e in got))
                    held_take.set_mark("take", int(got[-1].headers["i"]))
                else:
                    held_take.rollback()
                    held_take.close()
                    held_take = None
            else:
                if rng.random() < 0.6:
                    say("TCOMMIT h")
                    held_take.commit()
                    say("OK")
                else:
                    held_take.rollback()
                    say("TROLLBACK h")
                held_take.close()
                held_take = None
        elif r < 0.6 if size < low else (r < 0.4 if size < high else r < 0.25):
            k = rng.randint(1, 12)
            ids = list(range(next_id, next_id + k))
            next_id += k
            tx = ch.transaction()
            tx.begin()
            try:
                tx.put_batch([event_for(i) for i in ids])
            except ChannelFullError:
                tx.rollback()
                tx.close()
                continue
            if rng.random() < 0.8:
                tx.set_mark("put", ids[-1])
                say("PUT " + ",".join(map(str, ids)))
                tx.commit()
                say("OK")
            else:
                tx.rollback()
            tx.close()
        else:
            tx = ch.transaction()
            tx.begin()
            got = tx.take_batch(rng.randint(1, 12))
            if got:
                for e in got:
                    if e != event_for(int(e.headers["i"])):
                        raise AssertionError(f"event {e!r} was changed")
                say("TAKE t " + ",".join(e.headers["i"] for e in got))
                if rng.random() < 0.75:
                    tx.set_mark("take", int(got[-1].headers["i"]))
                    say("TCOMMIT t")
                    tx.commit()
                    say("OK")
                else:
                    tx.rollback()
                    say("TROLLBACK t")
            else:
                tx.commit()
            tx.close()
        if cfg["op_sleep"]:
            time.sleep(rng.random() * cfg["op_sleep"])


if __name__ == "__main__":
    main()

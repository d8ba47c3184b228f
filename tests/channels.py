"""Channel factories shared by the tests: every channel must pass the same
transaction and semantics tests."""
from __future__ import annotations

from fchannel import FileChannel, MemoryChannel


def make_memory(tmp_path, **kw):
    kw.setdefault("capacity", 1000)
    kw.setdefault("transaction_capacity", 100)
    kw.setdefault("keep_alive", 0.05)
    return MemoryChannel(**kw)


def make_file(tmp_path, **kw):
    kw.setdefault("capacity", 1000)
    kw.setdefault("transaction_capacity", 100)
    kw.setdefault("keep_alive", 0.05)
    kw.setdefault("minimum_required_space", 0)
    kw.setdefault("checkpoint_interval", 3600)
    return FileChannel(tmp_path / "checkpoint", [tmp_path / "data1", tmp_path / "data2"], **kw)


FACTORIES = {"memory": make_memory, "file": make_file}


def open_channel(path, **kw):
    """A FileChannel in *path* (``checkpoint``, ``data``) for the integration
    unit tests: no timed checkpoint, transactions of up to 100 events."""
    kw.setdefault("checkpoint_interval", 3600)
    kw.setdefault("transaction_capacity", min(100, kw.get("capacity", 100)))
    return FileChannel(str(path / "checkpoint"), str(path / "data"), **kw)


def take_all(ch):
    """Take and commit everything *ch* holds, a transaction_capacity at a time."""
    out = []
    for _ in range(1000):
        with ch.transaction() as tx:
            got = tx.take_batch(ch.transaction_capacity)
        if not got:
            return out
        out.extend(got)
    raise AssertionError("channel did not empty")


def move_concurrently(ch, *, producers: int, per: int, put_batch: int, consumers: int,
                      take_batch: int, roll_back_every: int = 0, timeout: float = 60.0):
    """Producer threads put ``per`` events each (``b"p-i"``) in batches,
    retrying while the channel is full, as a source runner does; consumer
    threads take until the producers are done and the channel is empty,
    consumer c rolling back its round r when ``r % roll_back_every == c``.
    Returns ``(bodies taken, errors, threads still alive)``."""
    import threading
    import time

    from fchannel import ChannelFullError, Event

    taken: list[bytes] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    done = threading.Event()
    deadline = time.monotonic() + timeout

    def produce(p):
        try:
            for k in range(0, per, put_batch):
                batch = [Event(b"%d-%d" % (p, i)) for i in range(k, min(k + put_batch, per))]
                while True:
                    try:
                        with ch.transaction() as tx:
                            tx.put_batch(batch)
                        break
                    except ChannelFullError:
                        if time.monotonic() > deadline:
                            raise AssertionError("the channel stayed full") from None
        except Exception as exc:  # pragma: no cover - reported to the test
            errors.append(exc)

    def consume(c):
        try:
            rounds = 0
            while time.monotonic() < deadline:
                rounds += 1
                with ch.transaction() as tx:
                    got = tx.take_batch(take_batch)
                    if got and roll_back_every and rounds % roll_back_every == c:
                        tx.rollback()
                        continue
                if got:
                    with lock:
                        taken.extend(e.body for e in got)
                elif done.is_set() and ch.size == 0:
                    return
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    ps = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    cs = [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
    for t in ps + cs:
        t.start()
    for t in ps:
        t.join(timeout)
    done.set()
    for t in cs:
        t.join(timeout)
    return taken, errors, [t for t in ps + cs if t.is_alive()]

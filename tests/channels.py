"""Channel factories shared by the tests: every channel must pass the same
transaction and semantics tests."""
from __future__ import annotations

from fchannel import MemoryChannel


def make_memory(tmp_path, **kw):
    kw.setdefault("capacity", 1000)
    kw.setdefault("transaction_capacity", 100)
    kw.setdefault("keep_alive", 0.05)
    return MemoryChannel(**kw)


FACTORIES = {"memory": make_memory}

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

"""The ``hdfs`` sink on a renaming fsspec filesystem (``memory://`` and a
WebHDFS-like one whose rename onto an existing name quietly does nothing)."""
from __future__ import annotations

import itertools
import os

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from fchannel.agent import EventDeliveryError
from fchannel.sinks._serializers import read_back
from tests.sinks.helpers import channel, drain, kafka_events, make_sink, put

_n = itertools.count()


class QuietRenameFS(MemoryFileSystem):
    """Like WebHDFS through fsspec: a rename onto an existing path answers
    false, which nobody checks; ``fail_mv`` makes every rename raise."""

    protocol = ("quietfs",)
    fail_mv = False
    race: dict[str, bytes] = {}   # path -> data a rival writes just before our rename

    @classmethod
    def _strip_protocol(cls, path):
        if path.startswith("quietfs://"):
            path = path[len("quietfs://"):]
        return super()._strip_protocol(path)

    def mv(self, path1, path2, **kw):
        if self.fail_mv:
            raise OSError("injected rename failure")
        if path2 in self.race:
            self.pipe(path2, self.race.pop(path2))
        if self.exists(path2):
            return False
        return super().mv(path1, path2, **kw)


fsspec.register_implementation("quietfs", QuietRenameFS, clobber=True)


@pytest.fixture
def root():
    r = f"/fchannel-{os.getpid()}-{next(_n)}"
    yield r
    fs = MemoryFileSystem()
    if fs.exists(r):
        fs.rm(r, recursive=True)


def props(url: str, **kw: str) -> dict[str, str]:
    p = {"hdfs.path": url, "hdfs.rollInterval": "0", "hdfs.rollSize": "0",
         "hdfs.rollCount": "10", "hdfs.timeZone": "UTC"}
    p.update(kw)
    return p


def listing(root: str) -> list[str]:
    fs = MemoryFileSystem()
    return sorted(p.rsplit("/", 1)[1] for p in fs.find(root))


def test_memory_fs_at_least_once(root):
    ch = channel()
    s = make_sink(ch, **props(f"memory://{root}/%{{topic}}", serializer="json"))
    assert s.held_mode and not s.target.durable_sync
    put(ch, kafka_events("t", 0, range(25)))
    drain(s)
    assert len(s._held) == 1 and any(n.endswith(".tmp") for n in listing(root))
    s.stop()
    names = listing(root)
    assert len(names) == 3 and not any(n.endswith(".tmp") for n in names)
    fs = MemoryFileSystem()
    got = [b for p in sorted(fs.find(root)) for _, b in read_back(fs.cat(p), "json")]
    assert sorted(got) == sorted(b"t-0-%d" % o for o in range(25))


def test_quiet_rename_refusal_is_noticed_exactly_once(root):
    ch = channel()
    s = make_sink(ch, **props(f"quietfs://{root}", **{"hdfs.exactlyOnce": "true"}))
    s.process()   # learns that nothing is stored
    fs = QuietRenameFS()
    # a rival stores 0..9 between our check and our rename; the rename answers false
    QuietRenameFS.race[f"{root}/t+0+%020d+%020d" % (0, 9)] = b"RIVAL"
    put(ch, kafka_events("t", 0, range(15)))
    drain(s)
    s.stop()
    assert fs.cat(f"{root}/t+0+%020d+%020d" % (0, 9)) == b"RIVAL"   # not replaced
    assert listing(root) == ["t+0+%020d+%020d" % (0, 9), "t+0+%020d+%020d" % (10, 14)]


def test_quiet_rename_refusal_at_least_once_takes_another_name(root):
    ch = channel()
    s = make_sink(ch, **props(f"quietfs://{root}", **{"hdfs.filePrefix": "ev"}))
    s._counter = 41
    QuietRenameFS().pipe(f"{root}/ev.42", b"OLD\n")
    put(ch, kafka_events("t", 0, range(10)))
    drain(s)
    s.stop()
    names = listing(root)
    assert names[0] == "ev.42" and len(names) == 2
    assert QuietRenameFS().cat(f"{root}/ev.42") == b"OLD\n"


def test_failing_rename_rolls_back_held_takes(root):
    ch = channel()
    s = make_sink(ch, **props(f"quietfs://{root}", **{"hdfs.batchSize": "15"}))
    QuietRenameFS.fail_mv = True
    try:
        put(ch, kafka_events("t", 0, range(15)))
        with pytest.raises(EventDeliveryError, match="injected rename failure"):
            s.process()
        assert ch.size == 15 and not s._held and listing(root) == []
    finally:
        QuietRenameFS.fail_mv = False
    drain(s)
    s.stop()
    assert len(listing(root)) == 2

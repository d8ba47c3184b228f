"""kill -9 an agent (offset source -> file channel -> hdfs sink, exactly once)
several times mid-stream: the committed files hold every offset exactly once."""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from tests.agent.helpers import agents, write_conf  # noqa: F401
from tests.conftest import wait_for
from tests.sinks.helpers import bodies, offset_agent_conf

NAME = re.compile(r"^(?P<topic>[\w.-]+)\+(?P<p>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})(\.avro)?$")

CONF = offset_agent_conf("file://{dir}/out/%{{topic}}/%Y%m%d%H%M",
                        "a1.sinks.k1.hdfs.timeZone = UTC\na1.sinks.k1.serializer = {serializer}\n")


def committed(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and NAME.match(p.name))


def offsets_stored(out: Path, serializer: str) -> dict[int, list[int]]:
    """partition -> offsets in the committed files (with repeats, if any)."""
    got: dict[int, list[int]] = {}
    for p in committed(out):
        m = NAME.match(p.name)
        assert m
        offs = [int(b.rsplit(b"-", 1)[1]) for b in bodies([p], serializer)]
        assert offs == sorted(offs) and offs[0] == int(m["first"]) \
            and offs[-1] == int(m["last"]), p   # the name says what the file holds
        got.setdefault(int(m["p"]), []).extend(offs)
    return got


@pytest.mark.crash
@pytest.mark.parametrize("serializer", ["text", "avro_event"])
def test_kill9_mid_stream_every_offset_once(tmp_path, agents, serializer):  # noqa: F811
    partitions, count = 3, 1500
    conf = write_conf(tmp_path / "a.properties", CONF, dir=tmp_path, partitions=partitions,
                      count=count, serializer=serializer)
    out = tmp_path / "out"
    rng = random.Random(9)
    kills = torn = 0
    for _ in range(4):
        target = len(committed(out)) + rng.randint(1, 4)
        a = agents(conf, "a1", tmp_path)
        # kill once the run has committed a few files of its own (mid-stream)
        wait_for(lambda t=target: len(committed(out)) >= t, 60,
                 what="the agent to commit files")
        a.kill9()
        kills += 1
        torn += bool(list(out.rglob("*.tmp")))   # killed with a file half written
        stored = offsets_stored(out, serializer)
        assert all(len(v) == len(set(v)) for v in stored.values())
        if sum(len(v) for v in stored.values()) == partitions * count:
            break
    a = agents(conf, "a1", tmp_path)
    want = {p: list(range(count)) for p in range(partitions)}
    wait_for(lambda: offsets_stored(out, serializer) == want, 90,
             what="every offset to be committed")
    assert a.terminate() == 0
    assert kills >= 3 and torn >= 1
    assert offsets_stored(out, serializer) == want
    assert not [p for p in out.rglob("*.tmp")]

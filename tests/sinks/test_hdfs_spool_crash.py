"""kill -9 an agent (offset source -> file channel -> hdfs sink into S3, exactly
once) three times mid-stream, while files are spooled locally before their
upload: the restarted sink removes what the killed runs spooled, so once it
has caught up the spool dir holds nothing but its own lock, and S3 holds
every offset exactly once.  A clean stop leaves the spool dir empty."""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from fchannel.sinks._serializers import read_back
from fchannel.sinks._targets import SpoolDir
from tests.agent.helpers import agents, write_conf  # noqa: F401
from tests.conftest import wait_for
from tests.helpers import Child
from tests.sinks.helpers import offset_agent_conf

NAME = re.compile(r"^(?P<topic>[\w.-]+)\+(?P<p>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})$")

CONF = offset_agent_conf("s3://{bucket}/%{{topic}}",
                        "a1.sinks.k1.hdfs.spoolDir = {dir}/spool\n")


def spooled(spool: Path) -> list[Path]:
    """Data files in the spool dir (anything but a sink's lock file)."""
    if not spool.exists():
        return []
    return sorted(p for p in spool.rglob("*") if p.is_file() and p.name != "lock")


def offsets_stored(s3, bucket: str) -> dict[int, list[int]]:
    """partition -> offsets in the committed objects (with repeats, if any)."""
    got: dict[int, list[int]] = {}
    for key in s3.keys(bucket):
        m = NAME.match(key.rsplit("/", 1)[-1])
        assert m, key
        offs = [int(b.rsplit(b"-", 1)[1])
                for _, b in read_back(s3.get(bucket, key), "text", "none")]
        assert offs == sorted(offs) and offs[0] == int(m["first"]) \
            and offs[-1] == int(m["last"]), key
        got.setdefault(int(m["p"]), []).extend(offs)
    return got


def committed(s3, bucket: str) -> int:
    return len(s3.keys(bucket))


@pytest.mark.crash
def test_kill9_leaves_no_spool_files_once_caught_up(tmp_path, agents, s3_endpoint):  # noqa: F811
    partitions, count = 3, 1500
    bucket = s3_endpoint.bucket()
    conf = write_conf(tmp_path / "a.properties", CONF + "".join(
        f"a1.sinks.k1.{k} = {v}\n" for k, v in s3_endpoint.props().items()),
        dir=tmp_path, bucket=bucket, partitions=partitions, count=count)
    spool = tmp_path / "spool"
    rng = random.Random(14)
    kills = 0
    left_by_kills: list[int] = []
    for _ in range(6):
        target = committed(s3_endpoint, bucket) + rng.randint(1, 3)
        a = agents(conf, "a1", tmp_path)
        wait_for(lambda t=target: committed(s3_endpoint, bucket) >= t, 60,
                 what="the agent to upload files")
        # kill while files are spooled (a run spools its next files right away)
        wait_for(lambda: spooled(spool), 30, what="a file being spooled")
        a.kill9()
        kills += 1
        left_by_kills.append(len(spooled(spool)))
        stored = offsets_stored(s3_endpoint, bucket)
        assert all(len(v) == len(set(v)) for v in stored.values())
        if kills == 3:
            break
    assert kills == 3 and any(left_by_kills), left_by_kills   # kills left spooled files
    a = agents(conf, "a1", tmp_path)
    want = {p: list(range(count)) for p in range(partitions)}
    wait_for(lambda: offsets_stored(s3_endpoint, bucket) == want, 120,
             what="every offset to be uploaded")
    wait_for(lambda: not spooled(spool), 20, what="nothing left spooled once caught up")
    assert offsets_stored(s3_endpoint, bucket) == want     # each offset exactly once
    assert "spooled file(s) a stopped run left" in a.output()
    assert a.terminate() == 0
    assert not list(spool.iterdir()), list(spool.iterdir())   # a clean stop leaves nothing


def test_a_sink_never_removes_what_a_running_sink_of_the_same_name_spools(tmp_path):
    """Two agents on one host may both name their sink k1 and share the
    default spool dir: a starting sink empties only spool directories no
    running sink holds."""
    base = str(tmp_path)
    child = Child("""
        import sys
        from fchannel.sinks._targets import SpoolDir
        s = SpoolDir(sys.argv[1], "k1")
        fd, path = s.create("t+0+00000000000000000042")
        print("SPOOLED " + path, flush=True)
        sys.stdin.read()
    """, base)
    try:
        crashed_file = child.expect("SPOOLED ").split(" ", 1)[1]
        running = SpoolDir(base, "k1")           # the child holds the first directory
        assert running.path != str(Path(crashed_file).parent)
        fd, running_file = running.create("t+1+00000000000000000007")
        assert Path(crashed_file).exists()       # the child is alive: not touched
    finally:
        child.kill()                             # SIGKILL: its spool file is left behind
    assert Path(crashed_file).exists()
    again = SpoolDir(base, "k1")                 # a restart: claims the free directory
    try:
        assert not Path(crashed_file).exists()
        assert [Path(r).name for r in again.removed] == [Path(crashed_file).name]
        assert Path(running_file).exists()       # the running one's file stays
    finally:
        again.close()
        os.close(fd)
        running.close()
    assert Path(running_file).exists() and list(tmp_path.iterdir())

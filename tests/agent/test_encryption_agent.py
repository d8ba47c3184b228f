"""A file channel encrypted at rest through ``fchannel agent`` with Flume's
``encryption.*`` properties: the key made with ``fchannel keygen``, events
sealed on disk, and a wrong or missing key at the next start an error that
names the key, with nothing changed on disk (issue 19)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from fchannel import FileChannel
from tests.agent.helpers import NETCAT_SOURCE, REPO, free_port, send_lines, write_conf

# netcat -> an encrypted file channel with no sink: what the source commits stays queued
CONF = NETCAT_SOURCE.replace("a1.sinks = k1\n", "") + """
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = ./chan/checkpoint
a1.channels.c1.dataDirs = ./chan/data
a1.channels.c1.minimumRequiredSpace = 0
a1.channels.c1.encryption.activeKey = {active}
a1.channels.c1.encryption.cipherProvider = AESGCM
a1.channels.c1.encryption.keyProvider = KEYFILE
a1.channels.c1.encryption.keyProvider.keys = {active}
a1.channels.c1.encryption.keyProvider.keys.{active}.keyFile = ./keys/{active}.key
"""

LINES = [b"card 4242-4242-4242-4242 for c-17", b"second secret line", b"third: \xc3\xa9t\xc3\xa9"]


def keygen(cwd, path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    made = subprocess.run([sys.executable, "-m", "fchannel", "keygen", path], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr


def digest(d) -> dict[str, str]:
    return {str(p.relative_to(d)): "lock" if p.name.endswith(".lock")
            else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def refused(agents, tmp_path, conf) -> tuple[int, str]:
    """Start the agent with *conf*; it must exit non-zero without changing
    the channel's files; returns its exit status and output."""
    before = digest(tmp_path / "chan")
    agent = agents(conf, "a1", tmp_path, wait_started=False)
    code = agent.proc.wait(60)
    out = agent.output()
    assert code != 0, out
    assert "agent 'a1' started" not in out, out
    assert digest(tmp_path / "chan") == before
    return code, out


def test_agent_seals_events_and_refuses_a_wrong_or_missing_key(agents, tmp_path):
    (tmp_path / "keys").mkdir()
    keygen(tmp_path, "keys/key-0.key")
    port = free_port()
    conf = write_conf(tmp_path / "a.properties", CONF.format(port=port, active="key-0"))
    agent = agents(conf, "a1", tmp_path)
    assert send_lines(port, LINES) == [b"OK"] * 3
    assert agent.terminate() == 0
    assert " WARN" not in agent.output(), agent.output()
    logs = [p for p in (tmp_path / "chan" / "data").glob("log-*") if p.name[4:].isdigit()]
    blob = b"".join(p.read_bytes() for p in logs)
    for line in LINES:
        assert line not in blob and line[:12] not in blob, line

    # other key material under the same alias: refused, naming the key
    key = tmp_path / "keys" / "key-0.key"
    key.rename(tmp_path / "keys" / "saved.key")
    keygen(tmp_path, "keys/key-0.key")
    code, out = refused(agents, tmp_path, conf)
    assert code == 2 and "configuration problem" in out, out   # the wrong key file is too
    assert "'key-0'" in out and "cannot decrypt" in out, out
    # a key ring without key-0: refused, naming key-0
    keygen(tmp_path, "keys/key-1.key")
    other = write_conf(tmp_path / "b.properties", CONF.format(port=port, active="key-1"))
    code, out = refused(agents, tmp_path, other)
    assert code == 2 and "configuration problem" in out, out   # a missing key is configuration
    assert "'key-0'" in out and "not in the key ring" in out, out

    # the right key again: everything is there, in order
    os.replace(tmp_path / "keys" / "saved.key", key)
    agent = agents(conf, "a1", tmp_path)
    assert agent.terminate() == 0
    ch = FileChannel(tmp_path / "chan" / "checkpoint", [tmp_path / "chan" / "data"],
                     minimum_required_space=0,
                     encryption={"active_key": "key-0", "keys": {"key-0": str(key)}})
    try:
        with ch.transaction() as tx:
            got = tx.take_batch(10)
    finally:
        ch.close()
    assert [e.body for e in got] == LINES

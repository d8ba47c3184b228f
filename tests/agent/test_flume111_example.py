"""examples/flume-1.11.properties, run unchanged by ``fchannel agent`` with
Flume's command line: syslog -> file channels (one encrypted at rest) -> hdfs
(local files) and http."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from fchannel.file.tools import inspect
from tests.agent.helpers import EXAMPLES, REPO, free_port, http_get_json
from tests.agent.test_http_sink import Server
from tests.conftest import wait_for

RFC5424 = b"<34>1 2026-10-11T22:14:15.003Z web-1 su - ID47 - 'su root' failed"
RFC3164 = b"<13>Oct  1 22:14:15 web-2 sshd[42]: accepted publickey"


def test_the_flume_1_11_example_runs_unchanged(agents, tmp_path, monkeypatch):
    srv = Server([503], then=200)        # the first POST fails: the event is sent again
    try:
        sport, mport = free_port(), free_port()
        monkeypatch.setenv("SYSLOG_PORT", str(sport))
        monkeypatch.setenv("HTTP_ENDPOINT", f"http://127.0.0.1:{srv.port}/events")
        monkeypatch.delenv("FLUME_DATA", raising=False)
        monkeypatch.delenv("HDFS_PATH", raising=False)
        monkeypatch.delenv("FLUME_KEYS", raising=False)
        # the toHdfs channel's key, made as the example's comment says
        (tmp_path / "flume-keys").mkdir()
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        made = subprocess.run([sys.executable, "-m", "fchannel", "keygen", "flume-keys/key-0.key"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        assert (tmp_path / "flume-keys" / "key-0.key").stat().st_mode & 0o077 == 0
        agent = agents(EXAMPLES / "flume-1.11.properties", "a1", tmp_path,
                       ["-c", "conf", "--monitoring-host", "127.0.0.1", "-Dflume.monitoring.type=http",
                        f"-Dflume.monitoring.port={mport}"])
        with socket.create_connection(("127.0.0.1", sport), timeout=10) as s:
            s.sendall(RFC3164 + b"\n" + f"{len(RFC5424)} ".encode() + RFC5424)
        wait_for(lambda: len([r for r in srv.received if r[1] == 200]) == 2, 30,
                 what="both messages posted with a 200")
        # in the order sent; the one answered 503 was sent again
        assert [b for b, c, _ in srv.received if c == 200] == [
            b"sshd[42]: accepted publickey", b"su - ID47 - 'su root' failed"]
        assert srv.received[0][1] == 503
        wait_for(lambda: http_get_json(mport)["SINK.http1"]["EventDrainSuccessCount"] == "2",
                 10, what="the http sink's counter")
        assert agent.terminate() == 0
        out = agent.output()
        # every property of the file is understood: the only warning is the
        # documented Flume setting that has no effect here
        warnings = [ln for ln in out.splitlines() if " WARN" in ln]
        assert len(warnings) == 1 and "use-log-replay-v1" in warnings[0], warnings
        files = sorted((tmp_path / "flume-data" / "hdfs").rglob("syslog*.log"))
        lines = [ln for f in files for ln in f.read_text().splitlines()]
        assert lines == ["sshd[42]: accepted publickey", "su - ID47 - 'su root' failed"]
        # the toHdfs channel kept them encrypted: its logs name key-0 and hold
        # neither message in clear (the hdfs output above does)
        chan = tmp_path / "flume-data" / "toHdfs"
        logs = [p for p in (chan / "data").glob("log-*") if p.name[4:].isdigit()]
        assert logs
        blob = b"".join(p.read_bytes() for p in logs)
        for text in (b"accepted publickey", b"su root", b"web-2", b"ID47"):
            assert text not in blob, text
        keyed = inspect(str(chan / "checkpoint"), [str(chan / "data")])["logs"]
        assert {lg.get("key") for lg in keyed} >= {"key-0"}, keyed
    finally:
        srv.close()

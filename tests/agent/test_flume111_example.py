"""examples/flume-1.11.properties, run unchanged by ``fchannel agent`` with
Flume's command line: syslog -> file channels -> hdfs (local files) and http."""
from __future__ import annotations

import socket

from tests.agent.helpers import EXAMPLES, free_port, http_get_json
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
    finally:
        srv.close()

"""``fchannel send HOST:PORT``: the netcat client README and run.sh point to."""
from __future__ import annotations

import io
import socket
import threading

import pytest

from fchannel.cli import main
from tests.agent.helpers import AgentProcess, free_port, write_conf
from tests.conftest import wait_for


def _server(answers: dict[bytes, bytes]):
    """A one-connection server answering each line per *answers* (default OK)."""
    srv = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                got.append(line)
                conn.sendall(answers.get(line.rstrip(b"\n"), b"OK") + b"\n")
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv.getsockname()[1], got, t


def test_send_arguments_one_line_each(capfd):
    port, got, t = _server({})
    assert main(["send", f"127.0.0.1:{port}", "hello", "second line"]) == 0
    t.join(10)
    assert got == [b"hello\n", b"second line\n"]
    assert capfd.readouterr().out == "OK\nOK\n"


def test_send_stdin_and_a_refused_line_exits_1(capfd, monkeypatch):
    port, got, t = _server({b"too long": b"FAILED: Event exceeds the maximum length"})
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"a\r\ntoo long\nb")))
    assert main(["send", f"127.0.0.1:{port}"]) == 1
    t.join(10)
    assert got == [b"a\n", b"too long\n", b"b\n"]
    assert capfd.readouterr().out.splitlines() == [
        "OK", "FAILED: Event exceeds the maximum length", "OK"]


@pytest.mark.parametrize("address", ["44444", "localhost:", "host:port", ":1", "h:70000"])
def test_send_bad_address_names_it(address, capfd):
    assert main(["send", address, "x"]) == 2
    assert f"address must be HOST:PORT, got {address!r}" in capfd.readouterr().err


def test_send_nobody_listening_exits_1(capfd):
    port = free_port()
    assert main(["send", f"127.0.0.1:{port}", "x", "--timeout", "5"]) == 1
    assert f"127.0.0.1:{port}" in capfd.readouterr().err


def test_send_to_a_real_agent(tmp_path, capfd):
    port = free_port()
    conf = write_conf(tmp_path / "a.properties",
                      "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
                      f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\n"
                      f"a1.sources.r1.port = {port}\na1.sources.r1.channels = c1\n"
                      "a1.channels.c1.type = memory\n"
                      "a1.sinks.k1.type = logger\na1.sinks.k1.channel = c1\n")
    agent = AgentProcess(conf, "a1", tmp_path).start()
    try:
        assert main(["send", f"127.0.0.1:{port}", "hi agent"]) == 0
        assert capfd.readouterr().out == "OK\n"
        wait_for(lambda: "hi agent" in agent.output(), 20, what="the line logged")
    finally:
        assert agent.terminate() == 0

"""Every example configuration, run as a real ``fchannel agent`` subprocess
against real sockets and files (ports replaced by free ones, relative
directories under the test's own working directory)."""
from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests.agent.helpers import EXAMPLES, free_port, send_lines, write_conf
from tests.conftest import wait_for

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def lines_in(directory: Path) -> list[str]:
    """Every line of every file in *directory*, files in name order."""
    if not directory.is_dir():
        return []
    out: list[str] = []
    for p in sorted(directory.iterdir()):
        if p.is_file():
            out.extend(p.read_text().splitlines())
    return out


def example(name: str, **replace: str) -> str:
    text = (EXAMPLES / name).read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def to_memory(text: str, channel: str) -> str:
    """Swap a file channel for a memory one (until FileChannel is merged)."""
    out = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key.endswith((f"channels.{channel}.checkpointDir", f"channels.{channel}.dataDirs")):
            continue
        if key.endswith(f"channels.{channel}.type"):
            line = line.replace("file", "memory")
        out.append(line)
    return "\n".join(out) + "\n"


def post(port: int, payload: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=payload, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


# ---- spooldir -> file channel -> file_roll -------------------------------------------

def _spooldir_example(agents, tmp_path: Path, text: str) -> None:
    incoming = tmp_path / "spool-data" / "incoming"
    incoming.mkdir(parents=True)
    conf = write_conf(tmp_path / "spool.properties", text)
    agent = agents(conf, "agent1", tmp_path)
    expected = []
    for f in range(3):
        lines = [f"file {f} line {i}" for i in range(250)]
        expected.extend(lines)
        staging = tmp_path / f"input-{f}.log"
        staging.write_text("\n".join(lines) + "\n")
        os.rename(staging, incoming / staging.name)   # complete files are moved in
    wait_for(lambda: sorted(lines_in(tmp_path / "spool-data" / "out")) == sorted(expected),
             30, what="every line in the rolled files")
    wait_for(lambda: len(list(incoming.glob("*.COMPLETED"))) == 3, 10,
             what="the input files renamed to .COMPLETED")
    assert agent.terminate() == 0
    # each file's lines are in order
    got = lines_in(tmp_path / "spool-data" / "out")
    for f in range(3):
        mine = [ln for ln in got if ln.startswith(f"file {f} ")]
        assert mine == [f"file {f} line {i}" for i in range(250)]


def test_spooldir_to_file_roll_example(agents, tmp_path):
    _spooldir_example(agents, tmp_path, example("spooldir-to-file-roll.properties"))


def test_spooldir_to_file_roll_example_on_a_memory_channel(agents, tmp_path):
    _spooldir_example(agents, tmp_path,
                      to_memory(example("spooldir-to-file-roll.properties"), "durable"))


# ---- replicating fan-out --------------------------------------------------------------

def test_replicating_fanout_example_copies_every_event_to_both_sinks(agents, tmp_path):
    port = free_port()
    conf = write_conf(tmp_path / "fanout.properties",
                      example("replicating-fanout.properties", **{"5140": str(port)}))
    agent = agents(conf, "a1", tmp_path)
    events = [{"headers": {"n": str(i)}, "body": f"event {i}"} for i in range(20)]
    assert post(port, json.dumps(events).encode()) == 200
    text_dir = tmp_path / "fanout-data" / "text"
    json_dir = tmp_path / "fanout-data" / "json"
    wait_for(lambda: len(lines_in(text_dir)) == 20 and len(lines_in(json_dir)) == 20, 20,
             what="both sinks to write 20 events")
    assert lines_in(text_dir) == [f"event {i}" for i in range(20)]
    docs = [json.loads(ln) for ln in lines_in(json_dir)]
    assert [d["body"] for d in docs] == [f"event {i}" for i in range(20)]
    # the interceptors ran before the selector: both copies carry their headers
    assert all(d["headers"]["n"] == str(i) for i, d in enumerate(docs))
    assert all("timestamp" in d["headers"] and "host" in d["headers"] for d in docs)
    assert agent.terminate() == 0


# ---- multiplexing router --------------------------------------------------------------

def test_multiplexing_router_example_routes_by_header(agents, tmp_path):
    port = free_port()
    conf = write_conf(tmp_path / "router.properties",
                      example("multiplexing-router.properties", **{"44445": str(port)}))
    agent = agents(conf, "router", tmp_path)
    lines = [b"ERROR disk full", b"INFO started", b"WARN slow", b"hello world", b"DEBUG x"]
    assert send_lines(port, lines) == [b"OK"] * len(lines)
    d = tmp_path / "router-data"
    wait_for(lambda: len(lines_in(d / "errors")) == 1 and len(lines_in(d / "archive")) == 3
             and len(lines_in(d / "other")) == 2, 20, what="events routed to three sinks")
    assert lines_in(d / "errors") == ["ERROR disk full"]
    # ERROR is also sent to the archive, as an optional channel
    assert sorted(lines_in(d / "archive")) == ["ERROR disk full", "INFO started", "WARN slow"]
    assert lines_in(d / "other") == ["hello world", "DEBUG x"]
    assert agent.terminate() == 0


# ---- failover sink group ---------------------------------------------------------------

def test_failover_example_fails_over_to_backup_and_back(agents, tmp_path):
    port = free_port()
    conf = write_conf(tmp_path / "failover.properties",
                      example("failover-sinkgroup.properties", **{"44446": str(port)}))
    data = tmp_path / "failover-data"
    data.mkdir()
    blocker = data / "primary"
    blocker.write_text("a file where the primary wants its directory\n")
    agent = agents(conf, "a1", tmp_path)
    first = [f"first {i}".encode() for i in range(10)]
    assert send_lines(port, first) == [b"OK"] * 10
    wait_for(lambda: lines_in(data / "backup") == [b.decode() for b in first], 20,
             what="the backup sink to take over")
    assert "sink 'primary' failed" in agent.output()
    blocker.unlink()              # the primary's destination works again
    # after its penalty (at most maxpenalty = 2 s) the primary is tried again
    wait_for(lambda: "sink 'primary' is back" in agent.output(), 20,
             what="the primary sink to be tried again")
    second = [f"second {i}".encode() for i in range(10)]
    assert send_lines(port, second) == [b"OK"] * 10
    wait_for(lambda: lines_in(data / "primary") == [b.decode() for b in second], 20,
             what="the primary sink to get the second batch")
    assert lines_in(data / "backup") == [b.decode() for b in first]
    assert agent.terminate() == 0


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.properties")))
def test_every_example_parses_and_validates(name, tmp_path, monkeypatch):
    """Each example passes validation (file channels opened under tmp_path;
    swapped for memory ones only in a build without FileChannel; the key
    files of encrypted channels made under tmp_path)."""
    from fchannel.agent.config import build_agent
    from fchannel.agent.properties import parse_properties
    text = (EXAMPLES / name).read_text()
    props = parse_properties(text)
    agent = props[next(k for k in props if k.endswith(".sources"))].strip() and \
        next(k for k in props if k.endswith(".sources")).split(".")[0]
    import fchannel
    for k, v in list(props.items()):
        if hasattr(fchannel, "FileChannel"):
            break
        if k.endswith(".type") and v == "file" and ".channels." in k:
            ch = k[:-len(".type")]
            props[k] = "memory"
            for extra in ("checkpointDir", "dataDirs"):
                props.pop(f"{ch}.{extra}", None)
            for extra in [p for p in props if p.startswith(f"{ch}.encryption.")]:
                props.pop(extra)
    monkeypatch.chdir(tmp_path)
    # an encrypted channel's key is made before the first start (the example
    # says how; test_flume111_example runs it that way): one key file each here
    from fchannel.file.crypto import write_key_file
    for i, k in enumerate(sorted(k for k in props if k.endswith(".keyFile"))):
        props[k] = str(tmp_path / f"key-{i}.key")
        write_key_file(props[k])
    parts = build_agent(props, agent)
    assert parts.sources and parts.sinks
    assert not [w for w in parts.warnings if "not a property" in w], parts.warnings
    for ch in parts.channels.values():
        ch.close()


# ---- load-balancing sink group ------------------------------------------------------------

def test_load_balance_example_spreads_load_and_skips_a_failing_sink(agents, tmp_path):
    port = free_port()
    conf = write_conf(tmp_path / "lb.properties",
                      example("load-balance-sinkgroup.properties", **{"44447": str(port)}))
    data = tmp_path / "lb-data"
    data.mkdir()
    blocker = data / "k2"
    blocker.write_text("a file where k2 wants its directory\n")
    agent = agents(conf, "a1", tmp_path)
    first = [f"first {i}" for i in range(20)]
    assert send_lines(port, [ln.encode() for ln in first]) == [b"OK"] * 20
    # k2 fails: k1 delivers everything, nothing is lost
    wait_for(lambda: sorted(lines_in(data / "k1")) == sorted(first), 20,
             what="k1 to carry the load")
    assert "sink 'k2' failed" in agent.output()
    blocker.unlink()
    # after its backoff (at most maxTimeOut = 2 s) k2 takes its turns again: keep
    # sending one line at a time until k2 has written some
    sent = list(first)

    def send_one_and_check_k2() -> bool:
        line = f"second {len(sent)}"
        assert send_lines(port, [line.encode()]) == [b"OK"]
        sent.append(line)
        return bool(lines_in(data / "k2"))

    wait_for(send_one_and_check_k2, 20, interval=0.2, what="k2 back in the rotation")
    wait_for(lambda: sorted(lines_in(data / "k1") + lines_in(data / "k2")) == sorted(sent),
             20, what="every line delivered once")
    assert agent.terminate() == 0

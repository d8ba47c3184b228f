"""``./scripts/run.sh``, the README's first command, on its second start.

The test lays out a copy of the repository's top (scripts/, examples/ with the
quickstart on a free port, links to fchannel/, pyproject.toml, setup.py and a
``.venv`` that is the interpreter running the tests), records the install
stamp as an install would, and starts run.sh in its own session: it must not
install again, must print that it is starting the agent and how to send a line
within 5 s, the line sent the way it says must be answered OK and logged, and
Ctrl-C must stop the agent with status 0.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from fchannel.cli import main as cli_main
from tests.agent.helpers import REPO, free_port
from tests.conftest import wait_for


def _layout(tmp_path: Path, port: int) -> Path:
    top = tmp_path / "repo"
    top.mkdir()
    shutil.copytree(REPO / "scripts", top / "scripts")
    (top / "examples").mkdir()
    conf = (REPO / "examples" / "quickstart.properties").read_text()
    assert "a1.sources.r1.port = 44444" in conf
    (top / "examples" / "quickstart.properties").write_text(
        conf.replace("a1.sources.r1.port = 44444", f"a1.sources.r1.port = {port}"))
    for name in ("fchannel", "pyproject.toml", "setup.py"):
        (top / name).symlink_to(REPO / name)
    (top / ".venv").symlink_to(Path(sys.prefix))
    return top


def _hash(top: Path) -> str:
    return subprocess.run(["bash", "-c", ". scripts/lib.sh; build_inputs_hash .venv/bin/python"],
                          cwd=top, capture_output=True, text=True, check=True).stdout.strip()


def test_build_inputs_hash_follows_the_cython_sources(tmp_path):
    top = _layout(tmp_path, 1)
    before = _hash(top)
    assert re.fullmatch(r"[0-9a-f]{64}", before) and _hash(top) == before
    (top / "fchannel").unlink()
    shutil.copytree(REPO / "fchannel", top / "fchannel",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    assert _hash(top) == before
    # a Python module that is not compiled: the editable install sees it as is
    (top / "fchannel" / "aio.py").write_text("# a Python change needs no reinstall\n")
    assert _hash(top) == before
    # a .pyx, and a .py that Cython compiles (it has a .pxd): a rebuild is due
    for name in ("file/_codec.pyx", "_event.py"):
        path = top / "fchannel" / name
        original = path.read_text()
        path.write_text(original + "\n# changed\n")
        assert _hash(top) != before, name
        path.write_text(original)
        assert _hash(top) == before, name


def test_second_start_is_ready_within_5s_and_says_how_to_send_and_stop(tmp_path, capfd):
    port = free_port()
    top = _layout(tmp_path, port)
    (top / ".venv" / ".fchannel-install-stamp").write_text(_hash(top) + "\n")
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(["bash", str(top / "scripts" / "run.sh")], cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "the agent is up" in log.read_text() or proc.poll() is not None,
                 30, what="run.sh to say the agent is up")
        ready = time.monotonic() - t0
        text = log.read_text()
        assert proc.poll() is None, text
        assert ready < 5, f"ready after {ready:.1f} s:\n{text}"
        first = text.splitlines()[0]
        assert first.startswith("run.sh: fchannel in .venv is up to date; starting"), text
        assert "installing" not in text
        hint = f".venv/bin/fchannel send 127.0.0.1:{port}"
        assert hint in text and "Ctrl-C" in text and f"kill {proc.pid}" in text
        assert "nc " not in text
        assert cli_main(["send", f"127.0.0.1:{port}", "hello fchannel"]) == 0
        assert capfd.readouterr().out == "OK\n"
        wait_for(lambda: "hello fchannel" in log.read_text(), 20, what="the line logged")
        assert (top / "quickstart-data" / "checkpoint").is_dir()
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
        assert "agent 'a1' stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

"""Every ```python block of docs/kafka.md runs as written, the way the docs'
snippet runner will run it: in a fresh directory, as its own process, with a
fresh broker whose address is in KAFKA_BOOTSTRAP and the topics named by the
block's ``<!-- snippet: needs=kafka topics=... -->`` line created first."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integrations.test_spooled_producer import Tansu

PAGE = Path(__file__).resolve().parents[2] / "docs" / "kafka.md"


def blocks():
    lines = PAGE.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() != "```python":
            continue
        directive = lines[i - 1] if i else ""
        end = lines.index("```", i + 1)
        m = re.match(r"<!--\s*snippet:(.*?)-->", directive)
        opts = dict(w.split("=", 1) for w in m.group(1).split() if "=" in w) if m else {}
        out.append(pytest.param(i + 1, "\n".join(lines[i + 1:end]) + "\n", opts,
                                id=f"line{i + 1}"))
    return out


@pytest.mark.parametrize("line, code, opts", blocks())
def test_snippet_runs_as_written(line, code, opts, tmp_path):
    env = dict(os.environ)
    broker = None
    if opts.get("needs") == "kafka":
        broker = Tansu(tmp_path)
        broker.start()
        topics = [t for t in opts.get("topics", "").split(",") if t]
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            admin.create_topics([NewTopic(t, 3, 1) for t in topics])
        finally:
            admin.close()
        env["KAFKA_BOOTSTRAP"] = broker.bootstrap
    work = tmp_path / "run"
    work.mkdir()
    (work / "snippet.py").write_text(code)
    try:
        proc = subprocess.run([sys.executable, "snippet.py"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        if broker is not None:
            broker.kill()
    assert proc.returncode == 0, f"docs/kafka.md line {line}:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr

"""Every ```python block of docs/stream-processors.md runs as written.

The convention of docs/*.md: a block is run as a script in a fresh temporary
directory; the HTML comment on the line before it may say
``<!-- snippet: needs=kafka topics=a,b -->`` (the broker's address is in
``KAFKA_BOOTSTRAP`` and those topics exist) or ``<!-- snippet: skip ... -->``.
(A repository-wide runner may replace this module; it is kept small.)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

DOC = os.path.join(ROOT, "docs", "stream-processors.md")
BLOCK = re.compile(r"(?:<!--\s*snippet:(?P<meta>[^>]*)-->\s*\n)?```python\n(?P<code>.*?)```",
                   re.S)


def _blocks() -> list[tuple[int, dict[str, str], str]]:
    with open(DOC) as f:
        text = f.read()
    out = []
    for m in BLOCK.finditer(text):
        meta: dict[str, str] = {}
        for part in (m.group("meta") or "").split():
            key, _, value = part.partition("=")
            meta[key] = value
        out.append((text.count("\n", 0, m.start("code")) + 1, meta, m.group("code")))
    return out


BLOCKS = _blocks()


def test_the_doc_has_its_snippets():
    assert len(BLOCKS) == 5 and sum("skip" in meta for _, meta, _ in BLOCKS) == 1


@pytest.mark.parametrize("line, meta, code", [b for b in BLOCKS if "skip" not in b[1]],
                         ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_snippet_runs_as_written(line, meta, code, tmp_path, request):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONWARNINGS", None)
    if meta.get("needs") == "kafka":
        kafka = request.getfixturevalue("kafka")
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        try:
            admin.create_topics([NewTopic(t, 1, 1) for t in meta["topics"].split(",")])
        finally:
            admin.close()
        env["KAFKA_BOOTSTRAP"] = kafka.bootstrap
    script = tmp_path / "snippet.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env,
                          capture_output=True, timeout=180)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, f"snippet at line {line} failed:\n{out}\n" \
        f"{proc.stderr.decode(errors='replace')[-3000:]}"
    if "take_batch(10)" in code:
        assert "[b'{\"order\":0}', b'{\"order\":1}', b'{\"order\":2}']" in out
    if "tx.take()" in code:
        assert "WARNING disk /var at 93%" in out
    if "FileChannelSource" in code:
        assert out.count("event ") >= 3, out

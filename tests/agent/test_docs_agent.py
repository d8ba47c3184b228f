"""The ```python blocks of docs/agent.md run as written, each in a fresh
temporary directory (until the shared docs snippet runner takes this over)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.agent.helpers import REPO

DOC = REPO / "docs" / "agent.md"


def python_blocks() -> list[str]:
    text = DOC.read_text()
    blocks = []
    for m in re.finditer(r"(?:^|\n)(<!-- snippet: [^>]*-->\n)?```python\n(.*?)\n```", text,
                         re.S):
        if m.group(1) and "skip" in m.group(1):
            continue
        blocks.append(m.group(2))
    return blocks


def test_the_page_has_python_blocks():
    assert python_blocks()


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_block_runs_as_written(index, tmp_path):
    code = python_blocks()[index]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    if "PrintSink" in code:
        assert r.stdout.splitlines() == ["got 0", "got 1", "got 2"]

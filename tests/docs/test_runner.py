"""The snippet runner's reading of the markers (tests/docs/test_snippets.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

import tests.docs.test_snippets as runner

PAGE = """# A page

```python
a = 1
```

Text, then a block that continues the first:

<!-- snippet: continue -->
```python
assert a == 1
```

<!-- snippet: needs=kafka topics=orders,payments -->
```python
b = 2
```
<!-- snippet: continue needs=s3 buckets=logs topics=audit -->
```python
c = 3
```

<!-- snippet: skip it talks to a real cluster -->
```python
raise SystemExit(1)
```

```sh
echo not python
```
"""


def _collect(tmp_path: Path, text: str, monkeypatch) -> list:
    monkeypatch.setattr(runner, "REPO", tmp_path)
    page = tmp_path / "page.md"
    page.write_text(text)
    return runner.collect(page)


def test_blocks_continue_merge_and_skip(tmp_path, monkeypatch):
    progs = _collect(tmp_path, PAGE, monkeypatch)
    assert [p.id for p in progs] == ["page.md:3", "page.md:15", "page.md:24"]
    first, second, skipped = progs
    assert [c.splitlines()[1] for c in first.code] == ["a = 1", "assert a == 1"]
    assert not first.options and first.skip is None and not first.problems
    assert second.values("needs") == ["kafka", "s3"]
    assert second.values("topics") == ["orders", "payments", "audit"]
    assert second.values("buckets") == ["logs"]
    assert skipped.skip == "it talks to a real cluster"
    assert not any(p.problems for p in progs)


@pytest.mark.parametrize("marker, problem", [
    ("<!-- snippet: skip -->", "'skip' needs a reason"),
    ("<!-- snippet: need=kafka -->", "unknown snippet directive 'need=kafka'"),
    ("<!-- snippet: needs=redis -->", "needs='redis'"),
    ("<!-- snippet: topics= -->", "unknown snippet directive 'topics='"),
    ("<!-- snippet: continue -->", "'continue' with no block before it"),
])
def test_bad_markers_are_reported_not_ignored(tmp_path, monkeypatch, marker, problem):
    (prog,) = _collect(tmp_path, f"{marker}\n```python\npass\n```\n", monkeypatch)
    assert any(problem in p for p in prog.problems), prog.problems

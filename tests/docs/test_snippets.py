"""Every ```python block of README.md and docs/*.md runs as written.

Each *program* (a block, or a block and the blocks that continue it) is written
to a file and run by the test interpreter as its own process, in a fresh
temporary directory that is its working directory; it must exit 0 within its
timeout, with no "Traceback" and no "Exception ignored" on stderr.

The line right before a block's opening fence may hold one HTML comment with
directives, separated by spaces (markdown renders nothing for it):

``<!-- snippet: skip REASON -->``
    the block is not run; the words after ``skip`` say why (required).
``<!-- snippet: continue -->``
    the block continues the page's previous ```python block: both (and any
    further continued blocks) run as one program, in page order, so a page
    can explain a program piece by piece.  Other directives may follow.
``needs=kafka`` with ``topics=a,b``
    a fresh Tansu broker for this program (tests.integrations.conftest's
    ``tansu_broker``); ``KAFKA_BOOTSTRAP`` holds its address and the topics
    are created first (3 partitions each).
``needs=s3`` with ``buckets=a,b``
    moto's S3 server (tests.sinks.conftest's ``moto_s3_server``);
    ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
    ``AWS_DEFAULT_REGION`` point at it, and the buckets exist.
    ``needs=kafka,s3`` gives both.
``timeout=SECONDS``
    instead of the default 120 s.

An unknown directive fails the test, so a typo cannot silently skip a block.
The same test checks that every relative link in README.md points at a file
of the repository (``mkdocs build --strict`` checks the links inside docs/).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DIRECTIVE = re.compile(r"^<!--\s*snippet:(.*?)-->\s*$")
FENCE = re.compile(r"^```python\s*$")
KNOWN = {"needs", "topics", "buckets", "timeout"}
SERVICES = {"kafka", "s3"}


@dataclass
class Program:
    page: Path
    line: int                                   # of the first block's fence
    code: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    skip: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def values(self, key: str) -> list[str]:
        return [v for v in self.options.get(key, "").split(",") if v]


def _blocks(page: Path) -> list[tuple[int, str, str]]:
    """(fence line, directive text or "", code) of each ```python block."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            m = DIRECTIVE.match(lines[i - 1].strip()) if i else None
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            out.append((start + 1, m.group(1).strip() if m else "", "\n".join(body) + "\n"))
        i += 1
    return out


def collect(page: Path) -> list[Program]:
    programs: list[Program] = []
    for line, directive, code in _blocks(page):
        words = directive.split()
        if words[:1] == ["continue"]:
            if not programs:
                p = Program(page, line)
                p.problems.append(f"line {line}: 'continue' with no block before it")
                programs.append(p)
            prog = programs[-1]
            words = words[1:]
        else:
            prog = Program(page, line)
            programs.append(prog)
        prog.code.append(f"# --- {page.name}, block at line {line}\n{code}")
        if words[:1] == ["skip"]:
            prog.skip = " ".join(words[1:])
            if not prog.skip:
                prog.problems.append(f"line {line}: 'skip' needs a reason after it")
            continue
        for w in words:
            key, eq, value = w.partition("=")
            if not eq or key not in KNOWN or not value:
                prog.problems.append(f"line {line}: unknown snippet directive {w!r}")
                continue
            merged = [v for v in prog.options.get(key, "").split(",") if v]
            merged += [v for v in value.split(",") if v not in merged]
            prog.options[key] = ",".join(merged)
        for need in prog.values("needs"):
            if need not in SERVICES:
                prog.problems.append(f"line {line}: needs={need!r}: known are "
                                     f"{', '.join(sorted(SERVICES))}")
    return programs


PROGRAMS = [p for page in PAGES for p in collect(page)]


def test_every_python_block_is_collected():
    # a parser that missed blocks would quietly run less than the pages show
    fences = sum(len(re.findall(r"^```python\s*$", page.read_text(encoding="utf-8"), re.M))
                 for page in PAGES)
    assert sum(len(p.code) for p in PROGRAMS) == fences
    assert any(p.page.name == "README.md" for p in PROGRAMS)


def test_readme_relative_links_exist():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (REPO / target.split("#", 1)[0]).exists():
            missing.append(target)
    assert not missing, f"README.md links to missing files: {missing}"


def _create_topics(bootstrap: str, topics: list[str]) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(t, 3, 1) for t in topics])
    finally:
        admin.close()


def _create_buckets(url: str, buckets: list[str]) -> None:
    import boto3
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for b in buckets:
        if b not in existing:   # moto's buckets live as long as the test process
            s3.create_bucket(Bucket=b)


@pytest.mark.parametrize("prog", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_snippet(prog: Program, tmp_path):
    assert not prog.problems, "\n".join(prog.problems)
    if prog.skip is not None:
        pytest.skip(f"marked skip: {prog.skip}")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)     # the installed fchannel, as a reader has it
    needs = prog.values("needs")
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "snippet.py"
    script.write_text("".join(prog.code), encoding="utf-8")
    timeout = float(prog.options.get("timeout", "120"))
    from contextlib import ExitStack
    with ExitStack() as stack:
        if "kafka" in needs:
            from tests.integrations.conftest import tansu_broker
            broker = stack.enter_context(tansu_broker(tmp_path))
            _create_topics(broker.bootstrap, prog.values("topics"))
            env["KAFKA_BOOTSTRAP"] = broker.bootstrap
        elif prog.values("topics"):
            pytest.fail("topics= without needs=kafka")
        if "s3" in needs:
            from tests.sinks.conftest import moto_s3_server
            url = stack.enter_context(moto_s3_server())
            _create_buckets(url, prog.values("buckets"))
            env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing",
                       AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        try:
            proc = subprocess.run([sys.executable, str(script)], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{prog.id}: still running after {timeout:.0f} s\n"
                        f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")
    report = f"{prog.id} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, report

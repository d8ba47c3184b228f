"""examples/two-tier-fan-in end to end: the example files as written, only
their ports swapped for free ones; state under the test's directory."""
from __future__ import annotations

import json

import grpc  # noqa: F401 - the agent extra; missing, the tests fail (never skip)

from tests.agent.helpers import EXAMPLES, free_port, send_lines, write_conf
from tests.conftest import wait_for

DIR = EXAMPLES / "two-tier-fan-in"


def test_two_tier_fan_in_example(agents, tmp_path):
    grpc_port, p1, p2 = free_port(), free_port(), free_port()
    col_text = (DIR / "collector.properties").read_text()
    leaf_text = (DIR / "leaf.properties").read_text()
    for old in ("port = 4545",):
        assert old in col_text and old in leaf_text
    col_text = col_text.replace("port = 4545", f"port = {grpc_port}")
    leaf_text = (leaf_text.replace("port = 4545", f"port = {grpc_port}")
                 .replace("port = 44451", f"port = {p1}").replace("port = 44452", f"port = {p2}"))
    col = agents(write_conf(tmp_path / "collector.properties", col_text), "collector", tmp_path)
    leaf_conf = write_conf(tmp_path / "leaf.properties", leaf_text)
    leaves = [agents(leaf_conf, "leaf1", tmp_path), agents(leaf_conf, "leaf2", tmp_path)]
    sent = {("leaf1", f"one-{i}") for i in range(50)} | {("leaf2", f"two-{i}") for i in range(50)}
    assert send_lines(p1, [f"one-{i}".encode() for i in range(50)]) == [b"OK"] * 50
    assert send_lines(p2, [f"two-{i}".encode() for i in range(50)]) == [b"OK"] * 50
    out = tmp_path / "two-tier-data" / "collector" / "out"

    def written() -> list[tuple[str, str]]:
        if not out.is_dir():
            return []
        rows = []
        for p in sorted(out.iterdir()):
            for line in p.read_text().splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                rows.append((obj["headers"]["leaf"], obj["body"]))
        return rows

    wait_for(lambda: sent <= set(written()), 60, interval=0.1, what="both leaves' lines")
    for a in (*leaves, col):
        assert a.terminate() == 0, a.output()
    assert sorted(written()) == sorted(sent)   # a clean run: no duplicates either

"""Smoke tests of the benchmark harness: ``fchannel bench`` and
``python -m benchmarks`` run on a tiny workload and produce output of the
right shape.  Speed is never asserted here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fchannel
from fchannel.bench import (
    BenchConfig,
    marked_percentiles,
    percentile,
    run_bench,
    summarize,
    tail_curve,
    tail_position,
    write_plot,
)
from fchannel.cli import main

REPO = Path(__file__).resolve().parents[2]
LAT_KEYS = {"count", "median", "p90", "p99", "max"}


def _bench_json(capfd, *argv: str) -> dict:
    rc = main(["bench", *argv, "--json", "--progress", "off"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    return json.loads(out)


def _check_phase(phase: dict, events: int, batch: int) -> None:
    assert phase["events"] == events
    assert phase["events_per_s"] > 0 and phase["mb_per_s"] > 0
    assert set(phase["latency"]) == LAT_KEYS
    lat = phase["latency"]
    assert lat["count"] == -(-events // batch)
    assert 0 <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_summarize_nearest_rank():
    s = summarize([float(x) for x in range(1, 101)])
    assert s == {"count": 100, "median": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert percentile([3.0], 99) == 3.0
    assert summarize([])["count"] == 0


def test_bench_memory_json(tmp_path, capfd):
    r = _bench_json(capfd, str(tmp_path), "--channel", "memory", "-n", "500", "-b", "50",
                    "-p", "2", "-c", "2")
    assert r["channel"] == "memory"
    assert r["implementation"] == ("compiled" if fchannel.COMPILED else "pure")
    _check_phase(r["put"], 500, 50)
    assert r["take"]["events"] == 500 and r["lost_events"] == 0
    assert r["open_s"] >= 0
    assert "reopen_s" not in r          # a memory channel has nothing to replay
    assert r["machine"]["python"] and r["config"]["events"] == 500
    assert os.listdir(tmp_path) == []   # its temporary directory is removed


def test_bench_memory_concurrent_table(tmp_path, capfd):
    rc = main(["bench", str(tmp_path), "--channel", "memory", "-n", "300", "-b", "7",
               "-p", "3", "-c", "2", "--concurrent", "--progress", "off"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    for word in ("put", "take", "events/s", "MB/s", "median ms", "p90 ms", "p99 ms",
                 "max ms", "open (empty)"):
        assert word in out


def test_bench_plot(tmp_path, capfd):
    png = tmp_path / "out.png"
    rc = main(["bench", str(tmp_path), "--channel", "memory", "-n", "200", "-b", "10",
               "--plot", str(png), "--progress", "off"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot: {png}" in out


def test_plot_marks_the_tail_percentiles_and_names_the_run(tmp_path):
    cfg = BenchConfig(directory=str(tmp_path), channel="memory", events=2000, batch_size=1)
    r = run_bench(cfg)
    drawn = write_plot(r, str(tmp_path / "lat.png"))
    assert "2,000 events x 256 B" in drawn["title"] and "batch 1" in drawn["title"]
    assert "memory channel" in drawn["title"]
    for phase in ("put", "take"):
        s = sorted(r["_samples"][phase])
        assert len(s) == 2000          # enough transactions to resolve p99.9
        marks = drawn["marks"][phase]
        assert list(marks) == [50.0, 90.0, 99.0, 99.9]
        assert marks == {q: percentile(s, q) * 1e3 for q in marks}
    assert (tmp_path / "lat.png").stat().st_size > 10_000


def test_tail_axis_spaces_the_percentiles_evenly():
    assert [round(tail_position(q), 6) for q in (0, 90, 99, 99.9)] == [0, 1, 2, 3]
    assert marked_percentiles(10) == [50.0, 90.0]
    assert marked_percentiles(999) == [50.0, 90.0, 99.0]
    assert marked_percentiles(1000) == [50.0, 90.0, 99.0, 99.9]
    xs, ys = tail_curve([3.0, 1.0, 2.0])
    assert ys == [1.0, 2.0, 3.0]
    assert [round(x, 6) for x in xs] == [0.0, round(tail_position(100 / 3), 6),
                                         round(tail_position(200 / 3), 6)]


def test_bench_bad_option(tmp_path, capfd):
    rc = main(["bench", str(tmp_path), "--channel", "memory", "-n", "0"])
    _out, err = capfd.readouterr()
    assert rc == 2 and "events must be >= 1" in err


def test_bench_file_json(tmp_path, capfd):
    r = _bench_json(capfd, str(tmp_path), "--channel", "file", "-n", "400", "-b", "40",
                    "--data-dirs", "2")
    assert r["channel"] == "file"
    _check_phase(r["put"], 400, 40)
    assert r["size_after_put"] == 400 and r["size_after_reopen"] == 400
    assert r["reopen_s"] >= 0 and r["take"]["events"] == 400 and r["lost_events"] == 0
    assert os.listdir(tmp_path) == []


def test_benchmarks_entry_point(tmp_path):
    # raw-sync without raw-prealloc: the run adds the preallocated line itself
    queues = "raw-sync,raw-nosync,sqlite,memory,memory-pure,file"
    out = tmp_path / "results"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("FCHANNEL_NO_EXTENSIONS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scale", "0.001", "--repeats", "1",
         "--workloads", "acdh", "--queues", queues, "--dir", str(tmp_path), "--out", str(out),
         "--name", "smoke"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    md = (out / "smoke.md").read_text()
    for heading in ("# fchannel benchmarks", "## Machine and versions", "## Targets (issue 15)",
                    "## (a) 256-byte events", "## (c) single-event durable transactions",
                    "## (d) 8 producer threads", "## (h) CPU path"):
        assert heading in md
    for text in ("raw append+fdatasync (naive line)",
                 "raw overwrite of preallocated space+fdatasync (physical line)",
                 "fchannel MemoryChannel (pure)", "| put vs naive | put vs prealloc |",
                 "commits per fdatasync"):
        assert text in md
    res = json.loads((out / "smoke.json").read_text())
    a = res["throughput"]["a"]
    for q in [*queues.split(","), "raw-prealloc"]:
        row = a[q]
        assert row["events"] > 0 and row["lost"] == 0
        assert row["put_eps"] > 0 and row["take_eps"] > 0
        assert set(row["put_lat"]) == LAT_KEYS
    # the physical line wrote its zeros before the timed puts, and only overwrote in them
    assert a["raw-prealloc"]["reserve_stats"]["reserve_steps"] >= 1
    assert a["raw-prealloc"]["put_stats"]["prealloc_steps"] == 0
    # FileChannel's own counters: one commit per batch, at least one log sync per commit
    # with one producer; (d)'s 8 producers may share syncs
    fa = a["file"]["put_stats"]
    assert fa["commits"] == a["file"]["events"] // 100 and fa["commits_per_sync"] <= 1.0
    fd = res["throughput"]["d"]["file"]["put_stats"]
    assert fd["commits"] == res["throughput"]["d"]["file"]["events"]
    assert 0 < fd["log_syncs"] <= fd["commits"]
    # (h) runs the CPU-path queues only
    assert set(res["throughput"]["h"]) == {"raw-nosync", "memory", "memory-pure", "file"}
    targets = {t for t, _m, _v in (r for r in _target_rows(md))}
    assert "(h) CPU path (fsync by interval, batch 100, 256 B) >= 4,000,000 puts/s" in targets
    assert (out / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["meta"]["machine"]["cpus"] >= 1
    # only the queue directories' parent is left: every run cleaned up after itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def _target_rows(md: str) -> list[tuple[str, str, str]]:
    part = md.split("## Targets (issue 15)", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in part.splitlines()
            if line.startswith("| (")]
    return [(r[0].strip(), r[1].strip(), r[2].strip()) for r in rows]


def test_benchmarks_rejects_an_unknown_workload(tmp_path):
    from benchmarks.run import main as bench_main
    assert bench_main(["--workloads", "az", "--out", str(tmp_path)]) == 2

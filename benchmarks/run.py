"""Entry point: ``python -m benchmarks [--quick] [--workloads abcdefgh] ...``.

Runs fchannel against the baselines and peers on the workloads of issues 5
and 15 in one process run (the naive raw line ``raw-sync`` always comes with
the preallocated one ``raw-prealloc``, so ratios to both are of one run), and writes ``benchmarks/results/<date>-<machine>.md`` (plus
the raw numbers as ``.json`` and a ``.png`` plot).  The pure-Python build
(``FCHANNEL_NO_EXTENSIONS=1``) runs in a child process.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sqlite3
import sys
import tempfile
import time
from typing import Any

import fchannel
from benchmarks import report, workloads
from benchmarks.queues import all_adapters, available
from fchannel.bench import machine_info

NAMES = {
    "raw-sync": "raw append+fdatasync (naive line)",
    "raw-prealloc": "raw overwrite of preallocated space+fdatasync (physical line)",
    "raw-nosync": "raw write, no sync (baseline)",
    "persist-queue": "persist-queue SQLiteAckQueue",
    "diskcache": "diskcache Deque in transact()",
    "sqlite": "sqlite3 WAL queue",
    "lmdb": "lmdb queue",
    "memory": "fchannel MemoryChannel",
    "file": "fchannel FileChannel",
    "file-enc": "fchannel FileChannel, encrypted (AES-GCM)",
    "memory-pure": "fchannel MemoryChannel (pure)",
    "file-pure": "fchannel FileChannel (pure)",
}
ALL_QUEUES = report.ORDER
ALL_WORKLOADS = "abcdefgh"
# the two raw lines every durable queue is measured against, always in the same run
RAW_LINES = ("raw-sync", "raw-prealloc")


def _log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {"sqlite3 (stdlib)": "SQLite " + sqlite3.sqlite_version}
    for dist in ("persist-queue", "diskcache", "lmdb", "matplotlib"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="a 1/10 size run (scale 0.1) for a first look")
    size.add_argument("--scale", type=float, default=1.0,
                      help="multiply every workload's event count (default 1.0: the "
                           "issue's sizes, e.g. 200,000 events for (a))")
    p.add_argument("--repeats", type=int, default=3, help="runs per queue and workload (>= 3 "
                                                         "for the reported medians)")
    p.add_argument("--workloads", default=ALL_WORKLOADS,
                   help="which of a-h to run (default all); e-g need FileChannel; h is "
                        "the CPU path (fsync by interval) of the fchannel queues")
    p.add_argument("--queues", default=",".join(ALL_QUEUES),
                   help="comma-separated subset of: " + ", ".join(ALL_QUEUES)
                        + " (raw-sync and raw-prealloc always run together)")
    p.add_argument("--dir", default=None,
                   help="where the queues live (default: a temporary directory under "
                        "benchmarks/results/../.., i.e. on the repository's disk)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"),
                   help="directory for the results files")
    p.add_argument("--name", default=None,
                   help="results file stem (default <date>-<machine>, plus -quick for --quick "
                        "or -scale<F> for other scales)")
    p.add_argument("--note", default="", help="a sentence for the results file")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--limits", metavar="TEXT|@FILE",
                   help="markdown put under the targets table: what limits a missed target, "
                        "with profile evidence (with --render: rewrite it)")
    p.add_argument("--render", metavar="RESULTS.json",
                   help="measure nothing: rewrite the .md and .png next to a results .json")
    return p.parse_args(argv)


def _write(res: dict[str, Any], out: str, stem: str, plot: bool) -> str:
    names = dict(NAMES)
    png = os.path.join(out, stem + ".png")
    if plot:
        try:
            if report.plot(res, names, png):
                res["meta"]["plot"] = os.path.basename(png)
            else:
                res["meta"].pop("plot", None)
                _log("no workload with both raw lines (nor (h)): no plot")
        except ImportError:
            _log("matplotlib not installed: no plot")
    md = os.path.join(out, stem + ".md")
    with open(md, "w", encoding="utf-8") as f:
        f.write(report.markdown(res, names))
    with open(os.path.join(out, stem + ".json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    return md


def _text(arg: str) -> str:
    if arg.startswith("@"):
        with open(arg[1:], encoding="utf-8") as f:
            return f.read().strip()
    return arg


def _command(argv: list[str]) -> str:
    """The command line, with the --note text (printed separately) elided."""
    shown, skip = [], False
    for a in argv:
        if skip:
            shown.append("...")
            skip = False
        elif a == "--note":
            shown.append(a)
            skip = True
        elif a.startswith("--note="):
            shown.append("--note=...")
        else:
            shown.append(shlex.quote(a))
    return " ".join(["python -m benchmarks", *shown])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        with open(args.render, encoding="utf-8") as f:
            res = json.load(f)
        if args.limits:
            res["meta"]["limits"] = _text(args.limits)
        out, name = os.path.split(os.path.abspath(args.render))
        print(_write(res, out, name[:-len(".json")] if name.endswith(".json") else name,
                     not args.no_plot))
        return 0
    scale = 0.1 if args.quick else args.scale
    if scale <= 0 or args.repeats < 1:
        print("scale must be > 0 and repeats >= 1", file=sys.stderr)
        return 2
    wanted = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(ALL_QUEUES))
    if unknown:
        print(f"unknown queue(s): {', '.join(unknown)}; choose from {', '.join(ALL_QUEUES)}",
              file=sys.stderr)
        return 2
    if any(q in wanted for q in RAW_LINES):
        for q in RAW_LINES:
            if q not in wanted:
                _log(f"adding {q}: the naive and the preallocated raw lines run together")
                wanted.insert(wanted.index(RAW_LINES[0]) + 1 if q == RAW_LINES[1]
                              else 0, q)
    bad = sorted(set(args.workloads) - set(ALL_WORKLOADS))
    if bad:
        print(f"unknown workload(s): {', '.join(bad)}; choose from {ALL_WORKLOADS}",
              file=sys.stderr)
        return 2
    wl = [w for w in ALL_WORKLOADS if w in args.workloads]
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", machine_info()["hostname"]) or "machine"
    date = time.strftime("%Y-%m-%d")
    stem = args.name or f"{date}-{host}" + (
        "" if scale == 1.0 else "-quick" if args.quick else f"-scale{scale:g}")
    os.makedirs(args.out, exist_ok=True)
    base = args.dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".bench-", dir=base)
    # a SIGTERM unwinds like Ctrl-C, so the queues' directory is removed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        res = _run(args, scale, wanted, wl, work)
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    res["meta"].update({
        "date": date, "scale": scale, "repeats": args.repeats,
        "command": _command(argv if argv is not None else sys.argv[1:]),
        "note": args.note,
        "limits": _text(args.limits) if args.limits else "",
    })
    md = _write(res, args.out, stem, not args.no_plot)
    _log(f"wrote {md}")
    print(md)
    return 0


def _run(args: argparse.Namespace, scale: float, wanted: list[str], wl: list[str],
         work: str) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = "%.2f %.2f %.2f" % os.getloadavg()
    factories = all_adapters()
    res: dict[str, Any] = {"meta": {
        "machine": machine_info(work), "versions": _versions(), "started": started,
        "load_start": load_start}, "throughput": {}}
    inproc = [q for q in wanted if not q.endswith("-pure")]
    pure = [q for q in wanted if q.endswith("-pure")]
    for key in [w for w in wl if w in workloads.THROUGHPUT]:
        w = workloads.THROUGHPUT[key]
        n = w.n(scale)
        rows: dict[str, Any] = {}
        runs: dict[str, list[dict[str, Any]]] = {}
        runnable = []
        for q in inproc:
            if not w.durable and q not in workloads.CPU_PATH_QUEUES:
                continue
            why = available(q)
            if why:
                rows[q] = {"skipped": why}
            else:
                rows[q] = {}
                runs[q] = []
                runnable.append(q)
        for r in range(args.repeats):     # round robin: noise spreads over all queues
            for q in runnable:
                cap = factories[q]().events_cap if w.batch > 1 else 1.0
                nq = max(w.batch * w.producers * 2, int(n * cap))
                one = workloads.run_throughput_once(factories[q], w, nq, work)
                runs[q].append(one)
                _log(f"({key}) {q:14s} run {r + 1}/{args.repeats}: "
                     f"put {one['events'] / one['put_s']:>11,.0f} ev/s, "
                     f"take {one['taken'] / max(one['take_s'], 1e-9):>11,.0f} ev/s")
        for q in runnable:
            rows[q] = workloads.aggregate(runs[q], w.size)
        for q in pure:
            if not w.durable and q not in workloads.CPU_PATH_QUEUES:
                continue
            base_q = q[:-len("-pure")]
            why = available(base_q)
            if why:
                rows[q] = {"skipped": why}
                continue
            _log(f"({key}) {q}: {args.repeats} runs in a child with FCHANNEL_NO_EXTENSIONS=1")
            p = workloads._worker("throughput", {
                "workload": key, "adapter": base_q, "events": n, "repeats": args.repeats,
                "dir": work}, env={"FCHANNEL_NO_EXTENSIONS": "1"})
            rows[q] = workloads._read_json_line(p, 7200)
            p.wait()
        res["throughput"][key] = rows
    if "e" in wl:
        n = max(1000, int(workloads.E_EVENTS * scale))
        _log(f"(e) open after SIGKILL, {n:,} events")
        res["e"] = workloads.run_open_after_kill(n, args.repeats, work)
    if "f" in wl:
        n = max(1000, int(workloads.F_EVENTS * scale))
        _log(f"(f) checkpoint pause, {n:,} queued")
        res["f"] = workloads.run_checkpoint_pause(n, max(3, args.repeats), work)
    if "g" in wl:
        n = max(1000, int(workloads.G_EVENTS * scale))
        _log(f"(g) resident memory, {n:,} events")
        res["g"] = workloads.run_rss_per_event(n, work)
    res["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    res["meta"]["load_end"] = "%.2f %.2f %.2f" % os.getloadavg()
    res["meta"]["fchannel_compiled"] = fchannel.COMPILED
    return res

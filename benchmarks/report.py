"""Turn the collected results into the results markdown and a PNG plot."""
from __future__ import annotations

import math
from typing import Any

from benchmarks.queues import PREALLOC_STEP
from benchmarks.workloads import OTHER, THROUGHPUT

DURABLE_PEERS = ("persist-queue", "diskcache", "sqlite", "lmdb")
# report order: baselines, peers, fchannel (JSON round trips sort the keys)
ORDER = ["raw-sync", "raw-prealloc", "raw-nosync", "persist-queue", "diskcache", "sqlite", "lmdb",
         "memory", "file", "file-enc", "memory-pure", "file-pure"]


def ordered(rows: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(rows.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER
                                                else len(ORDER), kv[0]))


def _eps(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:,.0f}"


def _lat(s: dict[str, float], unit: float = 1e6) -> str:
    if not s or not s.get("count"):
        return "-"
    return "%s / %s / %s / %s / %s" % (
        f"{s['count']:,}", *(f"{s[k] * unit:,.0f}" for k in ("median", "p90", "p99", "max")))


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def fastest_peer(rows: dict[str, Any], field: str) -> tuple[str | None, float | None]:
    best: tuple[str | None, float | None] = (None, None)
    for k in DURABLE_PEERS:
        r = rows.get(k)
        if r and "put_eps" in r and (best[1] is None or r[field] > best[1]):
            best = (k, r[field])
    return best


def _row(rows: dict[str, Any], key: str) -> dict[str, Any] | None:
    r = rows.get(key)
    return r if r and "put_eps" in r else None


def commits_per_sync(r: dict[str, Any] | None, phase: str = "put") -> float | None:
    if not r:
        return None
    return r.get(f"{phase}_stats", {}).get("commits_per_sync")


def targets(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for the targets of issue 15, each from this run."""
    tp = res.get("throughput", {})
    out: list[tuple[str, str, str]] = []

    scale = res.get("meta", {}).get("scale", 1.0)
    at_scale = "" if scale == 1.0 else f" at scale {scale:g}"

    def verdict(ok: bool) -> str:
        return ("met" if ok else "**missed**") + at_scale

    def missing(target: str, *needs: str) -> None:
        out.append((target, "not measured", "needs " + ", ".join(needs) + " in the run"))

    def vs_line(target: str, wl: str, q: str, field: str, line: str, factor: float) -> None:
        rows = tp.get(wl, {})
        r, base = _row(rows, q), _row(rows, line)
        if not r or not base:
            missing(target, f"({wl})", f"--queues {q},{line}")
            return
        ratio = r[field] / base[field]
        out.append((target, f"{ratio:.2f}x ({_eps(r[field])} vs {_eps(base[field])} ev/s)",
                    verdict(ratio >= factor)))

    a = tp.get("a", {})
    vs_line("(a) put >= 0.9x the preallocated raw line", "a", "file", "put_eps",
            "raw-prealloc", 0.9)
    vs_line("(a) take >= 0.9x the raw take line (raw-sync's takes)", "a", "file", "take_eps",
            "raw-sync", 0.9)
    for field, label in (("put_eps", "put"), ("take_eps", "take")):
        target = f"(a) {label} >= 2x the fastest durable peer"
        fa = _row(a, "file")
        peer, v = fastest_peer(a, field)
        if fa and peer and v:
            out.append((f"{target} ({peer})", f"{fa[field] / v:.2f}x "
                        f"({_eps(fa[field])} vs {_eps(v)} ev/s)", verdict(fa[field] >= 2 * v)))
        else:
            missing(target, "(a)", "file", "a durable peer (" + ", ".join(DURABLE_PEERS) + ")")
    vs_line("(b) 4 KiB events: put >= 0.9x the preallocated raw line", "b", "file", "put_eps",
            "raw-prealloc", 0.9)
    c = tp.get("c", {})
    fc, rc = _row(c, "file"), _row(c, "raw-sync")
    target = "(c) single-event transaction median <= the naive raw single-event median"
    if fc and rc:
        med, raw = fc["put_lat"]["median"] * 1e6, rc["put_lat"]["median"] * 1e6
        out.append((target, f"{med:,.0f} us vs {raw:,.0f} us", verdict(med <= raw)))
    else:
        missing(target, "(c)", "--queues raw-sync,file")
    fd = _row(tp.get("d", {}), "file")
    target = "(d) 8 producer threads >= 5x the single-thread (c) events/s"
    if fc and fd:
        ratio = fd["put_eps"] / fc["put_eps"]
        cps = commits_per_sync(fd)
        meas = f"{ratio:.2f}x ({_eps(fd['put_eps'])} vs {_eps(fc['put_eps'])} ev/s)"
        if cps:
            meas += f"; {cps:.1f} commits per fdatasync"
        out.append((target, meas, verdict(ratio >= 5)))
    else:
        missing(target, "(c)", "(d)", "file")
    h = tp.get("h", {})
    fh, ph = _row(h, "file"), _row(h, "file-pure")
    for field, label, goal in (("put_eps", "puts", 4_000_000), ("take_eps", "takes", 3_000_000)):
        target = f"(h) CPU path (fsync by interval, batch 100, 256 B) >= {goal:,} {label}/s"
        if fh:
            out.append((target, _eps(fh[field]), verdict(fh[field] >= goal)))
        else:
            missing(target, "(h)", "file")
    target = "(h) compiled >= 5x the pure twins on the CPU path (worse of put/take)"
    if fh and ph:
        r = min(fh["put_eps"] / ph["put_eps"], fh["take_eps"] / ph["take_eps"])
        out.append((target, f"{r:.2f}x (put {fh['put_eps'] / ph['put_eps']:.2f}x, take "
                    f"{fh['take_eps'] / ph['take_eps']:.2f}x)", verdict(r >= 5)))
    else:
        missing(target, "(h)", "file", "file-pure")
    e = res.get("e")
    if e and "checkpoint" in e:
        out.append(("(e) no regression: open after kill -9 with a checkpoint <= 0.5 s",
                    f"{e['checkpoint']['open_s']:.3f} s ({e['events']:,} events)",
                    verdict(e["checkpoint"]["open_s"] <= 0.5)))
        out.append(("(e) no regression: full replay <= 0.5 s",
                    f"{e['replay']['open_s']:.3f} s ({e['events']:,} events)",
                    verdict(e["replay"]["open_s"] <= 0.5)))
    else:
        missing("(e) open after kill -9: checkpoint <= 0.5 s, full replay <= 0.5 s", "(e)")
    f = res.get("f")
    if f and "pause_s" in f:
        out.append(("(f) no regression: checkpoint pause on a producer <= 50 ms",
                    f"{f['pause_s'] * 1e3:.1f} ms ({f['events']:,} queued)",
                    verdict(f["pause_s"] <= 0.050)))
    else:
        missing("(f) checkpoint pause <= 50 ms", "(f)")
    g = res.get("g")
    if g and "bytes_per_event" in g:
        out.append(("(g) no regression: resident memory <= 24 bytes per queued event",
                    f"{g['bytes_per_event']:.1f} B ({g['events']:,} events)",
                    verdict(g["bytes_per_event"] <= 24)))
    else:
        missing("(g) <= 24 bytes per queued event", "(g)")
    return out


def _counters(k: str, r: dict[str, Any]) -> str:
    """What the queue's own counters say about its puts (group commit, zero-fill)."""
    ps = r.get("put_stats", {})
    rs = r.get("reserve_stats", {})
    parts = []
    if rs.get("reserve_steps"):
        parts.append(f"zero-fill ahead, not timed: {rs['reserve_s'] * 1e3:,.0f} ms, "
                     f"{rs['reserve_steps']:,.0f} step(s)")
    cps = ps.get("commits_per_sync")
    if cps:
        parts.append(f"{cps:.2f} commits per fdatasync ({ps['commits']:,.0f} / "
                     f"{ps['log_syncs']:,.0f})")
    if ps.get("prealloc_steps"):
        parts.append(f"zero-fill inside puts (timed): {ps['prealloc_s'] * 1e3:,.0f} ms, "
                     f"{ps['prealloc_steps']:,.0f} step(s)")
    return "; ".join(parts) or "-"


def _table(rows: dict[str, Any], names: dict[str, str], durable: bool) -> list[str]:
    if durable:
        naive, pre = _row(rows, "raw-sync") or {}, _row(rows, "raw-prealloc") or {}
        heads = ["put vs naive", "put vs prealloc", "take vs naive", "take vs prealloc",
                 "put vs fastest peer", "take vs fastest peer"]
    else:
        nosync = _row(rows, "raw-nosync") or {}
        heads = ["put vs raw no sync", "take vs raw no sync"]
    out = ["| queue | events | put ev/s | put MB/s | take ev/s | take MB/s "
           "| put latency us | take latency us | " + " | ".join(heads) + " | counters (puts) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | "
           + " | ".join("---:" for _ in heads) + " | --- |"]
    _p, best_put = fastest_peer(rows, "put_eps")
    _t, best_take = fastest_peer(rows, "take_eps")
    for k, r in ordered(rows):
        name = names.get(k, k)
        if "skipped" in r:
            out.append(f"| {name} | skipped: {r['skipped']} |" + " |" * (len(heads) + 7))
            continue
        if durable:
            peer = k in DURABLE_PEERS
            ratios = [_ratio(r["put_eps"], naive.get("put_eps")),
                      _ratio(r["put_eps"], pre.get("put_eps")),
                      _ratio(r["take_eps"], naive.get("take_eps")),
                      _ratio(r["take_eps"], pre.get("take_eps")),
                      "-" if peer else _ratio(r["put_eps"], best_put),
                      "-" if peer else _ratio(r["take_eps"], best_take)]
        else:
            ratios = [_ratio(r["put_eps"], nosync.get("put_eps")),
                      _ratio(r["take_eps"], nosync.get("take_eps"))]
        lost = f" ({r['lost']:,} lost!)" if r.get("lost") else ""
        out.append(
            f"| {name} | {r['events']:,}{lost} | {_eps(r['put_eps'])} | "
            f"{r['put_mbps']:.1f} | {_eps(r['take_eps'])} | {r['take_mbps']:.1f} | "
            f"{_lat(r['put_lat'])} | {_lat(r['take_lat'])} | " + " | ".join(ratios)
            + f" | {_counters(k, r)} |")
    return out


def markdown(res: dict[str, Any], names: dict[str, str]) -> str:
    meta = res["meta"]
    m = meta["machine"]
    lines = [
        f"# fchannel benchmarks: {meta['date']}, {m['hostname']}",
        "",
        f"Measured {meta['started']} to {meta['finished']} with `{meta['command']}` "
        f"(scale {meta['scale']}, {meta['repeats']} runs per queue and workload; "
        f"load average {meta['load_start']} at the start, {meta['load_end']} at the end).",
        "",
    ]
    if meta.get("scale", 1.0) != 1.0:
        lines += [f"**A scale {meta['scale']:g} run: {meta['scale']:g}x the issue's event "
                  "counts, so its rates are noisier and its targets are not the issue's "
                  "measurement; a results file for the issue is a scale 1 run.**", ""]
    if meta.get("note"):
        lines += [meta["note"], ""]
    lines += [
        "Rates are the median over runs of events/s; latencies are over every "
        "transaction of every run, in microseconds: count / median / p90 / p99 / max. "
        "A transaction's latency runs from its start to the return of its commit. "
        "MB/s counts event bodies (10^6 bytes). Ratios are against the two raw lines "
        "and the fastest durable peer measured in the same run: **naive** is `raw-sync` "
        "(records appended to a growing file, `fdatasync` per batch: each sync also "
        "commits the file's new size to the filesystem journal), **prealloc** is "
        "`raw-prealloc` (the same records written with `pwrite` over blocks zero-filled "
        f"ahead of the writer, {PREALLOC_STEP >> 20} MiB of written zeros and one `fdatasync` per step, done "
        "before the timed puts as a preallocated or recycled log file would be ready, its "
        "time shown under counters; each batch is an overwrite plus `fdatasync` with no "
        "metadata to commit: the physical line). Both take lines read the records back and store the read "
        "offset in a second file, fdatasync'd per batch. Each run opens a fresh queue in "
        "a new directory under the benchmark directory.",
        "",
        "How each queue is driven (see `benchmarks/queues.py`): \"durable\" means the "
        "commit has reached the disk when it returns. persist-queue "
        "`SQLiteAckQueue` (its defaults: WAL, synchronous=FULL) has no batch API and forces "
        "autocommit, so a batch is one commit per put, or a `get` plus an `ack` per take "
        "and then `clear_acked_data()`; its latency column is that of the whole batch, and "
        "it runs a tenth of the events in (a) and (b). diskcache `Deque` uses a `Cache` "
        "with `sqlite_synchronous=2` (FULL), a batch inside `transact()`. sqlite3: WAL, "
        "synchronous=FULL, one `BEGIN IMMEDIATE`...`COMMIT` per batch. lmdb: `sync=True`, "
        "big-endian sequence-number keys, `putmulti(append=True)`, takes from the first "
        "key. FileChannel: `fsync_per_transaction=True`, one data directory; its "
        "commits per fdatasync come from its counters (`commit_count` / `log_syncs` "
        "over the puts). (h) is the CPU path: FileChannel with `fsync_per_transaction="
        "False` (fsync by interval), against the unsynced raw line. MemoryChannel keeps "
        "nothing on disk. The pure rows run in a child process with "
        "`FCHANNEL_NO_EXTENSIONS=1`.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "| --- | --- |",
    ]
    for k in ("cpu", "cpus", "memory", "os", "filesystem", "python", "fchannel"):
        lines.append(f"| {k} | {m.get(k, '?')} |")
    for k, v in meta["versions"].items():
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Targets (issue 15)", "", "| target | measured | verdict |",
              "| --- | --- | --- |"]
    for t, meas, v in targets(res):
        lines.append(f"| {t} | {meas} | {v} |")
    if meta.get("limits"):
        lines += ["", meta["limits"]]
    lines.append("")
    for key, w in THROUGHPUT.items():
        rows = res.get("throughput", {}).get(key)
        if rows is None:
            continue
        lines += [f"## ({key}) {w.title}", ""] + _table(rows, names, w.durable) + [""]
    for key in ("e", "f", "g"):
        if key not in res:
            continue
        r = res[key]
        lines += [f"## ({key}) {OTHER[key]}"
                  + (f" (this run: {r['events']:,} events)" if "events" in r else ""), ""]
        if "skipped" in r:
            lines += [f"Skipped: {r['skipped']}", ""]
            continue
        if key == "e":
            lines += [
                f"{r['events']:,} events ({r['data_bytes'] / 1e6:,.0f} MB of logs) put in "
                f"batches of 1,000 by a child process, checkpointed, then SIGKILLed. Each "
                "open runs in a fresh process that SIGKILLs itself after measuring. The logs "
                "are in the page cache (caches were not dropped).", "",
                "| open | median s | runs (s) | events after open |", "| --- | ---: | --- | --- |",
                f"| with the checkpoint | {r['checkpoint']['open_s']:.3f} | "
                f"{', '.join(f'{x:.3f}' for x in r['checkpoint']['runs'])} | "
                f"{', '.join(f'{x:,}' for x in r['checkpoint']['sizes'])} |",
                f"| checkpoint removed: full replay | {r['replay']['open_s']:.3f} | "
                f"{', '.join(f'{x:.3f}' for x in r['replay']['runs'])} | "
                f"{', '.join(f'{x:,}' for x in r['replay']['sizes'])} |", ""]
        elif key == "f":
            lines += [
                f"{r['events']:,} events queued with no checkpoint, then a producer thread "
                "commits batches of 100 (fsync per transaction) while the main thread forces "
                f"{len(r['checkpoints'])} checkpoints 0.2 s apart; the first applies the whole "
                "queue. Pause: the longest producer transaction overlapping a checkpoint.", "",
                "| checkpoint | duration ms | longest producer transaction ms |",
                "| ---: | ---: | ---: |"]
            for i, cp in enumerate(r["checkpoints"], 1):
                lines.append(f"| {i} | {cp['checkpoint_s'] * 1e3:.1f} | "
                             f"{cp['worst_producer_txn_s'] * 1e3:.1f} |")
            lines += ["", f"Producer transactions outside checkpoints (us): "
                          f"{_lat(r['outside_checkpoint_latency'])}.", ""]
        else:
            lines += [
                f"A child process opens an empty FileChannel (capacity {r['events']:,}), "
                f"puts {r['events']:,} 256-byte events in batches of 10,000 (fsync by "
                "interval) and reads its resident set from /proc/self/statm after "
                "gc.collect().", "",
                "| RSS before open | RSS empty | RSS full | peak RSS | bytes per queued event "
                "(full - empty) | peak - empty, per event |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {r['rss_before_open'] / 2**20:,.1f} MiB | {r['rss_empty'] / 2**20:,.1f} MiB "
                f"| {r['rss_full'] / 2**20:,.1f} MiB | {r['peak_rss'] / 2**20:,.1f} MiB "
                f"| {r['bytes_per_event']:.1f} "
                f"| {(r['peak_rss'] - r['rss_empty']) / r['events']:.1f} |", "",
                "The target reads the steady state (full - empty); the peak is the "
                "process's high-water mark (VmHWM) during the fill.", ""]
    lines += ["## Reproduce", "", "```sh",
              "pip install -e '.[bench]'",
              "python -m benchmarks --note '<the machine and its state>'   # full size, a-h",
              "python -m benchmarks --render RESULTS.json --limits @limits.md   # add the "
              "limits, redraw",
              "```", "",
              "`--quick` runs a tenth of the sizes; `--workloads` and `--queues` take subsets "
              "(`raw-sync` and `raw-prealloc` always run together).", "",
              f"Plot: `{meta.get('plot') or 'not written'}`.", ""]
    return "\n".join(lines)


# the durable queues the plot compares with the raw lines (MemoryChannel and the
# unsynced raw line keep nothing on disk: they are in the tables, not the plot)
PLOTTED = ("persist-queue", "diskcache", "sqlite", "lmdb", "file", "file-pure")
SHORT = {"a": "256 B events, batch 100, fsync per commit",
         "b": "4 KiB events, batch 100, fsync per commit",
         "c": "single-event durable transactions",
         "d": "8 producer threads, single-event transactions",
         "h": "CPU path: 256 B, batch 100, fsync by interval"}


def _median_speed(r: dict[str, Any], base: dict[str, Any]) -> float:
    """How many times faster r's median put transaction is than base's."""
    return base["put_lat"]["median"] / r["put_lat"]["median"]


def plot(res: dict[str, Any], names: dict[str, str], path: str) -> bool:
    """Durable queues as ratios to the raw lines of the same run: per workload,
    puts against the preallocated line (lines at 1.0x and at the 0.9x target,
    and where the naive line falls), takes against the raw take line (1.0x,
    0.9x).  The CPU path (h) in events/s against its targets.  False when
    there is nothing to plot (then no file is written)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp = res.get("throughput", {})
    keys = [k for k in THROUGHPUT if k in tp and (
        not THROUGHPUT[k].durable or (_row(tp[k], "raw-prealloc") and _row(tp[k], "raw-sync")))]
    if not keys:        # nothing to plot: no workload with both raw lines, nor (h)
        return False
    fig, axes = plt.subplots(len(keys), 2, figsize=(13, 3.3 * len(keys)), squeeze=False)
    for (ax_put, ax_take), key in zip(axes, keys, strict=True):
        rows = tp[key]
        w = THROUGHPUT[key]
        if w.durable:
            naive, pre = _row(rows, "raw-sync"), _row(rows, "raw-prealloc")
            assert naive and pre
            qs = [k for k in PLOTTED if _row(rows, k)]
            panels = [(ax_take, "take", naive, pre, lambda r, b: r["take_eps"] / b["take_eps"],
                       "raw take line (naive)", "preallocated take line", "prealloc",
                       "take events/s\n/ naive raw line", 0.9)]
            if key == "c":      # (c)'s target is the median transaction, against naive
                panels.insert(0, (ax_put, "put median", naive, pre, _median_speed,
                                  "naive raw median (target)", "preallocated raw median",
                                  "prealloc", "naive median\n/ queue median", None))
            else:
                panels.insert(0, (ax_put, "put", pre, naive,
                                  lambda r, b: r["put_eps"] / b["put_eps"],
                                  "preallocated raw line", "naive append line", "naive",
                                  "put events/s\n/ prealloc raw line", 0.9))
            for ax, what, line, other, rel, ref, other_ref, other_short, ylabel, goal in panels:
                ys = [rel(rows[k], line) for k in qs]
                bars = ax.bar(range(len(qs)), ys, 0.6,
                              color=["tab:orange" if k.startswith("file") else "tab:blue"
                                     for k in qs])
                for b, k in zip(bars, qs, strict=True):
                    ax.annotate(f"{b.get_height():.2f}x\n({rel(rows[k], other):.2f}x "
                                f"{other_short})",
                                (b.get_x() + b.get_width() / 2, b.get_height()),
                                ha="center", va="bottom", fontsize=7)
                ax.axhline(1.0, color="black", lw=1.2, label=f"1.0x {ref}")
                if goal:
                    ax.axhline(goal, color="tab:red", lw=1, ls="--",
                               label=f"{goal}x (target)")
                o = rel(other, line)
                ax.axhline(o, color="tab:gray", lw=1, ls=":", label=f"{other_ref} ({o:.2f}x)")
                ax.set_ylim(0, max([*ys, 1.0, o]) * 1.5)
                ax.set_xticks(list(range(len(qs))))
                ax.set_xticklabels([names.get(k, k) for k in qs], rotation=12, ha="right",
                                   fontsize=7)
                ax.set_ylabel(ylabel, fontsize=8)
                ax.set_title(f"({key}) {what}: {SHORT.get(key, w.title)}", fontsize=9)
                ax.grid(True, axis="y", alpha=0.3)
                ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
        else:
            qs = [k for k in ("raw-nosync", "file", "file-pure") if _row(rows, k)]
            for ax, field, goal, what in ((ax_put, "put_eps", 4e6, "put"),
                                          (ax_take, "take_eps", 3e6, "take")):
                ys = [rows[k][field] / 1e6 for k in qs]
                bars = ax.bar(range(len(qs)), ys, 0.6, color=[
                    "tab:orange" if k.startswith("file") else "tab:gray" for k in qs])
                for b in bars:
                    ax.annotate(f"{b.get_height():.2f}M", (b.get_x() + b.get_width() / 2,
                                b.get_height()), ha="center", va="bottom", fontsize=7)
                ax.axhline(goal / 1e6, color="tab:red", lw=1, ls="--",
                           label=f"target {goal / 1e6:g}M {what}s/s")
                ax.set_ylim(0, max([*ys, goal / 1e6]) * 1.5)
                ax.set_xticks(list(range(len(qs))))
                ax.set_xticklabels([names.get(k, k) for k in qs], rotation=15, ha="right",
                                   fontsize=7)
                ax.set_ylabel(f"{what} (million events/s)", fontsize=8)
                ax.set_title(f"({key}) {what}: {SHORT.get(key, w.title)}", fontsize=9)
                ax.grid(True, axis="y", alpha=0.3)
                ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    fig.suptitle(f"fchannel benchmarks {res['meta']['date']} {res['meta']['machine']['hostname']}"
                 f" (scale {res['meta']['scale']}): durable queues as ratios to the raw lines "
                 "of the same run (orange: fchannel)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True

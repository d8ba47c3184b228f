"""Turn the collected results into the results markdown and a PNG plot."""
from __future__ import annotations

import math
from typing import Any

from benchmarks.workloads import OTHER, THROUGHPUT

DURABLE_PEERS = ("persist-queue", "diskcache", "sqlite", "lmdb")
# report order: baselines, peers, fchannel (JSON round trips sort the keys)
ORDER = ["raw-sync", "raw-nosync", "persist-queue", "diskcache", "sqlite", "lmdb",
         "memory", "file", "memory-pure", "file-pure"]


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


def targets(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for the issue's targets."""
    tp = res.get("throughput", {})
    out: list[tuple[str, str, str]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    a = tp.get("a", {})
    fa = a.get("file")
    if fa and "put_eps" in fa:
        out.append(("(a) put >= 400,000 events/s", _eps(fa["put_eps"]),
                    verdict(fa["put_eps"] >= 400_000)))
        out.append(("(a) take >= 500,000 events/s", _eps(fa["take_eps"]),
                    verdict(fa["take_eps"] >= 500_000)))
        for field, label in (("put_eps", "put"), ("take_eps", "take")):
            peer, v = fastest_peer(a, field)
            if peer and v:
                out.append((f"(a) {label} >= 1.5x fastest durable peer ({peer})",
                            _ratio(fa[field], v), verdict(fa[field] >= 1.5 * v)))
    else:
        out.append(("(a) put >= 400,000, take >= 500,000 events/s, >= 1.5x fastest peer",
                    "not measured", "the FileChannel was not in this run (--queues)"))
    c = tp.get("c", {}).get("file")
    if c and "put_lat" in c:
        med = c["put_lat"]["median"] * 1e6
        out.append(("(c) median single-event transaction <= 120 us", f"{med:,.0f} us",
                    verdict(med <= 120)))
    else:
        out.append(("(c) median <= 120 us", "not measured", "-"))
    d = tp.get("d", {}).get("file")
    if c and d and "put_eps" in d:
        out.append(("(d) 8 producers >= 3x events/s of (c)", _ratio(d["put_eps"], c["put_eps"]),
                    verdict(d["put_eps"] >= 3 * c["put_eps"])))
    else:
        out.append(("(d) >= 3x events/s of (c)", "not measured", "-"))
    e = res.get("e")
    if e and "checkpoint" in e:
        out.append(("(e) open after SIGKILL with a checkpoint <= 0.5 s",
                    f"{e['checkpoint']['open_s']:.3f} s ({e['events']:,} events)",
                    verdict(e["checkpoint"]["open_s"] <= 0.5)))
        out.append(("(e) full replay <= 2 s", f"{e['replay']['open_s']:.3f} s",
                    verdict(e["replay"]["open_s"] <= 2.0)))
    else:
        out.append(("(e) <= 0.5 s with a checkpoint, <= 2 s full replay", "not measured", "-"))
    f = res.get("f")
    if f and "pause_s" in f:
        out.append(("(f) checkpoint pause on a producer <= 50 ms",
                    f"{f['pause_s'] * 1e3:.1f} ms ({f['events']:,} queued)",
                    verdict(f["pause_s"] <= 0.050)))
    else:
        out.append(("(f) <= 50 ms", "not measured", "-"))
    g = res.get("g")
    if g and "bytes_per_event" in g:
        out.append(("(g) resident memory <= 24 bytes per queued event",
                    f"{g['bytes_per_event']:.1f} B ({g['events']:,} events)",
                    verdict(g["bytes_per_event"] <= 24)))
    else:
        out.append(("(g) <= 24 bytes per event", "not measured", "-"))
    pure = tp.get("a", {}).get("file-pure")
    if fa and pure and "put_eps" in pure and "put_eps" in fa:
        r = min(fa["put_eps"] / pure["put_eps"], fa["take_eps"] / pure["take_eps"])
        out.append(("compiled >= 5x pure (FileChannel, (a), worse of put/take)",
                    f"{r:.2f}x", verdict(r >= 5)))
    else:
        out.append(("compiled >= 5x pure (FileChannel)", "not measured", "-"))
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
    if meta.get("note"):
        lines += [meta["note"], ""]
    lines += [
        "Rates are the median over runs of events/s; latencies are over every "
        "transaction of every run, in microseconds: count / median / p90 / p99 / max. "
        "A transaction's latency runs from its start to the return of its commit. "
        "MB/s counts event bodies (10^6 bytes). Ratios are against the baselines and the "
        "fastest durable peer measured in the same run. Each run opens a fresh queue in a "
        "new directory under the benchmark directory.",
        "",
        "How each queue is driven (see `benchmarks/queues.py`): \"durable\" means the "
        "commit has reached the disk when it returns. Raw baselines append length-prefixed "
        "records with `os.write`, then `os.fdatasync` per batch (or no sync); a take "
        "stores its read offset in a second file, fdatasync'd. persist-queue "
        "`SQLiteAckQueue` (its defaults: WAL, synchronous=FULL) has no batch API and forces "
        "autocommit, so a batch is one commit per put, or a `get` plus an `ack` per take "
        "and then `clear_acked_data()`; its latency column is that of the whole batch, and "
        "it runs a tenth of the events in (a) and (b). diskcache `Deque` uses a `Cache` "
        "with `sqlite_synchronous=2` (FULL), a batch inside `transact()`. sqlite3: WAL, "
        "synchronous=FULL, one `BEGIN IMMEDIATE`...`COMMIT` per batch. lmdb: `sync=True`, "
        "big-endian sequence-number keys, `putmulti(append=True)`, takes from the first "
        "key. FileChannel: `fsync_per_transaction=True`, one data directory. "
        "MemoryChannel keeps nothing on disk. The pure rows run in a child process with "
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
    lines += ["", "## Targets (issue 5)", "", "| target | measured | verdict |",
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
        raw = rows.get("raw-sync", {})
        lines += [f"## ({key}) {w.title}", "",
                  "| queue | events | put ev/s | put MB/s | take ev/s | take MB/s "
                  "| put latency us | take latency us | put vs raw+fdatasync "
                  "| take vs raw+fdatasync | put vs fastest peer |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |"]
        _peer, best = fastest_peer(rows, "put_eps")
        for k, r in ordered(rows):
            name = names.get(k, k)
            if "skipped" in r:
                lines.append(f"| {name} | skipped: {r['skipped']} |" + " |" * 9)
                continue
            lost = f" ({r['lost']:,} lost!)" if r.get("lost") else ""
            lines.append(
                f"| {name} | {r['events']:,}{lost} | {_eps(r['put_eps'])} | "
                f"{r['put_mbps']:.1f} | {_eps(r['take_eps'])} | {r['take_mbps']:.1f} | "
                f"{_lat(r['put_lat'])} | {_lat(r['take_lat'])} | "
                f"{_ratio(r['put_eps'], raw.get('put_eps'))} | "
                f"{_ratio(r['take_eps'], raw.get('take_eps'))} | "
                f"{_ratio(r['put_eps'], best) if k not in DURABLE_PEERS else '-'} |")
        lines.append("")
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
              "python -m benchmarks            # full size; --quick for a 1/10 run",
              "```", "",
              f"Plot: `{meta.get('plot') or 'not written'}`.", ""]
    return "\n".join(lines)


def plot(res: dict[str, Any], names: dict[str, str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp = res.get("throughput", {})
    keys = [k for k in THROUGHPUT if k in tp]
    if not keys:
        return
    fig, axes = plt.subplots(len(keys), 1, figsize=(11, 3.4 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        rows = {k: r for k, r in ordered(tp[key]) if "put_eps" in r}
        labels = [names.get(k, k) for k in rows]
        xs = range(len(rows))
        if key in ("c",):
            med = [r["put_lat"]["median"] * 1e6 for r in rows.values()]
            p99 = [r["put_lat"]["p99"] * 1e6 for r in rows.values()]
            ax.bar([x - 0.2 for x in xs], med, 0.4, label="put median")
            ax.bar([x + 0.2 for x in xs], p99, 0.4, label="put p99")
            ax.set_ylabel("latency (us)")
        else:
            ax.bar([x - 0.2 for x in xs], [r["put_eps"] for r in rows.values()], 0.4,
                   label="put")
            ax.bar([x + 0.2 for x in xs], [r["take_eps"] for r in rows.values()], 0.4,
                   label="take")
            ax.set_ylabel("events/s")
        ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"({key}) {THROUGHPUT[key].title}", fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"fchannel benchmarks {res['meta']['date']} {res['meta']['machine']['hostname']}"
                 f" (scale {res['meta']['scale']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

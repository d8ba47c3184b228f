"""``fchannel bench``: measure a channel on your own disk.

Runs one workload against a FileChannel (or a MemoryChannel) in a directory
you name and prints events/s, MB/s, the latency of each transaction (count,
median, p90, p99, max) and the time to open the channel and to reopen it
(replay) with the events queued.

The workload: ``--producers`` threads put ``--events`` events of
``--event-size`` bytes in transactions of ``--batch-size`` events; the
channel is then closed and reopened (file channel only: that is the replay
time); then ``--consumers`` threads take them all in transactions of
``--batch-size``.  With ``--concurrent`` producers and consumers run at the
same time instead (no reopen).

A transaction's latency is measured from ``begin`` to the return of
``commit`` (the whole ``with ch.transaction()`` block), so it includes the
fsync when ``--fsync transaction``.  MB/s counts event bodies (10^6 bytes).

The same helpers (:func:`summarize`, :func:`machine_info`) are used by the
comparison suite in ``benchmarks/`` at the top of the repository.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import fchannel
from fchannel import Event, FileChannel, MemoryChannel

# ---- statistics --------------------------------------------------------------

def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 < q <= 100) of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """count, median, p90, p99, max of *samples* (no averages)."""
    s = sorted(samples)
    return {
        "count": len(s),
        "median": percentile(s, 50),
        "p90": percentile(s, 90),
        "p99": percentile(s, 99),
        "max": s[-1] if s else float("nan"),
    }


def _read_first(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def filesystem_of(path: str) -> str:
    """'ext4 on /dev/vda' for the mount holding *path* (Linux), else '?'."""
    path = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                dev, mnt, fstype = parts[0], parts[1], parts[2]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and \
                        len(mnt) >= len(best[0]):
                    best = (mnt, fstype, dev)
    except OSError:
        return "?"
    return f"{best[1]} on {best[2]} (mounted at {best[0] or '?'})"


def machine_info(directory: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on."""
    mem = _read_first("/proc/meminfo", "MemTotal")
    if mem and mem.endswith(" kB") and mem[:-3].strip().isdigit():
        mem = f"{int(mem[:-3]) / 2**20:.1f} GiB"
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": _read_first("/proc/cpuinfo", "model name") or platform.processor() or "?",
        "cpus": os.cpu_count(),
        "memory": mem or "?",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "fchannel": f"{fchannel.__version__} ({'compiled' if fchannel.COMPILED else 'pure'})",
    }
    try:
        info["load_average"] = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover
        pass
    if directory is not None:
        info["filesystem"] = filesystem_of(directory)
    return info


# ---- progress ------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr, for long runs on a terminal."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label = label
        self.total = max(1, total)
        self.enabled = enabled
        self.done = 0
        self._lock = threading.Lock()
        self._last = 0.0
        self._start = time.perf_counter()

    def add(self, n: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.done += n
            now = time.perf_counter()
            if now - self._last < 0.2 and self.done < self.total:
                return
            self._last = now
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            rate = self.done / max(now - self._start, 1e-9)
            sys.stderr.write(f"\r{self.label:5s} [{bar:30s}] {frac:4.0%} "
                             f"{self.done:,}/{self.total:,} {rate:,.0f} ev/s ")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---- the workload ----------------------------------------------------------------

@dataclass
class BenchConfig:
    directory: str = "."
    channel: str = "file"            # file | memory
    events: int = 100_000
    event_size: int = 256
    batch_size: int = 100
    producers: int = 1
    consumers: int = 1
    fsync: str = "transaction"       # transaction | interval
    fsync_interval: float = 5.0
    data_dirs: int = 1
    checkpoint_interval: float = 30.0
    concurrent: bool = False
    reopen: bool = True
    keep: bool = False
    progress: bool = False
    timeout: float = 3600.0
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.channel not in ("file", "memory"):
            raise ValueError(f"channel must be 'file' or 'memory', got {self.channel!r}")
        if self.fsync not in ("transaction", "interval"):
            raise ValueError(f"fsync must be 'transaction' or 'interval', got {self.fsync!r}")
        for name in ("events", "batch_size", "producers", "consumers", "data_dirs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, "
                                 f"got {getattr(self, name)!r}")
        if self.event_size < 0:
            raise ValueError(f"event-size must be >= 0, got {self.event_size!r}")


def _open_channel(cfg: BenchConfig, root: str) -> Any:
    capacity = max(cfg.events, cfg.batch_size)
    if cfg.channel == "memory":
        return MemoryChannel(capacity=capacity, transaction_capacity=cfg.batch_size,
                             keep_alive=0)
    data_dirs = [os.path.join(root, f"data-{i}") for i in range(cfg.data_dirs)]
    return FileChannel(os.path.join(root, "checkpoint"), data_dirs,
               capacity=capacity, transaction_capacity=cfg.batch_size,
               checkpoint_interval=cfg.checkpoint_interval,
               fsync_per_transaction=cfg.fsync == "transaction",
               fsync_interval=cfg.fsync_interval, **cfg.extra)


def _event_pool(n: int, size: int) -> list[Event]:
    """Up to 1,024 distinct events with random (incompressible) bodies."""
    return [Event(os.urandom(size)) for _ in range(min(n, 1024))]


def _shares(total: int, parts: int) -> list[int]:
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


def _phase_result(n: int, seconds: float, size: int, lat: list[float]) -> dict[str, Any]:
    seconds = max(seconds, 1e-9)
    return {
        "events": n,
        "seconds": seconds,
        "events_per_s": n / seconds,
        "mb_per_s": n * size / seconds / 1e6,
        "latency": summarize(lat),
    }


class _Runner:
    def __init__(self, cfg: BenchConfig, ch: Any) -> None:
        self.cfg = cfg
        self.ch = ch
        self.errors: list[BaseException] = []
        self.deadline = time.monotonic() + cfg.timeout
        self.put_lat: list[list[float]] = [[] for _ in range(cfg.producers)]
        self.take_lat: list[list[float]] = [[] for _ in range(cfg.consumers)]
        self.taken = 0
        self.taken_lock = threading.Lock()
        self.producers_done = threading.Event()

    def producer(self, i: int, count: int, pool: list[Event], progress: Progress) -> None:
        lat = self.put_lat[i]
        b = self.cfg.batch_size
        npool = len(pool)
        pos = (i * 97) % npool
        clock = time.perf_counter
        try:
            left = count
            while left > 0:
                k = min(b, left)
                if pos + k <= npool:
                    batch = pool[pos:pos + k]
                else:
                    batch = (pool[pos:] + pool)[:k]
                pos = (pos + k) % npool
                t0 = clock()
                with self.ch.transaction() as tx:
                    tx.put_batch(batch)
                lat.append(clock() - t0)
                left -= k
                progress.add(k)
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"bench timed out after {self.cfg.timeout}s")
        except BaseException as exc:  # reported by the caller
            self.errors.append(exc)

    def consumer(self, i: int, total: int, progress: Progress) -> None:
        lat = self.take_lat[i]
        b = self.cfg.batch_size
        clock = time.perf_counter
        try:
            while True:
                with self.taken_lock:
                    if self.taken >= total:
                        return
                # read before the take: an empty take after every put committed
                # means the rest (if any) is in another consumer's transaction
                done = self.producers_done.is_set()
                t0 = clock()
                with self.ch.transaction() as tx:
                    got = tx.take_batch(b)
                t1 = clock()
                if got:
                    lat.append(t1 - t0)
                    with self.taken_lock:
                        self.taken += len(got)
                    progress.add(len(got))
                    continue
                if done or self.errors:
                    return
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"bench timed out after {self.cfg.timeout}s")
                time.sleep(0.0002)   # empty channel while producers still run
        except BaseException as exc:
            self.errors.append(exc)


def _run_threads(targets: list[tuple[Callable[..., None], tuple]]) -> float:
    threads = [threading.Thread(target=f, args=a, daemon=True) for f, a in targets]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the workload; returns the results (latencies in seconds).

    The raw transaction latencies are under ``"_samples"`` (for plots); the
    rest is JSON-ready.
    """
    cfg.check()
    os.makedirs(cfg.directory, exist_ok=True)
    root = tempfile.mkdtemp(prefix="fchannel-bench-", dir=cfg.directory)
    result: dict[str, Any] = {
        "channel": cfg.channel,
        "implementation": "compiled" if fchannel.COMPILED else "pure",
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress", "keep")},
        "machine": machine_info(root),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    pool = _event_pool(cfg.events, cfg.event_size)
    ch = None
    try:
        t0 = time.perf_counter()
        ch = _open_channel(cfg, root)
        result["open_s"] = time.perf_counter() - t0
        runner = _Runner(cfg, ch)
        shares = _shares(cfg.events, cfg.producers)
        show = cfg.progress
        if cfg.concurrent:
            pp = Progress("put", cfg.events, show)
            pt = Progress("take", cfg.events, False)

            def produce_all() -> None:
                _run_threads([(runner.producer, (i, shares[i], pool, pp))
                              for i in range(cfg.producers)])
                runner.producers_done.set()

            t0 = time.perf_counter()
            targets: list[tuple[Callable[..., None], tuple]] = [(produce_all, ())]
            targets += [(runner.consumer, (i, cfg.events, pt)) for i in range(cfg.consumers)]
            wall = _run_threads(targets)
            pp.finish()
            put_s = wall
            take_s = wall
        else:
            pp = Progress("put", cfg.events, show)
            put_s = _run_threads([(runner.producer, (i, shares[i], pool, pp))
                                  for i in range(cfg.producers)])
            pp.finish()
            runner.producers_done.set()
            if runner.errors:
                raise runner.errors[0]
            result["size_after_put"] = ch.size
            if cfg.channel == "file" and cfg.reopen:
                t0 = time.perf_counter()
                ch.close()
                result["close_s"] = time.perf_counter() - t0
                ch = None
                t0 = time.perf_counter()
                ch = _open_channel(cfg, root)
                result["reopen_s"] = time.perf_counter() - t0
                result["size_after_reopen"] = ch.size
                runner.ch = ch
            pt = Progress("take", cfg.events, show)
            take_s = _run_threads([(runner.consumer, (i, cfg.events, pt))
                                   for i in range(cfg.consumers)])
            pt.finish()
        if runner.errors:
            raise runner.errors[0]
        put_lat = [x for part in runner.put_lat for x in part]
        take_lat = [x for part in runner.take_lat for x in part]
        result["put"] = _phase_result(cfg.events, put_s, cfg.event_size, put_lat)
        result["take"] = _phase_result(runner.taken, take_s, cfg.event_size, take_lat)
        result["lost_events"] = cfg.events - runner.taken
        try:
            result["counters"] = {k: v for k, v in dict(ch.counters).items()
                                  if isinstance(v, (int, float, str))}
        except Exception:  # counters are informative only
            pass
        result["_samples"] = {"put": put_lat, "take": take_lat}
        return result
    finally:
        if ch is not None:
            ch.close()
        if cfg.keep:
            result["kept_directory"] = root
        else:
            shutil.rmtree(root, ignore_errors=True)


# ---- output ------------------------------------------------------------------------

def _ms(x: float) -> str:
    return f"{x * 1e3:.3f}"


def format_table(r: dict[str, Any]) -> str:
    cfg = r["config"]
    lines = [
        f"fchannel bench: {r['channel']} channel ({r['implementation']}), "
        f"{cfg['events']:,} events x {cfg['event_size']} B, batch {cfg['batch_size']}, "
        f"{cfg['producers']} producer(s), {cfg['consumers']} consumer(s), "
        + (("fsync per transaction" if cfg["fsync"] == "transaction"
            else f"fsync every {cfg['fsync_interval']}s")
           + f", {cfg['data_dirs']} data dir(s)" if r["channel"] == "file" else "no disk")
        + (", concurrent" if cfg["concurrent"] else ", put then take"),
        f"directory: {cfg['directory']} ({r['machine'].get('filesystem', '?')})",
        "",
        f"{'phase':6s} {'events':>10s} {'events/s':>12s} {'MB/s':>9s} "
        f"{'txns':>8s} {'median ms':>10s} {'p90 ms':>9s} {'p99 ms':>9s} {'max ms':>9s}",
    ]
    for phase in ("put", "take"):
        p = r[phase]
        lat = p["latency"]
        lines.append(
            f"{phase:6s} {p['events']:>10,} {p['events_per_s']:>12,.0f} {p['mb_per_s']:>9.2f} "
            f"{lat['count']:>8,} {_ms(lat['median']):>10s} {_ms(lat['p90']):>9s} "
            f"{_ms(lat['p99']):>9s} {_ms(lat['max']):>9s}")
    lines.append("")
    lines.append(f"open (empty): {_ms(r['open_s'])} ms")
    if "reopen_s" in r:
        lines.append(f"reopen/replay with {r.get('size_after_put', 0):,} queued: "
                     f"{_ms(r['reopen_s'])} ms (close took {_ms(r['close_s'])} ms; "
                     f"{r['size_after_reopen']:,} events after reopen)")
    if cfg["concurrent"]:
        lines.append("concurrent: put and take rates are over the same wall time")
    if r.get("lost_events"):
        lines.append(f"WARNING: {r['lost_events']:,} events put but not taken")
    lines.append("transaction latency: begin to commit return; MB/s: event bodies, 10^6 B")
    return "\n".join(lines)


#: the percentiles marked on the latency plot
MARKED_PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def tail_position(q: float) -> float:
    """Where percentile *q* (0 <= q < 100) sits on the plot's tail axis:
    -log10(1 - q/100), so p50, p90, p99 and p99.9 are evenly spaced (0.3, 1, 2, 3)."""
    import math
    return -math.log10(1.0 - q / 100.0)


def tail_curve(samples: Sequence[float]) -> tuple[list[float], list[float]]:
    """(x, latency) of every sample sorted, x on the tail axis: the i-th of n
    sorted samples is at percentile 100*i/n."""
    s = sorted(samples)
    n = len(s)
    return [tail_position(100.0 * i / n) for i in range(n)], list(s)


def marked_percentiles(count: int) -> list[float]:
    """The marked percentiles that *count* samples resolve (p99.9 needs 1,000)."""
    return [q for q in MARKED_PERCENTILES if count * (1.0 - q / 100.0) >= 1.0 - 1e-9]


def _ms_label(v: float, _pos: Any = None) -> str:
    return f"{v:g}" if v >= 0.01 else f"{v:.0e}"


def plot_title(r: dict[str, Any]) -> str:
    cfg = r["config"]
    disk = ("fsync per transaction" if cfg["fsync"] == "transaction"
            else f"fsync every {cfg['fsync_interval']:g} s") if r["channel"] == "file" \
        else "in memory"
    return (f"fchannel bench: {r['channel']} channel ({r['implementation']}), "
            f"{cfg['events']:,} events x {cfg['event_size']} B\n"
            f"batch {cfg['batch_size']}, {cfg['producers']} producer(s), "
            f"{cfg['consumers']} consumer(s), {disk}"
            + (", concurrent" if cfg["concurrent"] else ""))


def write_plot(r: dict[str, Any], path: str) -> dict[str, Any]:
    """Transaction latency by percentile for puts and takes.

    The x axis is the tail axis of :func:`tail_position` (p50, p90, p99,
    p99.9 evenly spaced, as in latency histograms), the y axis latency in ms
    on a log scale with 1-2-5 ticks; each curve marks and labels its p50,
    p90, p99 and p99.9 (those its sample count resolves), the legend gives
    the rates and the title the event count and settings.  Returns what was
    drawn (title, marks per phase) for tests and callers.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(9, 5.5))
    drawn: dict[str, Any] = {"title": plot_title(r), "marks": {}}
    top = 0.0
    for phase, color in (("put", "tab:blue"), ("take", "tab:orange")):
        samples = r["_samples"][phase]
        if not samples:
            continue
        xs, ys = tail_curve(samples)
        ys_ms = [v * 1e3 for v in ys]
        top = max(top, xs[-1])
        ax.step(xs, ys_ms, where="post", color=color, linewidth=1.4,
                label=f"{phase}: {r[phase]['events_per_s']:,.0f} events/s, "
                      f"{r[phase]['mb_per_s']:.1f} MB/s, {len(samples):,} transactions")
        s = sorted(samples)
        marks = {}
        for q in marked_percentiles(len(s)):
            v = percentile(s, q) * 1e3
            x = tail_position(q)
            marks[q] = v
            ax.plot([x], [v], "o", color=color, markersize=5)
            ax.annotate(f"{v:.3g} ms", (x, v), textcoords="offset points",
                        xytext=(4, 6 if phase == "put" else -12), fontsize=8, color=color)
        drawn["marks"][phase] = marks
    ticks = [0.0] + [tail_position(q) for q in MARKED_PERCENTILES]
    labels = ["p0", "p50", "p90", "p99", "p99.9"]
    q, more = 99.99, 4
    while tail_position(q) <= top + 1e-9:       # finer ticks when there are enough samples
        ticks.append(tail_position(q))
        labels.append(f"p{q:g}")
        more += 1
        q = 100.0 - 10.0 ** (2 - more)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels)
    ax.set_xlim(0, max(top, tail_position(90.0)) * 1.02)
    ax.set_xlabel("percentile of transactions (tail axis: each step is 10x rarer)")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(_ms_label))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("transaction latency, ms (begin to commit return)")
    ax.set_title(drawn["title"], fontsize=11)
    ax.grid(True, which="major", alpha=0.35)
    ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


# ---- the subcommand ------------------------------------------------------------------

def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench", help="measure a channel on your own disk",
        description="Put then take N events through a channel in DIRECTORY and print "
                    "events/s, MB/s, transaction latency (median, p90, p99, max) and "
                    "open/replay time.")
    p.add_argument("directory", nargs="?", default=".",
                   help="where to create the channel (a temporary subdirectory, removed "
                        "afterwards); default: the current directory")
    p.add_argument("--channel", choices=("file", "memory"), default="file")
    p.add_argument("-n", "--events", type=int, default=100_000)
    p.add_argument("-s", "--event-size", type=int, default=256, help="body bytes")
    p.add_argument("-b", "--batch-size", type=int, default=100,
                   help="events per transaction")
    p.add_argument("-p", "--producers", type=int, default=1, help="producer threads")
    p.add_argument("-c", "--consumers", type=int, default=1, help="consumer threads")
    p.add_argument("--fsync", choices=("transaction", "interval"), default="transaction",
                   help="fsync each transaction, or every --fsync-interval seconds")
    p.add_argument("--fsync-interval", type=float, default=5.0)
    p.add_argument("--data-dirs", type=int, default=1, help="number of data directories")
    p.add_argument("--checkpoint-interval", type=float, default=30.0)
    p.add_argument("--concurrent", action="store_true",
                   help="run producers and consumers at the same time")
    p.add_argument("--no-reopen", dest="reopen", action="store_false",
                   help="do not close and reopen (replay) between put and take")
    p.add_argument("--keep", action="store_true", help="keep the channel directory")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="OUT.png", help="write a latency plot (needs matplotlib)")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr (auto: on a terminal, for >= 100,000 events)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many s")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    progress = args.progress == "on" or (
        args.progress == "auto" and sys.stderr.isatty() and args.events >= 100_000)
    cfg = BenchConfig(
        directory=args.directory, channel=args.channel, events=args.events,
        event_size=args.event_size, batch_size=args.batch_size, producers=args.producers,
        consumers=args.consumers, fsync=args.fsync, fsync_interval=args.fsync_interval,
        data_dirs=args.data_dirs, checkpoint_interval=args.checkpoint_interval,
        concurrent=args.concurrent, reopen=args.reopen, keep=args.keep, progress=progress,
        timeout=args.timeout)
    try:
        cfg.check()
    except ValueError as exc:
        print(f"fchannel bench: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("fchannel bench: --plot needs matplotlib (pip install 'fchannel[bench]')",
                  file=sys.stderr)
            return 2
    try:
        r = run_bench(cfg)
    except (fchannel.ChannelError, OSError, TimeoutError) as exc:
        print(f"fchannel bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.plot:
        write_plot(r, args.plot)
    samples = r.pop("_samples")
    if args.json:
        json.dump(r, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(format_table(r))
        if args.plot:
            print(f"plot: {args.plot}")
    del samples
    return 1 if r.get("lost_events") else 0

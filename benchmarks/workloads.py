"""The workloads (a)-(h) of issues 5 and 15 and the code that runs them.

Throughput workloads (a)-(d) run against every adapter in ``queues``; (h), the
CPU path (fsync by interval), runs the fchannel queues and the unsynced raw
baseline only; the recovery and memory workloads (e)-(g) concern FileChannel only and run in
child processes (``python -m benchmarks.worker``) so that a SIGKILL, a cold
open or a resident-set measurement is not disturbed by the parent.
"""
from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.queues import Adapter
from fchannel import FileChannel
from fchannel.bench import summarize


@dataclass(frozen=True)
class Throughput:
    key: str
    title: str
    events: int            # at scale 1.0
    size: int
    batch: int
    producers: int = 1
    take_batch: int = 0    # 0: same as batch
    durable: bool = True   # False: no sync per commit (FileChannel: fsync by interval)

    def n(self, scale: float) -> int:
        return max(self.producers * max(self.batch, 1) * 2, int(self.events * scale))


THROUGHPUT = {
    "a": Throughput("a", "256-byte events, batch 100, fsync per commit, put then take",
                    200_000, 256, 100),
    "b": Throughput("b", "4 KiB events, batch 100, fsync per commit, put then take",
                    200_000, 4096, 100),
    "c": Throughput("c", "single-event durable transactions, put then take",
                    5_000, 256, 1),
    "d": Throughput("d", "8 producer threads, single-event durable transactions "
                         "(then one consumer takes in batches of 100)",
                    20_000, 256, 1, producers=8, take_batch=100),
    "h": Throughput("h", "CPU path: 256-byte events, batch 100, fsync by interval "
                         "(FileChannel fsync_per_transaction=False), put then take",
                    1_000_000, 256, 100, durable=False),
}
# (h) measures the CPU cost of the channel: queues that only make sense synced
# (the synced raw lines) or that sync anyway are left out of it
CPU_PATH_QUEUES = ("raw-nosync", "memory", "file", "memory-pure", "file-pure")

OTHER = {
    "e": "open time after SIGKILL with 1,000,000 queued 256-byte events, "
         "with a checkpoint and with none (full replay)",
    "f": "longest pause a checkpoint imposes on a concurrent producer, 1,000,000 queued",
    "g": "resident memory per queued event at 10,000,000 events",
}
E_EVENTS = 1_000_000
F_EVENTS = 1_000_000
G_EVENTS = 10_000_000


def _pool(n: int, size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(min(n, 1024))]


def _batches(pool: list[Any], count: int, batch: int, start: int):
    npool = len(pool)
    pos = start % npool
    left = count
    while left > 0:
        k = min(batch, left)
        if pos + k <= npool:
            yield pool[pos:pos + k]
        else:
            yield (pool[pos:] + pool * (1 + k // npool))[:k]
        pos = (pos + k) % npool
        left -= k


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def run_throughput_once(factory: Callable[[], Adapter], w: Throughput, n: int,
                        base_dir: str, durable: bool | None = None) -> dict[str, Any]:
    """One run: open a fresh queue, put n events, take them all, close.  The
    adapter's counters (``Adapter.stats``) are recorded as their change over
    the puts and over the takes."""
    if durable is None:
        durable = w.durable
    d = tempfile.mkdtemp(prefix=f"w{w.key}-", dir=base_dir)
    a = factory()
    try:
        t0 = time.perf_counter()
        a.open(d, durable, capacity=n + 1024, batch=max(w.batch, w.take_batch))
        open_s = time.perf_counter() - t0
        pool = a.prepare(_pool(n, w.size))
        reserve0 = a.stats()
        a.reserve(n, n * w.size)
        stats0 = a.stats()
        shares = [n // w.producers + (1 if i < n % w.producers else 0)
                  for i in range(w.producers)]
        lats: list[list[float]] = [[] for _ in range(w.producers)]
        errors: list[BaseException] = []
        clock = time.perf_counter

        def produce(i: int) -> None:
            lat = lats[i]
            put = a.put_batch
            try:
                for batch in _batches(pool, shares[i], w.batch, i * 131):
                    t = clock()
                    put(batch)
                    lat.append(clock() - t)
            except BaseException as exc:
                errors.append(exc)

        if w.producers == 1:
            t0 = clock()
            produce(0)
            put_s = clock() - t0
        else:
            threads = [threading.Thread(target=produce, args=(i,)) for i in range(w.producers)]
            t0 = clock()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            put_s = clock() - t0
        if errors:
            raise errors[0]
        stats1 = a.stats()
        take_lat: list[float] = []
        tb = w.take_batch or w.batch
        taken = 0
        take = a.take_batch
        t0 = clock()
        while taken < n:              # bounded: each pass takes >= 1 or stops
            t = clock()
            k = take(tb)
            if not k:
                break
            take_lat.append(clock() - t)
            taken += k
        take_s = clock() - t0
        stats2 = a.stats()
        return {
            "events": n, "taken": taken, "open_s": open_s,
            "put_s": put_s, "take_s": take_s,
            "reserve_stats": _delta(stats0, reserve0),
            "put_stats": _delta(stats1, stats0), "take_stats": _delta(stats2, stats1),
            "put_lat": [x for part in lats for x in part], "take_lat": take_lat,
        }
    finally:
        try:
            a.close()
        finally:
            shutil.rmtree(d, ignore_errors=True)


def aggregate(runs: list[dict[str, Any]], size: int) -> dict[str, Any]:
    """Medians over runs for rates; latency percentiles over all transactions."""
    n = runs[0]["events"]
    put_eps = [r["events"] / max(r["put_s"], 1e-9) for r in runs]
    take_eps = [r["taken"] / max(r["take_s"], 1e-9) for r in runs]
    put_lat = [x for r in runs for x in r["put_lat"]]
    take_lat = [x for r in runs for x in r["take_lat"]]
    return {
        "events": n,
        "runs": len(runs),
        "lost": max(r["events"] - r["taken"] for r in runs),
        "put_eps": statistics.median(put_eps),
        "take_eps": statistics.median(take_eps),
        "put_eps_runs": put_eps,
        "take_eps_runs": take_eps,
        "put_mbps": statistics.median(put_eps) * size / 1e6,
        "take_mbps": statistics.median(take_eps) * size / 1e6,
        "put_lat": summarize(put_lat),
        "take_lat": summarize(take_lat),
        "open_s": statistics.median(r["open_s"] for r in runs),
        # medians over runs of each counter's change during the puts / the takes
        "reserve_stats": _median_stats([r.get("reserve_stats", {}) for r in runs]),
        "put_stats": _median_stats([r.get("put_stats", {}) for r in runs]),
        "take_stats": _median_stats([r.get("take_stats", {}) for r in runs]),
    }


def _median_stats(per_run: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for d in per_run for k in d})
    out = {k: statistics.median(d[k] for d in per_run if k in d) for k in keys}
    ratios = [d["commits"] / d["log_syncs"] for d in per_run
              if d.get("log_syncs") and "commits" in d]
    if ratios:          # FileChannel: commits sharing each log fdatasync (group commit)
        out["commits_per_sync"] = statistics.median(ratios)
    return out


# ---- FileChannel-only workloads (e), (f), (g) -----------------------------------------

def _fc_args(root: str, capacity: int, **kw: Any) -> tuple[tuple, dict[str, Any]]:
    kw.setdefault("transaction_capacity", 10_000)
    kw.setdefault("checkpoint_interval", 1e6)   # only explicit checkpoints
    return ((os.path.join(root, "checkpoint"), [os.path.join(root, "data")]),
            dict(capacity=capacity, **kw))


def _fill(ch: Any, n: int, size: int, batch: int, label: str = "") -> None:
    """Put n events in batches; with a label, report progress on stderr."""
    from fchannel import Event
    pool = [Event(b) for b in _pool(n, size)]
    step = max(1, n // batch // 10)
    t0 = time.perf_counter()
    for i, b in enumerate(_batches(pool, n, batch, 0)):
        with ch.transaction() as tx:
            tx.put_batch(b)
        if label and i % step == step - 1:
            done = (i + 1) * batch
            sys.stderr.write(f"  {label}: {done:,}/{n:,} put "
                             f"({done / (time.perf_counter() - t0):,.0f} ev/s)\n")
            sys.stderr.flush()


def _worker(task: str, spec: dict[str, Any], env: dict[str, str] | None = None,
            timeout: float = 3600.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.worker", task, json.dumps(spec)]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
        if env.get("FCHANNEL_NO_EXTENSIONS"):
            # the pure twins on purpose: an inherited "require compiled" must not refuse them
            full_env.pop("FCHANNEL_REQUIRE_EXTENSIONS", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                            env=full_env, text=True)


def _read_json_line(p: subprocess.Popen, timeout: float) -> dict[str, Any]:
    """The first stdout line of a worker, as JSON (bounded wait)."""
    box: list[str] = []
    stdout = p.stdout
    assert stdout is not None
    t = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not box or not box[0].strip():
        p.kill()
        p.wait()
        raise RuntimeError(f"worker {p.args!r} gave no result (exit {p.returncode})")
    return json.loads(box[0])


def run_open_after_kill(n: int, repeats: int, base_dir: str, timeout: float = 3600.0
                        ) -> dict[str, Any]:
    """(e): fill n events in a child, checkpoint, SIGKILL it; then time cold opens
    in fresh children that SIGKILL themselves after measuring (so that no close
    or checkpoint changes the state between runs): first with the checkpoint,
    then with the checkpoint directory emptied before each open (full replay)."""
    root = tempfile.mkdtemp(prefix="we-", dir=base_dir)
    try:
        spec = {"root": root, "events": n}
        p = _worker("fill", spec)
        ready = _read_json_line(p, timeout)
        p.send_signal(signal.SIGKILL)
        p.wait()
        out: dict[str, Any] = {"events": n, "fill_s": ready["fill_s"],
                               "data_bytes": _du(os.path.join(root, "data"))}
        for mode in ("checkpoint", "replay"):
            times, sizes = [], []
            for _ in range(repeats):
                if mode == "replay":
                    cp = os.path.join(root, "checkpoint")
                    shutil.rmtree(cp, ignore_errors=True)
                    os.makedirs(cp)
                p = _worker("open", spec)
                r = _read_json_line(p, timeout)
                p.wait()
                times.append(r["open_s"])
                sizes.append(r["size"])
            out[mode] = {"open_s": statistics.median(times), "runs": times, "sizes": sizes}
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def run_checkpoint_pause(n: int, checkpoints: int, base_dir: str) -> dict[str, Any]:
    """(f): fill n events (no checkpoint yet), then a producer commits batches of
    100 with fsync while the main thread forces ``checkpoints`` checkpoints; the
    pause is the longest producer transaction overlapping a checkpoint."""
    cls = FileChannel
    root = tempfile.mkdtemp(prefix="wf-", dir=base_dir)
    try:
        args, kw = _fc_args(root, n + 2_000_000, fsync_per_transaction=True)
        ch = cls(*args, **kw)
        try:
            t0 = time.perf_counter()
            _fill(ch, n, 256, 1000, "(f) fill")
            fill_s = time.perf_counter() - t0
            from fchannel import Event
            pool = [Event(b) for b in _pool(1024, 256)]
            spans: list[tuple[float, float]] = []
            stop = threading.Event()
            errors: list[BaseException] = []

            def produce() -> None:
                clock = time.perf_counter
                try:
                    for batch in _batches(pool, 1_000_000, 100, 0):   # bounded
                        if stop.is_set():
                            return
                        s = clock()
                        with ch.transaction() as tx:
                            tx.put_batch(batch)
                        spans.append((s, clock()))
                except BaseException as exc:
                    errors.append(exc)

            th = threading.Thread(target=produce)
            th.start()
            windows = []
            try:
                deadline = time.monotonic() + 30
                while len(spans) < 50 and th.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.01)
                for _ in range(checkpoints):
                    time.sleep(0.2)
                    c0 = time.perf_counter()
                    ch.checkpoint()
                    windows.append((c0, time.perf_counter()))
                time.sleep(0.2)
            finally:
                stop.set()
                th.join()
            if errors:
                raise errors[0]
            per_cp = []
            inside: set[int] = set()
            for c0, c1 in windows:
                worst = 0.0
                for i, (s, e) in enumerate(spans):
                    if e >= c0 and s <= c1:
                        inside.add(i)
                        worst = max(worst, e - s)
                per_cp.append({"checkpoint_s": c1 - c0, "worst_producer_txn_s": worst})
            outside = [e - s for i, (s, e) in enumerate(spans) if i not in inside]
            return {"events": n, "fill_s": fill_s, "checkpoints": per_cp,
                    "pause_s": max(c["worst_producer_txn_s"] for c in per_cp),
                    "producer_txns": len(spans),
                    "outside_checkpoint_latency": summarize(outside)}
        finally:
            ch.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_rss_per_event(n: int, base_dir: str, timeout: float = 7200.0) -> dict[str, Any]:
    """(g): in a child, open an empty FileChannel, measure RSS, put n events
    (batches of 10,000, fsync by interval), measure RSS again."""
    root = tempfile.mkdtemp(prefix="wg-", dir=base_dir)
    try:
        p = _worker("rss", {"root": root, "events": n})
        r = _read_json_line(p, timeout)
        p.wait()
        r["data_bytes"] = _du(os.path.join(root, "data"))
        return r
    finally:
        shutil.rmtree(root, ignore_errors=True)


def peak_rss_bytes() -> int:
    """This process's peak resident set since it started (VmHWM).  Not
    ru_maxrss: Linux keeps that across execve, so a worker forked from a
    big parent would report the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource  # not Linux: the best there is
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---- worker side (runs in the child: python -m benchmarks.worker TASK JSON) -------------

def worker_main(argv: list[str]) -> int:
    task, spec = argv[0], json.loads(argv[1])
    if task == "throughput":
        from benchmarks.queues import all_adapters
        w = THROUGHPUT[spec["workload"]]
        factory = all_adapters()[spec["adapter"]]
        runs = [run_throughput_once(factory, w, spec["events"], spec["dir"])
                for _ in range(spec["repeats"])]
        print(json.dumps(aggregate(runs, w.size)), flush=True)
        return 0
    cls = FileChannel
    n = spec["events"]
    if task == "fill":
        args, kw = _fc_args(spec["root"], n + 1024, fsync_per_transaction=True)
        ch = cls(*args, **kw)
        t0 = time.perf_counter()
        _fill(ch, n, 256, 1000, "(e) fill")
        ch.checkpoint()
        print(json.dumps({"fill_s": time.perf_counter() - t0, "size": ch.size}), flush=True)
        sys.stdin.readline()        # wait for the parent's SIGKILL (EOF ends it)
        os.kill(os.getpid(), signal.SIGKILL)
    elif task == "open":
        args, kw = _fc_args(spec["root"], n + 1024, fsync_per_transaction=True)
        t0 = time.perf_counter()
        ch = cls(*args, **kw)
        dt = time.perf_counter() - t0
        print(json.dumps({"open_s": dt, "size": ch.size}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)   # no close: leave the state as it was
    elif task == "rss":
        args, kw = _fc_args(spec["root"], n + 1024, fsync_per_transaction=False,
                            checkpoint_interval=30.0)
        gc.collect()
        before_open = rss_bytes()
        ch = cls(*args, **kw)
        gc.collect()
        empty = rss_bytes()
        t0 = time.perf_counter()
        _fill(ch, n, 256, 10_000, "(g) fill")
        fill_s = time.perf_counter() - t0
        gc.collect()
        full = rss_bytes()
        peak = peak_rss_bytes()
        print(json.dumps({"events": n, "size": ch.size, "rss_before_open": before_open,
                          "rss_empty": empty, "rss_full": full, "peak_rss": peak,
                          "bytes_per_event": (full - empty) / n, "fill_s": fill_s}),
              flush=True)
        ch.close()
    else:
        raise SystemExit(f"unknown worker task {task!r}")
    return 0

"""Kill-and-reopen harness for the FileChannel (DESIGN §5, guarantees 1-3).

A child process (``child.py``) runs a random mix of operations and reports
them over a pipe; this side keeps a model of what the channel must hold,
SIGKILLs the child at a random instant (or inside a checkpoint, a log roll or
a log deletion), reopens the channel and checks it against the model:

- every committed put that was not committed-taken is there exactly once;
- nothing uncommitted is visible; takes that were open come back at the head;
- the order is the order of the model (FIFO);
- a commit that was announced but not acknowledged counts either way, and the
  marks committed with it must agree with the way it went;
- the channel keeps working: the parent takes and puts a few events, closes
  it (with or without a checkpoint) and the next child goes on from there.
"""
from __future__ import annotations

import collections
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from fchannel import Event, FileChannel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PHASES = ("random", "checkpoint", "roll", "gc")


def event_for(i: int) -> Event:
    """The event with id *i* (must match child.event_for)."""
    return Event(b"%d:" % i + b"x" * (i * 7 % 181), {"i": str(i)})


class HarnessFailure(AssertionError):
    pass


@dataclass
class Model:
    """What the channel must hold, from the child's reports."""

    avail: list[int] = field(default_factory=list)   # the queue, head first
    held: list[int] | None = None       # taken by the held take transaction
    transient: list[int] | None = None  # taken by the transient take transaction
    pending: tuple | None = None        # ("put", ids) or ("take", "h"|"t"): announced, no OK
    marks: dict[str, int] = field(default_factory=dict)

    def _taken(self, who: str) -> list[int]:
        got = self.held if who == "h" else self.transient
        if got is None:
            raise HarnessFailure(f"child reported on take {who!r} that it never made")
        return got

    def _set_taken(self, who: str, value: list[int] | None) -> None:
        if who == "h":
            self.held = value
        else:
            self.transient = value

    def apply(self, line: str) -> str | None:
        """Apply one report line; returns the phase of an ``M`` line."""
        word, _, rest = line.partition(" ")
        if word == "PUT":
            self.pending = ("put", [int(x) for x in rest.split(",")])
        elif word == "TAKE":
            who, ids_s = rest.split(" ", 1)
            ids = [int(x) for x in ids_s.split(",")]
            if self.avail[:len(ids)] != ids:   # live FIFO check
                raise HarnessFailure(f"take {who} got {ids}, the head of the queue is "
                                     f"{self.avail[:len(ids)]}")
            del self.avail[:len(ids)]
            self._set_taken(who, ids)
        elif word == "TCOMMIT":
            self._taken(rest)
            self.pending = ("take", rest)
        elif word == "TROLLBACK":
            self.avail[:0] = self._taken(rest)
            self._set_taken(rest, None)
        elif word == "OK":
            if self.pending is None:
                raise HarnessFailure("OK without an announced commit")
            self._commit(self.pending)
            self.pending = None
        elif word == "M":
            return rest
        elif word == "READY":
            mode, _, ids_s = rest.partition(" ")
            ids = [int(x) for x in ids_s.split(",") if x]
            if ids != self.avail:
                raise HarnessFailure(
                    f"the child reopened ({mode}) a channel the parent had closed and found "
                    f"{ids}, expected {self.avail}")
        else:
            raise HarnessFailure(f"unknown report {line!r}")
        return None

    def _commit(self, pending: tuple) -> None:
        kind, arg = pending
        if kind == "put":
            self.avail.extend(arg)
            self.marks["put"] = arg[-1]
        else:
            ids = self._taken(arg)
            self.marks["take"] = ids[-1]
            self._set_taken(arg, None)

    def outcomes(self) -> list[tuple[str, list[int], dict[str, int]]]:
        """The states the channel may be in after a kill now:
        ``(name, queue, marks)``."""
        h = self.held or []
        t = self.transient or []
        if self.pending is None:
            return [("settled", h + t + self.avail, dict(self.marks))]
        kind, arg = self.pending
        if kind == "put":
            done = h + t + self.avail + arg
            return [("put lost", h + t + self.avail, dict(self.marks)),
                    ("put done", done, {**self.marks, "put": arg[-1]})]
        taken = self._taken(arg)
        rest = (t if arg == "h" else h) + self.avail
        return [("take lost", h + t + self.avail, dict(self.marks)),
                ("take done", rest, {**self.marks, "take": taken[-1]})]

    def settle(self, queue: list[int], marks: dict[str, int]) -> None:
        self.avail = list(queue)
        self.held = self.transient = None
        self.pending = None
        self.marks = dict(marks)


@dataclass
class Stats:
    kills: int = 0
    per_phase: collections.Counter = field(default_factory=collections.Counter)
    missed_phase: collections.Counter = field(default_factory=collections.Counter)
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    open_modes: collections.Counter = field(default_factory=collections.Counter)
    events_verified: int = 0
    max_queue: int = 0
    torn_tails: int = 0
    reports: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"kills": self.kills, "kills_per_phase": dict(self.per_phase),
                "phase_marker_missed": dict(self.missed_phase),
                "outcomes": dict(self.outcomes), "open_modes": dict(self.open_modes),
                "events_verified": self.events_verified, "max_queue": self.max_queue,
                "torn_tails_cut": self.torn_tails, "reports": self.reports,
                "seconds": round(self.seconds, 1)}


class Harness:
    def __init__(self, base: str, *, backup: bool, seed: int, capacity: int = 3000) -> None:
        self.base = base
        self.ck = os.path.join(base, "ck")
        self.data = [os.path.join(base, "d0"), os.path.join(base, "d1")]
        self.backup = os.path.join(base, "bk") if backup else None
        self.capacity = capacity
        self.rng = random.Random(seed)
        self.seed = seed
        self.model = Model()
        self.stats = Stats()
        self.iteration = 0
        self.context: dict = {}

    # ---- one kill ------------------------------------------------------------------
    def run_once(self) -> None:
        self.iteration += 1
        it = self.iteration
        phase = PHASES[it % len(PHASES)]
        pause = 0.02
        cfg = {
            "seed": self.rng.randrange(1 << 30), "phase": phase if phase != "random" else "none",
            "pause": pause, "checkpoint_dir": self.ck, "data_dirs": self.data,
            "backup_dir": self.backup, "capacity": self.capacity,
            "checkpoint_interval": self.rng.choice([0.05, 0.1, 0.3]),
            "max_file_size": self.rng.choice([2048, 4096, 16384]),
            "fsync_per_transaction": self.rng.random() < 0.8,
            "fast": self.rng.random() < 0.3,
            "first_id": it * 1_000_000, "op_sleep": 0.0,
            **dict(zip(("low", "high"), self.rng.choice([(20, 150), (20, 150), (300, 900)]))),
        }
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        err_path = os.path.join(self.base, "child-stderr.txt")
        with open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, os.path.join(HERE, "child.py"),
                                     json.dumps(cfg)], stdout=subprocess.PIPE, stderr=err,
                                    stdin=subprocess.DEVNULL, env=env)
        self.context = {"iteration": it, "seed": self.seed, "child": cfg,
                        "previous_open": self.context.get("open")}
        try:
            landed = self._drive(proc, phase, pause)
        except HarnessFailure as exc:
            raise HarnessFailure(f"{exc}\ncontext: {self.context}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
            # whatever the child wrote before it died is still in the pipe
            self._read_rest(proc)
            proc.stdout.close()
        with open(err_path, encoding="utf-8", errors="replace") as f:
            err_text = f.read()
        if err_text.strip():
            raise HarnessFailure(f"iteration {it}: the child wrote to stderr:\n{err_text}")
        self.stats.kills += 1
        self.stats.per_phase[landed] += 1
        self.verify()

    def _drive(self, proc: subprocess.Popen, phase: str, pause: float) -> str:
        """Read reports until it is time to kill; kill; return where it landed."""
        fd = proc.stdout.fileno()
        self._buf = b""
        ready_at = None
        kill_at = None
        target = self.rng.randint(1, 3)
        seen = 0
        deadline = time.monotonic() + 30
        while True:
            now = time.monotonic()
            if kill_at is not None and now >= kill_at:
                break
            if now > deadline:
                if ready_at is None:
                    raise HarnessFailure(f"iteration {self.iteration}: child never got ready")
                self.stats.missed_phase[phase] += 1
                phase = "random"
                break
            wait = min(x for x in (kill_at, deadline) if x is not None) - now
            ready, _, _ = select.select([fd], [], [], max(wait, 0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise HarnessFailure(f"iteration {self.iteration}: child exited "
                                     f"({proc.wait()}) before it was killed")
            for line in self._lines(chunk):
                if line.startswith("READY"):
                    ready_at = time.monotonic()
                    if phase == "random":
                        kill_at = ready_at + self.rng.uniform(0.02, 1.0)
                    else:
                        deadline = ready_at + 8.0
                marker = self.model.apply(line)
                if marker == phase and kill_at is None:
                    seen += 1
                    if seen >= target:
                        kill_at = time.monotonic() + self.rng.uniform(0, 2.5 * pause)
        os.kill(proc.pid, signal.SIGKILL)
        return phase

    def _lines(self, chunk: bytes) -> list[str]:
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        self.stats.reports += len(lines)
        return [x.decode() for x in lines]

    def _read_rest(self, proc: subprocess.Popen) -> None:
        fd = proc.stdout.fileno()
        for _ in range(100_000):
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            for line in self._lines(chunk):
                self.model.apply(line)

    # ---- checking after a kill ------------------------------------------------------
    def open(self, **kw) -> FileChannel:
        kw.setdefault("checkpoint_interval", 3600)
        return FileChannel(self.ck, self.data, capacity=self.capacity,
                           transaction_capacity=self.capacity, minimum_required_space=0,
                           keep_alive=0.0, backup_checkpoint_dir=self.backup,
                           max_file_size=4096, **kw)

    def verify(self) -> None:
        it = self.iteration
        options = self.model.outcomes()
        kw = {"use_fast_replay": self.rng.random() < 0.3,
              "checkpoint_on_close": self.rng.random() < 0.7}
        self.context["open"] = kw
        keep = os.environ.get("FCHANNEL_CRASH_KEEP")
        if keep:   # the files as the kill left them, for a post-mortem
            import shutil
            dst = os.path.join(keep, f"last-{os.getpid()}-{self.seed}")
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(self.base, dst, ignore=shutil.ignore_patterns("*.lock"))
        ch = self.open(**kw)
        try:
            c = ch.counters
            self.stats.open_modes[c["open_mode"]] += 1
            self.stats.torn_tails += c["open_torn_tails"]
            bad = [d for d in ch.damage if "incomplete (the process stopped" not in d]
            if bad:
                raise HarnessFailure(f"iteration {it}: a kill left damage other than an "
                                     f"incomplete checkpoint: {bad}")
            tx = ch.transaction()
            tx.begin()
            got = tx.take_batch(self.capacity)
            tx.rollback()
            tx.close()
            ids = []
            for e in got:
                i = int(e.headers["i"])
                if e != event_for(i):
                    raise HarnessFailure(f"iteration {it}: event {i} came back changed: {e!r}")
                ids.append(i)
            marks = ch.marks
            for name, queue, want_marks in options:
                if ids == queue:
                    if marks != want_marks:
                        raise HarnessFailure(
                            f"iteration {it}: queue matches {name!r} but marks are {marks}, "
                            f"expected {want_marks}")
                    self.stats.outcomes[name] += 1
                    break
            else:
                raise HarnessFailure(self._explain(ids, options, c) + f"\ncontext: {self.context}")
            if ch.size != len(ids):
                raise HarnessFailure(f"iteration {it}: size {ch.size} after a rolled-back "
                                     f"take of all {len(ids)} events")
            self.stats.events_verified += len(ids)
            self.stats.max_queue = max(self.stats.max_queue, len(ids))
            # the channel keeps working: take a few, put a few
            k = self.rng.randint(0, min(5, len(ids)))
            with ch.transaction() as tx:
                again = [int(e.headers["i"]) for e in tx.take_batch(k)]
            if again != ids[:k]:
                raise HarnessFailure(f"iteration {it}: take after reopen got {again}, "
                                     f"expected {ids[:k]}")
            new = [it * 1_000_000 + 900_000 + j for j in range(self.rng.randint(0, 5))]
            with ch.transaction() as tx:
                tx.put_batch([event_for(i) for i in new])
            queue = ids[k:] + new
            if ch.size != len(queue):
                raise HarnessFailure(f"iteration {it}: size {ch.size}, expected {len(queue)}")
            self.model.settle(queue, marks)
        finally:
            ch.close()

    def _explain(self, ids, options, counters) -> str:
        lines = [f"iteration {self.iteration} (seed {self.seed}): the reopened channel "
                 f"matches none of the allowed states",
                 f"  got  ({len(ids)}): {ids[:20]}{' ...' if len(ids) > 20 else ''}"]
        got = collections.Counter(ids)
        dup = [i for i, n in got.items() if n > 1]
        if dup:
            lines.append(f"  duplicated: {dup[:20]}")
        for name, queue, _m in options:
            want = set(queue)
            lines.append(f"  {name} ({len(queue)}): missing {sorted(want - set(ids))[:20]}, "
                         f"unexpected {sorted(set(ids) - want)[:20]}, "
                         f"same set {'yes' if want == set(ids) else 'no'}")
        lines.append(f"  open: {counters}")
        return "\n".join(lines)

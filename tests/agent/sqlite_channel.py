"""A small durable channel on SQLite, for the agent's crash tests.

It lets the kill -9 tests of sources and sinks run on a channel whose
committed events survive the crash, whatever channel types the build has,
and shows a channel type plugged in by dotted path
(``a1.channels.c1.type = tests.agent.sqlite_channel.open_channel``).
Committed puts are in the database (synchronous=FULL); takes in flight are
only reserved in memory, so after a crash they are simply still there.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from fchannel import ChannelClosedError, ChannelFullError, ConfigError, Event, Transaction


class _Tx(Transaction):

    def __init__(self, ch: SQLiteChannel) -> None:
        super().__init__(ch.transaction_capacity)
        self.ch = ch
        self.puts: list[Event] = []
        self.taken: list[int] = []

    def _do_put(self, events: list[Event]) -> None:
        self.puts.extend(events)

    def _do_take(self, n: int) -> list[Event]:
        got = self.ch._reserve(n)
        self.taken.extend(i for i, _ in got)
        return [e for _, e in got]

    def _do_commit(self) -> None:
        if self.puts:
            self.ch._insert(self.puts)
        elif self.taken:
            self.ch._delete(self.taken)
        self.puts, self.taken = [], []

    def _do_rollback(self) -> None:
        self.ch._release(self.taken)
        self.puts, self.taken = [], []


class SQLiteChannel:

    def __init__(self, path: str, capacity: int = 10_000, transaction_capacity: int = 100,
                 name: str = "sqlite") -> None:
        self.name = name
        self.capacity = capacity
        self.transaction_capacity = transaction_capacity
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY "
                         "AUTOINCREMENT, body BLOB, headers TEXT)")
        self._reserved: set[int] = set()
        self._closed = False
        self._puts = self._takes = 0

    def _check(self) -> None:
        if self._closed:
            raise ChannelClosedError(f"channel {self.name!r} is closed")

    def transaction(self) -> _Tx:
        self._check()
        return _Tx(self)

    def _insert(self, events: list[Event]) -> None:
        with self._lock:
            self._check()
            if self._count() + len(events) > self.capacity:
                raise ChannelFullError(f"channel {self.name!r} is full")
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO events (body, headers) VALUES (?, ?)",
                                 [(e.body, json.dumps(e.headers)) for e in events])
            self._db.execute("COMMIT")
            self._puts += len(events)

    def _reserve(self, n: int) -> list[tuple[int, Event]]:
        with self._lock:
            self._check()
            rows = self._db.execute(
                "SELECT id, body, headers FROM events ORDER BY id LIMIT ?",
                (n + len(self._reserved),)).fetchall()
            out = []
            for i, body, headers in rows:
                if i in self._reserved:
                    continue
                self._reserved.add(i)
                out.append((i, Event(body, json.loads(headers))))
                if len(out) == n:
                    break
            return out

    def _delete(self, ids: list[int]) -> None:
        with self._lock:
            self._check()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")
            self._reserved.difference_update(ids)
            self._takes += len(ids)

    def _release(self, ids: list[int]) -> None:
        with self._lock:
            self._reserved.difference_update(ids)

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    @property
    def size(self) -> int:
        with self._lock:
            return self._count() - len(self._reserved)

    @property
    def fill_percentage(self) -> float:
        return 100.0 * self.size / self.capacity

    @property
    def counters(self) -> dict[str, Any]:
        return {"channel_size": self.size, "channel_capacity": self.capacity,
                "event_put_success_count": self._puts, "event_take_success_count": self._takes}

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


def open_channel(props: dict[str, str], name: str = "sqlite") -> SQLiteChannel:
    unknown = set(props) - {"path", "capacity", "transactionCapacity"}
    if unknown or "path" not in props:
        raise ConfigError(f"sqlite channel needs path (and capacity, transactionCapacity); "
                          f"unknown: {sorted(unknown)}")
    return SQLiteChannel(props["path"], int(props.get("capacity", 10_000)),
                         int(props.get("transactionCapacity", 100)), name)

"""The transaction state machine shared by every channel.

``Transaction`` (NEW -> OPEN -> COMPLETED -> CLOSED) carries Flume's rules:
``begin`` needs NEW; ``put``/``take``/``commit``/``rollback`` need OPEN;
``close`` needs NEW or COMPLETED; a failed commit leaves the transaction OPEN
so it can still be rolled back; a transaction either puts or takes; at most
``transaction_capacity`` events.  A channel subclasses it and implements
``_do_put``, ``_do_take``, ``_do_commit``, ``_do_rollback`` and optionally
``_do_close``.

Used as a context manager it begins on entry, commits on success, rolls back
on an exception and always closes.  This is policy, not a loop: it lives
here once, in Python (the per-event work is in the channels' compiled codecs).
"""
from __future__ import annotations

import operator
from typing import Any, Literal

from fchannel.errors import TransactionError
from fchannel.event import Event

ST_NEW, ST_OPEN, ST_COMPLETED, ST_CLOSED = 0, 1, 2, 3
KIND_NONE, KIND_PUT, KIND_TAKE = 0, 1, 2
STATES = ("NEW", "OPEN", "COMPLETED", "CLOSED")


class TransactionBase:
    """State machine NEW -> OPEN -> COMPLETED -> CLOSED with Flume's rules."""

    def __init__(self, capacity: int) -> None:
        self._state = ST_NEW
        self._kind = KIND_NONE
        self._count = 0
        self._capacity = capacity

    @property
    def state(self) -> str:
        return STATES[self._state]

    def _need(self, state: int, action: str) -> None:
        if self._state != state:
            raise TransactionError(
                f"cannot {action}: transaction is {STATES[self._state]}, "
                f"{action} needs {STATES[state]}"
            )

    def _room(self, n: int, action: str) -> None:
        if self._count + n > self._capacity:
            raise TransactionError(
                f"cannot {action} {n} more event(s): transaction already holds {self._count} "
                f"of transaction_capacity={self._capacity}; commit more often or raise it"
            )

    def _no_mix(self, forbidden: int, action: str) -> None:
        if self._kind == forbidden:
            done = "took" if forbidden == KIND_TAKE else "put"
            raise TransactionError(f"cannot {action} in a transaction that {done} events; "
                                   "a transaction either puts or takes")

    def begin(self) -> None:
        self._need(ST_NEW, "begin")
        self._state = ST_OPEN

    def put(self, event: Event) -> None:
        self._need(ST_OPEN, "put")
        if type(event) is not Event:
            if event is None:
                raise TransactionError("cannot put None: put needs an Event")
            raise TypeError(f"put needs an Event, got {type(event).__name__}")
        self._no_mix(KIND_TAKE, "put")
        self._room(1, "put")
        self._do_put([event])
        self._kind = KIND_PUT
        self._count += 1

    def put_batch(self, events: Any) -> None:
        self._need(ST_OPEN, "put")
        batch = list(events)
        if batch and set(map(type, batch)) != {Event}:   # one C-level pass; the loop names it
            self._refuse_items(batch)
        self._no_mix(KIND_TAKE, "put")
        if not batch:
            return
        self._room(len(batch), "put")
        self._do_put(batch)
        self._kind = KIND_PUT
        self._count += len(batch)

    @staticmethod
    def _refuse_items(batch: list) -> None:
        for i, e in enumerate(batch):
            if type(e) is not Event:
                if e is None:
                    raise TransactionError(f"cannot put None (item {i}): put needs an Event")
                raise TypeError(f"put needs an Event, item {i} is a {type(e).__name__}")

    def take(self) -> Event | None:
        self._need(ST_OPEN, "take")
        self._no_mix(KIND_PUT, "take")
        self._room(1, "take")
        got = self._do_take(1)
        if not got:
            return None
        self._kind = KIND_TAKE
        self._count += 1
        return got[0]

    def take_batch(self, n: int) -> list[Event]:
        n = operator.index(n)   # an int-like count: no str, no float
        self._need(ST_OPEN, "take")
        if n < 0:
            raise ValueError(f"take_batch needs n >= 0, got n={n}")
        self._no_mix(KIND_PUT, "take")
        if n == 0:
            return []
        self._room(n, "take")
        got = self._do_take(n)
        if got:
            self._kind = KIND_TAKE
            self._count += len(got)
        return got

    def commit(self) -> None:
        self._need(ST_OPEN, "commit")
        self._do_commit()
        self._state = ST_COMPLETED

    def rollback(self) -> None:
        self._need(ST_OPEN, "rollback")
        try:
            self._do_rollback()
        finally:
            # a rollback that raises says it could not undo (the outcome is
            # unknown): there is nothing left to retry, the transaction is over
            self._state = ST_COMPLETED

    def close(self) -> None:
        if self._state == ST_CLOSED:
            raise TransactionError("cannot close: transaction is CLOSED already")
        if self._state == ST_OPEN:
            raise TransactionError("cannot close: transaction is OPEN, commit or rollback it first")
        self._state = ST_CLOSED
        self._do_close()

    # hooks for channels
    def _do_put(self, events: list[Event]) -> None:
        raise NotImplementedError

    def _do_take(self, n: int) -> list[Event]:
        raise NotImplementedError

    def _do_commit(self) -> None:
        raise NotImplementedError

    def _do_rollback(self) -> None:
        raise NotImplementedError

    def _do_close(self) -> None:
        pass

    def __enter__(self) -> TransactionBase:
        if self._state == ST_NEW:
            self.begin()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        try:
            if self._state == ST_OPEN:
                if exc_type is None:
                    try:
                        self.commit()
                    except BaseException:
                        self.rollback()   # may raise too (an outcome only a reopen knows)
                        raise
                else:
                    self.rollback()
        finally:
            if self._state != ST_CLOSED and self._state != ST_OPEN:
                self.close()
        return False

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {STATES[self._state]} "
                f"events={self._count}/{self._capacity}>")


Transaction = TransactionBase

__all__ = ["Transaction", "TransactionBase", "STATES"]

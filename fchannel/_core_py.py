"""Pure-Python twin of ``fchannel/_core.pyx``: the executable specification of
Event and the transaction state machine.  Selected by FCHANNEL_NO_EXTENSIONS=1
(see ``fchannel/_compat.py``); the test suite runs against both.
"""
from __future__ import annotations

import operator
from typing import Any, Literal

from fchannel.errors import TransactionError

REPR_PREVIEW = 32
ST_NEW, ST_OPEN, ST_COMPLETED, ST_CLOSED = 0, 1, 2, 3
KIND_NONE, KIND_PUT, KIND_TAKE = 0, 1, 2
STATE_NAMES = ("NEW", "OPEN", "COMPLETED", "CLOSED")


def _check_headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    try:
        out = dict(headers)
    except (TypeError, ValueError):
        raise TypeError(
            f"Event headers must be a mapping of str to str, got {type(headers).__name__}"
        ) from None
    for k, v in out.items():
        if type(k) is not str:
            raise TypeError(f"Event header key {k!r} must be str, got {type(k).__name__}")
        if type(v) is not str:
            raise TypeError(f"Event header {k!r} must have a str value, got {type(v).__name__}")
    return out


def _check_body(body: Any) -> bytes:
    if type(body) is bytes:
        return body
    if isinstance(body, str):
        raise TypeError("Event body must be bytes-like, got str (encode it first)")
    try:
        return bytes(memoryview(body))
    except TypeError:
        raise TypeError(f"Event body must be bytes-like, got {type(body).__name__}") from None


class Event:
    """One unit of data: a byte body and a dict of string headers."""

    __slots__ = ("_body", "_headers")

    def __init__(self, body: Any = b"", headers: Any = None) -> None:
        self._body = _check_body(body)
        self._headers = _check_headers(headers)

    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value: Any) -> None:
        self._body = _check_body(value)

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    @headers.setter
    def headers(self, value: Any) -> None:
        self._headers = _check_headers(value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._body == other._body and self._headers == other._headers

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (Event, (self._body, self._headers))

    def __repr__(self) -> str:
        n = len(self._body)
        more = "..." if n > REPR_PREVIEW else ""
        return f"Event(body={self._body[:REPR_PREVIEW]!r}{more} ({n} bytes), headers={self._headers!r})"


class TransactionBase:
    """State machine NEW -> OPEN -> COMPLETED -> CLOSED with Flume's rules."""

    def __init__(self, capacity: int) -> None:
        self._state = ST_NEW
        self._kind = KIND_NONE
        self._count = 0
        self._capacity = capacity

    @property
    def state(self) -> str:
        return STATE_NAMES[self._state]

    def _need(self, state: int, action: str) -> None:
        if self._state != state:
            raise TransactionError(
                f"cannot {action}: transaction is {STATE_NAMES[self._state]}, "
                f"{action} needs {STATE_NAMES[state]}"
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
        for i, e in enumerate(batch):
            if type(e) is not Event:
                if e is None:
                    raise TransactionError(f"cannot put None (item {i}): put needs an Event")
                raise TypeError(f"put needs an Event, item {i} is a {type(e).__name__}")
        self._no_mix(KIND_TAKE, "put")
        if not batch:
            return
        self._room(len(batch), "put")
        self._do_put(batch)
        self._kind = KIND_PUT
        self._count += len(batch)

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
        n = operator.index(n)   # like the compiled Py_ssize_t argument: no str, no float
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
        self._do_rollback()
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
        if self._state == ST_OPEN:
            if exc_type is None:
                try:
                    self.commit()
                except BaseException:
                    self.rollback()
                    self.close()
                    raise
            else:
                self.rollback()
        if self._state != ST_CLOSED:
            self.close()
        return False

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {STATE_NAMES[self._state]} "
                f"events={self._count}/{self._capacity}>")

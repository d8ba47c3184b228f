# cython: language_level=3, embedsignature=True
"""Compiled core shared by every channel: Event and the transaction state
machine's per-event checks.

The pure-Python twin is ``fchannel/_core_py.py``; both must behave alike
(tests run on both).  Channels subclass :class:`TransactionBase` and provide
``_do_put(list)``, ``_do_take(int) -> list``, ``_do_commit()``,
``_do_rollback()`` and optionally ``_do_close()``.
"""
cimport cython
from cpython.bytes cimport PyBytes_CheckExact

from fchannel.errors import TransactionError

DEF REPR_PREVIEW = 32

# Transaction states (the names appear in error messages).
cdef enum:
    ST_NEW = 0
    ST_OPEN = 1
    ST_COMPLETED = 2
    ST_CLOSED = 3

# What a transaction did so far.
cdef enum:
    KIND_NONE = 0
    KIND_PUT = 1
    KIND_TAKE = 2

STATE_NAMES = ("NEW", "OPEN", "COMPLETED", "CLOSED")


cdef dict _check_headers(object headers):
    cdef dict out
    if headers is None:
        return {}
    if type(headers) is dict:
        out = (<dict>headers).copy()
    else:
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
            raise TypeError(
                f"Event header {k!r} must have a str value, got {type(v).__name__}"
            )
    return out


cdef bytes _check_body(object body):
    if PyBytes_CheckExact(body):
        return <bytes>body
    if isinstance(body, (bytearray, memoryview)) or hasattr(body, "__buffer__"):
        return bytes(body)
    if isinstance(body, str):
        raise TypeError("Event body must be bytes-like, got str (encode it first)")
    try:
        return bytes(memoryview(body))
    except TypeError:
        raise TypeError(f"Event body must be bytes-like, got {type(body).__name__}") from None


cdef class Event:
    """One unit of data: a byte body and a dict of string headers.

    ``Event(body, headers=None)``: *body* is any bytes-like object (kept as
    ``bytes``); *headers* is a mapping of str to str, copied.
    """

    def __cinit__(self, body=b"", headers=None):
        self._body = _check_body(body)
        self._headers = _check_headers(headers)

    @property
    def body(self):
        return self._body

    @body.setter
    def body(self, value):
        self._body = _check_body(value)

    @property
    def headers(self):
        return self._headers

    @headers.setter
    def headers(self, value):
        self._headers = _check_headers(value)

    def __eq__(self, other):
        if not isinstance(other, Event):
            return NotImplemented
        return self._body == (<Event>other)._body and self._headers == (<Event>other)._headers

    __hash__ = None

    def __reduce__(self):
        return (Event, (self._body, self._headers))

    def __repr__(self):
        n = len(self._body)
        preview = self._body[:REPR_PREVIEW]
        more = "..." if n > REPR_PREVIEW else ""
        return f"Event(body={preview!r}{more} ({n} bytes), headers={self._headers!r})"


cdef class TransactionBase:
    """State machine NEW -> OPEN -> COMPLETED -> CLOSED with Flume's rules.

    Subclasses implement the channel-specific ``_do_*`` hooks.
    """
    cdef public int _state
    cdef public int _kind
    cdef public Py_ssize_t _count
    cdef public Py_ssize_t _capacity

    def __init__(self, Py_ssize_t capacity):
        self._state = ST_NEW
        self._kind = KIND_NONE
        self._count = 0
        self._capacity = capacity

    @property
    def state(self):
        """The state's name: NEW, OPEN, COMPLETED or CLOSED."""
        return STATE_NAMES[self._state]

    cdef inline int _need(self, int state, str action) except -1:
        if self._state != state:
            raise TransactionError(
                f"cannot {action}: transaction is {STATE_NAMES[self._state]}, "
                f"{action} needs {STATE_NAMES[state]}"
            )
        return 0

    cdef inline int _room(self, Py_ssize_t n, str action) except -1:
        if self._count + n > self._capacity:
            raise TransactionError(
                f"cannot {action} {n} more event(s): transaction already holds {self._count} "
                f"of transaction_capacity={self._capacity}; commit more often or raise it"
            )
        return 0

    def begin(self):
        self._need(ST_NEW, "begin")
        self._state = ST_OPEN

    def put(self, event):
        """Stage one event; it becomes visible when the transaction commits."""
        self._need(ST_OPEN, "put")
        if type(event) is not Event:
            if event is None:
                raise TransactionError("cannot put None: put needs an Event")
            raise TypeError(f"put needs an Event, got {type(event).__name__}")
        if self._kind == KIND_TAKE:
            raise TransactionError("cannot put in a transaction that took events; "
                                   "a transaction either puts or takes")
        self._room(1, "put")
        self._do_put([event])
        self._kind = KIND_PUT
        self._count += 1

    def put_batch(self, events):
        """Stage several events at once (cheaper than one put each)."""
        self._need(ST_OPEN, "put")
        cdef list batch = list(events)
        for i, e in enumerate(batch):
            if type(e) is not Event:
                if e is None:
                    raise TransactionError(f"cannot put None (item {i}): put needs an Event")
                raise TypeError(f"put needs an Event, item {i} is a {type(e).__name__}")
        if self._kind == KIND_TAKE:
            raise TransactionError("cannot put in a transaction that took events; "
                                   "a transaction either puts or takes")
        if not batch:
            return
        self._room(len(batch), "put")
        self._do_put(batch)
        self._kind = KIND_PUT
        self._count += len(batch)

    def take(self):
        """Take the event at the head, or return None when there is none."""
        self._need(ST_OPEN, "take")
        if self._kind == KIND_PUT:
            raise TransactionError("cannot take in a transaction that put events; "
                                   "a transaction either puts or takes")
        self._room(1, "take")
        cdef list got = self._do_take(1)
        if not got:
            return None
        self._kind = KIND_TAKE
        self._count += 1
        return got[0]

    def take_batch(self, Py_ssize_t n):
        """Take up to *n* events from the head; possibly fewer, possibly []."""
        self._need(ST_OPEN, "take")
        if n < 0:
            raise ValueError(f"take_batch needs n >= 0, got n={n}")
        if self._kind == KIND_PUT:
            raise TransactionError("cannot take in a transaction that put events; "
                                   "a transaction either puts or takes")
        if n == 0:
            return []
        self._room(n, "take")
        cdef list got = self._do_take(n)
        if got:
            self._kind = KIND_TAKE
            self._count += len(got)
        return got

    def commit(self):
        """Make the transaction's puts visible / its takes final."""
        self._need(ST_OPEN, "commit")
        self._do_commit()  # on failure the state stays OPEN: rollback is allowed
        self._state = ST_COMPLETED

    def rollback(self):
        """Undo: puts are dropped, taken events go back to the head in order."""
        self._need(ST_OPEN, "rollback")
        self._do_rollback()
        self._state = ST_COMPLETED

    def close(self):
        """Release the transaction; needs NEW or COMPLETED."""
        if self._state == ST_CLOSED:
            raise TransactionError("cannot close: transaction is CLOSED already")
        if self._state == ST_OPEN:
            raise TransactionError(
                "cannot close: transaction is OPEN, commit or rollback it first")
        self._state = ST_CLOSED
        self._do_close()

    def _do_close(self):
        pass

    def __enter__(self):
        if self._state == ST_NEW:
            self.begin()
        return self

    def __exit__(self, exc_type, exc, tb):
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

    def __repr__(self):
        return (f"<{type(self).__name__} {STATE_NAMES[self._state]} "
                f"events={self._count}/{self._capacity}>")

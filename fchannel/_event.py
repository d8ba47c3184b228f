"""Event: a byte body with string headers, and the one definition of what a
valid Event is.

This file is the single source of both implementations: ``setup.py``
compiles it with Cython into the extension ``fchannel._event`` (a final
``cdef class``, laid out by ``_event.pxd``, so the record codec reads its
fields directly), and ``fchannel._compat`` loads it as plain Python when
``FCHANNEL_NO_EXTENSIONS=1``.  The codecs build Events from disk without
``__init__`` (the bytes were validated when they were put) and call
:func:`check_headers` only when their quick type check of a header fails,
so every message about a bad Event is written here.
"""
try:
    import cython
    _COMPILED = cython.compiled
except ImportError:   # Cython is needed to build, not to run
    _COMPILED = False

REPR_PREVIEW = 32


def check_headers(headers) -> dict:
    """A copy of *headers* as a dict of str to str, each encodable as UTF-8;
    TypeError or ValueError naming the header otherwise."""
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
            raise TypeError(f"Event header {k!r} must have a str name, got {type(k).__name__}")
        if type(v) is not str:
            raise TypeError(f"Event header {k!r} must have a str value, got {type(v).__name__}")
        if not (k.isascii() and v.isascii()):
            try:
                k.encode("utf-8")
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"Event header {k!r} is not valid UTF-8 text "
                                 f"({exc.reason})") from None
    return out


def check_body(body) -> bytes:
    """*body* as bytes; TypeError for anything that is not bytes-like."""
    if type(body) is bytes:
        return body
    if isinstance(body, str):
        raise TypeError("Event body must be bytes-like, got str (encode it first)")
    try:
        return bytes(memoryview(body))
    except TypeError:
        raise TypeError(f"Event body must be bytes-like, got {type(body).__name__}") from None


class Event:
    """One unit of data: a byte body and a dict of string headers.

    ``Event(body, headers=None)``: *body* is any bytes-like object (kept as
    ``bytes``); *headers* is a mapping of str to str, copied.  Events compare
    equal by value.
    """

    if not _COMPILED:
        __slots__ = ("_body", "_headers")

    def __init__(self, body=b"", headers=None) -> None:
        self._body = check_body(body)
        self._headers = check_headers(headers)

    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value) -> None:
        self._body = check_body(value)

    @property
    def headers(self) -> dict:
        return self._headers

    @headers.setter
    def headers(self, value) -> None:
        self._headers = check_headers(value)

    def __eq__(self, other):
        if not isinstance(other, Event):
            return NotImplemented
        return self._body == other._body and self._headers == other._headers

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):
        return (Event, (self._body, self._headers))

    def __repr__(self) -> str:
        n = len(self._body)
        more = "..." if n > REPR_PREVIEW else ""
        return (f"Event(body={self._body[:REPR_PREVIEW]!r}{more} ({n} bytes), "
                f"headers={self._headers!r})")

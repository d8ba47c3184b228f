"""The one place that chooses between the compiled modules and their
pure-Python forms.

- ``FCHANNEL_NO_EXTENSIONS=1``: use the pure-Python forms.
- ``FCHANNEL_REQUIRE_EXTENSIONS=1``: fail the import when a compiled module is
  missing instead of falling back.

``event`` (Event) is compiled from ``_event.py`` itself, so its pure form is
that very file loaded as source; ``codec`` (record codec, log-file I/O) and
``queue`` (event queue, reference counts) have pure twins, the executable
specification of their loops.  ``COMPILED`` tells which set was loaded.
Nothing else in the package imports these modules directly.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


NO_EXTENSIONS = _flag("FCHANNEL_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("FCHANNEL_REQUIRE_EXTENSIONS")

if NO_EXTENSIONS and REQUIRE_EXTENSIONS:
    raise ImportError("FCHANNEL_NO_EXTENSIONS and FCHANNEL_REQUIRE_EXTENSIONS are both set")

event: ModuleType  # Event, check_headers, check_body
codec: ModuleType  # FileChannel record codec and log-file I/O
queue: ModuleType  # FileChannel event queue


def _event_source() -> ModuleType:
    """``_event.py`` loaded as Python even where its compiled module sits
    beside it (which an ordinary import would pick)."""
    name = "fchannel._event_py"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(__file__), "_event.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _load_pure() -> None:
    global event, codec, queue
    from fchannel.file import _codec_py, _queue_py

    event, codec, queue = _event_source(), _codec_py, _queue_py


def _compiled(mod: ModuleType) -> bool:
    return not (mod.__file__ or "").endswith(".py")


if NO_EXTENSIONS:
    _load_pure()
    COMPILED = False
else:
    try:
        from fchannel import _event
        from fchannel.file import _codec, _queue  # type: ignore[attr-defined]

        if not _compiled(_event):
            raise ImportError("fchannel._event is not compiled")
        event, codec, queue = _event, _codec, _queue
        COMPILED = True
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                "fchannel's compiled extensions are missing and FCHANNEL_REQUIRE_EXTENSIONS=1; "
                "build them with `pip install .` (needs Cython and a C compiler)"
            ) from exc
        _load_pure()
        COMPILED = False

IMPLEMENTATION = "compiled" if COMPILED else "pure"

"""The one place that chooses between the compiled modules and their
pure-Python twins.

- ``FCHANNEL_NO_EXTENSIONS=1``: use the pure-Python twins.
- ``FCHANNEL_REQUIRE_EXTENSIONS=1``: fail the import when a compiled module is
  missing instead of falling back.

``COMPILED`` tells which one was loaded.  Nothing else in the package imports
the compiled modules or their twins directly.
"""
from __future__ import annotations

import os
from types import ModuleType


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


NO_EXTENSIONS = _flag("FCHANNEL_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("FCHANNEL_REQUIRE_EXTENSIONS")

if NO_EXTENSIONS and REQUIRE_EXTENSIONS:
    raise ImportError("FCHANNEL_NO_EXTENSIONS and FCHANNEL_REQUIRE_EXTENSIONS are both set")

core: ModuleType   # Event, TransactionBase
codec: ModuleType  # FileChannel record codec and log-file I/O
queue: ModuleType  # FileChannel event queue


def _load_pure() -> None:
    global core, codec, queue
    from fchannel import _core_py
    from fchannel.file import _codec_py, _queue_py

    core, codec, queue = _core_py, _codec_py, _queue_py


if NO_EXTENSIONS:
    _load_pure()
    COMPILED = False
else:
    try:
        from fchannel import _core
        from fchannel.file import _codec, _queue  # type: ignore[attr-defined]

        core, codec, queue = _core, _codec, _queue
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

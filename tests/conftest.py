"""Shared fixtures.

- Every test fails if its stderr shows "Exception ignored" (an error swallowed
  inside a compiled module or a __del__).
- ``core_impl`` runs a test against both the compiled Event and ``_event.py`` as Python.
"""
from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable

import pytest

import fchannel


@pytest.fixture(autouse=True)
def _no_ignored_exceptions(capfd):
    yield
    out, err = capfd.readouterr()
    # give the captured text back so pytest still reports it on failure
    import sys
    sys.stdout.write(out)
    sys.stderr.write(err)
    if "Exception ignored" in err:
        pytest.fail("stderr shows an ignored exception:\n" + err)


def event_modules():
    """The Event modules to test: the compiled one (unless this run uses the
    pure forms on purpose) and ``_event.py`` run as Python."""
    from fchannel import _compat
    mods = [_compat._event_source()]
    if not os.environ.get("FCHANNEL_NO_EXTENSIONS"):
        mod = importlib.import_module("fchannel._event")
        if _compat._compiled(mod):
            mods.insert(0, mod)
    return mods


@pytest.fixture(params=event_modules(), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def core_impl(request):
    return request.param


def wait_for(predicate: Callable[[], object], timeout: float = 10.0,
             interval: float = 0.01, what: str = "condition") -> object:
    """Poll *predicate* until it is truthy; fail the test after *timeout* s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def compiled_expected() -> bool:
    return not os.environ.get("FCHANNEL_NO_EXTENSIONS") and fchannel.COMPILED

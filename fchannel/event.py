"""Event: a byte body with string headers (compiled, see ``_compat``)."""
from typing import TYPE_CHECKING

from fchannel._compat import core

if TYPE_CHECKING:  # both implementations share the twin's interface
    from fchannel._core_py import Event
else:
    Event = core.Event

__all__ = ["Event"]

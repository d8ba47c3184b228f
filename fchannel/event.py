"""Event: a byte body with string headers (compiled from ``_event.py``, see
``_compat``)."""
from typing import TYPE_CHECKING

from fchannel._compat import event as _event

if TYPE_CHECKING:  # both implementations come from the same source
    from fchannel._event import Event
else:
    Event = _event.Event

__all__ = ["Event"]

"""Event: a byte body with string headers (compiled, see ``_compat``)."""
from fchannel._compat import core

Event = core.Event

__all__ = ["Event"]

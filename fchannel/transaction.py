"""The transaction state machine shared by every channel.

``Transaction`` (NEW -> OPEN -> COMPLETED -> CLOSED) carries Flume's rules:
``begin`` needs NEW; ``put``/``take``/``commit``/``rollback`` need OPEN;
``close`` needs NEW or COMPLETED; a failed commit leaves the transaction OPEN
so it can still be rolled back; a transaction either puts or takes; at most
``transaction_capacity`` events.  The per-event checks are compiled
(``_core.TransactionBase``); a channel subclasses it and implements
``_do_put``, ``_do_take``, ``_do_commit``, ``_do_rollback`` and ``_do_close``.

Used as a context manager it begins on entry, commits on success, rolls back
on an exception and always closes.
"""
from typing import TYPE_CHECKING

from fchannel._compat import core

if TYPE_CHECKING:  # both implementations share the twin's interface
    from fchannel._core_py import TransactionBase as Transaction
else:
    Transaction = core.TransactionBase
STATES = core.STATE_NAMES

__all__ = ["Transaction", "STATES"]

"""What every channel shares: capacity accounting, the asyncio face, the
context-manager form, and the closed check.  A channel sets ``name``,
``_capacity``, ``_transaction_capacity``, ``_slots_used`` (queued events plus
room held by open transactions) and ``_closed``, and implements
``transaction()``, ``size``, ``counters`` and ``close()``."""
from __future__ import annotations

from typing import Any

from fchannel.aio import AsyncTransaction
from fchannel.errors import ChannelClosedError


class ChannelBase:
    name: str
    _capacity: int
    _transaction_capacity: int
    _slots_used: int
    _closed: bool

    def transaction(self) -> Any:  # pragma: no cover - every channel defines it
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def atransaction(self, executor: Any = None) -> AsyncTransaction:
        """The asyncio face: ``async with ch.atransaction() as tx: await tx.put(e)``;
        blocking steps run in *executor* (default: the loop's)."""
        return AsyncTransaction(self.transaction(), executor)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def transaction_capacity(self) -> int:
        return self._transaction_capacity

    @property
    def remaining(self) -> int:
        """Room for more events (queued events and open transactions' holds
        count against capacity)."""
        return self._capacity - self._slots_used

    @property
    def fill_percentage(self) -> float:
        return 100.0 * self._slots_used / self._capacity

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelClosedError(f"channel {self.name!r} is closed")

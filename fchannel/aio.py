"""An asyncio face for channels.

``async with ch.atransaction() as tx: await tx.put(...)`` runs every step
that can block (a put waiting for room, a commit's write and fdatasync, a
take's reads) in a worker thread, so the event loop keeps running.  It works
with any channel (FileChannel, MemoryChannel) and any asyncio code.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import Any


class AsyncTransaction:
    """Awaitable wrapper of a channel transaction (same rules, same states)."""

    def __init__(self, tx: Any, executor: Executor | None = None) -> None:
        self._tx = tx
        self._executor = executor

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    @property
    def transaction(self) -> Any:
        """The wrapped (synchronous) transaction."""
        return self._tx

    @property
    def state(self) -> str:
        return self._tx.state

    async def begin(self) -> None:
        self._tx.begin()

    async def put(self, event: Any) -> None:
        await self._run(self._tx.put, event)

    async def put_batch(self, events: Iterable[Any]) -> None:
        await self._run(self._tx.put_batch, list(events))

    async def take(self) -> Any:
        return await self._run(self._tx.take)

    async def take_batch(self, n: int) -> list[Any]:
        return await self._run(self._tx.take_batch, n)

    def set_mark(self, key: str, value: int) -> None:
        self._tx.set_mark(key, value)

    async def commit(self) -> None:
        await self._run(self._tx.commit)

    async def rollback(self) -> None:
        await self._run(self._tx.rollback)

    async def close(self) -> None:
        self._tx.close()

    async def __aenter__(self) -> AsyncTransaction:
        if self._tx.state == "NEW":
            self._tx.begin()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        tx = self._tx
        if tx.state == "OPEN":
            if exc_type is None:
                try:
                    await self.commit()
                except BaseException:
                    if tx.state == "OPEN":
                        await self.rollback()
                    tx.close()
                    raise
            else:
                await self.rollback()
        if tx.state != "CLOSED":
            tx.close()

    def __repr__(self) -> str:
        return f"<AsyncTransaction of {self._tx!r}>"


def atransaction(channel: Any, executor: Executor | None = None) -> AsyncTransaction:
    """``AsyncTransaction(channel.transaction())``."""
    return AsyncTransaction(channel.transaction(), executor)

"""An asyncio face for channels.

``async with ch.atransaction() as tx: await tx.put(...)`` runs every step
that can block (a put waiting for room, a commit's write and fdatasync, a
take's reads) in a worker thread, so the event loop keeps running.  It works
with any channel (FileChannel, MemoryChannel) and any asyncio code.

**Cancellation.**  A step running in a worker thread cannot be stopped half
way, so cancelling the task that awaits it (``task.cancel()``,
``asyncio.wait_for``, ``asyncio.timeout``) does not abandon it: the awaiting
coroutine waits, shielded, until the step has finished, and only then lets
the cancellation through.  No other step of the transaction (in particular
no rollback) ever runs while one is still in flight, and what follows acts on
the step's real outcome: a put or take that completed is part of the
transaction and is rolled back by ``async with`` as usual; a commit that
completed stays committed (the cancellation is still raised).  So a
cancelled block leaves the channel's size and free capacity exact.  A
cancelled put that waits for room therefore returns only when room appears
or ``keep_alive`` runs out.
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
        fut = loop.run_in_executor(self._executor, functools.partial(fn, *args))
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError as cancel:
            # the step goes on in its thread: wait for it (however often we are
            # cancelled meanwhile), so nothing else runs on this transaction while
            # it is in flight; then let the cancellation through
            while not fut.done():
                try:
                    await asyncio.wait((fut,))
                except asyncio.CancelledError:
                    pass
            if not fut.cancelled() and fut.exception() is not None:
                cancel.__context__ = fut.exception()   # retrieved, kept for debugging
            raise

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
        # every awaited step below has finished in its thread before the next
        # one starts, even when this task is cancelled (see _run)
        tx = self._tx
        try:
            if tx.state == "OPEN":
                if exc_type is None:
                    try:
                        await self.commit()
                    except BaseException:
                        if tx.state == "OPEN":   # the commit did not happen
                            await self.rollback()
                        raise
                else:
                    await self.rollback()
        finally:
            if tx.state not in ("CLOSED", "OPEN"):   # OPEN: a rollback failed; its error wins
                tx.close()

    def __repr__(self) -> str:
        return f"<AsyncTransaction of {self._tx!r}>"


def atransaction(channel: Any, executor: Executor | None = None) -> AsyncTransaction:
    """``AsyncTransaction(channel.transaction())``."""
    return AsyncTransaction(channel.transaction(), executor)

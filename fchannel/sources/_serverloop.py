"""An asyncio event loop in a thread of its own, serving a source's sockets
(the http and syslog TCP sources): start, run, and a stop that closes the
servers, cancels every connection task and waits for it.  Blocking channel
work goes to ``pool`` with ``loop.run_in_executor(pool, ...)``."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any


@contextlib.asynccontextmanager
async def connection(component: Any, writer: asyncio.StreamWriter,
                     quiet: tuple[type[BaseException], ...] = ()) -> AsyncIterator[None]:
    """Serve one connection inside: counted in ``OpenConnectionCount`` while
    open; ended quietly by a stop (cancel) or by an error in *quiet*; any
    other error is counted and logged; the writer is closed at the end."""
    peer = writer.get_extra_info("peername")
    component.counter.add("OpenConnectionCount")
    ends: tuple[type[BaseException], ...] = (asyncio.CancelledError, *quiet)
    try:
        yield
    except ends:
        pass
    except Exception:
        component.counter.add("GenericProcessingFail")
        component.log.exception("unexpected error serving %s", peer)
    finally:
        component.counter.add("OpenConnectionCount", -1)
        writer.close()


class ServerLoop:
    def __init__(self, component: Any, thread_name: str, workers: int) -> None:
        self._component = component      # has .log, .stopping and .died(exc)
        self._name = thread_name
        self._workers = workers
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.servers: list[Any] = []
        self._thread: threading.Thread | None = None

    def start(self, starts: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
        """Run each server-starting coroutine on a new loop, then serve them
        in a thread; on a failure close what started and raise."""
        loop = asyncio.new_event_loop()
        servers: list[Any] = []
        try:
            for start in starts:
                servers.append(loop.run_until_complete(start()))
        except BaseException:
            for srv in servers:
                srv.close()
            loop.close()
            raise
        self.loop, self.servers = loop, servers
        self.pool = concurrent.futures.ThreadPoolExecutor(self._workers,
                                                          thread_name_prefix=self._name)
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return servers

    def _run(self) -> None:
        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        except Exception as exc:  # pragma: no cover - the supervisor restarts the source
            if not self._component.stopping:
                self._component.log.exception("the server loop failed")
                self._component.died(exc)

    def stop(self) -> None:
        loop, servers = self.loop, self.servers
        if loop is not None and self._thread is not None:
            async def shutdown() -> None:
                for srv in servers:
                    srv.close()
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            except Exception as exc:
                self._component.log.warning("stopping the server: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            loop.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.loop = self.pool = self._thread = None
        self.servers = []

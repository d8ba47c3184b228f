"""``netcat``: newline-separated text over TCP, one event per line.

Properties (Flume's): ``bind`` (required), ``port`` (required),
``max-line-length`` (512, counting the newline), ``ack-every-event`` (true:
answer ``OK`` per line once it is committed to the channels).

A line longer than ``max-line-length`` is answered with
``FAILED: Event exceeds the maximum length (N chars, including newline)``
and dropped.  The lines read in one go are put as one batch; if a required
channel refuses them (full), the connection waits and retries with growing
sleeps, so nothing read is lost and the client is acknowledged only after
the commit.  A trailing ``\\r`` (telnet) is removed with the newline.
"""
from __future__ import annotations

import socket
import threading

from fchannel.agent.component import EventDrivenSource
from fchannel.agent.properties import Context
from fchannel.event import Event


class NetcatSource(EventDrivenSource):

    def configure(self, ctx: Context) -> None:
        self.bind = ctx.string("bind", required=True)
        self.port = ctx.integer("port", required=True, minimum=0, maximum=65535)
        self.max_line = ctx.integer("max-line-length", 512, minimum=1)
        self.ack = ctx.boolean("ack-every-event", True)
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._stopping.clear()
        srv = socket.create_server((self.bind, self.port), reuse_port=False, backlog=64)
        srv.settimeout(0.2)
        self._server = srv
        self.bound_port = srv.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"netcat-{self.name}", daemon=True)
        t.start()
        self._threads.append(t)
        self.log.info("listening on %s:%d", self.bind, self.bound_port)

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            try:
                conn, addr = self._server.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    return
                # e.g. out of file descriptors: say so, wait a little, go on accepting
                self.counter.add("GenericProcessingFail")
                self.log.error("accept failed: %s", exc)
                self._stopping.wait(0.1)
                continue
            conn.settimeout(0.2)
            with self._lock:
                self._conns.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
                t = threading.Thread(target=self._serve, args=(conn, addr),
                                     name=f"netcat-{self.name}-{addr[1]}", daemon=True)
                self._threads.append(t)
            self.counter.add("OpenConnectionCount")
            t.start()

    def _serve(self, conn: socket.socket, addr: tuple) -> None:
        buf = bytearray()
        discarding = False
        try:
            while not self._stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                buf += data
                # in arrival order: a line (bytes) or the answer to an overlong one (None)
                items: list[bytes | None] = []
                while True:
                    idx = buf.find(b"\n")
                    if idx < 0:
                        if not discarding and len(buf) >= self.max_line:
                            items.append(None)
                            discarding = True
                        if discarding:
                            buf.clear()
                        break
                    line = bytes(buf[:idx])
                    del buf[:idx + 1]
                    if discarding:
                        discarding = False
                        continue
                    if idx + 1 > self.max_line:
                        items.append(None)
                        continue
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    items.append(line)
                lines = [x for x in items if x is not None]
                ok = True
                if lines:
                    self.counter.add("EventReceivedCount", len(lines))
                    ok = self.put_batch_retrying([Event(b) for b in lines])
                    if ok:
                        self.counter.add("EventAcceptedCount", len(lines))
                replies = [self._too_long() if x is None
                           else b"OK\n" if ok else b"FAILED: agent is stopping\n"
                           for x in items]
                if replies and self.ack:
                    try:
                        conn.sendall(b"".join(replies))
                    except OSError:
                        break
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()
            self.counter.add("OpenConnectionCount", -1)

    def _too_long(self) -> bytes:
        self.counter.add("EventReadFail")
        self.log.warning("client sent a line longer than max-line-length=%d; dropped",
                         self.max_line)
        return (f"FAILED: Event exceeds the maximum length ({self.max_line} chars, "
                "including newline)\n").encode()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.close()
        for t in list(self._threads):
            t.join(5)
        with self._lock:
            for c in list(self._conns):
                c.close()
        self._threads = []

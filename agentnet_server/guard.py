"""Connection-level defences of the HTTPS port, before any certificate is seen (SECURITY.md).

A TCP connection that has not finished its TLS handshake is unauthenticated. Python's TLS
(asyncio's SSLProtocol) costs ~300 KB per connection from the moment the handshake starts, so:

- the accept loop counts unauthenticated connections in total and per source address and
  closes those over the caps at once (a closed socket costs nothing);
- a connection waits for its first bytes (the TLS ClientHello) as a bare socket, costing about
  one kilobyte; only then does its handshake start, at most `max_handshakes` at a time;
- the whole unauthenticated phase (first bytes + handshake) has one deadline, and the first
  request must arrive within `header_timeout` of the handshake;
- memory freed by closed connections is handed back to the operating system (`memory.trim`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from . import memory

log = logging.getLogger("agentnet.guard")


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps and deadlines for unauthenticated connections (defaults: SECURITY.md "Limits")."""

    max_unauthenticated: int = 1024
    max_unauthenticated_per_source: int = 64
    max_handshakes: int = 64
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0


@dataclasses.dataclass
class Counters:
    accepted: int = 0
    refused_total: int = 0
    refused_source: int = 0
    timed_out: int = 0
    handshake_failed: int = 0
    authenticated: int = 0


class Guard:
    """Admission bookkeeping: who is unauthenticated right now, per source address."""

    def __init__(self, limits: Limits, trimmer: memory.Trimmer | None = None) -> None:
        self.limits = limits
        self.total = 0
        self.by_source: dict[str, int] = {}
        self.counters = Counters()
        self.handshakes = asyncio.Semaphore(limits.max_handshakes)
        self.trimmer = trimmer or memory.Trimmer()

    def admit(self, source: str) -> bool:
        lim = self.limits
        if self.total >= lim.max_unauthenticated:
            self.counters.refused_total += 1
            return False
        n = self.by_source.get(source, 0)
        if n >= lim.max_unauthenticated_per_source:
            self.counters.refused_source += 1
            return False
        self.total += 1
        self.by_source[source] = n + 1
        self.counters.accepted += 1
        return True

    def release(self, source: str) -> None:
        self.total -= 1
        n = self.by_source.get(source, 1) - 1
        if n > 0:
            self.by_source[source] = n
        else:
            self.by_source.pop(source, None)
        self.trimmer.closed()


class GuardedListener:
    """A listening socket whose accepted connections pass the Guard before TLS; what
    `asyncio.Server` offers to aiohttp's sites (sockets, close)."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext,
        guard: Guard,
    ) -> None:
        self.sock = sock
        self.factory = protocol_factory
        self.tls = tls
        self.guard = guard
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._accept(), name="agentnet-https-accept")
        self._pending: set[asyncio.Task[None]] = set()
        self._awaiting: set[Any] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self.sock,)

    def close(self) -> None:
        self._task.cancel()
        for t in list(self._pending):
            t.cancel()
        with contextlib.suppress(OSError):
            self.sock.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _accept(self) -> None:
        while True:
            try:
                conn, addr = await self._loop.sock_accept(self.sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                # Out of file descriptors (EMFILE) and the like: wait, do not spin.
                log.warning("accept failed on the HTTPS port: %s", exc)
                await asyncio.sleep(0.1)
                continue
            source = str(addr[0]) if isinstance(addr, tuple) else "unix"
            if not self.guard.admit(source):
                _close(conn)
                continue
            conn.setblocking(False)
            t = self._loop.create_task(self._admit(conn, source))
            self._pending.add(t)
            t.add_done_callback(self._pending.discard)

    async def _admit(self, conn: socket.socket, source: str) -> None:
        lim = self.guard.limits
        authenticated = False
        try:
            async with asyncio.timeout(lim.handshake_timeout):
                await self._readable(conn)  # the ClientHello: a bare socket until then
                async with self.guard.handshakes:
                    transport, protocol = await self._loop.connect_accepted_socket(
                        self.factory, conn, ssl=self.tls, ssl_handshake_timeout=lim.handshake_timeout
                    )
            authenticated = True
            self.guard.counters.authenticated += 1
            self._first_request_deadline(transport, protocol)
        except TimeoutError:
            self.guard.counters.timed_out += 1
            _close(conn)
        except (OSError, ssl.SSLError, ConnectionError, EOFError) as exc:
            self.guard.counters.handshake_failed += 1
            log.debug("TLS handshake from %s failed: %s", source, exc)
            _close(conn)
        finally:
            self.guard.release(source)
            if not authenticated:
                self.guard.trimmer.closed()

    async def _readable(self, conn: socket.socket) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        fd = conn.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self._loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            self._loop.remove_reader(fd)

    def _first_request_deadline(self, transport: Any, protocol: Any) -> None:
        """Close a connection whose first request has not arrived within header_timeout (slow
        or no headers); `seen` is called by the request handler."""
        self._awaiting.add(transport)

        def check() -> None:
            if transport in self._awaiting:
                self._awaiting.discard(transport)
                if not transport.is_closing():
                    self.guard.counters.timed_out += 1
                    log.info("closed a connection that sent no request within %g s", self.guard.limits.header_timeout)
                    transport.abort()

        self._loop.call_later(self.guard.limits.header_timeout, check)

    def seen(self, transport: Any) -> None:
        """A complete request arrived on this connection."""
        if self._awaiting:
            self._awaiting.discard(transport)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        conn.close()


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog, reuse_port=False)
    sock.setblocking(False)
    return sock

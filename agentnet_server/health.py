"""Whether this replica may serve, and the plain-HTTP port that says so.

`Readiness` follows the store: when any store connection is found dead the replica stops
serving (gRPC health NOT_SERVING, /readyz 503, new sessions refused with UNAVAILABLE), waits
until a read and a write get through and the change listener listens again, resynchronises
(caches, other replicas' changes, revocations, and every live session catches up from the
store), and only then serves again. A store that stays unreachable longer than the outage
grace gets the live sessions closed with UNAVAILABLE, so their clients go to another replica.

`HealthServer` answers /healthz (the process is alive), /readyz (ready to serve) and /metrics
(Prometheus) on a plain-HTTP address, without client certificates and without any data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

log = logging.getLogger("agentnet.health")


class Readiness:
    """The replica's serving state, driven by store connection losses."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        resync: Callable[[], Awaitable[None]],
        set_serving: Callable[[bool], Coroutine[Any, Any, None]],
        close_sessions: Callable[[], int],
        listening: Callable[[], bool] = lambda: True,
        grace: float = 2.0,
    ) -> None:
        self.ping = ping
        self.resync = resync
        self.set_serving = set_serving
        self.close_sessions = close_sessions
        self.listening = listening
        self.grace = grace
        self.ready = False
        self.stopping = False
        self.reason = "starting"
        self.resyncs = 0
        self.outages = 0
        self._losses = 0
        self._task: asyncio.Task[None] | None = None
        self._grace_timer: asyncio.TimerHandle | None = None

    def refusal(self) -> tuple[str, str] | None:
        """Why a new stream must go elsewhere now, as (message, reason); None while serving."""
        if self.ready:
            return None
        if self.stopping:
            return "this replica is shutting down; reconnect (to another replica if you have one)", "SHUTDOWN"
        return (
            f"this replica cannot serve right now ({self.reason}); retry, or use another replica",
            "STORE_UNAVAILABLE",
        )

    async def serving(self) -> None:
        """Start-up is done: serve."""
        self.ready, self.reason = True, "ready"
        await self.set_serving(True)

    def lost(self, kind: str, exc: BaseException | None = None) -> None:
        """A store connection (writer, reader, listen, ...) was found dead. On the event loop."""
        self._losses += 1
        if self.stopping:
            return
        if self.ready:
            self.outages += 1
            log.warning("store connection lost (%s): not serving until the store is back and resynchronised", kind)
            self.ready, self.reason = False, f"store connection lost ({kind}); reconnecting"
            asyncio.get_running_loop().create_task(self.set_serving(False))
            self._grace_timer = asyncio.get_running_loop().call_later(self.grace, self._outage_too_long)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._recover(), name="agentnet-store-recovery")

    def _outage_too_long(self) -> None:
        if not self.ready and not self.stopping:
            n = self.close_sessions()
            if n:
                log.warning("store unreachable for over %g s: closed %d session(s) with UNAVAILABLE", self.grace, n)

    async def _recover(self) -> None:
        delay = 0.05
        said = ""
        while not self.stopping:
            seen = self._losses
            try:
                await self.ping()
                if not self.listening():
                    raise ConnectionError("the change listener is not listening yet")
                self.reason = "resynchronising with the store"
                await self.resync()
            except Exception as exc:  # noqa: BLE001 - the store is still away: wait and try again
                # The driver's words name the store's host, port, database and role: they go to
                # the log; `reason` reaches unauthenticated probes (/readyz) and clients.
                detail = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
                if detail != said:
                    log.warning("store still unreachable: %s", detail)
                    said = detail
                self.reason = "store unreachable; reconnecting"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if seen != self._losses:
                continue  # lost again while resynchronising: what it read may have a hole
            self.resyncs += 1
            self.ready, self.reason = True, "ready"
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            await self.set_serving(True)
            if not self.ready:
                # Lost again while SERVING was being announced: lost() saw this task still running
                # and left the recovery to it.
                continue
            log.info("store reachable again; resynchronised, serving")
            return

    async def stop(self) -> None:
        self.stopping = True
        self.ready, self.reason = False, "shutting down"
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a health address must be host:port or 'off', got {addr!r}")
    return host.strip("[]"), int(port)


class HealthServer:
    """/healthz, /readyz and /metrics over plain HTTP (no client certificate, no data)."""

    def __init__(self, readiness: Readiness, metrics: Callable[[], tuple[bytes, str]]) -> None:
        self.readiness = readiness
        self.metrics = metrics
        self.runner: web.AppRunner | None = None
        self.started = time.monotonic()

    async def start(self, addr: str) -> int:
        host, port = split_addr(addr)
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self.runner = runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_port=False)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        bound = int(runner.addresses[0][1])
        log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", host, bound)
        return bound

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        r = self.readiness
        if r.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {r.reason}\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        body, content_type = self.metrics()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

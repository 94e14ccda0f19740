"""Whether this replica may serve.

`Readiness` follows the store: when any store connection is found dead the replica stops
serving (gRPC health NOT_SERVING, /readyz 503, new sessions refused with UNAVAILABLE), waits
until a read and a write get through and the change listener listens again, resynchronises
(caches, other replicas' changes, revocations, and every live session catches up from the
store), and only then serves again. A store that stays unreachable longer than the outage
grace gets the live sessions closed with UNAVAILABLE, so their clients go to another replica.

The plain-HTTP port that reports it (/healthz, /readyz, /metrics) is rest/health.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

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

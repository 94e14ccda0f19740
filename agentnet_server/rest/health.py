"""The plain-HTTP health port: /healthz (the process is alive), /readyz (ready to serve, from
`health.Readiness`) and /metrics (Prometheus), without client certificates and without any data.
Loaded only when the port is on (`--health-addr`, default on; "off" disables it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

from ..health import Readiness
from ..startup import split_addr

log = logging.getLogger("agentnet.health")


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

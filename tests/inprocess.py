"""An in-process network for tests that force an interleaving: the real Network, Hub and store
(a SQLite file) without a transport, two agents (laoxing on device vps, xiaoxing on mac) and the
group dev-team, and a way to hold a real store read until a concurrent change has committed."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentnet_server.config import Settings
from agentnet_server.domain.network import Network
from agentnet_server.live.hub import Hub
from agentnet_server.store.db import Database


@contextlib.asynccontextmanager
async def network(
    tmp_path: pathlib.Path,
    settings: Settings | None = None,
    *,
    heartbeat: float | None = None,
    both_in_group: bool = False,
    synchronous: str = "FULL",
) -> AsyncIterator[Network]:
    """laoxing in dev-team (xiaoxing too with `both_in_group`); with `heartbeat` the hub's sweeper
    and presence run at that interval, else the hub is not started."""
    s = settings or Settings()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}", synchronous, readers=2, batch=256)
    db.migrate()
    db.start(asyncio.get_running_loop())
    hub = Hub(
        heartbeat or s.heartbeat_interval, s.session_queue, presence_batch=0.01 if heartbeat else s.presence_batch
    )
    n = Network(s, db, hub)
    await n.load()
    await n.register("vps", "laoxing", "老邢", "", "")
    await n.register("mac", "xiaoxing", "小邢", "", "")
    await n.join("laoxing", "dev-team", create_if_missing=True)
    if both_in_group:
        await n.join("xiaoxing", "dev-team")
    if heartbeat:
        hub.start()
    try:
        yield n
    finally:
        if heartbeat:
            await hub.stop()
        await asyncio.to_thread(db.close)


class HeldRead:
    """Holds the first read of `fn` after it has read the store, until released."""

    def __init__(self, net: Network, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0
        self._read = net.db.read
        net.db.read = self._held  # type: ignore[method-assign]

    async def _held(self, fn: Callable[..., Any], *args: Any) -> Any:
        rows = await self._read(fn, *args)
        if fn is self.fn:
            self.calls += 1
            if self.calls == 1:
                self.read_done.set()
                await self.release.wait()
        return rows

    async def around(self, refresh: Any, local_change: Any) -> None:
        """Run `refresh`; once its read has returned rows, commit `local_change`, then let it go on."""
        task = asyncio.ensure_future(refresh)
        await asyncio.wait_for(self.read_done.wait(), 10)
        await local_change
        self.release.set()
        await asyncio.wait_for(task, 10)

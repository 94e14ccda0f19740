"""The network's caches of agents and memberships against store reads that race local commits.

With replicas, a replica re-reads a group's members or an agent when another replica announces a
change, and everything after a lost notification. Such a read can start before a join or a device
authorization committed on this replica and return after it; applying it then undid the local
change (a member who had just joined was dropped, and with him the messages the other replicas
sent to the group). These tests hold a real read (a real SQLite store) until the local change has
committed, then let it return."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agentnet_server.config import Settings
from agentnet_server.domain.network import Network
from agentnet_server.live.hub import Hub
from agentnet_server.store import ops
from agentnet_server.store.db import Database


@pytest.fixture
async def net(tmp_path: pathlib.Path) -> AsyncIterator[Network]:
    s = Settings()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}", "FULL", readers=2, batch=256)
    db.migrate()
    db.start(asyncio.get_running_loop())
    n = Network(s, db, Hub(s.heartbeat_interval, s.session_queue, presence_batch=s.presence_batch))
    await n.load()
    await n.register("vps", "laoxing", "老邢", "", "")
    await n.register("mac", "xiaoxing", "小邢", "", "")
    await n.join("laoxing", "dev-team", create_if_missing=True)
    yield n
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


async def test_a_group_refresh_does_not_undo_a_join_committed_during_its_read(net: Network) -> None:
    held = HeldRead(net, ops.members_page)
    # Another replica announced a change of the group; the member joins here meanwhile.
    await held.around(net.apply_remote({"g": ["dev-team"]}), net.join("xiaoxing", "dev-team"))
    assert net.is_member("xiaoxing", "dev-team")
    assert net.is_member("laoxing", "dev-team")
    assert held.calls == 2  # the held read was older than the join: it was taken again


async def test_a_group_refresh_does_not_undo_a_leave_committed_during_its_read(net: Network) -> None:
    await net.join("xiaoxing", "dev-team")
    held = HeldRead(net, ops.members_page)
    await held.around(net.apply_remote({"g": ["dev-team"]}), net.leave("xiaoxing", "dev-team"))
    assert not net.is_member("xiaoxing", "dev-team")
    assert held.calls == 2


async def test_an_agent_refresh_does_not_undo_a_device_authorized_during_its_read(net: Network) -> None:
    held = HeldRead(net, ops.agent_get)
    await held.around(net.apply_remote({"a": ["xiaoxing"]}), net.authorize_device("mac", "xiaoxing", "mac-mini"))
    assert net.agent("xiaoxing").devices == ("mac", "mac-mini")
    assert net.acting_agent("mac-mini", "xiaoxing") == "xiaoxing"
    assert held.calls == 2


async def test_a_resync_keeps_joins_and_authorizations_committed_during_its_reads(net: Network) -> None:
    held = HeldRead(net, ops.members_all)

    async def local_changes() -> None:
        await net.join("xiaoxing", "dev-team")
        await net.authorize_device("vps", "laoxing", "vps-2")

    await held.around(net.apply_remote({"resync": True}), local_changes())
    assert net.is_member("xiaoxing", "dev-team")
    assert "vps-2" in net.agent("laoxing").devices


async def test_a_refresh_with_nothing_changed_meanwhile_applies_its_read_once(net: Network) -> None:
    # A join made through another replica (straight into the store): the refresh picks it up.
    await net.db.write(ops.join_group, "xiaoxing", "dev-team", False, "", 100)
    assert not net.is_member("xiaoxing", "dev-team")
    held = HeldRead(net, ops.members_page)
    held.release.set()
    await net.apply_remote({"g": ["dev-team"]})
    assert net.is_member("xiaoxing", "dev-team")
    assert held.calls == 1

"""The network's caches of agents and memberships against store reads that race local commits.

With replicas, a replica re-reads a group's members or an agent when another replica announces a
change, and everything after a lost notification. Such a read can start before a join or a device
authorization committed on this replica and return after it; applying it then undid the local
change (a member who had just joined was dropped, and with him the messages the other replicas
sent to the group). These tests hold a real read (a real SQLite store) until the local change has
committed, then let it return."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from agentnet_server.domain.network import Network
from agentnet_server.store import ops
from tests.inprocess import HeldRead, network


@pytest.fixture
async def net(tmp_path: pathlib.Path) -> AsyncIterator[Network]:
    async with network(tmp_path) as n:
        yield n


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

"""Results applied after an await, while a local commit changed the same state.

Siblings of tests/test_caches.py: each test holds a real step (a read, or the writer) until a
concurrent local change has committed, then lets it go on, and checks that the change survives:
an empty group's expiry against its re-creation, a session's registration against a leave, an
ack against a leave, a profile refresh against a newer last-seen time, and an id-only register
against a rename made through another replica."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentnet.v1 import events_pb2, resources_pb2
from agentnet_server.auth import Peer
from agentnet_server.config import Settings
from agentnet_server.domain import validate
from agentnet_server.domain.commands import SendCommand, Target
from agentnet_server.domain.network import Network
from agentnet_server.live.format import PROTOBUF
from agentnet_server.live.hub import Hub
from agentnet_server.records import AgentWrite
from agentnet_server.rpc.session import SessionService
from agentnet_server.store import access, ops
from tests.inprocess import HeldRead, network


@pytest.fixture
async def net(tmp_path: pathlib.Path) -> AsyncIterator[Network]:
    async with network(tmp_path, Settings(require_signatures=False)) as n:
        yield n


def _send(n: Network, agent: str, device: str, text: str) -> Any:
    return n.send(SendCommand(agent, device, Target(group_id="dev-team"), "", text))


async def test_expiring_an_empty_group_keeps_a_member_who_created_it_again_meanwhile(net: Network) -> None:
    await net.leave("laoxing", "dev-team")
    assert "dev-team" in net.empty_since
    # Hold the writer so the expiry's delete and a re-creating join commit in one batch.
    gate = threading.Event()
    blocker = net.db.write(lambda tx: gate.wait(5))
    await asyncio.sleep(0.1)
    expire = asyncio.ensure_future(net.expire_empty_groups(now=time.monotonic() + 10**7))
    await asyncio.sleep(0)  # the delete is queued
    join = asyncio.ensure_future(net.join("xiaoxing", "dev-team", create_if_missing=True))
    await asyncio.sleep(0)  # the join is queued behind it
    gate.set()
    await blocker
    assert await expire == ["dev-team"]
    _, member, _ = await join
    assert member.agent_id == "xiaoxing"  # the store has the group again, with him in it
    assert net.is_member("xiaoxing", "dev-team")  # the cache must say so too


class Stream:
    """A session of the real SessionService over an in-process request queue (no transport)."""

    def __init__(self, net: Network, device: str) -> None:
        hub = net.live
        assert isinstance(hub, Hub)
        svc = SessionService(net.settings, net, hub)
        self.requests: asyncio.Queue[events_pb2.ClientEvent | None] = asyncio.Queue()
        self.conn = svc.open(Peer(device, f"fp-{device}", None), self._events(), PROTOBUF)  # type: ignore[arg-type]
        self.got: list[events_pb2.ServerEvent] = []
        self.caught_up = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    async def _events(self) -> AsyncIterator[events_pb2.ClientEvent]:
        while (ev := await self.requests.get()) is not None:
            yield ev

    async def _read(self) -> None:
        async for data in self.conn.stream():
            ev = events_pb2.ServerEvent.FromString(data)
            self.got.append(ev)
            if ev.WhichOneof("event") == "caught_up":
                self.caught_up.set()

    def send(self, ev: events_pb2.ClientEvent) -> None:
        self.requests.put_nowait(ev)

    def of(self, kind: str) -> list[events_pb2.ServerEvent]:
        return [e for e in self.got if e.WhichOneof("event") == kind]

    def texts(self) -> list[str]:
        return [e.message.content for e in self.of("message")]

    async def close(self) -> None:
        self.requests.put_nowait(None)
        await asyncio.wait_for(self.reader, 10)


async def test_a_leave_while_a_session_registers_stops_delivery_of_that_group(net: Network) -> None:
    await net.join("xiaoxing", "dev-team")
    await _send(net, "laoxing", "vps", "before")
    held = HeldRead(net, access.floors)
    stream = Stream(net, "mac")
    stream.send(events_pb2.ClientEvent(register=events_pb2.Register(agent={"id": "xiaoxing"})))
    await asyncio.wait_for(held.read_done.wait(), 10)
    # Registration has read its cursors; the agent leaves the group from another device now.
    await net.leave("xiaoxing", "dev-team")
    await _send(net, "laoxing", "vps", "while away 1")
    held.release.set()
    await asyncio.wait_for(stream.caught_up.wait(), 10)
    await _send(net, "laoxing", "vps", "while away 2")
    # Back in the group later: only what is sent from now on is his.
    await net.join("xiaoxing", "dev-team")
    await _send(net, "laoxing", "vps", "after rejoin")
    await asyncio.sleep(0.3)
    await stream.close()
    texts = stream.texts()
    assert "after rejoin" in texts
    assert "while away 1" not in texts and "while away 2" not in texts, texts


async def test_an_ack_for_a_group_just_left_is_dropped_and_the_rest_of_the_ack_counts(net: Network) -> None:
    await net.join("xiaoxing", "dev-team")
    stream = Stream(net, "mac")
    stream.send(events_pb2.ClientEvent(register=events_pb2.Register(agent={"id": "xiaoxing"})))
    await asyncio.wait_for(stream.caught_up.wait(), 10)
    await _send(net, "laoxing", "vps", "group one")
    await net.send(SendCommand("laoxing", "vps", Target(to_agent="xiaoxing"), "", "dm one"))
    for _ in range(500):
        if len(stream.of("message")) == 2:
            break
        await asyncio.sleep(0.01)
    by_conv = {e.message.conversation: e.message.seq for e in stream.of("message")}
    assert set(by_conv) == {"group:dev-team", "dm:laoxing+xiaoxing"}
    # The client acks both in one event; the leave (from another device) commits first.
    await net.leave("xiaoxing", "dev-team")
    cursors = [resources_pb2.Cursor(conversation=c, seq=q) for c, q in sorted(by_conv.items(), reverse=True)]
    assert cursors[0].conversation == "group:dev-team"  # the left group comes first in the event
    stream.send(events_pb2.ClientEvent(request_id="a1", ack=events_pb2.Ack(cursors=cursors)))
    acked: dict[str, int] = {}
    for _ in range(500):
        _, acked, _ = await net.db.write(ops.resume_state, "xiaoxing", "mac")
        if acked.get("dm:laoxing+xiaoxing"):
            break
        await asyncio.sleep(0.01)
    await stream.close()
    assert acked.get("dm:laoxing+xiaoxing") == by_conv["dm:laoxing+xiaoxing"]
    assert stream.of("error") == []


async def test_an_agent_refresh_does_not_put_back_an_older_last_seen_time(net: Network) -> None:
    held = HeldRead(net, ops.agent_get)
    refresh = asyncio.ensure_future(net.apply_remote({"a": ["xiaoxing"]}))
    await asyncio.wait_for(held.read_done.wait(), 10)
    before = net.agent("xiaoxing").last_seen
    net.mark_seen("xiaoxing", "mac")  # a session of his ended here meanwhile
    for _ in range(500):
        if net.agent("xiaoxing").last_seen != before:
            break
        await asyncio.sleep(0.01)
    seen = net.agent("xiaoxing").last_seen
    assert seen is not None and seen != before
    held.release.set()
    await asyncio.wait_for(refresh, 10)
    assert net.agent("xiaoxing").last_seen == seen


async def test_an_id_only_register_does_not_undo_a_rename_made_on_another_replica(net: Network) -> None:
    # Several replicas (the notification itself is left out: SQLite has no pg_notify).
    net.db.replica = "r-a"
    net.db._notify = lambda changes: None  # type: ignore[method-assign]
    # Another replica renames the agent; its notification has not reached this one yet.
    name, key = validate.display_name("老邢 (new)")
    await net.db.write(ops.register_agent, AgentWrite("vps", "laoxing", name, key, "lead", "renamed"), 0)
    # Here, the REST event stream opens (it registers with the agent id only).
    await net.register("vps", "laoxing", "", "", "")
    await net.apply_remote({"a": ["laoxing"]})  # the notifications arrive
    stored = await net.db.read(ops.agent_get, "laoxing")
    assert stored is not None
    assert (stored.display_name, stored.role, stored.description) == ("老邢 (new)", "lead", "renamed")

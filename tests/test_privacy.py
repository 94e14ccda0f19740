"""Issue 12 finding 5: data at rest is owner-only; groups can be invite-only and can hide the
history from before a member joined (SECURITY.md "Groups")."""

from __future__ import annotations

import asyncio
import os
import pathlib
import stat

import pytest

from agentnet.v1 import events_pb2, resources_pb2, service_pb2_grpc
from agentnet_client import AgentnetError, AgentProfile
from agentnet_client.device import load_device, secure_channel
from tests.conftest import Clients, ServerProc, collect
from tests.test_rest import Rest


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_wal_shm_and_caches_are_owner_only(make_server, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server()
    cs = Clients(server.certs, server, server.workdir)
    db = pathlib.Path(server.db.removeprefix("sqlite:///"))
    cache = tmp_path / "client-cache.sqlite"
    try:
        c = await cs.live("laoxing-vps", "private-writer", cache=str(cache))
        await c.join("at-rest", create=True)
        await c.send("secret plans", group_id="at-rest")
        files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        files += [cache, cache.with_name(cache.name + "-wal"), cache.with_name(cache.name + "-shm")]
        for f in files:
            assert f.exists(), f
            assert mode(f) & 0o077 == 0, f"{f} is {mode(f):04o}"
    finally:
        await cs.close_all()
    # Files left readable by an older version are tightened when they are opened again.
    for f in (db, cache):
        os.chmod(f, 0o644)
    server.restart()
    assert mode(db) & 0o077 == 0
    cs = Clients(server.certs, server, server.workdir)
    try:
        await cs.live("laoxing-vps", "private-writer", cache=str(cache))
        assert mode(cache) & 0o077 == 0
    finally:
        await cs.close_all()


async def test_invite_only_group_and_history_from_join(clients: Clients) -> None:
    owner = await clients.make("laoxing-vps", connect=False)
    await owner.register_agent(AgentProfile("p-owner"))
    guest = await clients.make("xiaoxing-mac", connect=False)
    await guest.register_agent(AgentProfile("p-guest"))
    stranger = await clients.make("xiaojin-mini", connect=False)
    await stranger.register_agent(AgentProfile("p-stranger"))
    g = await owner.create_group(
        "war-room",
        agent_id="p-owner",
        join_rule=resources_pb2.GROUP_JOIN_RULE_INVITE,
        history_visibility=resources_pb2.HISTORY_VISIBILITY_JOINED,
    )
    assert g.join_rule == resources_pb2.GROUP_JOIN_RULE_INVITE
    assert g.history_visibility == resources_pb2.HISTORY_VISIBILITY_JOINED
    await owner.post("before anyone else", group_id="war-room", agent_id="p-owner")
    # Not invited: refused, and nothing readable.
    with pytest.raises(AgentnetError) as err:
        await stranger.join_group("war-room", "p-stranger")
    assert (err.value.status, err.value.reason) == ("PERMISSION_DENIED", "NOT_INVITED")
    with pytest.raises(AgentnetError) as err:
        await stranger.history(group_id="war-room", agent_id="p-stranger")
    assert err.value.reason == "NOT_A_MEMBER"
    # Only members invite.
    with pytest.raises(AgentnetError) as err:
        await stranger.invite("war-room", "p-stranger", agent_id="p-stranger")
    assert err.value.reason == "NOT_A_MEMBER"
    assert (await owner.invite("war-room", "p-guest", agent_id="p-owner")).created
    joined = await guest.join_group("war-room", "p-guest")
    assert joined.joined_seq == 1
    await owner.post("after the guest joined", group_id="war-room", agent_id="p-owner")
    # From-join visibility: history, newest-first history and a resume from cursor 0 alike.
    assert [m.content for m in await guest.history(group_id="war-room", agent_id="p-guest")] == [
        "after the guest joined"
    ]
    assert [m.content for m in await guest.history(group_id="war-room", agent_id="p-guest", newest_first=True)] == [
        "after the guest joined"
    ]
    live = await clients.live("xiaoxing-mac", "p-guest")
    got = await collect(live, "message", 1, conv="group:war-room")
    assert [m.content for m in got] == ["after the guest joined"]
    assert live.session is not None
    with pytest.raises(AssertionError, match="got only 0 of 1"):  # nothing from before the join
        await collect(live, "message", 1, timeout=0.5, conv="group:war-room")
    # A client that asks to resume from 0 gets nothing from before its join either.
    channel = secure_channel(clients.server.addr, load_device(clients.device_dir("xiaoxing-mac")))
    call = service_pb2_grpc.AgentNetStub(channel).Session()
    await call.write(
        events_pb2.ClientEvent(
            request_id="register",
            register=events_pb2.Register(
                agent=resources_pb2.Agent(id="p-guest"),
                cursors=[resources_pb2.Cursor(conversation="group:war-room", seq=0)],
            ),
        )
    )
    replayed = []
    while True:
        ev = await asyncio.wait_for(call.read(), 10)
        if ev.WhichOneof("event") == "message":
            replayed.append(ev.message.seq)
        if ev.WhichOneof("event") == "caught_up":
            break
    assert replayed == [2]
    call.cancel()
    await channel.close()
    # The owner (a member from the start) still reads everything.
    assert len(await owner.history(group_id="war-room", agent_id="p-owner")) == 2


def test_groups_are_public_with_shared_history_by_default_and_rest_can_invite(make_server, certs) -> None:  # type: ignore[no-untyped-def]
    server = make_server(http_addr="127.0.0.1:0")
    rest = Rest(server, certs)
    rest.register("laoxing-vps", "r-owner")
    rest.register("xiaoxing-mac", "r-guest")
    g = rest.ok("laoxing-vps", "POST", "/api/groups", {"groupId": "open-plan", "agentId": "r-owner"})
    assert g["joinRule"] == "GROUP_JOIN_RULE_PUBLIC" and g["historyVisibility"] == "HISTORY_VISIBILITY_SHARED"
    closed = rest.ok(
        "laoxing-vps",
        "POST",
        "/api/groups",
        {"groupId": "closed", "agentId": "r-owner", "joinRule": "GROUP_JOIN_RULE_INVITE"},
    )
    assert closed["joinRule"] == "GROUP_JOIN_RULE_INVITE"
    r = rest.call("xiaoxing-mac", "POST", "/api/groups/closed/members", {"agentId": "r-guest"})
    assert r.status == 403 and r.error()[1] == "NOT_INVITED"
    inv = rest.ok("laoxing-vps", "POST", "/api/groups/closed/invites", {"agentId": "r-owner", "invitee": "r-guest"})
    assert inv["created"] is True
    rest.ok("xiaoxing-mac", "POST", "/api/groups/closed/members", {"agentId": "r-guest"})

"""Registration, discovery, group chat and direct messages across three devices."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from agentnet.v1 import events_pb2, resources_pb2
from agentnet_client import AgentnetError, AgentProfile, Client
from agentnet_client.device import load_device, secure_channel
from agentnet_server.live.roster import FULL_ROSTER
from tests.conftest import Clients, collect, uid, until


async def test_three_devices_see_each_other_and_chat(clients: Clients) -> None:
    lao = await clients.live("laoxing-vps", "laoxing", "老邢")
    xiao = await clients.live("xiaoxing-mac", "xiaoxing", "小邢")
    jin = await clients.live("xiaojin-mini", "xiaojin", "小金")

    agents = {a.id: a for a in await jin.list_agents()}
    assert {"laoxing", "xiaoxing", "xiaojin"} <= set(agents)
    assert agents["laoxing"].display_name == "老邢"
    assert agents["laoxing"].owner_device == "laoxing-vps"
    online = {a.id for a in await jin.list_agents(online_only=True)}
    assert {"laoxing", "xiaoxing", "xiaojin"} <= online

    await lao.join("dev-team", create=True)
    await xiao.join("dev-team")
    await jin.join("dev-team")

    ack = await lao.send("Hello team", group_id="dev-team")
    assert ack.seq == 1 and ack.conversation == "group:dev-team"
    for c in (lao, xiao, jin):
        [m] = await collect(c, "message", 1, conv="group:dev-team")
        assert (m.seq, m.sender, m.content, m.sender_device) == (1, "laoxing", "Hello team", "laoxing-vps")

    dm = await xiao.send("just for you", to_agent="xiaojin")
    assert dm.conversation == "dm:xiaojin+xiaoxing"
    [got] = await collect(jin, "message", 1, conv=dm.conversation)
    assert (got.sender, got.recipient, got.content) == ("xiaoxing", "xiaojin", "just for you")
    # The third agent is not part of the direct conversation: it can only read its own pairs.
    assert await lao.history(peer_id="xiaoxing") == []
    assert all(m.conversation == "group:dev-team" for m in await collect(lao, "message", 0))
    history = await jin.history(peer_id="xiaoxing")
    assert [m.content for m in history] == ["just for you"]


async def test_presence_events_when_peer_comes_and_goes(clients: Clients) -> None:
    watcher = await clients.live("laoxing-vps", "watcher")
    peer = await clients.live("xiaoxing-mac", "peer")

    async def presence_of(agent: str, online: bool) -> None:
        while True:
            ev = await watcher.next_event(timeout=10)
            if ev.WhichOneof("event") == "presence":
                for p in ev.presence.agents:
                    if p.agent_id == agent and p.online == online:
                        return

    await asyncio.wait_for(presence_of("peer", True), 10)
    await peer.close()
    await asyncio.wait_for(presence_of("peer", False), 10)
    assert "peer" not in {a.id for a in await watcher.list_agents(online_only=True)}


async def test_register_rules(clients: Clients) -> None:
    owner = await clients.make("laoxing-vps", connect=False)
    other = await clients.make("xiaoxing-mac", connect=False)
    from agentnet_client import AgentProfile

    r = await owner.register_agent(AgentProfile("ops", "运维"))
    assert r.created and r.agent.owner_device == "laoxing-vps"
    again = await owner.register_agent(AgentProfile("ops", "", "SRE"))
    assert not again.created and again.agent.display_name == "运维" and again.agent.role == "SRE"

    with pytest.raises(AgentnetError) as err:
        await other.register_agent(AgentProfile("ops", "thief"))
    assert err.value.status == "PERMISSION_DENIED" and err.value.reason == "AGENT_OWNED_BY_OTHER_DEVICE"

    # Display names are unique ignoring case and width (ＯＰＳ = ops).
    await owner.register_agent(AgentProfile("dev1", "Builder"))
    with pytest.raises(AgentnetError) as err:
        await other.register_agent(AgentProfile("dev2", "ＢＵＩＬＤＥＲ"))
    assert err.value.status == "ALREADY_EXISTS" and err.value.reason == "DISPLAY_NAME_TAKEN"

    for bad_id in ("", "UPPER", "a/b", "x" * 65, "bad\x00id", "../etc"):
        with pytest.raises(AgentnetError) as err:
            await other.register_agent(AgentProfile(bad_id or "", "n"))
        assert err.value.status == "INVALID_ARGUMENT", bad_id
    for bad_name in (" padded", "has@at", "tab\there", "x" * 65):
        with pytest.raises(AgentnetError) as err:
            await other.register_agent(AgentProfile(uid("n"), bad_name))
        assert err.value.status == "INVALID_ARGUMENT", bad_name


async def test_device_cannot_act_as_another_devices_agent(clients: Clients) -> None:
    victim = await clients.live("laoxing-vps", "victim", "Victim")
    await victim.join("secret", create=True)
    await victim.send("private plans", group_id="secret")

    # Registering the same agent on another device's stream is refused; the stream survives.
    thief = await clients.make("xiaoxing-mac", "victim")
    state = await thief.session.wait_for(thief.state.__class__.LIVE, timeout=10)  # type: ignore[union-attr]
    assert state.value == "failed"
    assert thief.session is not None and thief.session.error is not None
    assert thief.session.error.status == "PERMISSION_DENIED"

    other = await clients.make("xiaoxing-mac", connect=False)
    with pytest.raises(AgentnetError) as err:
        await other.post("I am victim", group_id="secret", agent_id="victim")
    assert err.value.status == "PERMISSION_DENIED" and err.value.reason == "NOT_YOUR_AGENT"
    with pytest.raises(AgentnetError) as err:
        await other.history(group_id="secret", agent_id="victim")
    assert err.value.status == "PERMISSION_DENIED"
    with pytest.raises(AgentnetError) as err:
        await other.leave_group("secret", "victim")
    assert err.value.status == "PERMISSION_DENIED"
    history = await victim.history(group_id="secret")
    assert [m.sender for m in history] == ["victim"]


async def test_not_a_member_and_unknown_group(clients: Clients) -> None:
    a = await clients.live("laoxing-vps", "a1")
    b = await clients.live("xiaoxing-mac", "b1")
    await a.join("g1", create=True)
    with pytest.raises(AgentnetError) as err:
        await b.send("let me in", group_id="g1")
    assert (err.value.status, err.value.reason) == ("PERMISSION_DENIED", "NOT_A_MEMBER")
    with pytest.raises(AgentnetError) as err:
        await b.send("anyone?", group_id="nowhere")
    assert (err.value.status, err.value.reason) == ("NOT_FOUND", "GROUP_NOT_FOUND")
    with pytest.raises(AgentnetError) as err:
        await b.join("nowhere")
    assert err.value.status == "NOT_FOUND"
    # Nothing of that reached the group.
    assert [m.content for m in await a.history(group_id="g1")] == []


async def test_leave_stops_delivery_and_join_starts_after_join_point(clients: Clients) -> None:
    a = await clients.live("laoxing-vps", "la")
    b = await clients.live("xiaoxing-mac", "lb")
    await a.join("room", create=True)
    await a.send("before b joined", group_id="room")
    joined = await b.join("room")
    assert joined.joined_seq == 1
    await a.send("after b joined", group_id="room")
    [m] = await collect(b, "message", 1, conv="group:room")
    assert m.content == "after b joined" and m.seq == 2
    await b.leave("room")
    await a.send("after b left", group_id="room")
    await a.send("marker", to_agent="lb")
    [dm] = await collect(b, "message", 1, conv="dm:la+lb")
    assert dm.content == "marker"
    ev = b.session.get_event_nowait() if b.session else None  # nothing from the room queued
    while ev is not None:
        assert not (ev.WhichOneof("event") == "message" and ev.message.conversation == "group:room")
        ev = b.session.get_event_nowait() if b.session else None


async def test_groups_and_members_listing_paginates(clients: Clients) -> None:
    c = await clients.live("laoxing-vps", "pager")
    for i in range(7):
        await c.join(f"pg-{i:02d}", create=True, title=f"Page {i}")
    stub = c.stub
    assert stub is not None
    from agentnet.v1 import service_pb2

    seen: list[str] = []
    token = ""
    while True:
        r = await stub.ListGroups(service_pb2.ListGroupsRequest(page_size=3, page_token=token))
        assert len(r.groups) <= 3
        seen += [g.id for g in r.groups]
        token = r.next_page_token
        if not token:
            break
    assert seen == sorted(seen) and {f"pg-{i:02d}" for i in range(7)} <= set(seen)
    import grpc

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListGroups(service_pb2.ListGroupsRequest(page_size=-1))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListGroups(service_pb2.ListGroupsRequest(page_token="not-a-token"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [g.title for g in await c.list_groups(member="pager")][:2] == ["Page 0", "Page 1"]


async def test_agent_list_on_register_matches_the_directory_and_follows_presence(clients: Clients) -> None:
    """The agent_list a session gets at register is built from cached parts; it must say what
    ListAgents says, and a cached entry must change when the agent's presence changes."""
    lao = await clients.live("laoxing-vps", "laoxing", "老邢")
    xiao = await clients.live("xiaoxing-mac", "xiaoxing", "小邢")
    dev = load_device(clients.device_dir("xiaojin-mini"))

    async def registered_agent_list() -> dict[str, resources_pb2.Agent]:
        async with secure_channel(clients.server.addr, dev) as channel:
            call = channel.stream_stream(
                "/agentnet.v1.AgentNet/Session",
                request_serializer=events_pb2.ClientEvent.SerializeToString,
                response_deserializer=events_pb2.ServerEvent.FromString,
            )()
            await call.write(
                events_pb2.ClientEvent(register=events_pb2.Register(agent=resources_pb2.Agent(id="xiaojin")))
            )
            while True:
                ev = await asyncio.wait_for(call.read(), 10)
                if ev.WhichOneof("event") == "agent_list":
                    call.cancel()
                    return {a.id: a for a in ev.agent_list.agents}

    def fields(a: resources_pb2.Agent) -> tuple[object, ...]:
        return (a.id, a.display_name, a.role, a.description, a.owner_device, tuple(a.devices), a.online)

    first = await registered_agent_list()
    directory = {a.id: a for a in await lao.list_agents()}
    assert {"laoxing", "xiaoxing", "xiaojin"} <= set(first)
    for agent_id in ("laoxing", "xiaoxing"):
        assert fields(first[agent_id]) == fields(directory[agent_id])
        assert first[agent_id].online
    assert first["laoxing"].display_name == "老邢"

    await xiao.close()
    await until(lambda: lao.session is not None and lao.session.presence.get("xiaoxing") is False)
    second = await registered_agent_list()
    assert not second["xiaoxing"].online and second["laoxing"].online
    assert fields(second["laoxing"]) == fields(first["laoxing"])


def test_agent_list_wire_parts_equal_protobuf_serialization() -> None:
    from agentnet_server.live import encode
    from agentnet_server.records import AgentRec

    recs = [
        AgentRec(
            f"a{i}", f"名字{i}", "dev", "d" * (i * 7), "dev-1", ("dev-1", "dev-2"), 1_700_000_000_000_000 + i, None
        )
        for i in range(300)
    ]
    online = [i % 3 == 0 for i in range(300)]
    built = encode.agent_list_event([encode.agent_entry(a, o) for a, o in zip(recs, online, strict=True)])
    want = events_pb2.ServerEvent(
        agent_list=events_pb2.AgentList(agents=[encode.agent(a, o) for a, o in zip(recs, online, strict=True)])
    )
    assert events_pb2.ServerEvent.FromString(built) == want
    assert built == want.SerializeToString()
    assert events_pb2.ServerEvent.FromString(encode.agent_list_event([])) == events_pb2.ServerEvent(
        agent_list=events_pb2.AgentList()
    )
    # The event built from the same cached entries has the message form too, made from the records.
    ev = encode.AgentListEvent([(a, o, encode.agent_entry(a, o)) for a, o in zip(recs, online, strict=True)])
    assert ev.data == built and ev.message() == want


async def test_large_network_presence_and_roster_reach_related_agents_only(
    make_server: Any, tmp_path: pathlib.Path
) -> None:
    """Above FULL_ROSTER agents, agent_list and presence carry the agents a session shares a
    group or direct messages with (a reconnect storm would otherwise cost N x N entries)."""
    server = make_server(max_agents_per_device=0, events_per_second=0, sends_per_second=0)
    cs = Clients(server.certs, server, tmp_path)
    try:
        bulk = await cs.make("xiaojin-mini")
        # Concurrent unary registrations: the writer commits them in groups.
        for start in range(0, FULL_ROSTER, 100):
            await asyncio.gather(
                *(bulk.register_agent(AgentProfile(f"filler-{i:03d}", "")) for i in range(start, start + 100))
            )
        lao = await cs.live("laoxing-vps", "laoxing")
        xiao = await cs.live("xiaoxing-mac", "xiaoxing")
        jin = await cs.live("xiaojin-mini", "xiaojin")
        stranger = await cs.live("xiaojin-mini", "stranger")
        await lao.join("crew", create=True)
        await xiao.join("crew")
        await jin.send("a direct word", to_agent="laoxing")  # jin relates to lao by a DM only
        await collect(lao, "message", 1)

        # A new session's agent_list: itself and the related agents, not the 500 fillers.
        again = await cs.live("laoxing-vps", "laoxing")
        assert again.session is not None
        assert set(again.session.presence) == {"laoxing", "xiaoxing", "xiaojin"}

        def seen(c: Client) -> set[str]:
            assert c.session is not None
            return {a for a, online in c.session.presence.items() if online is False}

        await xiao.close()  # a group peer of lao's
        await jin.close()  # a DM peer of lao's
        await until(lambda: {"xiaoxing", "xiaojin"} <= seen(lao))
        await until(lambda: {"xiaoxing", "xiaojin"} <= seen(again))
        await asyncio.sleep(1.0)  # a presence window: the stranger must not hear of either
        assert "xiaoxing" not in (stranger.session.presence if stranger.session else {})
        assert "xiaojin" not in (stranger.session.presence if stranger.session else {})
        # The directory still lists everyone, with presence.
        directory = {a.id: a for a in await stranger.list_agents()}
        assert len(directory) == FULL_ROSTER + 4
        assert not directory["xiaoxing"].online and directory["laoxing"].online
    finally:
        await cs.close_all()

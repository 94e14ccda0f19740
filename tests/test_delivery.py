"""docs/architecture.md guarantees 1-5, 10 and 11 against the real server: commit before ack, idempotent
send, gap-free order, resume from cursors, offline delivery from the log, bounded presence and
slow consumers that hurt nobody."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import sqlite3

import grpc
import pytest

from agentnet.v1 import events_pb2, resources_pb2, service_pb2_grpc
from agentnet_client import AgentnetError, State
from agentnet_client.device import load_device, secure_channel
from agentnet_client.signing import Signer
from tests.conftest import Clients, ServerProc, collect, until
from tests.proxy import FreezableProxy


async def test_offline_agent_gets_everything_in_order_exactly_once(clients: Clients, tmp_path: pathlib.Path) -> None:
    cache = str(tmp_path / "bob.sqlite")
    alice = await clients.live("laoxing-vps", "alice")
    bob = await clients.live("xiaoxing-mac", "bob", cache=cache)
    await alice.join("team", create=True)
    await bob.join("team")
    await alice.send("seen live", group_id="team")
    await alice.send("dm seen live", to_agent="bob")
    await collect(bob, "message", 2)
    await bob.close()

    for i in range(100):
        await alice.send(f"group {i}", group_id="team")
        if i % 10 == 0:
            await alice.send(f"dm {i // 10}", to_agent="bob")

    bob2 = await clients.live("xiaoxing-mac", "bob", cache=cache)
    got = await collect(bob2, "message", 110)
    group = [m for m in got if m.conversation == "group:team"]
    dms = [m for m in got if m.conversation == "dm:alice+bob"]
    assert [m.seq for m in group] == list(range(2, 102))
    assert [m.content for m in group] == [f"group {i}" for i in range(100)]
    assert [m.seq for m in dms] == list(range(2, 12))
    assert [m.content for m in dms] == [f"dm {i}" for i in range(10)]
    # Exactly once: nothing more arrives, and nothing from before the disconnect came again.
    await asyncio.sleep(0.3)
    while (ev := bob2.session.get_event_nowait() if bob2.session else None) is not None:
        assert ev.WhichOneof("event") != "message", ev


async def test_resume_without_local_cache_uses_server_side_acks(clients: Clients) -> None:
    alice = await clients.live("laoxing-vps", "alice")
    bob = await clients.live("xiaoxing-mac", "bob")  # no cache: cursors live only in memory
    await alice.join("team", create=True)
    await bob.join("team")
    for i in range(5):
        await alice.send(f"before {i}", group_id="team")
    await collect(bob, "message", 5)
    await bob.close()  # graceful close sends the last delivery ack
    for i in range(3):
        await alice.send(f"after {i}", group_id="team")
    bob2 = await clients.live("xiaoxing-mac", "bob")
    got = await collect(bob2, "message", 3)
    assert [m.content for m in got] == ["after 0", "after 1", "after 2"]


async def test_events_received_but_not_taken_come_again_after_a_restart(
    clients: Clients, tmp_path: pathlib.Path
) -> None:
    """A program that ends with events still queued gets them on its next start: the cache's cursor
    covers what the application took, not what arrived."""
    cache = str(tmp_path / "q.sqlite")
    a = await clients.live("laoxing-vps", "queued-a", cache=cache)
    b = await clients.live("xiaoxing-mac", "queued-b")
    await a.join("queued-g", create=True)
    await b.join("queued-g")
    for i in range(3):
        await b.send(f"q {i}", group_id="queued-g")
    assert a.session is not None
    await until(lambda: a.session is not None and a.session.cursors.get("group:queued-g", 0) == 3)
    [first] = await collect(a, "message", 1, conv="group:queued-g")
    assert first.content == "q 0"
    await a.close()  # "q 1" and "q 2" arrived (and are cached) but were never taken

    again = await clients.live("laoxing-vps", "queued-a", cache=cache)
    got = await collect(again, "message", 2, conv="group:queued-g")
    assert [m.content for m in got] == ["q 1", "q 2"]


async def test_a_cache_from_before_taken_cursors_resumes_from_what_the_device_acknowledged(
    clients: Clients, tmp_path: pathlib.Path
) -> None:
    """Schema 1 moved a cursor when an event arrived; such cursors are dropped once, and the session
    resumes from this device's delivery acks on the server, which count only taken events."""
    cache = str(tmp_path / "v1.sqlite")
    a = await clients.live("laoxing-vps", "v1-a", cache=cache)
    b = await clients.live("xiaoxing-mac", "v1-b")
    await a.join("v1-g", create=True)
    await b.join("v1-g")
    for i in range(3):
        await b.send(f"v1 {i}", group_id="v1-g")
    await until(lambda: a.session is not None and a.session.cursors.get("group:v1-g", 0) == 3)
    await collect(a, "message", 1, conv="group:v1-g")
    await a.close()
    # What a schema-1 cache held after the same run: the cursor at what arrived.
    db = sqlite3.connect(cache)
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.execute("INSERT OR REPLACE INTO cursor (conv, seq) VALUES ('group:v1-g', 3)")
    db.commit()
    db.close()

    again = await clients.live("laoxing-vps", "v1-a", cache=cache)
    got = await collect(again, "message", 2, conv="group:v1-g")
    assert [m.content for m in got] == ["v1 1", "v1 2"]
    assert again.cache is not None and again.cache.get_meta("schema") == "2"


async def test_stale_and_foreign_cursors_do_not_block_reconnecting(clients: Clients, tmp_path: pathlib.Path) -> None:
    cache = str(tmp_path / "stale.sqlite")
    a = await clients.live("laoxing-vps", "wanderer", cache=cache)
    peer = await clients.live("xiaoxing-mac", "peer")
    await a.join("old-room", create=True)
    await peer.join("old-room")
    for i in range(3):
        await peer.send(f"old {i}", group_id="old-room")
    await collect(a, "message", 3)
    await a.leave("old-room")
    await a.close()
    # The cache still holds a cursor for the group it left, plus cursors it never had a right to
    # and one far beyond the head of a conversation it is in.
    from agentnet_client import Cache

    c = Cache(cache)
    c.reset_cursor("group:no-such-group", 7)
    c.reset_cursor("inbox:peer", 3)
    c.reset_cursor("dm:peer+wanderer", 50)
    c.close()
    again = await clients.live("laoxing-vps", "wanderer", cache=cache)
    await peer.send("new dm", to_agent="wanderer")
    [m] = await collect(again, "message", 1)
    assert (m.content, m.seq) == ("new dm", 1)


async def test_retry_with_same_client_msg_id_is_idempotent(clients: Clients) -> None:
    a = await clients.live("laoxing-vps", "idem")
    await a.join("g", create=True)
    first = await a.send("hello", group_id="g", client_msg_id="msg-001")
    again = await a.send("hello", group_id="g", client_msg_id="msg-001")
    assert (again.seq, again.duplicate) == (first.seq, True)
    unary = await a.post("hello", group_id="g", client_msg_id="msg-001")
    assert unary.duplicate and unary.message.seq == first.seq
    with pytest.raises(AgentnetError) as err:
        await a.send("different text", group_id="g", client_msg_id="msg-001")
    assert (err.value.status, err.value.reason) == ("ALREADY_EXISTS", "CLIENT_MSG_ID_REUSED")
    history = await a.history(group_id="g")
    assert [(m.seq, m.content) for m in history] == [(first.seq, "hello")]


async def test_concurrent_senders_get_one_gap_free_order(clients: Clients) -> None:
    names = [("laoxing-vps", "s1"), ("xiaoxing-mac", "s2"), ("xiaojin-mini", "s3")]
    members = [await clients.live(d, a) for d, a in names]
    await members[0].join("race", create=True)
    for m in members[1:]:
        await m.join("race")

    async def blast(c, tag: str) -> list[int]:  # type: ignore[no-untyped-def]
        acks = await asyncio.gather(*(c.send(f"{tag}-{i}", group_id="race") for i in range(60)))
        return [a.seq for a in acks]

    seqs = await asyncio.gather(*(blast(m, n) for m, (_, n) in zip(members, names, strict=True)))
    all_seqs = sorted(s for part in seqs for s in part)
    assert all_seqs == list(range(1, 181))
    # Each sender's own messages keep their send order.
    for part in seqs:
        assert part == sorted(part)
    views = []
    for m in members:
        got = await collect(m, "message", 180, conv="group:race")
        views.append([(x.seq, x.sender, x.content) for x in got])
    assert [s for s, _, _ in views[0]] == list(range(1, 181))
    assert views[0] == views[1] == views[2]


async def test_acknowledged_messages_survive_sigkill(clients: Clients, server: ServerProc) -> None:
    sender = await clients.live("laoxing-vps", "killer")
    await sender.join("durable", create=True)
    acked: dict[str, int] = {}
    stop = asyncio.Event()

    async def pump() -> None:
        i = 0
        while not stop.is_set():
            cid = f"k-{i}"
            try:
                ack = await asyncio.wait_for(sender.send(f"m{i}", group_id="durable", client_msg_id=cid), 30)
                acked[cid] = ack.seq
            except (AgentnetError, TimeoutError):
                pass
            i += 1

    pumps = [asyncio.create_task(pump())]
    await until(lambda: len(acked) >= 100, timeout=30)
    server.kill()
    count_at_kill = len(acked)
    server.start()
    await until(lambda: len(acked) >= count_at_kill + 50, timeout=30)
    stop.set()
    await asyncio.gather(*pumps)
    await until(lambda: sender.session is not None and sender.session.outbox_size == 0, timeout=30)

    history = await sender.history(group_id="durable", limit=100_000)
    by_cid = {m.client_msg_id: m.seq for m in history}
    assert len(by_cid) == len(history), "a client_msg_id was stored twice"
    for cid, seq in acked.items():
        assert by_cid.get(cid) == seq, f"acknowledged {cid} (seq {seq}) is missing after kill -9"
    assert [m.seq for m in history] == list(range(1, len(history) + 1))


async def test_client_reconnects_after_restart_and_flushes_outbox(clients: Clients, server: ServerProc) -> None:
    a = await clients.live("laoxing-vps", "phoenix")
    watcher = await clients.live("xiaoxing-mac", "watcher")
    await a.join("g", create=True)
    await watcher.join("g")
    server.stop()
    await until(lambda: a.state in (State.BACKING_OFF, State.CONNECTING, State.REGISTERING), timeout=10)
    pending = [asyncio.create_task(a.send(f"while down {i}", group_id="g")) for i in range(5)]
    await asyncio.sleep(0.3)
    assert not any(p.done() for p in pending)
    assert a.session is not None and a.session.outbox_size == 5
    server.start()
    acks = await asyncio.wait_for(asyncio.gather(*pending), 30)
    assert [x.seq for x in acks] == [1, 2, 3, 4, 5]
    await a.wait_live()
    await watcher.wait_live()
    got = await collect(watcher, "message", 5, conv="group:g")
    assert [m.content for m in got] == [f"while down {i}" for i in range(5)]
    assert a.session.outbox_size == 0


async def _raw_session(clients: Clients, device: str, agent: str, addr: str | None = None):  # type: ignore[no-untyped-def]
    dev = load_device(clients.device_dir(device))
    channel = secure_channel(addr or clients.server.addr, dev)
    call = service_pb2_grpc.AgentNetStub(channel).Session()
    await call.write(
        events_pb2.ClientEvent(request_id="reg", register=events_pb2.Register(agent=resources_pb2.Agent(id=agent)))
    )
    while True:
        ev = await call.read()
        if ev.WhichOneof("event") == "caught_up":
            return channel, call


async def test_slow_reader_does_not_slow_others_and_gets_everything(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(session_queue=16)
    from tests.conftest import Clients as C

    cs = C(server.certs, server, server.workdir)
    try:
        sender = await cs.live("laoxing-vps", "fast-sender")
        fast = await cs.live("xiaoxing-mac", "fast-reader")
        await sender.join("firehose", create=True)
        await fast.join("firehose")
        channel, slow = await _raw_session(cs, "xiaojin-mini", "slow-reader")
        await slow.write(events_pb2.ClientEvent(request_id="j", join_group=events_pb2.JoinGroup(group_id="firehose")))
        while (await slow.read()).WhichOneof("event") != "group_joined":
            pass

        # A slow reader is alive (it heartbeats) but does not read.
        async def heartbeats() -> None:
            while True:
                await asyncio.sleep(0.3)
                await slow.write(events_pb2.ClientEvent(heartbeat=events_pb2.Heartbeat()))

        beating = asyncio.create_task(heartbeats())
        # The slow reader now stops reading. 600 x 16 KiB overflows its transport buffers and
        # its 16-event queue many times over.
        big = "x" * 16_000
        n = 600
        acks = []
        for i in range(n):
            acks.append(await sender.send(f"{i}:{big}", group_id="firehose"))
        assert [a.seq for a in acks] == list(range(1, n + 1))
        got = await collect(fast, "message", n, timeout=60)
        assert [m.seq for m in got] == list(range(1, n + 1))
        # Now the slow one reads: everything, in order, exactly once.
        seqs: list[int] = []
        while len(seqs) < n:
            ev = await asyncio.wait_for(slow.read(), 30)
            if ev.WhichOneof("event") == "message":
                seqs.append(ev.message.seq)
        assert seqs == list(range(1, n + 1))
        assert "fell behind; catching up from the store" in server.logs()
        beating.cancel()
        slow.cancel()
        await channel.close()
    finally:
        await cs.close_all()


async def test_frozen_link_goes_offline_within_three_heartbeats(make_server) -> None:  # type: ignore[no-untyped-def]
    interval = 1.0
    server: ServerProc = make_server(heartbeat=interval)
    from tests.conftest import Clients as C

    cs = C(server.certs, server, server.workdir)
    proxy = await FreezableProxy("127.0.0.1", server.port).start()
    try:
        watcher = await cs.live("laoxing-vps", "watcher")
        frozen = await cs.live("xiaoxing-mac", "frozen", addr=proxy.addr)
        await until(lambda: watcher.session is not None and watcher.session.presence.get("frozen") is True)
        loop = asyncio.get_running_loop()
        proxy.freeze()
        t0 = loop.time()
        await until(
            lambda: watcher.session is not None and watcher.session.presence.get("frozen") is False,
            timeout=3 * interval + 5,
        )
        elapsed = loop.time() - t0
        # 3 intervals, plus the sweep granularity (interval/4) and the presence batch window.
        assert elapsed <= 3 * interval + interval / 4 + 0.6, elapsed
        # The frozen client notices too, and comes back when the link returns.
        await until(lambda: frozen.state != State.LIVE, timeout=3 * interval + 5)
        proxy.thaw()
        await frozen.wait_live(timeout=30)
        await until(lambda: watcher.session is not None and watcher.session.presence.get("frozen") is True)
        await watcher.send("hello again", to_agent="frozen")
        [m] = await collect(frozen, "message", 1)
        assert m.content == "hello again"
    finally:
        await cs.close_all()
        await proxy.close()


async def test_malformed_and_oversized_events_get_precise_errors(clients: Clients) -> None:
    dev = load_device(clients.device_dir("laoxing-vps"))
    channel = secure_channel(clients.server.addr, dev)
    raw = channel.stream_stream(
        "/agentnet.v1.AgentNet/Session",
        request_serializer=lambda b: b,
        response_deserializer=events_pb2.ServerEvent.FromString,
    )
    call = raw()

    async def send(ev: events_pb2.ClientEvent | bytes) -> events_pb2.ServerEvent:
        await call.write(ev if isinstance(ev, bytes) else ev.SerializeToString())
        while True:
            got = await asyncio.wait_for(call.read(), 10)
            if got.WhichOneof("event") not in ("agent_list", "presence", "caught_up"):
                return got

    def err(ev: events_pb2.ServerEvent) -> tuple[str, str]:
        assert ev.WhichOneof("event") == "error", ev
        return ev.error.status, ev.error.reason

    before = await send(
        events_pb2.ClientEvent(request_id="e1", message=events_pb2.SendMessage(group_id="g", content="x"))
    )
    assert err(before) == ("FAILED_PRECONDITION", "NOT_REGISTERED") and before.request_id == "e1"
    assert err(await send(b"\xff\xff\xff\xff")) == ("INVALID_ARGUMENT", "MALFORMED_EVENT")
    # Field 1 (request_id) with bytes that are not UTF-8.
    assert err(await send(b"\x0a\x02\xc3\x28")) == ("INVALID_ARGUMENT", "MALFORMED_EVENT")
    # A kind from the future (unknown field 99) and an empty event.
    assert err(await send(b"\x98\x06\x01")) == ("INVALID_ARGUMENT", "UNKNOWN_EVENT")
    assert err(await send(events_pb2.ClientEvent(request_id="empty"))) == ("INVALID_ARGUMENT", "UNKNOWN_EVENT")
    reply = await send(events_pb2.ClientEvent(request_id="hb", heartbeat=events_pb2.Heartbeat()))
    assert reply.WhichOneof("event") == "heartbeat_ack" and reply.request_id == "hb"

    reg = await send(
        events_pb2.ClientEvent(request_id="r", register=events_pb2.Register(agent=resources_pb2.Agent(id="Bad Id!")))
    )
    assert err(reg)[0] == "INVALID_ARGUMENT"
    reg = await send(
        events_pb2.ClientEvent(
            request_id="r", register=events_pb2.Register(agent=resources_pb2.Agent(id="mal", display_name="Mal"))
        )
    )
    assert reg.WhichOneof("event") == "registered"
    assert err(
        await send(
            events_pb2.ClientEvent(request_id="r2", register=events_pb2.Register(agent=resources_pb2.Agent(id="mal")))
        )
    ) == ("FAILED_PRECONDITION", "ALREADY_REGISTERED")
    joined = await send(
        events_pb2.ClientEvent(request_id="j", join_group=events_pb2.JoinGroup(group_id="g", create_if_missing=True))
    )
    assert joined.WhichOneof("event") == "group_joined"

    def msg(**kw) -> events_pb2.ClientEvent:  # type: ignore[no-untyped-def]
        kw.setdefault("client_msg_id", "c1")
        return events_pb2.ClientEvent(request_id="m", message=events_pb2.SendMessage(group_id="g", **kw))

    assert err(await send(msg(content=""))) == ("INVALID_ARGUMENT", "EMPTY_CONTENT")
    assert err(await send(msg(content="   "))) == ("INVALID_ARGUMENT", "EMPTY_CONTENT")
    too_big = await send(msg(content="字" * 30_000))  # 90,000 bytes of UTF-8
    assert err(too_big) == ("INVALID_ARGUMENT", "CONTENT_TOO_LARGE")
    assert "65536" in too_big.error.message and "90000" in too_big.error.message
    assert err(await send(msg(content="x", client_msg_id="has space"))) == ("INVALID_ARGUMENT", "BAD_CLIENT_ID")
    assert err(await send(msg(content="x", client_msg_id="y" * 65))) == ("INVALID_ARGUMENT", "BAD_CLIENT_ID")
    deep = events_pb2.SendMessage(group_id="g", client_msg_id="deep", content="x")
    node = deep.payload
    for _ in range(20):  # the limit is 16 levels (protobuf itself stops near 33)
        node = node.fields["k"].struct_value
    assert err(await send(events_pb2.ClientEvent(message=deep))) == ("INVALID_ARGUMENT", "PAYLOAD_TOO_DEEP")
    assert err(
        await send(
            events_pb2.ClientEvent(
                message=events_pb2.SendMessage(to_agent="nobody-here", client_msg_id="d", content="x")
            )
        )
    ) == ("NOT_FOUND", "AGENT_NOT_FOUND")
    assert err(
        await send(events_pb2.ClientEvent(message=events_pb2.SendMessage(client_msg_id="d", content="no target")))
    ) == ("INVALID_ARGUMENT", "NO_TARGET")
    assert err(await send(events_pb2.ClientEvent(request_id="z" * 65, heartbeat=events_pb2.Heartbeat()))) == (
        "INVALID_ARGUMENT",
        "BAD_REQUEST_ID",
    )
    assert err(
        await send(
            events_pb2.ClientEvent(ack=events_pb2.Ack(cursors=[resources_pb2.Cursor(conversation="group:g", seq=999)]))
        )
    ) == ("INVALID_ARGUMENT", "ACK_AHEAD")

    # Signatures are required: unsigned, forged or tampered sends are refused.
    assert err(await send(msg(content="unsigned", client_msg_id="u1"))) == ("INVALID_ARGUMENT", "SIGNATURE_MISSING")
    good = events_pb2.SendMessage(group_id="g", client_msg_id="fine", content="still alive")
    Signer(dev).sign_send(good, "mal")
    forged = events_pb2.SendMessage()
    forged.CopyFrom(good)
    forged.content = "still alive!"
    assert err(await send(events_pb2.ClientEvent(message=forged))) == ("INVALID_ARGUMENT", "SIGNATURE_INVALID")
    # After all that the stream still works.
    ok = await send(events_pb2.ClientEvent(request_id="m", message=good))
    assert ok.WhichOneof("event") in ("message_ack", "message")
    call.cancel()
    await channel.close()


async def test_oversized_grpc_message_is_refused_by_the_transport(clients: Clients) -> None:
    a = await clients.make("laoxing-vps", connect=False)
    from agentnet_client import AgentProfile

    await a.register_agent(AgentProfile("bulk"))
    with pytest.raises(AgentnetError) as err:
        await a.post("x" * (2 * 1024 * 1024), to_agent="bulk", agent_id="bulk")
    assert err.value.status == "RESOURCE_EXHAUSTED"


async def test_no_client_certificate_is_refused(clients: Clients) -> None:
    ca = clients.certs.ca_cert.read_bytes()
    channel = grpc.aio.secure_channel(clients.server.addr, grpc.ssl_channel_credentials(root_certificates=ca))
    stub = service_pb2_grpc.AgentNetStub(channel)
    from agentnet.v1 import service_pb2

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListAgents(service_pb2.ListAgentsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    await channel.close()


async def test_a_client_whose_application_falls_behind_neither_hangs_nor_loses(clients: Clients) -> None:
    sender = await clients.live("laoxing-vps", "busy-sender")
    lazy = await clients.live("xiaoxing-mac", "lazy-reader", event_queue=20)
    await sender.join("flood", create=True)
    await lazy.join("flood")
    # The lazy application reads nothing while 200 messages arrive; its own sends still complete.
    for i in range(200):
        await sender.send(f"m{i}", group_id="flood")
    ack = await asyncio.wait_for(lazy.send("I can still talk", group_id="flood"), 20)
    assert ack.seq == 201
    got = await collect(lazy, "message", 201, timeout=60, conv="group:flood")
    assert [m.seq for m in got] == list(range(1, 202))


async def test_nobody_is_online_after_a_server_restart_until_they_reconnect(
    clients: Clients, server: ServerProc
) -> None:
    # A raw stream never reconnects by itself, so only the restart can change its presence.
    channel, call = await _raw_session(clients, "xiaoxing-mac", "was-online")
    observer = await clients.make("laoxing-vps", connect=False)
    assert "was-online" in {a.id for a in await observer.list_agents(online_only=True)}
    server.kill()
    server.start()
    online = {a.id for a in await observer.list_agents(online_only=True)}
    assert "was-online" not in online
    agent = await observer.get_agent("was-online")
    assert not agent.online and agent.id == "was-online"  # still registered, just offline
    call.cancel()
    await channel.close()


async def test_leaving_a_group_during_its_replay_stops_the_replay(clients: Clients) -> None:
    """A session resumes with a long backlog in a group and leaves the group while the backlog
    is being replayed: the replay stops, and nothing sent after the leave reaches it."""
    sender = await clients.live("laoxing-vps", "chatty")
    member = await clients.live("xiaoxing-mac", "quitter")
    await sender.join("busy", create=True)
    await member.join("busy")
    await member.close()
    backlog = 1600  # more than three replay pages
    for start in range(0, backlog, 200):
        await asyncio.gather(*(sender.send(f"m{i}", group_id="busy") for i in range(start, start + 200)))

    dev = load_device(clients.device_dir("xiaoxing-mac"))
    async with secure_channel(clients.server.addr, dev) as channel:
        call = channel.stream_stream(
            "/agentnet.v1.AgentNet/Session",
            request_serializer=events_pb2.ClientEvent.SerializeToString,
            response_deserializer=events_pb2.ServerEvent.FromString,
        )()
        cursor = resources_pb2.Cursor(conversation="group:busy", seq=0)
        await call.write(
            events_pb2.ClientEvent(
                request_id="r", register=events_pb2.Register(agent=resources_pb2.Agent(id="quitter"), cursors=[cursor])
            )
        )
        seqs: list[int] = []
        while not seqs:  # the replay is under way
            ev = await asyncio.wait_for(call.read(), 20)
            if ev.WhichOneof("event") == "message":
                seqs.append(ev.message.seq)
        await call.write(events_pb2.ClientEvent(request_id="bye", leave_group=events_pb2.LeaveGroup(group_id="busy")))
        left = False
        while not left:
            ev = await asyncio.wait_for(call.read(), 20)
            kind = ev.WhichOneof("event")
            if kind == "message":
                seqs.append(ev.message.seq)
            left = kind == "group_left"
        before_left = len(seqs)
        after = [await sender.send(f"after {i}", group_id="busy") for i in range(3)]
        with contextlib.suppress(TimeoutError):
            while True:
                ev = await asyncio.wait_for(call.read(), 1.5)
                if ev.WhichOneof("event") == "message":
                    seqs.append(ev.message.seq)
        call.cancel()
    assert seqs == list(range(1, len(seqs) + 1)), "replay out of order or with gaps"
    assert len(seqs) == before_left, f"{len(seqs) - before_left} messages of the group came after group_left"
    assert not {a.seq for a in after} & set(seqs), "messages sent after the leave were delivered"


async def test_a_silent_session_is_closed_without_a_reader_failure(make_server) -> None:  # type: ignore[no-untyped-def]
    """A client that registers and then says nothing (its connection still open) is closed by the
    server after 3 heartbeat intervals with UNAVAILABLE; the reader sees the call end, and the
    server logs no failure."""
    interval = 0.5
    server: ServerProc = make_server(heartbeat=interval)
    dev = load_device(server.certs.device_dir("laoxing-vps"))
    channel = secure_channel(server.addr, dev)
    try:
        raw = channel.stream_stream(
            "/agentnet.v1.AgentNet/Session",
            request_serializer=lambda b: b,
            response_deserializer=events_pb2.ServerEvent.FromString,
        )
        for _ in range(2):
            call = raw()
            agent = resources_pb2.Agent(id="silent")
            await call.write(events_pb2.ClientEvent(register=events_pb2.Register(agent=agent)).SerializeToString())
            kinds = []
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while True:
                    ev = await asyncio.wait_for(call.read(), 3 * interval + 10)
                    kinds.append(ev.WhichOneof("event"))
            assert "registered" in kinds, kinds
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
            assert "no heartbeat" in (ended.value.details() or ""), ended.value
    finally:
        await channel.close()
    logs = server.logs()
    assert "missed 3 heartbeats" in logs, logs[-3000:]
    assert "Traceback" not in logs and "reader failed" not in logs, logs[-3000:]

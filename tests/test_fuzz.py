"""Property test: generated and malformed client events against a live server. After every run the
server is healthy, other sessions still get their messages, and the store's invariants hold
(gap-free seqs per conversation, no duplicate (sender, client_msg_id))."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentnet.v1 import events_pb2, resources_pb2
from agentnet_client.device import load_device, secure_channel
from agentnet_client.signing import Signer
from tests.conftest import Clients, ServerProc, collect

IDS = st.one_of(
    st.sampled_from(["fz", "fuzz-room", "canary", "canary-room", "nobody", "", "a/b", "../x", "A", "x" * 70]),
    st.text(max_size=12),
)
TEXT = st.text(max_size=64)
SEQ = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def payloads() -> st.SearchStrategy[Any]:
    leaf = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
    return st.recursive(leaf, lambda inner: st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)


@st.composite
def client_event(draw: st.DrawFn) -> tuple[events_pb2.ClientEvent, bool]:
    ev = events_pb2.ClientEvent(request_id=draw(st.text(max_size=80)))
    kind = draw(
        st.sampled_from(
            [
                "register",
                "join_group",
                "leave_group",
                "message",
                "heartbeat",
                "ack",
                "mark_read",
                "create_task",
                "update_task",
                "none",
            ]
        )
    )
    sign = False
    if kind == "register":
        ev.register.agent.id = draw(IDS)
        ev.register.agent.display_name = draw(TEXT)
        for _ in range(draw(st.integers(0, 3))):
            ev.register.cursors.add(conversation=draw(TEXT), seq=draw(SEQ))
    elif kind == "join_group":
        ev.join_group.group_id = draw(IDS)
        ev.join_group.create_if_missing = draw(st.booleans())
        ev.join_group.title = draw(TEXT)
    elif kind == "leave_group":
        ev.leave_group.group_id = draw(IDS)
    elif kind == "message":
        m = ev.message
        if draw(st.booleans()):
            m.group_id = draw(IDS)
        else:
            m.to_agent = draw(IDS)
        m.client_msg_id = draw(st.one_of(st.text(max_size=70), st.sampled_from(["dup-1", "dup-2"])))
        m.content = draw(st.one_of(TEXT, st.just("x" * 70_000), st.just("@all @fz @nobody hi")))
        m.mentions.extend(draw(st.lists(TEXT, max_size=80)))
        if draw(st.booleans()):
            m.payload.update(draw(st.dictionaries(st.text(max_size=4), payloads(), max_size=3)))
        sign = draw(st.booleans())
    elif kind == "heartbeat":
        ev.heartbeat.SetInParent()
    elif kind == "ack":
        for _ in range(draw(st.integers(0, 3))):
            ev.ack.cursors.add(
                conversation=draw(st.sampled_from(["group:fuzz-room", "inbox:fz", "dm:x+y", ""])), seq=draw(SEQ)
            )
    elif kind == "mark_read":
        for _ in range(draw(st.integers(0, 3))):
            ev.mark_read.up_to.add(
                conversation=draw(st.sampled_from(["group:fuzz-room", "inbox:fz", "bogus"])), seq=draw(SEQ)
            )
        ev.mark_read.item_seqs.extend(draw(st.lists(SEQ, max_size=3)))
    elif kind == "create_task":
        t = ev.create_task.task
        t.title, t.assignee, t.group_id = draw(TEXT), draw(IDS), draw(IDS)
        t.priority = draw(st.integers(0, 9))  # type: ignore[assignment]
    elif kind == "update_task":
        u = ev.update_task
        u.task_id = draw(st.one_of(TEXT, st.just("t-0123456789abcdef")))
        u.status = draw(st.integers(0, 12))  # type: ignore[assignment]
        u.expected_version = draw(SEQ)
    return ev, sign


@st.composite
def frames(draw: st.DrawFn) -> list[bytes | tuple[events_pb2.ClientEvent, bool]]:
    out: list[bytes | tuple[events_pb2.ClientEvent, bool]] = []
    if draw(st.booleans()):
        reg = events_pb2.ClientEvent(register=events_pb2.Register(agent=resources_pb2.Agent(id="fz")))
        out.append((reg, False))
        join = events_pb2.ClientEvent(join_group=events_pb2.JoinGroup(group_id="fuzz-room", create_if_missing=True))
        out.append((join, False))
        good = events_pb2.ClientEvent(
            request_id="good",
            message=events_pb2.SendMessage(
                group_id="fuzz-room", client_msg_id=draw(st.sampled_from(["g1", "g2", "g3"])), content=draw(TEXT) or "x"
            ),
        )
        out.append((good, True))
    for _ in range(draw(st.integers(1, 12))):
        ev, sign = draw(client_event())
        if draw(st.integers(0, 5)) == 0:
            data = bytearray(ev.SerializeToString())
            for _ in range(draw(st.integers(1, 4))):
                data.insert(draw(st.integers(0, len(data))), draw(st.integers(0, 255)))
            out.append(bytes(data))
        else:
            out.append((ev, sign))
    return out


def store_invariants(db_path: str) -> None:
    with sqlite3.connect(db_path) as conn:
        for conv, lo, hi, n, last in conn.execute(
            "SELECT m.conv, MIN(m.seq), MAX(m.seq), COUNT(*), c.last_seq FROM message m "
            "JOIN conversation c ON c.id = m.conv GROUP BY m.conv"
        ):
            assert (lo, hi, n) == (1, last, last), f"{conv}: seqs {lo}..{hi}, {n} rows, last_seq {last}"
        dup = conn.execute("SELECT sender, client_msg_id, COUNT(*) FROM message GROUP BY 1, 2 HAVING COUNT(*) > 1")
        assert dup.fetchall() == []
        for agent, seq, n in conn.execute("SELECT agent, MAX(seq), COUNT(*) FROM feed GROUP BY agent"):
            assert seq == n, f"feed of {agent} has gaps"


def test_hostile_event_streams_leave_the_server_healthy(server: ServerProc) -> None:
    dev = load_device(server.certs.device_dir("d4"))
    signer = Signer(dev)
    loop = asyncio.new_event_loop()
    cs = Clients(server.certs, server, server.workdir)

    async def setup() -> tuple[Any, Any]:
        a = await cs.live("laoxing-vps", "canary")
        b = await cs.live("xiaoxing-mac", "canary-peer")
        await a.join("canary-room", create=True)
        await b.join("canary-room")
        return a, b

    canary, peer = loop.run_until_complete(setup())
    counter = [0]
    seen: dict[str, int] = {}

    async def run(batch: list[bytes | tuple[events_pb2.ClientEvent, bool]]) -> None:
        channel = secure_channel(server.addr, dev)
        raw = channel.stream_stream(
            "/agentnet.v1.AgentNet/Session",
            request_serializer=lambda b: b,
            response_deserializer=events_pb2.ServerEvent.FromString,
        )
        call = raw()
        try:
            for item in batch:
                if isinstance(item, bytes):
                    data = item
                else:
                    ev, sign = item
                    if sign and ev.WhichOneof("event") == "message":
                        signer.sign_send(ev.message, "fz")
                    data = ev.SerializeToString()
                await call.write(data)
            await call.write(
                events_pb2.ClientEvent(request_id="sync", heartbeat=events_pb2.Heartbeat()).SerializeToString()
            )
            # Every event before "sync" has been handled once its answer arrives; a send's answer
            # comes after its commit, so also wait for the known-good message's answer.
            waiting = {"sync"} | (
                {"good"} if any(not isinstance(i, bytes) and i[0].request_id == "good" for i in batch) else set()
            )
            while waiting:
                ev = await asyncio.wait_for(call.read(), 15)
                if ev is None or not hasattr(ev, "WhichOneof"):
                    break
                kind = ev.WhichOneof("event") or ""
                seen[kind] = seen.get(kind, 0) + 1
                if ev.request_id in waiting and kind in ("heartbeat_ack", "error", "message_ack"):
                    waiting.discard(ev.request_id)
        finally:
            call.cancel()
            await channel.close()
        # Health, and another session still gets messages.
        health = health_pb2_grpc.HealthStub(secure_channel(server.addr, load_device(server.certs.device_dir("d5"))))
        resp = await health.Check(health_pb2.HealthCheckRequest(service="agentnet.v1.AgentNet"), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        counter[0] += 1
        await canary.send(f"alive {counter[0]}", group_id="canary-room")
        [m] = await collect(peer, "message", 1, conv="group:canary-room")
        assert m.content == f"alive {counter[0]}"

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(frames())
    def check(batch: list[bytes | tuple[events_pb2.ClientEvent, bool]]) -> None:
        loop.run_until_complete(run(batch))
        assert server.proc is not None and server.proc.poll() is None, server.logs()[-2000:]

    try:
        check()
        assert seen.get("error", 0) > 0 and seen.get("message_ack", 0) > 0, seen
        store_invariants(server.db.removeprefix("sqlite:///"))
        assert "Traceback" not in server.logs(), server.logs()[-4000:]
    finally:
        loop.run_until_complete(cs.close_all())
        loop.close()

"""Issue 12 findings 6 and 7: limits that hold under concurrency and abuse, and small holes."""

from __future__ import annotations

import asyncio
import pathlib
import time

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc

from agentnet.v1 import events_pb2, resources_pb2, service_pb2, service_pb2_grpc
from agentnet_client import AgentnetError, AgentProfile, signing
from agentnet_client.device import load_device, secure_channel
from agentnet_server import pki
from tests.conftest import Clients, ServerProc, uid, until
from tests.test_enrollment import server_cli
from tests.test_rest import Rest

YEAR_US = 365 * 86_400 * 1_000_000


async def _stream_outcome(addr: str, device_dir: pathlib.Path, agent: str, register: bool) -> tuple[str, float]:
    """Open one Session stream (optionally registering); its first answer and when it came."""
    channel = secure_channel(addr, load_device(device_dir))
    call = service_pb2_grpc.AgentNetStub(channel).Session()
    start = time.monotonic()
    try:
        if register:
            await call.write(
                events_pb2.ClientEvent(
                    request_id="register", register=events_pb2.Register(agent=resources_pb2.Agent(id=agent))
                )
            )
        ev = await asyncio.wait_for(call.read(), 30)
        if ev is grpc.aio.EOF:
            return "EOF", time.monotonic() - start
        kind = ev.WhichOneof("event")
        return (ev.error.reason if kind == "error" else kind), time.monotonic() - start
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, time.monotonic() - start
    finally:
        call.cancel()
        await channel.close()


async def test_session_limit_holds_for_simultaneous_logins(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(max_sessions_per_device=5)
    folder = server.certs.device_dir("laoxing-vps")
    # Keep every stream open until all have answered: the limit counts open streams.
    channel = secure_channel(server.addr, load_device(folder))
    stub = service_pb2_grpc.AgentNetStub(channel)
    calls = [stub.Session() for _ in range(60)]

    # Every stream opens at once; the limit is checked when a stream opens, so exactly 55 are
    # refused before anyone registers.
    first = {c: asyncio.ensure_future(c.read()) for c in calls}
    await until(lambda: sum(t.done() for t in first.values()) >= 55, timeout=20)
    await asyncio.sleep(0.5)
    refused = [t for t in first.values() if t.done()]
    assert len(refused) == 55
    for t in refused:
        if t.exception() is None:
            assert t.result().error.reason == "TOO_MANY_SESSIONS"
        else:
            exc = t.exception()
            assert isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    admitted = [c for c, t in first.items() if not t.done()]
    for c in admitted:
        await c.write(
            events_pb2.ClientEvent(
                request_id="register", register=events_pb2.Register(agent=resources_pb2.Agent(id="many"))
            )
        )
    answers = [await asyncio.wait_for(first[c], 30) for c in admitted]
    assert [a.WhichOneof("event") for a in answers] == ["registered"] * 5
    for c in calls:
        c.cancel()
    await channel.close()
    # Closed streams give their places back.
    await asyncio.sleep(0.5)
    outcome, _ = await _stream_outcome(server.addr, folder, "many", register=True)
    assert outcome == "registered"


async def test_streams_that_never_register_are_capped_and_closed(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(max_sessions_per_device=8, register_timeout=1.0)
    folder = server.certs.device_dir("xiaoxing-mac")
    channel = secure_channel(server.addr, load_device(folder))
    stub = service_pb2_grpc.AgentNetStub(channel)
    start = time.monotonic()
    calls = [stub.Session() for _ in range(200)]  # all open at once, none registers

    async def first(call: grpc.aio.StreamStreamCall) -> tuple[str, float]:
        ev = await asyncio.wait_for(call.read(), 30)
        return ev.error.reason, time.monotonic() - start

    results = await asyncio.gather(*(first(c) for c in calls))
    refused = [t for r, t in results if r == "TOO_MANY_SESSIONS"]
    timed_out = [t for r, t in results if r == "REGISTER_TIMEOUT"]
    assert len(timed_out) == 8 and len(refused) == 192, sorted({r for r, _ in results})
    assert max(refused) < 3.0 and max(timed_out) < 5.0
    for c in calls:
        c.cancel()
    await channel.close()
    # Another device is served meanwhile, and this one can log in once they are gone.
    outcome, took = await _stream_outcome(server.addr, server.certs.device_dir("d4"), "bystander", register=True)
    assert outcome == "registered" and took < 5.0
    outcome, _ = await _stream_outcome(server.addr, folder, "back", register=True)
    assert outcome == "registered"
    assert "Traceback" not in server.logs()


async def test_read_calls_are_rate_limited_on_grpc_and_rest(make_server, certs) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(reads_per_second=2, read_burst=5, http_addr="127.0.0.1:0")
    cs = Clients(server.certs, server, server.workdir)
    try:
        c = await cs.make("d5", connect=False)
        await c.register_agent(AgentProfile("reader"))  # a write: not counted
        for _ in range(5):
            await c.list_agents()
        stub = service_pb2_grpc.AgentNetStub(secure_channel(server.addr, c.device))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListGroups(service_pb2.ListGroupsRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "read calls/s" in (err.value.details() or "")
        r = Rest(server, certs).call("d5", "GET", "/api/agents")
        assert r.status == 429 and r.error()[1] == "READ_RATE_LIMITED"
        await asyncio.sleep(1.1)  # two tokens back
        await c.list_agents()
        # Another device has its own budget.
        other = await cs.make("d6", connect=False)
        await other.list_groups()
    finally:
        await cs.close_all()


async def test_group_creation_is_limited_per_agent_and_empty_groups_expire(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(group_creates_per_hour=3, empty_group_ttl=1.0)
    cs = Clients(server.certs, server, server.workdir)
    try:
        c = await cs.make("laoxing-vps", connect=False)
        await c.register_agent(AgentProfile("spammer"))
        other = await cs.make("xiaojin-mini", connect=False)
        await other.register_agent(AgentProfile("keeper"))
        await other.join_group("kept", "keeper", create=True)
        for i in range(3):
            await c.create_group(f"g{i}", agent_id="spammer")
        with pytest.raises(AgentnetError) as err:
            await c.join_group("g3", "spammer", create=True)
        assert err.value.reason == "GROUP_CREATE_RATE_LIMITED" and err.value.retry_after
        with pytest.raises(AgentnetError) as err:
            await c.create_group("g4", agent_id="spammer")
        assert err.value.reason == "GROUP_CREATE_RATE_LIMITED"
        await c.join_group("kept", "spammer")  # joining an existing group is not creating one
        await c.post("hello", group_id="g0", agent_id="spammer")
        for i in range(3):
            await c.leave_group(f"g{i}", "spammer")
        await c.leave_group("kept", "spammer")
        # Emptied groups go away (with their history); a group with members stays.
        deadline = time.monotonic() + 10
        while {g.id for g in await other.list_groups()} != {"kept"}:
            assert time.monotonic() < deadline, [g.id for g in await other.list_groups()]
            await asyncio.sleep(0.3)
        assert "deleted" in server.logs() and "without members" in server.logs()
        # The id is free again: a new group of that name starts a new history.
        await other.join_group("g0", "keeper", create=True)
        assert await other.history(group_id="g0", agent_id="keeper") == []
    finally:
        await cs.close_all()


def _signed_send(folder: pathlib.Path, device: str, sender: str, group: str, sign_time: int) -> events_pb2.SendMessage:
    dev = load_device(folder)
    sm = events_pb2.SendMessage(group_id=group, client_msg_id=uid("m"), content="dated")
    sm.sign_time.FromMicroseconds(sign_time)
    sm.signature = signing.Signer(dev).sign(
        signing.signed_bytes(device, sender, "group:" + group, sm.client_msg_id, sm.content, "", sign_time)
    )
    return sm


async def test_signing_time_outside_the_window_is_refused(clients: Clients) -> None:
    a = await clients.live("laoxing-vps", "clock")
    await a.join("times", create=True)
    assert a.session is not None
    folder = clients.device_dir("laoxing-vps")
    now = time.time_ns() // 1000
    for when in (1, now - 2 * 86_400_000_000, now + 10 * YEAR_US):
        sm = _signed_send(folder, "laoxing-vps", "clock", "times", when)
        with pytest.raises(AgentnetError) as err:
            await a.session.request(events_pb2.ClientEvent(message=sm))
        assert err.value.reason == "SIGN_TIME_OUT_OF_WINDOW", err.value
        assert "86400 s ago" in err.value.message and "300 s ahead" in err.value.message
    ok = _signed_send(folder, "laoxing-vps", "clock", "times", now - 60_000_000)
    assert (await a.session.request(events_pb2.ClientEvent(message=ok))).message_ack.seq == 1
    # Task changes too.
    stub = service_pb2_grpc.AgentNetStub(secure_channel(clients.server.addr, load_device(folder)))
    task = resources_pb2.Task(title="t", assignee="clock")
    sig = signing.Signer(load_device(folder)).sign(
        signing.task_create_bytes("laoxing-vps", "clock", "ct1", "t", "", "clock", "", 0, 0, 1)
    )
    req = service_pb2.CreateTaskRequest(task=task, agent_id="clock", client_task_id="ct1", signature=sig)
    req.sign_time.CopyFrom(timestamp_pb2.Timestamp(seconds=0, nanos=1000))
    with pytest.raises(grpc.aio.AioRpcError) as rpc_err:
        await stub.CreateTask(req, timeout=5)
    assert rpc_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "signing time" in (rpc_err.value.details() or "")


async def test_small_holes(make_server, certs, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(http_addr="127.0.0.1:0")
    rest = Rest(server, certs)
    rest.register("d6", "numbers")
    # A JSON number of 500,000 digits is a client error, not a server error.
    body = b'{"agent": {"id": "numbers", "displayName": "n", "role": ' + b"1" * 500_000 + b"}}"
    r = rest.call("d6", "POST", "/api/agents/register", body)
    assert r.status == 400 and r.error()[1] == "BAD_JSON", (r.status, r.body[:300])
    assert "Traceback" not in server.logs()
    # A malformed unary request is INVALID_ARGUMENT (as the stream answers it), not INTERNAL.
    channel = secure_channel(server.addr, load_device(certs.device_dir("d6")))
    raw = channel.unary_unary("/agentnet.v1.AgentNet/ListAgents")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw(b"\xff\xff\xff\xff", timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert "could not be parsed" in (err.value.details() or "")
    await channel.close()
    # Health and reflection refuse a revoked device.
    name = uid("gone")
    dev = pki.issue_device(pki.CertsDir(certs.root), name)
    channel = secure_channel(server.addr, load_device(dev.folder))
    health = health_pb2_grpc.HealthStub(channel)
    assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status == 1
    assert server_cli(server, "revoke", name).returncode == 0
    await asyncio.sleep(1.5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The refusal comes when the call starts, before any request: read without writing (a write
    # racing the refusal can end the call as "Internal error from Core" on the client side).
    refl = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(refl.read(), 10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value
    await channel.close()

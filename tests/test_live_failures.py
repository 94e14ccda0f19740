"""Failure and overload paths of the live sessions: a bad event mid-stream, a session closed
while it replays, a closed session that went silent, an ack whose write failed, a catch-up that
lost the store (on the REST event stream), a register the store is slow to answer.

In-process, with the real SessionService, Hub and delivery engine over a real SQLite store; the
test pulls the session's frames itself, so it can play a client that reads slowly or not at all.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentnet.v1 import events_pb2, resources_pb2
from agentnet_server.auth import Peer
from agentnet_server.config import Settings
from agentnet_server.domain.commands import SendCommand, Target
from agentnet_server.domain.network import Network
from agentnet_server.errors import StoreUnavailable
from agentnet_server.live.format import PROTOBUF
from agentnet_server.live.hub import Hub
from agentnet_server.records import inbox_conv
from agentnet_server.rest.sse import SseFormat
from agentnet_server.rpc.session import SessionService
from agentnet_server.store import ops
from tests.inprocess import network


@pytest.fixture
def heartbeat() -> float:
    """The hub's heartbeat interval: long enough that no test's client (which sends none) is
    swept while it works; the test of the sweeper itself sets a short one."""
    return 2.0


@pytest.fixture
async def net(tmp_path: pathlib.Path, heartbeat: float) -> AsyncIterator[Network]:
    settings = Settings(require_signatures=False)
    async with network(tmp_path, settings, heartbeat=heartbeat, both_in_group=True, synchronous="OFF") as n:
        yield n


def _send(n: Network, text: str, payload: Any = None) -> Any:
    return n.send(SendCommand("laoxing", "vps", Target(group_id="dev-team"), "", text, payload))


class Pulled:
    """A session whose frames the test pulls one at a time (a client reading at its own pace)."""

    def __init__(self, net: Network, device: str, agent: str, fmt: Any = PROTOBUF) -> None:
        hub = net.live
        assert isinstance(hub, Hub)
        self.hub = hub
        self.svc = SessionService(net.settings, net, hub)
        self.requests: asyncio.Queue[events_pb2.ClientEvent | None] = asyncio.Queue()
        self.conn = self.svc.open(Peer(device, f"fp-{device}", None), self._events(), fmt)  # type: ignore[arg-type]
        self.frames = self.conn.stream()
        self.send(events_pb2.ClientEvent(request_id="register", register=events_pb2.Register(agent={"id": agent})))

    async def _events(self) -> AsyncIterator[events_pb2.ClientEvent]:
        while (ev := await self.requests.get()) is not None:
            yield ev

    def send(self, ev: events_pb2.ClientEvent) -> None:
        self.requests.put_nowait(ev)

    async def next(self, timeout: float = 5.0) -> events_pb2.ServerEvent | None:
        try:
            data = await asyncio.wait_for(self.frames.__anext__(), timeout)
        except StopAsyncIteration:
            return None
        return events_pb2.ServerEvent.FromString(data)

    async def until(self, kind: str) -> list[events_pb2.ServerEvent]:
        got = []
        while (ev := await self.next()) is not None:
            got.append(ev)
            if ev.WhichOneof("event") == kind:
                return got
        raise AssertionError(f"the stream ended before {kind}: {got}")

    async def rest(self) -> list[events_pb2.ServerEvent]:
        got = []
        while (ev := await self.next()) is not None:
            got.append(ev)
        return got


async def test_a_payload_json_cannot_hold_is_refused_and_the_session_goes_on(net: Network) -> None:
    """NaN/Infinity fit in a protobuf Struct but not in JSON: that send must be refused with
    INVALID_ARGUMENT like any other bad payload. It had raised ValueError in the reader, which
    ended the whole session with INTERNAL (and a client's outbox sent it again on every
    reconnect, so the session never stayed up)."""
    c = Pulled(net, "mac", "xiaoxing")
    await c.until("caught_up")
    bad = events_pb2.SendMessage(group_id="dev-team", client_msg_id="m-nan", content="reading")
    bad.payload.update({"temperature": float("nan")})
    c.send(events_pb2.ClientEvent(request_id="m-nan", message=bad))
    c.send(events_pb2.ClientEvent(request_id="hb", heartbeat=events_pb2.Heartbeat()))
    got = [await c.next(), await c.next()]
    kinds = [(e.WhichOneof("event"), e.request_id) if e else None for e in got]
    assert got[0] is not None and got[0].WhichOneof("event") == "error", kinds
    assert got[0].request_id == "m-nan" and not got[0].error.fatal, got[0]
    assert got[0].error.status == "INVALID_ARGUMENT", got[0].error
    assert got[1] is not None and got[1].WhichOneof("event") == "heartbeat_ack", kinds
    c.send(None)
    await c.rest()


async def test_a_session_closed_during_its_replay_stops_replaying(net: Network) -> None:
    """A revoked device's sessions end (guarantee 12): one that is replaying a backlog must not
    go on streaming the store to the revoked device until the replay is done."""
    await asyncio.gather(*(_send(net, f"backlog {i}") for i in range(1200)))
    c = Pulled(net, "mac", "xiaoxing")
    # He joined before the backlog and acked nothing: 1200 messages (3 pages) to replay.
    seen = 0
    while seen < 3:
        ev = await c.next()
        assert ev is not None
        seen += ev.WhichOneof("event") == "message"
    # The operator revokes the device (what App._on_revoked does).
    n = c.hub.close_where(
        lambda s: s.device_id == "mac",
        "UNAUTHENTICATED",
        "this device has been revoked; ask the operator to enroll it again",
        "DEVICE_REVOKED",
    )
    assert n == 1
    after = await c.rest()
    messages = [e for e in after if e.WhichOneof("event") == "message"]
    assert after and after[-1].WhichOneof("event") == "error" and after[-1].error.reason == "DEVICE_REVOKED"
    assert len(messages) <= 1, f"{len(messages)} messages replayed to the device after it was revoked"


@pytest.mark.parametrize("heartbeat", [0.1])
async def test_a_closed_session_that_went_silent_goes_offline_within_three_heartbeats(
    net: Network, heartbeat: float
) -> None:
    """No heartbeat and no traffic for 3 intervals means offline (guarantee 10), also for a
    session the server had already asked to close (revoked, not reading) whose stream is stuck
    in a write: the sweeper skipped sessions with a close pending, so such an agent stayed online
    (and counted against its device's session limit) until the transport died."""
    c = Pulled(net, "mac", "xiaoxing")
    await c.until("caught_up")
    hub = c.hub
    assert hub.online("xiaoxing")
    # The client stops reading and sending (a hung process on a live connection); then the
    # device is revoked. Its writer never gets to write the closing error.
    hub.close_where(lambda s: s.device_id == "mac", "UNAUTHENTICATED", "revoked", "DEVICE_REVOKED")
    await asyncio.sleep(10 * heartbeat)
    assert not hub.online("xiaoxing"), "a silent session is still online 10 heartbeat intervals later"
    assert hub.device_sessions("mac") == 0


async def test_a_delivery_ack_whose_write_failed_is_written_again(net: Network, monkeypatch: Any) -> None:
    """An ack write that fails (the store was busy past its deadline) must not be forgotten: it
    moves the delivered cursor (receipts, resume without a cursor). Dropping it left the last
    message of a conversation 'not delivered' for good, and replayed it on the next connect."""
    c = Pulled(net, "mac", "xiaoxing")
    await c.until("caught_up")
    await _send(net, "the last word")
    msg = (await c.until("message"))[-1].message
    real = net.ack
    calls = 0

    async def flaky(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("the store did not take this write within 5 s; nothing was committed, retry")
        await real(*args)

    monkeypatch.setattr(net, "ack", flaky)
    cur = resources_pb2.Cursor(conversation=msg.conversation, seq=msg.seq)
    c.send(events_pb2.ClientEvent(ack=events_pb2.Ack(cursors=[cur])))
    acked: dict[str, int] = {}
    for _ in range(200):
        _, acked, _ = await net.db.write(ops.resume_state, "xiaoxing", "mac")
        if acked.get(msg.conversation):
            break
        await asyncio.sleep(0.01)
    assert acked.get(msg.conversation) == msg.seq, f"the ack was lost: {acked} after {calls} write(s)"
    c.send(None)
    await c.rest()


async def test_a_session_whose_catch_up_lost_the_store_ends_with_an_error_event(net: Network, monkeypatch: Any) -> None:
    """When the session ends with an error, its last frame is the fatal Error event
    (docs/architecture.md, "Delivery"). A store read that failed under a catch-up ended it
    without one: the gRPC adapter still had a status to send, but the REST event stream
    (`GET /api/events`) just ended, as if the server had nothing more to say."""
    await asyncio.gather(*(_send(net, f"backlog {i}") for i in range(5)))

    async def lost(*args: Any) -> Any:
        raise StoreUnavailable("the store could not be read (OperationalError: disk I/O error); retry later")

    monkeypatch.setattr(net, "fetch", lost)
    c = Pulled(net, "mac", "xiaoxing", SseFormat(inbox_conv("xiaoxing")))
    frames = []
    while True:
        try:
            frames.append(await asyncio.wait_for(c.frames.__anext__(), 5))
        except StopAsyncIteration:
            break
    assert c.conn.failure is not None and c.conn.failure.status == "UNAVAILABLE"
    events = [f.data.split(b"\n")[0] for f in frames if f.data]
    assert frames and frames[-1].error is not None, f"the event stream ended without an error event: {events}"
    assert frames[-1].error.fatal and frames[-1].error.status == "UNAVAILABLE"


async def test_a_register_the_store_is_slow_to_answer_is_not_called_missing(net: Network, monkeypatch: Any) -> None:
    """The client sent register at once; the store took longer than register_timeout to read
    its cursors. The session was closed with DEADLINE_EXCEEDED "no register event within ... of
    opening the stream" (REGISTER_TIMEOUT), blaming a client that did nothing wrong, instead of
    a retryable UNAVAILABLE (or waiting for the register under way)."""
    real = net.resume_cursors

    async def slow(*args: Any) -> Any:
        await asyncio.sleep(0.5)
        return await real(*args)

    monkeypatch.setattr(net, "resume_cursors", slow)
    c = Pulled(net, "mac", "xiaoxing")
    c.conn.delivery.register_timeout = 0.2
    got = await c.until("caught_up")
    kinds = [e.WhichOneof("event") for e in got]
    assert kinds == ["registered", "agent_list", "caught_up"], kinds
    c.send(None)
    rest = await c.rest()
    assert [e for e in rest if e.WhichOneof("event") == "error"] == []


async def test_a_stream_that_never_registers_is_still_closed_at_the_deadline(net: Network) -> None:
    c = Pulled(net, "mac", "xiaoxing")
    c.requests.get_nowait()  # take back the register the helper queued: this client sends none
    c.conn.delivery.register_timeout = 0.2
    got = await c.rest()
    assert [(e.error.reason, e.error.fatal) for e in got] == [("REGISTER_TIMEOUT", True)]

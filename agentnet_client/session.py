"""The client side of the Session stream: dial → register → resume → live, and back.

It reconnects by itself with jittered exponential backoff, resumes from the cursors it keeps
(in the local cache when there is one), drops duplicates by seq, keeps an outbox of sends that
are not acknowledged yet and sends them again after reconnecting (the server deduplicates by
client_msg_id), and notices a dead link by missing heartbeat answers.

Two cursors per conversation: what this session has received (it drops duplicates below it, and
a reconnect in the same process resumes from it, since what is received but not taken yet waits
in the event queue), and what the application has taken. Only the second is stored in the cache
and acknowledged to the server, so a program that ends with events still queued gets them again
on its next start.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import itertools
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from agentnet.v1 import events_pb2, resources_pb2, service_pb2_grpc

from .cache import Cache
from .device import Device, secure_channel
from .errors import AgentnetError, ConnectionLost, NotConnected
from .signing import Verification, Verifier, acceptable, rejection_event
from .targets import Target, Targets
from .wire import inbox_conv

log = logging.getLogger("agentnet.client")

# Messages that waited in the outbox longer than this are signed again before they are resent.
RESIGN_AFTER_US = 60_000_000

# Stream end statuses after which reconnecting cannot help.
STABLE_AFTER = 1.0  # seconds a connection stays caught up before the reconnect backoff starts again
PERMANENT = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT", "UNIMPLEMENTED", "ALREADY_EXISTS"})


class State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    REGISTERING = "registering"
    CATCHING_UP = "catching_up"
    LIVE = "live"
    BACKING_OFF = "backing_off"
    CLOSED = "closed"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class AgentProfile:
    """The agent this client registers as."""

    id: str
    display_name: str = ""
    role: str = ""
    description: str = ""


@dataclasses.dataclass
class Backoff:
    """Full-jitter exponential backoff: sleep uniform(0, min(cap, base * 2**attempt))."""

    base: float = 0.25
    cap: float = 30.0
    attempt: int = 0

    def next(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * (2**self.attempt)))
        self.attempt = min(self.attempt + 1, 30)
        return delay

    def reset(self) -> None:
        self.attempt = 0


def make_send(
    content: str,
    *,
    group_id: str = "",
    to_agent: str = "",
    payload: dict[str, Any] | None = None,
    mentions: list[str] | None = None,
    client_msg_id: str = "",
    reply_to: int = 0,
    auto_hops: int = 0,
) -> events_pb2.SendMessage:
    """A send request (not signed yet); a new random client_msg_id unless one is given.

    `reply_to` is the seq of the message this one answers in the same conversation; `auto_hops`
    marks a message posted automatically (n-th hop of a chain; 0 = written directly)."""
    if bool(group_id) == bool(to_agent):
        raise ValueError("give exactly one of group_id or to_agent")
    sm = events_pb2.SendMessage(
        client_msg_id=client_msg_id or uuid.uuid4().hex,
        content=content,
        mentions=mentions or [],
        reply_to=reply_to,
        auto_hops=auto_hops,
    )
    if group_id:
        sm.group_id = group_id
    else:
        sm.to_agent = to_agent
    if payload is not None:
        sm.payload.update(payload)
    return sm


async def serving(target: Target, device: Device, timeout: float = 2.0) -> bool:
    """Whether the server at `target` answers gRPC health SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = secure_channel(target.addr, device, target.name)
    try:
        resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
    except (grpc.aio.AioRpcError, OSError):
        return False
    finally:
        await channel.close(grace=None)


def sequenced(event: events_pb2.ServerEvent, agent_id: str) -> tuple[str, int] | None:
    """(conversation, seq) of a sequenced event, else None."""
    kind = event.WhichOneof("event")
    if kind == "message":
        return event.message.conversation, event.message.seq
    if kind == "mention":
        return inbox_conv(agent_id), event.mention.item.seq
    if kind == "direct_message":
        return inbox_conv(agent_id), event.direct_message.item.seq
    if kind in ("task_assigned", "task_updated"):
        return inbox_conv(agent_id), getattr(event, kind).item.seq
    if kind == "history_gap":
        # History the server no longer has (retention): taking this event moves past it.
        return event.history_gap.conversation, event.history_gap.to_seq
    return None


class SessionClient:
    """One agent's live connection. Use through `agentnet_client.Client`."""

    def __init__(
        self,
        server: str,
        device: Device,
        agent: AgentProfile,
        cache: Cache | None = None,
        *,
        server_name: str | None = None,
        backoff: Backoff | None = None,
        event_queue: int = 10_000,
        signer: Callable[[events_pb2.SendMessage, str], None] | None = None,
        ack_interval: float = 0.2,
        connect_timeout: float = 10.0,
        verifier: Verifier | None = None,
        accept_unsigned: bool = False,
        on_rejected: Callable[[resources_pb2.Message, Verification], None] | None = None,
        task_signer: Callable[..., tuple[bytes, int]] | None = None,
        rebalance: float = 60.0,
    ) -> None:
        self.server = server
        # Several addresses: failover in order, and back to this client's own address (targets.py).
        self.targets = Targets(server, server_name, seed=f"{device.id}/{agent.id}")
        self.target: Target | None = None
        self.rebalance = rebalance
        self.device = device
        self.agent = agent
        self.cache = cache
        self.server_name = server_name
        self.backoff = backoff or Backoff()
        self.signer = signer
        self.ack_interval = ack_interval
        self.connect_timeout = connect_timeout
        self.verifier = verifier
        self.task_signer = task_signer
        self.accept_unsigned = accept_unsigned
        self.on_rejected = on_rejected
        # (conversation, seq) -> verification of received messages (most recent 100,000).
        self.verification: collections.OrderedDict[tuple[str, int], Verification] = collections.OrderedDict()
        # Messages refused because their signature does not verify (count, and the latest 1,000).
        self.rejected = 0
        self.rejected_messages: collections.deque[tuple[resources_pb2.Message, Verification]] = collections.deque(
            maxlen=1000
        )
        self.state = State.IDLE
        self.error: AgentnetError | None = None
        # Why the last connection attempt ended (for a "waiting for the server" line); "" once live.
        self.last_failure = ""
        self.heartbeat_interval = 10.0
        # The last registration the server accepted (None: this session never got through).
        self.registered: events_pb2.Registered | None = None
        self.presence: dict[str, bool] = {}
        self.duplicates_dropped = 0
        self.connects = 0
        self._phase_started = 0.0  # start of the dial, then of the registration
        # Received, per conversation. It starts from what the application took in earlier runs.
        self._cursors: dict[str, int] = cache.cursors() if cache else {}
        # event_queue=0: do not queue events for the application (cache and cursors only).
        self._queue_events = event_queue > 0
        self._overflowed = False
        # Events for the application, each with the (conversation, seq) that taking it covers.
        self._events: asyncio.Queue[tuple[events_pb2.ServerEvent, tuple[str, int] | None]] = asyncio.Queue(
            max(event_queue, 1)
        )
        self._state_changed = asyncio.Condition()
        self._outbox: dict[str, events_pb2.SendMessage] = dict(cache.outbox()) if cache else {}
        self._send_waiters: dict[str, asyncio.Future[events_pb2.MessageAck]] = {}
        self._requests: dict[str, asyncio.Future[events_pb2.ServerEvent]] = {}
        self._ids = itertools.count(1)
        self._call: Any = None
        self._wlock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._conn_task: asyncio.Task[None] | None = None
        self._closing = False
        self._acked: dict[str, int] = {}
        self._ack_dirty = False
        self._last_recv = time.monotonic()
        self._reading = False
        self._moving = False  # leaving a live stream on purpose (drifting home), not a failure
        self._live_since: float | None = None  # monotonic time the current connection caught up

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"agentnet-session-{self.agent.id}")

    async def close(self, grace: float = 2.0) -> None:
        """Stop: send the last delivery ack, half-close the stream and let the server finish it."""
        self._closing = True
        call = self._call
        if call is not None and self.state in (State.CATCHING_UP, State.LIVE):
            try:
                await asyncio.wait_for(self._graceful_end(call), grace)
            except (TimeoutError, AgentnetError, grpc.aio.AioRpcError, grpc.aio.UsageError):
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._set_state(State.CLOSED)
        for fut in self._send_waiters.values():
            if not fut.done():
                fut.set_exception(NotConnected("the client was closed; the message stays in the outbox"))
        self._send_waiters.clear()

    async def _graceful_end(self, call: Any) -> None:
        await self._send_acks()
        async with self._wlock:
            await call.done_writing()
        assert self._task is not None
        await asyncio.shield(self._task)

    async def _set_state(self, state: State) -> None:
        if self.state == state:
            return
        self.state = state
        async with self._state_changed:
            self._state_changed.notify_all()

    async def wait_for(self, *states: State, timeout: float | None = None) -> State:
        """Wait until the client is in one of `states` (FAILED and CLOSED always end the wait)."""
        ends = set(states) | {State.FAILED, State.CLOSED}

        async def _wait() -> State:
            async with self._state_changed:
                await self._state_changed.wait_for(lambda: self.state in ends)
            return self.state

        return await asyncio.wait_for(_wait(), timeout)

    async def events(self) -> AsyncIterator[events_pb2.ServerEvent]:
        while True:
            yield self._taken(await self._events.get())

    def get_event_nowait(self) -> events_pb2.ServerEvent | None:
        try:
            return self._taken(self._events.get_nowait())
        except asyncio.QueueEmpty:
            return None

    async def next_event(self, timeout: float | None = None) -> events_pb2.ServerEvent:
        return self._taken(await asyncio.wait_for(self._events.get(), timeout))

    def _taken(self, item: tuple[events_pb2.ServerEvent, tuple[str, int] | None]) -> events_pb2.ServerEvent:
        """The application has the event: only now may the server count it as delivered, and only
        now may a later run resume after it."""
        ev, key = item
        if key is not None:
            self._take(*key)
            if self.cache is not None:
                try:
                    self.cache.take(*key)
                except sqlite3.Error as exc:
                    # The event is handed over anyway; the next run may get it once more.
                    log.warning("could not store the cursor %s #%d in the cache: %s", key[0], key[1], exc)
        if self._overflowed and self._events.qsize() <= self._events.maxsize // 2:
            # Events were dropped while the queue was full (the cursors stayed put): reconnect,
            # and the server replays them from the cursors.
            self._overflowed = False
            if self._call is not None:
                log.info("event queue drained; reconnecting to replay what did not fit")
                self._abandon(self._call)
        return ev

    def _take(self, conv: str, seq: int) -> None:
        """Acknowledge (conv, seq) to the server with the next batch of acks."""
        if seq > self._acked.get(conv, 0):
            self._acked[conv] = seq
            self._ack_dirty = True

    @property
    def cursors(self) -> dict[str, int]:
        """What this session has received, per conversation."""
        return dict(self._cursors)

    @property
    def outbox_size(self) -> int:
        return len(self._outbox)

    # -- requests -----------------------------------------------------------------------------

    async def send(
        self,
        content: str = "",
        *,
        group_id: str = "",
        to_agent: str = "",
        payload: dict[str, Any] | None = None,
        mentions: list[str] | None = None,
        client_msg_id: str = "",
        reply_to: int = 0,
        auto_hops: int = 0,
    ) -> events_pb2.MessageAck:
        """Send a message; returns the server's ack after the message is committed.

        The message goes into the outbox first; if the connection is down it is sent after
        reconnecting. A retried client_msg_id returns the original seq (ack.duplicate).
        A session that failed raises its error, a closed one NotConnected: nothing would send it."""
        if self.state == State.FAILED:
            raise self.error or NotConnected("the session failed; the message was not sent")
        if self.state == State.CLOSED or self._closing:
            raise NotConnected("the client is closed; the message was not sent")
        sm = make_send(
            content,
            group_id=group_id,
            to_agent=to_agent,
            payload=payload,
            mentions=mentions,
            client_msg_id=client_msg_id,
            reply_to=reply_to,
            auto_hops=auto_hops,
        )
        cid = sm.client_msg_id
        if self.signer is not None:
            self.signer(sm, self.agent.id)
        fut = self._send_waiters.get(cid)
        if fut is None or fut.done():
            fut = self._send_waiters[cid] = asyncio.get_running_loop().create_future()
        if cid not in self._outbox:
            self._outbox[cid] = sm
            if self.cache is not None:
                self.cache.outbox_put(cid, sm)
        if self.state in (State.CATCHING_UP, State.LIVE):
            await self._write_quiet(events_pb2.ClientEvent(request_id=cid, message=sm))
        return await fut

    async def request(self, event: events_pb2.ClientEvent, timeout: float = 30.0) -> events_pb2.ServerEvent:
        """Send one event on the stream and wait for its reply (raises AgentnetError on error)."""
        if self.state not in (State.CATCHING_UP, State.LIVE):
            raise NotConnected(f"not connected (state {self.state.value}); try again when live")
        rid = f"r{next(self._ids)}"
        event.request_id = rid
        fut: asyncio.Future[events_pb2.ServerEvent] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        try:
            await self._write(event)
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._requests.pop(rid, None)
        if reply.WhichOneof("event") == "error":
            raise AgentnetError.from_event(reply.error)
        return reply

    async def join(self, group_id: str, create: bool = False, title: str = "") -> events_pb2.GroupJoined:
        reply = await self.request(
            events_pb2.ClientEvent(
                join_group=events_pb2.JoinGroup(group_id=group_id, create_if_missing=create, title=title)
            )
        )
        return reply.group_joined

    async def leave(self, group_id: str) -> None:
        await self.request(events_pb2.ClientEvent(leave_group=events_pb2.LeaveGroup(group_id=group_id)))

    async def mark_read(
        self, up_to: dict[str, int] | None = None, item_seqs: list[int] | None = None
    ) -> events_pb2.ReadMarkers:
        """Move read markers over the stream (they apply to the agent on all its devices)."""
        reply = await self.request(
            events_pb2.ClientEvent(
                mark_read=events_pb2.MarkRead(
                    up_to=[resources_pb2.Cursor(conversation=c, seq=s) for c, s in (up_to or {}).items()],
                    item_seqs=item_seqs or [],
                )
            )
        )
        return reply.read_markers

    async def update_task(
        self,
        task_id: str,
        *,
        status: int = 0,
        assignee: str = "",
        note: str = "",
        result: str = "",
        expected_version: int = 0,
    ) -> resources_pb2.Task:
        """Change a task over the stream (signed with the device key when this client signs)."""
        ev = events_pb2.UpdateTaskEvent(
            task_id=task_id,
            status=_enum(status),
            assignee=assignee,
            note=note,
            result=result,
            expected_version=expected_version,
        )
        if self.task_signer is not None:
            sig, sign_time = self.task_signer(self.agent.id, task_id, status, assignee, note, result, expected_version)
            ev.signature = sig
            ev.sign_time.FromMicroseconds(sign_time)
        reply = await self.request(events_pb2.ClientEvent(update_task=ev))
        return reply.task_result.task

    # -- transport ----------------------------------------------------------------------------

    async def _write(self, event: events_pb2.ClientEvent) -> None:
        call = self._call
        if call is None:
            raise NotConnected()
        async with self._wlock:
            try:
                await call.write(event)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
                raise ConnectionLost(f"the stream broke while sending: {exc}") from None

    async def _write_quiet(self, event: events_pb2.ClientEvent) -> None:
        """Write, or leave it to the outbox flush after reconnecting."""
        try:
            await self._write(event)
        except AgentnetError:
            pass

    async def _run(self) -> None:
        while not self._closing:
            await self._set_state(State.CONNECTING)
            self._conn_task = asyncio.create_task(self._connect_once())
            try:
                await self._conn_task
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closing or (task is not None and task.cancelling()):
                    raise
                log.info("agentnet session for %s: link declared dead; reconnecting", self.agent.id)
            except AgentnetError as exc:
                if exc.status in PERMANENT:
                    self.error = exc
                    log.error("agentnet session for %s failed: %s", self.agent.id, exc)
                    self._fail_pending(exc)
                    await self._set_state(State.FAILED)
                    return
                log.info("agentnet session for %s ended: %s", self.agent.id, exc)
                self.last_failure = exc.message
            except Exception as exc:  # noqa: BLE001 - any transport failure leads to a retry
                log.info("agentnet session for %s broke: %s: %s", self.agent.id, type(exc).__name__, exc)
                self.last_failure = f"{type(exc).__name__}: {exc}"
            finally:
                self._call = None
                self._fail_requests(ConnectionLost())
            if self._live_since is not None and time.monotonic() - self._live_since >= STABLE_AFTER:
                self.backoff.reset()
            self._live_since = None
            if self._closing:
                break
            if self.target is not None and self.targets.several and not self._moving:
                # Refused or dropped: the next attempt goes down the list, without waiting while
                # another address may serve.
                self.targets.failed(self.target)
            self._moving = False
            if self.targets.several and not self.targets.all_cooling():
                delay = random.uniform(0, 0.05)
            else:
                delay = self.backoff.next()
            await self._set_state(State.BACKING_OFF)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        self.device.check_valid()
        await self.targets.refresh_if_old()
        self.target = target = self.targets.pick()
        channel = secure_channel(target.addr, self.device, target.name)
        helpers: list[asyncio.Task[None]] = []
        try:
            stub = service_pb2_grpc.AgentNetStub(channel)
            call = stub.Session()
            self._call = call
            self.connects += 1
            await self._set_state(State.REGISTERING)
            reg = events_pb2.Register(
                agent=resources_pb2.Agent(
                    id=self.agent.id,
                    display_name=self.agent.display_name,
                    role=self.agent.role,
                    description=self.agent.description,
                ),
                # What this process received: the part the application has not taken yet is still
                # in the event queue. (A new process starts from what was taken.)
                cursors=[resources_pb2.Cursor(conversation=c, seq=s) for c, s in self._cursors.items()],
            )
            # The watchdog first: the register write itself waits while the channel dials. The
            # dial and the registration each get connect_timeout.
            self._last_recv = self._phase_started = time.monotonic()
            helpers.append(asyncio.create_task(self._watchdog(call)))
            async with self._wlock:
                await call.write(events_pb2.ClientEvent(request_id="register", register=reg))
            self._phase_started = time.monotonic()
            helpers.append(asyncio.create_task(self._heartbeats()))
            helpers.append(asyncio.create_task(self._acks()))
            if self.targets.several:
                helpers.append(asyncio.create_task(self._drift_home(call, target)))
            while True:
                self._reading = True
                ev = await call.read()
                self._reading = False
                if ev is grpc.aio.EOF:
                    break
                self._last_recv = time.monotonic()
                await self._on_event(ev)
            code = await call.code()
            if code != grpc.StatusCode.OK:
                raise AgentnetError.from_rpc(_CallStatus(code, await call.details(), await call.trailing_metadata()))
        except grpc.aio.AioRpcError as exc:
            raise AgentnetError.from_rpc(exc) from None
        finally:
            for t in helpers:
                t.cancel()
            for t in helpers:
                try:
                    await t
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            self._call = None
            await channel.close(grace=None)

    async def _drift_home(self, call: Any, target: Target) -> None:
        """Live on another replica than this client's own: now and then, ask whether its own
        serves again (gRPC health) and move back, so the load returns to balance."""
        while True:
            await asyncio.sleep(self.rebalance * random.uniform(0.5, 1.5))
            home = self.targets.home
            if target == home or self.state != State.LIVE:
                continue
            if await serving(home, self.device):
                log.info("agentnet session for %s: moving back to %s", self.agent.id, home.addr)
                self.targets.succeeded(home)
                self._moving = True
                self._abandon(call)
                return

    async def _watchdog(self, call: Any) -> None:
        """Cancel the call when registration does not finish within connect_timeout (a link that
        hangs while dialing) or when the server is silent for 3 heartbeat intervals."""
        while True:
            await asyncio.sleep(min(0.25, self.heartbeat_interval / 4))
            now = time.monotonic()
            if self.state == State.REGISTERING:
                if now - self._phase_started > self.connect_timeout:
                    log.info("no registration within %.1f s; reconnecting", self.connect_timeout)
                    self._abandon(call)
                    return
            # Only while waiting for the server: an application that is slow to take events
            # pauses reading on purpose (backpressure) and is not a dead link.
            elif self._reading and now - self._last_recv > 3 * self.heartbeat_interval:
                log.info("no answer from the server for 3 heartbeat intervals; reconnecting")
                self._abandon(call)
                return

    def _abandon(self, call: Any) -> None:
        """Give up on a dead link: a read on a frozen connection does not end by itself."""
        call.cancel()
        if self._conn_task is not None:
            self._conn_task.cancel()

    async def _heartbeats(self) -> None:
        """A heartbeat every interval (the interval arrives with `registered`, so poll it)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(0.25, self.heartbeat_interval / 4))
            if self.state in (State.CATCHING_UP, State.LIVE) and time.monotonic() - last >= self.heartbeat_interval:
                last = time.monotonic()
                try:
                    await self._write(events_pb2.ClientEvent(heartbeat=events_pb2.Heartbeat()))
                except AgentnetError:
                    return

    async def _acks(self) -> None:
        while True:
            await asyncio.sleep(self.ack_interval)
            try:
                await self._send_acks()
            except AgentnetError:
                return

    async def _send_acks(self) -> None:
        if self._ack_dirty and self.state in (State.CATCHING_UP, State.LIVE):
            self._ack_dirty = False
            batch = [resources_pb2.Cursor(conversation=c, seq=s) for c, s in self._acked.items()]
            self._acked = {}
            await self._write(events_pb2.ClientEvent(ack=events_pb2.Ack(cursors=batch)))

    def _reject(self, msg: resources_pb2.Message, status: Verification, feed: str) -> None:
        self.rejected += 1
        self.rejected_messages.append((msg, status))
        log.warning(
            "rejected message %s #%d (in %s) from %s on %s: signature %s",
            msg.conversation,
            msg.seq,
            feed,
            msg.sender,
            msg.sender_device,
            status.value,
        )
        if self.on_rejected is not None:
            try:
                self.on_rejected(msg, status)
            except Exception:
                log.exception("on_rejected callback failed")

    # -- incoming -----------------------------------------------------------------------------

    async def _on_event(self, ev: events_pb2.ServerEvent) -> None:
        kind = ev.WhichOneof("event")
        rid = ev.request_id
        if kind == "registered":
            self.registered = ev.registered
            self.heartbeat_interval = max(0.05, ev.registered.heartbeat_interval.ToTimedelta().total_seconds())
            await self._set_state(State.CATCHING_UP)
            # Not awaited: a large outbox must not stop this loop from reading the acks it causes.
            flush = asyncio.ensure_future(self._flush_outbox())
            self._background.add(flush)
            flush.add_done_callback(self._background.discard)
            return
        if rid and rid in self._requests:
            fut = self._requests.pop(rid)
            if not fut.done():
                fut.set_result(ev)
            return
        if kind == "message_ack":
            self._on_send_result(rid, ev.message_ack, None)
            return
        if kind == "error" and rid:
            err = AgentnetError.from_event(ev.error)
            if rid == "register":
                raise err
            if rid in self._send_waiters or rid in self._outbox:
                self._on_send_result(rid, None, err)
                return
        if kind == "heartbeat_ack":
            return
        # The application is behind: never block this loop (it also reads acks and replies).
        full = self._queue_events and (self._overflowed or self._events.full())
        key = sequenced(ev, self.agent.id)
        if key is not None:
            if full:
                # Dropped without moving any cursor: replayed after the application drains.
                self._overflowed = True
                return
            conv, seq = key
            last = self._cursors.get(conv, 0)
            if seq <= last:
                self.duplicates_dropped += 1
                return
            if kind == "history_gap":
                log.warning(
                    "%s #%d-#%d is no longer stored on the server (retention); continuing after it",
                    conv,
                    ev.history_gap.from_seq,
                    seq,
                )
            elif seq != last + 1 and last:
                log.warning("gap in %s: had %d, got %d", conv, last, seq)
            if self.verifier is not None and kind in ("message", "mention"):
                msg = ev.message if kind == "message" else ev.mention.message
                status = await self.verifier.check(msg)
                self.verification[(msg.conversation, msg.seq)] = status
                if len(self.verification) > 100_000:
                    self.verification.popitem(last=False)
                if not acceptable(status, self.accept_unsigned):
                    # Never handed over as a message: the application gets a MESSAGE_REJECTED error
                    # event (and on_rejected) instead; taking that event delivers the message.
                    self._reject(msg, status, conv)
                    if self._queue_events:
                        # Taking the error event takes the message's place in the conversation.
                        self._events.put_nowait((rejection_event(msg, status, conv), key))
                    else:
                        if self.cache is not None:
                            self.cache.take(conv, seq)
                        self._take(conv, seq)
                    self._cursors[conv] = seq
                    return
            # Stored first: if the write fails, the stream ends with the cursor before this event
            # and the server sends it again after reconnecting.
            if self.cache is not None:
                if self._queue_events:
                    self.cache.record(conv, seq, ev)
                else:
                    # No application queue: received (and cached) is delivered.
                    self.cache.record(conv, seq, ev, taken=True)
            self._cursors[conv] = seq
            if not self._queue_events:
                self._take(conv, seq)
        elif kind == "caught_up":
            heads = {h.conversation for h in ev.caught_up.heads}
            for conv in [c for c in self._cursors if c not in heads]:
                # Not a conversation of this agent on this server (left, or the server was reset):
                # forget the cursor so a conversation of that name starts fresh.
                del self._cursors[conv]
                if self.cache is not None:
                    self.cache.reset_cursor(conv, 0)
            for head in ev.caught_up.heads:
                if self._cursors.get(head.conversation, 0) > head.seq:
                    # The server's history is behind this cache (a reset or restored server): follow
                    # the server, or every new message up to the old cursor would look like a duplicate.
                    log.warning(
                        "server history for %s ends at %d but this cache had %d; following the server",
                        head.conversation,
                        head.seq,
                        self._cursors[head.conversation],
                    )
                    self._cursors[head.conversation] = head.seq
            if self.cache is not None:
                # Nor may the cache keep what the server no longer has beyond its heads.
                dropped = self.cache.follow_heads({h.conversation: h.seq for h in ev.caught_up.heads})
                if dropped:
                    log.warning("dropped %d cached events beyond the server's history (reset or restored)", dropped)
            # The backoff starts again only once this connection has stayed up a while (see
            # _run): one that fails right after catching up (a server error, a cache that cannot
            # be written) must not make the client reconnect many times a second.
            self._live_since = time.monotonic()
            if self.target is not None:
                self.targets.succeeded(self.target)
            await self._set_state(State.LIVE)
        elif kind == "agent_list":
            self.presence = {a.id: a.online for a in ev.agent_list.agents}
        elif kind == "presence":
            if ev.presence.snapshot:
                self.presence = {}
            for p in ev.presence.agents:
                self.presence[p.agent_id] = p.online
        if self._queue_events and not full:
            self._events.put_nowait((ev, key))

    def _on_send_result(self, cid: str, ack: events_pb2.MessageAck | None, err: AgentnetError | None) -> None:
        if err is not None and err.retryable:
            # Stays in the outbox; sent again after a pause (or after reconnecting).
            delay = err.retry_after or self.backoff.base
            asyncio.get_running_loop().call_later(delay, self._resend, cid)
            return
        self._outbox.pop(cid, None)
        if self.cache is not None:
            self.cache.outbox_remove(cid)
        fut = self._send_waiters.pop(cid, None)
        if fut is not None and not fut.done():
            if err is not None:
                fut.set_exception(err)
            else:
                assert ack is not None
                fut.set_result(ack)

    def _resend(self, cid: str) -> None:
        sm = self._outbox.get(cid)
        if sm is not None and self.state in (State.CATCHING_UP, State.LIVE):
            asyncio.get_running_loop().create_task(
                self._write_quiet(events_pb2.ClientEvent(request_id=cid, message=sm))
            )

    async def _flush_outbox(self) -> None:
        stale = time.time_ns() // 1000 - RESIGN_AFTER_US
        for cid, sm in list(self._outbox.items()):
            if self.signer is not None and sm.signature and sm.sign_time.ToMicroseconds() < stale:
                # Waited offline: sign again with the current time, or the server's signing-time
                # window refuses it. The server deduplicates by client_msg_id and content.
                self.signer(sm, self.agent.id)
            await self._write_quiet(events_pb2.ClientEvent(request_id=cid, message=sm))

    def _fail_requests(self, exc: AgentnetError) -> None:
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(exc)
        self._requests.clear()

    def _fail_pending(self, exc: AgentnetError) -> None:
        self._fail_requests(exc)
        for fut in self._send_waiters.values():
            if not fut.done():
                fut.set_exception(exc)
        self._send_waiters.clear()


@dataclasses.dataclass
class _CallStatus:
    """Adapts a finished call's status to AgentnetError.from_rpc."""

    _code: grpc.StatusCode
    _details: str
    _trailing: Any

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing


def _enum(value: int) -> Any:
    """Enum fields take plain ints at run time; the generated stubs want the enum type."""
    return value

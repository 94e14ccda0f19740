"""The Session stream: the reader side (client events → domain calls) and the gRPC adapter.

One reader task per stream handles client events in order and answers through the session's
control queue (as `Event` objects, rendered by the writer); the writer is the delivery engine
(live/delivery.py), which knows no transport and yields what the stream's output format
(live/format.py) makes of each event. `SessionService.handle` is the gRPC adapter: `Conn.stream()`
with the protobuf format, whose bytes it writes as they are. The REST event stream (rest/sse.py)
is the other adapter, over `Conn.stream()` with its SSE format.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError

from agentnet.v1 import events_pb2, resources_pb2

from ..auth import Peer, Revocations, current_peer
from ..config import Settings
from ..domain.inbox import Inbox, ReadResult
from ..domain.limits import Limiter
from ..domain.network import Network, Target
from ..domain.tasks import Tasks
from ..errors import AgentnetError, FailedPrecondition, InvalidArgument, ResourceExhausted, StoreUnavailable
from ..live import encode
from ..live.delivery import Delivery
from ..live.format import PROTOBUF, Format
from ..live.hub import Close, Event, Hub, Session
from ..live.roster import Roster
from ..records import SendResult, inbox_conv, now_us
from . import convert, status

ACK_RETRIES = 5
log = logging.getLogger("agentnet.session")

MAX_REQUEST_ID = 64
MAX_CURSORS = 10_000

T = TypeVar("T")


class BadEvent:
    """Stands in for a client event that could not be parsed, so the stream survives it."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def parse_client_event(data: bytes) -> events_pb2.ClientEvent | BadEvent:
    try:
        ev: events_pb2.ClientEvent = events_pb2.ClientEvent.FromString(data)
        return ev
    except (DecodeError, RecursionError) as exc:
        return BadEvent(str(exc) or type(exc).__name__)


def passthrough(data: bytes) -> bytes:
    return data


EventHandler = Callable[["Conn[Any]", events_pb2.ClientEvent], Awaitable[None]]


class SessionService:
    """Creates a Conn per stream. Extra client event kinds can be registered by other modules."""

    def __init__(self, settings: Settings, net: Network, hub: Hub) -> None:
        self.settings = settings
        self.net = net
        self.hub = hub
        self.handlers: dict[str, EventHandler] = {
            "join_group": Conn.on_join,
            "leave_group": Conn.on_leave,
            "message": Conn.on_message,
            "ack": Conn.on_ack,
            "mark_read": Conn.on_mark_read,
            "create_task": Conn.on_create_task,
            "update_task": Conn.on_update_task,
        }
        self.inbox: Inbox | None = None
        self.tasks: Tasks | None = None
        self.limiter: Limiter | None = None  # per-device event limiter (set by the app)
        self.revocations: Revocations | None = None  # set by the app
        self.roster = Roster(net, hub)
        self.streams: dict[str, int] = {}  # open Session streams per device (gRPC and SSE)

    def open(self, peer: Peer, requests: AsyncIterator[events_pb2.ClientEvent | BadEvent], fmt: Format[T]) -> Conn[T]:
        """A session for one stream of client events (any transport), its frames made by `fmt`."""
        return Conn(self, peer, requests, fmt)

    async def handle(
        self, requests: AsyncIterator[events_pb2.ClientEvent | BadEvent], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """The gRPC adapter: write the frames (serialized ServerEvents); a session that closes with
        an error ends the RPC with that status (and its reason in the trailers)."""
        conn = self.open(current_peer.get(), requests, PROTOBUF)
        async for data in conn.stream():
            yield data
        close = conn.failure
        if close is not None:
            try:
                await context.abort(
                    status.code_of(close.status),
                    close.message,
                    trailing_metadata=status.trailing(close.status, close.message, close.reason, {}, None),
                )
            except grpc.aio.InternalError:
                # The client left after the fatal error event (it had what it needed): no status to send.
                log.debug("session %s: the client left before the closing status", conn.s.id)


class Conn(Generic[T]):
    def __init__(
        self,
        svc: SessionService,
        peer: Peer,
        requests: AsyncIterator[events_pb2.ClientEvent | BadEvent],
        fmt: Format[T],
    ) -> None:
        self.svc = svc
        self.net = svc.net
        self.hub = svc.hub
        self.settings = svc.settings
        self.peer = peer
        self.requests = requests
        self.s: Session = svc.hub.new_session("", peer.device_id, peer.fingerprint)
        self.fmt = fmt
        self.delivery = Delivery(self.s, svc.net, svc.roster, svc.settings.register_timeout, fmt)
        self.inflight = 0
        self._inflight_free = asyncio.Event()
        self._ack_pending: dict[str, int] = {}
        self._ack_writing = False
        self._ack_failures = 0  # ack writes that failed in a row (retried with backoff, then dropped)
        # How the stream ended, when not cleanly: set once stream() has returned.
        self.failure: Close | None = None

    @property
    def registered(self) -> bool:
        return self.delivery.registered

    async def stream(self) -> AsyncIterator[T]:
        """The session's frames while its reader handles the client's events; `failure` says
        afterwards whether it ended with an error status."""
        s = self.s
        device = self.peer.device_id
        streams = self.svc.streams
        limit = self.settings.max_sessions_per_device
        # Checked and counted in one step (no await between), when the stream opens: concurrent
        # logins cannot all pass the check, and streams that never register count too.
        if limit and streams.get(device, 0) >= limit:
            exc = ResourceExhausted(
                f"device {device!r} already has {limit} open streams (the limit); close one first",
                reason="TOO_MANY_SESSIONS",
                metadata={"limit": str(limit)},
            )
            self.failure = Close(exc.status, exc.message, exc.reason)
            yield self.fmt.event(Event(encode.error_event(exc, fatal=True)))
            return
        streams[device] = streams.get(device, 0) + 1
        reader = asyncio.create_task(self._read_loop(), name=f"agentnet-read-{s.id}")
        try:
            async for data in self.delivery.frames():
                yield data
            close = s.closing
            if close is not None and close.status != "OK":
                self.failure = close
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except StoreUnavailable as exc:
            # The store went away under a catch-up: the client resumes here or elsewhere.
            log.warning("session %s: %s", s.id, exc.message)
            self.failure = Close("UNAVAILABLE", f"{exc.message}; reconnect and resume", exc.reason)
            yield self._closing_event(self.failure)
        except Exception as exc:
            log.exception("session %s writer failed", s.id)
            self.failure = Close("INTERNAL", f"internal error ({type(exc).__name__}); reconnect", "INTERNAL")
            yield self._closing_event(self.failure)
        finally:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                if not reader.cancelled():
                    raise
            except Exception:  # noqa: BLE001 - already logged by the reader
                pass
            if self.registered:
                self.hub.detach(s)
                self.net.mark_seen(s.agent_id, s.device_id)
            left = streams.get(device, 1) - 1
            if left > 0:
                streams[device] = left
            else:
                streams.pop(device, None)

    def _closing_event(self, close: Close) -> T:
        """The fatal Error event that ends a stream (its last frame, as when the hub closes it)."""
        exc = AgentnetError(close.message, close.reason)
        exc.status = close.status
        return self.fmt.event(Event(encode.error_event(exc, fatal=True)))

    # -- reader -------------------------------------------------------------------------------

    def reply(self, event: events_pb2.ServerEvent) -> None:
        self.s.push_control(Event(event))

    def fail(self, exc: AgentnetError, request_id: str) -> None:
        self.reply(encode.error_event(exc, request_id))

    async def _read_loop(self) -> None:
        s = self.s
        try:
            async for ev in self.requests:
                s.touch()
                if s.closing is not None:
                    break
                if isinstance(ev, BadEvent):
                    self.fail(InvalidArgument(f"could not parse the event: {ev.error}", reason="MALFORMED_EVENT"), "")
                    continue
                rid = ev.request_id
                if len(rid) > MAX_REQUEST_ID:
                    self.fail(
                        InvalidArgument(
                            f"request_id is {len(rid)} characters; the limit is {MAX_REQUEST_ID}",
                            reason="BAD_REQUEST_ID",
                        ),
                        rid[:MAX_REQUEST_ID],
                    )
                    continue
                try:
                    if self.svc.limiter is not None:
                        self.svc.limiter.check_event(self.peer.device_id)
                    await self._dispatch(ev)
                except AgentnetError as exc:
                    self.fail(exc, rid)
            # A graceful end: answer every send still in flight and keep the client's last
            # delivery ack before the stream closes.
            while self.inflight:
                self._inflight_free.clear()
                await self._inflight_free.wait()
            while self._ack_writing or self._ack_pending:
                self._flush_acks()
                await asyncio.sleep(0.005)
            s.close("OK", "the client closed the stream", "CLIENT_CLOSED")
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            # The writer ended the call (register timeout, revocation, limit): nothing to report.
            if s.closing is None:
                s.close("OK", "stream ended", "STREAM_ENDED")
        except Exception as exc:
            # The call ended under the reader: the peer went away (AioRpcError, a cancel), or this
            # side had already ended it (the hub closed the session while the reader was busy with
            # an event: its next read raises AbortError, or UsageError once the status is sent).
            ended = (grpc.aio.AioRpcError, grpc.aio.AbortError, grpc.aio.UsageError)
            if s.closing is not None or isinstance(exc, ended) or "cancel" in type(exc).__name__.lower():
                s.close("OK", "stream ended", "STREAM_ENDED")
                return
            log.exception("session %s reader failed", s.id)
            s.close("INTERNAL", f"internal error ({type(exc).__name__}); reconnect", "INTERNAL")

    async def _dispatch(self, ev: events_pb2.ClientEvent) -> None:
        kind = ev.WhichOneof("event")
        if kind is None:
            raise InvalidArgument(
                "the event has no known kind (empty, or a kind this server does not know); known kinds: "
                + ", ".join(["register", "heartbeat", *sorted(self.svc.handlers)]),
                reason="UNKNOWN_EVENT",
            )
        if kind == "heartbeat":
            self.reply(
                events_pb2.ServerEvent(
                    request_id=ev.request_id,
                    heartbeat_ack=events_pb2.HeartbeatAck(
                        client_time=ev.heartbeat.client_time if ev.heartbeat.HasField("client_time") else None,
                        server_time=encode.ts(now_us()),
                    ),
                )
            )
            return
        if kind == "register":
            if self.registered:
                raise FailedPrecondition(
                    f"this stream is already registered as {self.s.agent_id!r}; open another stream for another agent",
                    reason="ALREADY_REGISTERED",
                )
            # A register under way holds off the register deadline: a slow store is not a
            # client that never registered.
            self.delivery.registering = True
            try:
                await self._register(ev)
            finally:
                self.delivery.registering = False
                self.s.wake.set()
            return
        if not self.registered:
            raise FailedPrecondition(f"send register first (got {kind!r} before it)", reason="NOT_REGISTERED")
        handler = self.svc.handlers.get(kind)
        if handler is None:
            raise InvalidArgument(f"event kind {kind!r} is not supported by this server", reason="UNKNOWN_EVENT")
        await handler(self, ev)

    async def _register(self, ev: events_pb2.ClientEvent) -> None:
        reg = ev.register
        device = self.peer.device_id
        limit = self.settings.max_sessions_per_device
        if limit and self.hub.device_sessions(device) >= limit:
            raise ResourceExhausted(
                f"device {device!r} already has {limit} live sessions (the limit); close one first",
                reason="TOO_MANY_SESSIONS",
            )
        if len(reg.cursors) > MAX_CURSORS:
            # Not refused (the client could never reconnect): the rest resume from server-side acks.
            log.warning("session %s sent %d cursors; using the first %d", self.s.id, len(reg.cursors), MAX_CURSORS)
        given: dict[str, int] = {}
        for c in reg.cursors[:MAX_CURSORS]:
            if not c.conversation or len(c.conversation) > 160:
                raise InvalidArgument(f"cursor conversation {c.conversation[:40]!r} is not valid", reason="BAD_CURSOR")
            convert.check_seq(f"cursor seq for {c.conversation}", c.seq)
            given[c.conversation] = c.seq
        a = reg.agent
        rec, created = await self.net.register(device, a.id, a.display_name, a.role, a.description)
        cursors, self.delivery.heads = await self.net.resume_cursors(rec.id, device, given)
        s = self.s
        s.agent_id = rec.id
        s.cursors.update(cursors)
        self.delivery.registered = True
        hb = duration_pb2.Duration()
        hb.FromNanoseconds(int(self.settings.heartbeat_interval * 1e9))
        st = self.settings
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id,
                registered=events_pb2.Registered(
                    agent=encode.agent(rec, True),
                    device_id=device,
                    session_id=s.id,
                    heartbeat_interval=hb,
                    server_time=encode.ts(now_us()),
                    created=created,
                    limits=events_pb2.Limits(
                        max_content_bytes=st.max_content_bytes,
                        max_payload_bytes=st.max_payload_bytes,
                        session_queue=st.session_queue,
                        sends_per_second=st.sends_per_second,
                        send_burst=st.send_burst,
                    ),
                ),
            )
        )
        self.hub.attach(s)
        if self.svc.revocations is not None and self.svc.revocations.is_revoked(self.peer):
            # Revoked after this stream opened but before it registered: the hub-wide close
            # that revocation triggers did not see this session yet.
            s.close(
                "UNAUTHENTICATED", "this device has been revoked; ask the operator to enroll it again", "DEVICE_REVOKED"
            )
            return
        self.s.push_control(self.svc.roster.agent_list(rec.id, cursors))
        log.info("session %s: %s registered agent %s%s", s.id, self.peer.short, rec.id, " (new)" if created else "")

    async def on_join(self, ev: events_pb2.ClientEvent) -> None:
        j = ev.join_group
        group, member, new = await self.net.join(self.s.agent_id, j.group_id, j.create_if_missing, j.title)
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id,
                group_joined=events_pb2.GroupJoined(
                    group=encode.group(group), joined_seq=member.joined_seq, newly_joined=new
                ),
            )
        )

    async def on_leave(self, ev: events_pb2.ClientEvent) -> None:
        await self.net.leave(self.s.agent_id, ev.leave_group.group_id)
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id, group_left=events_pb2.GroupLeft(group_id=ev.leave_group.group_id)
            )
        )

    async def on_message(self, ev: events_pb2.ClientEvent) -> None:
        m = ev.message
        which = m.WhichOneof("target")
        target = Target(
            group_id=m.group_id if which == "group_id" else "", to_agent=m.to_agent if which == "to_agent" else ""
        )
        if self.svc.limiter is not None:
            self.svc.limiter.check_send(self.peer.device_id)
        cmd = convert.send_command(m, self.s.agent_id, target, self.peer, list(m.mentions))
        fut, unresolved = await self.net.submit(cmd)
        self.inflight += 1
        rid = ev.request_id
        fut.add_done_callback(lambda f: self._send_done(f, rid, unresolved))
        while self.inflight >= self.settings.session_inflight:
            self._inflight_free.clear()
            await self._inflight_free.wait()

    def _send_done(self, fut: asyncio.Future[SendResult], rid: str, unresolved: tuple[str, ...]) -> None:
        self.inflight -= 1
        self._inflight_free.set()
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            if isinstance(exc, AgentnetError):
                self.fail(exc, rid)
            else:
                log.error("send failed", exc_info=exc)
            return
        r = fut.result()
        msg = r.message
        self.reply(
            events_pb2.ServerEvent(
                request_id=rid,
                message_ack=events_pb2.MessageAck(
                    conversation=msg.conversation,
                    seq=msg.seq,
                    client_msg_id=msg.client_msg_id,
                    create_time=encode.ts(msg.create_time),
                    duplicate=r.duplicate,
                    mentioned=msg.mentions,
                    unresolved_mentions=() if r.duplicate else unresolved,
                ),
            )
        )

    async def on_ack(self, ev: events_pb2.ClientEvent) -> None:
        if len(ev.ack.cursors) > MAX_CURSORS:
            raise InvalidArgument(
                f"{len(ev.ack.cursors)} cursors; the limit is {MAX_CURSORS}", reason="TOO_MANY_CURSORS"
            )
        mine = inbox_conv(self.s.agent_id)
        for c in ev.ack.cursors:
            convert.check_seq("ack seq", c.seq)
            known = self.s.cursors.get(c.conversation, -1)
            if c.conversation != mine:
                if known == -1:
                    raise InvalidArgument(
                        f"ack for {c.conversation!r}: not a conversation of this stream", reason="BAD_CURSOR"
                    )
                if known is None:
                    # Left while the ack was on its way: nothing more of it is delivered, so its
                    # ack no longer matters; the acks after it in this event still count.
                    continue
            if known is not None and c.seq > known:
                raise InvalidArgument(
                    f"ack for {c.conversation!r} seq {c.seq} is beyond what this stream delivered ({known})",
                    reason="ACK_AHEAD",
                )
            if c.seq > self._ack_pending.get(c.conversation, 0):
                self._ack_pending[c.conversation] = c.seq
        self._flush_acks()

    async def on_mark_read(self, ev: events_pb2.ClientEvent) -> None:
        assert self.svc.inbox is not None
        m = ev.mark_read
        r = await self.svc.inbox.mark_read(
            self.s.agent_id, [(c.conversation, c.seq) for c in m.up_to], list(m.item_seqs)
        )
        self.reply(events_pb2.ServerEvent(request_id=ev.request_id, read_markers=read_markers_event(r)))

    async def on_create_task(self, ev: events_pb2.ClientEvent) -> None:
        assert self.svc.tasks is not None
        commit = await self.svc.tasks.create(convert.create_task(ev.create_task, self.s.agent_id, self.peer))
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id, task_result=events_pb2.TaskResult(task=encode.task(commit.task))
            )
        )

    async def on_update_task(self, ev: events_pb2.ClientEvent) -> None:
        assert self.svc.tasks is not None
        commit = await self.svc.tasks.update(convert.update_task(ev.update_task, self.s.agent_id, self.peer))
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id, task_result=events_pb2.TaskResult(task=encode.task(commit.task))
            )
        )

    def _flush_acks(self) -> None:
        """One ack write in flight per stream; later acks merge into the next write. A write the
        store did not take is retried (with the acks that arrived meanwhile) after 0.1, 0.2, 0.4,
        0.8 and 1.6 s, then dropped with a warning: the acks move the delivered cursor that
        receipts and a resume without client cursors read, so one failed write must not lose
        them, but a stream that ends must not wait for a store that is gone."""
        if self._ack_writing or not self._ack_pending:
            return
        batch = list(self._ack_pending.items())
        self._ack_pending = {}
        self._ack_writing = True
        fut = asyncio.ensure_future(self.net.ack(self.s.agent_id, self.peer.device_id, batch))

        def again() -> None:
            self._ack_writing = False
            self._flush_acks()

        def done(f: asyncio.Future[None]) -> None:
            exc = None if f.cancelled() else f.exception()
            if exc is None:
                self._ack_failures = 0
                if not f.cancelled():
                    self.net.on_acked(self.s.agent_id, batch)
                again()
                return
            self._ack_failures += 1
            if isinstance(exc, StoreUnavailable) and self._ack_failures <= ACK_RETRIES:
                log.info("ack write failed (%s); retrying", exc)
                for conv, seq in batch:
                    if seq > self._ack_pending.get(conv, 0):
                        self._ack_pending[conv] = seq
                asyncio.get_running_loop().call_later(0.05 * 2**self._ack_failures, again)
                return
            log.warning("ack write failed (%s); %d acknowledgement(s) dropped", exc, len(batch))
            self._ack_failures = 0
            again()

        fut.add_done_callback(done)


def read_markers_event(r: ReadResult) -> events_pb2.ReadMarkers:
    return events_pb2.ReadMarkers(
        markers=[resources_pb2.Cursor(conversation=c, seq=v) for c, v in r.markers.items()],
        item_seqs=r.items,
        unread_total=r.unread_total,
    )

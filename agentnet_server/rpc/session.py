"""The Session stream: one reader task and one writer (this async generator) per stream.

The reader handles client events in order and answers through the session's control queue.
The writer sends, in this order: replies, then replay from the store after (re)connect, then
live envelopes from the hub. Cursors per conversation make every delivery gap-free and
duplicate-free: a duplicate is skipped, a gap is filled from the store before going on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError

from agentnet.v1 import events_pb2, resources_pb2

from ..auth import Peer, current_peer
from ..config import Settings
from ..domain.inbox import Inbox, ReadResult
from ..domain.network import Network, Target
from ..domain.tasks import Tasks
from ..errors import AgentnetError, FailedPrecondition, InvalidArgument, ResourceExhausted
from ..hub import Envelope, Hub, PresenceChange, Session
from ..records import DM_PREFIX, GROUP_PREFIX, INBOX_PREFIX, AgentRec, SendResult, dm_parties, inbox_conv, now_us
from . import convert, status

log = logging.getLogger("agentnet.session")

MAX_REQUEST_ID = 64
MAX_CURSORS = 10_000
FULL_ROSTER = 500  # networks up to this many agents send every agent in agent_list
REPLAY_PAGE = 500
REGISTER_TIMEOUT_INTERVALS = 3


class BadEvent:
    """Stands in for a client event that could not be parsed, so the stream survives it."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def parse_client_event(data: bytes) -> events_pb2.ClientEvent | BadEvent:
    try:
        return events_pb2.ClientEvent.FromString(data)
    except (DecodeError, RecursionError) as exc:
        return BadEvent(str(exc) or type(exc).__name__)


def passthrough(data: bytes) -> bytes:
    return data


EventHandler = Callable[["Conn", events_pb2.ClientEvent], Awaitable[None]]


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
        self.limiter: Any = None  # per-device event limiter (set by the app)
        self.revocations: Any = None  # auth.Revocations (set by the app)
        self._roster: tuple[tuple[int, int], bytes, bytes] | None = None
        self._entries: dict[str, tuple[AgentRec, bool, bytes]] = {}

    def _entry(self, a: AgentRec) -> bytes:
        """An agent's AgentList entry, serialized once per change of its record or presence: a
        reconnect storm asks for the same agents in thousands of agent_lists."""
        online = self.hub.online(a.id)
        hit = self._entries.get(a.id)
        if hit is not None and hit[0] is a and hit[1] == online:
            return hit[2]
        entry = convert.agent_entry(a, online)
        self._entries[a.id] = (a, online, entry)
        return entry

    def _roster_bytes(self) -> tuple[bytes, bytes]:
        """The agent list and a presence snapshot, serialized once per change of agents or presence
        (not once per session: a reconnect storm would otherwise cost O(sessions x agents))."""
        key = (self.net.agents_version, self.hub.presence_version)
        if self._roster is None or self._roster[0] != key:
            agents = list(self.net.agents.values())
            agent_list = convert.agent_list_event([self._entry(a) for a in agents])
            snapshot = convert.presence(
                [PresenceChange(a.id, self.hub.online(a.id), a.last_seen or 0) for a in agents],
                {a.id: a.display_name for a in agents},
                snapshot=True,
            )
            self._roster = (key, agent_list, snapshot)
        return self._roster[1], self._roster[2]

    def agent_list(self, agent_id: str, conversations: Iterable[str]) -> bytes:
        """All agents, or in a large network (more than FULL_ROSTER) the ones this agent shares a
        group or direct messages with; ListAgents pages through everyone."""
        if len(self.net.agents) <= FULL_ROSTER:
            return self._roster_bytes()[0]
        related = {agent_id}
        for conv in conversations:
            if conv.startswith(GROUP_PREFIX):
                related |= self.net.members.get(conv[len(GROUP_PREFIX) :], set())
            elif conv.startswith(DM_PREFIX):
                related.update(dm_parties(conv))
        agents = self.net.agents
        return convert.agent_list_event([self._entry(agents[a]) for a in sorted(related) if a in agents])

    def broadcast_presence(self, changes: list[PresenceChange]) -> None:
        """Tell sessions about presence changes. In a network of up to FULL_ROSTER agents every
        session hears about every agent. In a larger one (like agent_list) a session hears about
        the agents it shares a group or direct messages with, and itself: a reconnect storm of N
        agents would otherwise cost N x N presence entries. One serialization per distinct set."""
        names = {a.id: a.display_name for a in self.net.agents.values()}
        if len(self.net.agents) <= FULL_ROSTER:
            self.hub.broadcast_presence(convert.presence(changes, names))
            return
        by_agent = {c.agent_id: c for c in changes}
        by_group: dict[str, list[PresenceChange]] = {}
        for c in changes:
            for g in self.net.agent_groups.get(c.agent_id, ()):
                by_group.setdefault(g, []).append(c)
        encoded: dict[tuple[tuple[str, ...], tuple[str, ...]], bytes] = {}
        for s in self.hub.sessions():
            me = s.agent_id
            groups = tuple(sorted(g for g in self.net.agent_groups.get(me, ()) if g in by_group))
            peers = {me} if me in by_agent else set()
            for conv in s.cursors:
                if conv.startswith(DM_PREFIX):
                    peers.update(p for p in dm_parties(conv) if p in by_agent)
            key = (groups, tuple(sorted(peers)))
            if not groups and not peers:
                continue
            data = encoded.get(key)
            if data is None:
                mine = {a: by_agent[a] for a in key[1]}
                for g in groups:
                    mine.update((c.agent_id, c) for c in by_group[g])
                data = encoded[key] = convert.presence(list(mine.values()), names)
            s.push_presence(data)

    def presence_snapshot(self) -> bytes:
        return self._roster_bytes()[1]

    async def handle(
        self, requests: AsyncIterator[events_pb2.ClientEvent | BadEvent], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        conn = Conn(self, current_peer.get(), requests, context)
        async for data in conn.run():
            yield data


class Conn:
    def __init__(
        self,
        svc: SessionService,
        peer: Peer,
        requests: AsyncIterator[events_pb2.ClientEvent | BadEvent],
        context: grpc.aio.ServicerContext,
    ) -> None:
        self.svc = svc
        self.net = svc.net
        self.hub = svc.hub
        self.settings = svc.settings
        self.peer = peer
        self.requests = requests
        self.context = context
        self.s: Session = svc.hub.new_session("", peer.device_id, peer.fingerprint)
        self.registered = False
        self.inflight = 0
        self._inflight_free = asyncio.Event()
        self._ack_pending: dict[str, int] = {}
        self._ack_writing = False
        self.replayed = 0
        self.heads: dict[str, int] = {}  # newest seq per conversation when the session registered

    # -- writer -------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[bytes]:
        s = self.s
        reader = asyncio.create_task(self._read_loop(), name=f"agentnet-read-{s.id}")
        try:
            async for data in self._write():
                yield data
        except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            log.exception("session %s writer failed", s.id)
            await self.context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); reconnect")
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

    async def _write(self) -> AsyncIterator[bytes]:
        """Replies until registered, then replay, caught_up, live; finally the closing status."""
        s = self.s
        deadline = asyncio.get_running_loop().time() + REGISTER_TIMEOUT_INTERVALS * self.settings.heartbeat_interval
        while not self.registered:
            while s.control:
                yield s.control.popleft()
            if s.closing is not None or self.registered:
                break
            s.wake.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                s.close(
                    "DEADLINE_EXCEEDED",
                    f"no register event within the first {REGISTER_TIMEOUT_INTERVALS} heartbeat intervals",
                    "REGISTER_TIMEOUT",
                )
                break
            try:
                await asyncio.wait_for(s.wake.wait(), remaining)
            except TimeoutError:
                pass
        if s.closing is None:
            async for data in self._replay():
                yield data
            yield events_pb2.ServerEvent(
                caught_up=events_pb2.CaughtUp(
                    heads=[resources_pb2.Cursor(conversation=c, seq=v) for c, v in s.cursors.items() if v is not None],
                    replayed=self.replayed,
                )
            ).SerializeToString()
            async for data in self._live():
                yield data
        while s.control:
            yield s.control.popleft()
        close = s.closing
        if close is not None and close.status != "OK":
            exc = AgentnetError(close.message, close.reason)
            exc.status = close.status
            yield status.error_event(exc, fatal=True).SerializeToString()
            await self.context.abort(
                status.code_of(close.status),
                close.message,
                trailing_metadata=status.trailing(close.status, close.message, close.reason, {}, None),
            )

    async def _live(self) -> AsyncIterator[bytes]:
        s = self.s
        cursors = s.cursors
        while True:
            if s.control:
                # One reply, then one delivery: neither a busy sender's acks nor a fan-out
                # storm starves the other.
                yield s.control.popleft()
            if s.closing is not None:
                return
            if s.lagging:
                async for data in self._recover():
                    yield data
                continue
            if s.presence_stale:
                s.presence_stale = False
                yield self.svc.presence_snapshot()
                continue
            if s.queue:
                env = s.queue.popleft()
                cur = cursors.get(env.conv, -1)
                if cur is not None and cur >= 0 and env.seq == cur + 1:
                    # The common case, without a generator per delivery. The cursor moves first:
                    # the client may ack this event before the write returns.
                    cursors[env.conv] = env.seq
                    yield convert.encode(env)
                else:
                    async for data in self._deliver(env):
                        yield data
                continue
            if s.control:
                continue
            s.wake.clear()
            await s.wake.wait()

    async def _deliver(self, env: Envelope) -> AsyncIterator[bytes]:
        cursors = self.s.cursors
        cur = cursors.get(env.conv, -1)
        if cur is None:
            return  # left that group
        if cur == -1:
            if not await self._adopt(env.conv):
                return
            cur = cursors[env.conv]
            if cur is None:
                return
        if env.seq <= cur:
            return
        if env.seq > cur + 1:
            async for data in self._catch_up(env.conv, env.seq - 1):
                yield data
            cur = cursors.get(env.conv)
            if cur is None or env.seq <= cur:
                return
        cursors[env.conv] = env.seq
        yield convert.encode(env)

    async def _adopt(self, conv: str) -> bool:
        """Start a cursor for a conversation this stream has not seen: a new direct-message pair
        from 0, a group from the join point the store has (None if the agent is not a member)."""
        cursors = self.s.cursors
        if conv.startswith((DM_PREFIX, INBOX_PREFIX)):
            cursors.setdefault(conv, 0)
            return True
        joined = await self.net.joined_seq(self.s.agent_id, conv)
        cursors.setdefault(conv, joined)
        return cursors[conv] is not None

    async def _catch_up(self, conv: str, upto: int | None = None) -> AsyncIterator[bytes]:
        """Deliver from the store after this stream's cursor, until the store has no more (or upto)."""
        s = self.s
        while True:
            cur = s.cursors.get(conv)
            if cur is None or (upto is not None and cur >= upto):
                return
            envs = await self.net.fetch(s.agent_id, conv, cur, REPLAY_PAGE)
            full_page = len(envs) == REPLAY_PAGE
            cur = s.cursors.get(conv)
            if cur is None:
                return
            envs = [e for e in envs if e.seq > cur]
            if not envs:
                if upto is not None and cur < upto and not full_page:
                    # Seqs up to `upto` exist (one was delivered or is the head) but the store has
                    # none of them after the cursor: deleted by retention. Say so, then go on.
                    yield self._gap(conv, cur + 1, upto)
                return
            for env in envs:
                # Every yield lets the reader run: if it left (or re-joined) the conversation
                # meanwhile, the cursor is no longer ours to move.
                if env.seq != cur + 1:
                    gap = self._gap(conv, cur + 1, env.seq - 1)
                    cur = env.seq - 1
                    yield gap
                    if s.cursors.get(conv) != cur:
                        return
                s.cursors[conv] = cur = env.seq
                self.replayed += 1
                yield convert.encode(env)
                if s.cursors.get(conv) != cur:
                    return
            while s.control:
                yield s.control.popleft()
            if not full_page:
                return

    def _gap(self, conv: str, first: int, last: int) -> bytes:
        """History this stream can no longer deliver (deleted by retention): tell the client and
        move the cursor past it, so nothing is skipped silently."""
        self.s.cursors[conv] = last
        log.info("session %s (%s): %s #%d-#%d no longer stored", self.s.id, self.s.agent_id, conv, first, last)
        return events_pb2.ServerEvent(
            history_gap=events_pb2.HistoryGap(conversation=conv, from_seq=first, to_seq=last)
        ).SerializeToString()

    async def _replay(self) -> AsyncIterator[bytes]:
        while self.s.control:
            yield self.s.control.popleft()
        for conv in list(self.s.cursors):
            async for data in self._catch_up_past(conv, self.heads.get(conv, 0)):
                yield data

    async def _catch_up_past(self, conv: str, known: int) -> AsyncIterator[bytes]:
        """Catch up from the store. `known` is a seq that was committed (a head, or a delivery
        that was dropped): if the store ends before it, the rest was deleted: a gap."""
        async for data in self._catch_up(conv):
            yield data
        cur = self.s.cursors.get(conv)
        if cur is not None and cur < known:
            async for data in self._catch_up(conv, known):
                yield data

    async def _recover(self) -> AsyncIterator[bytes]:
        """The queue overflowed: drop it and catch up from the store, then go live again."""
        s = self.s
        convs = {env.conv for env in s.queue} | set(s.cursors) | s.dropped_convs
        s.dropped_convs = set()
        s.queue.clear()
        s.lagging = False
        log.info(
            "session %s (%s) fell behind; catching up from the store (%d dropped so far)", s.id, s.agent_id, s.dropped
        )
        # The heads now: what was dropped while lagging may have been deleted by retention since.
        heads = await self.net.heads(s.agent_id)
        for conv in convs:
            if conv.startswith(GROUP_PREFIX) and conv not in heads:
                continue  # not a member any more (perhaps left through another replica)
            if conv not in s.cursors and not await self._adopt(conv):
                continue
            async for data in self._catch_up_past(conv, heads.get(conv, 0)):
                yield data
        s.presence_stale = True

    # -- reader -------------------------------------------------------------------------------

    def reply(self, event: events_pb2.ServerEvent) -> None:
        self.s.push_control(event.SerializeToString())

    def fail(self, exc: AgentnetError, request_id: str) -> None:
        self.reply(status.error_event(exc, request_id))

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
        except Exception as exc:
            if isinstance(exc, grpc.aio.AioRpcError) or "cancel" in type(exc).__name__.lower():
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
                        server_time=convert.ts(now_us()),
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
            await self._register(ev)
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
        cursors, self.heads = await self.net.resume_cursors(rec.id, device, given)
        s = self.s
        s.agent_id = rec.id
        s.cursors.update(cursors)
        self.registered = True
        hb = duration_pb2.Duration()
        hb.FromNanoseconds(int(self.settings.heartbeat_interval * 1e9))
        st = self.settings
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id,
                registered=events_pb2.Registered(
                    agent=convert.agent(rec, True),
                    device_id=device,
                    session_id=s.id,
                    heartbeat_interval=hb,
                    server_time=convert.ts(now_us()),
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
        self.s.push_control(self.svc.agent_list(rec.id, cursors))
        log.info("session %s: %s registered agent %s%s", s.id, self.peer.short, rec.id, " (new)" if created else "")

    async def on_join(self, ev: events_pb2.ClientEvent) -> None:
        j = ev.join_group
        group, member, new = await self.net.join(self.s.agent_id, j.group_id, j.create_if_missing, j.title)
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id,
                group_joined=events_pb2.GroupJoined(
                    group=convert.group(group), joined_seq=member.joined_seq, newly_joined=new
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
        signed = convert.signed(m, self.peer)
        p = self.net.prepare_send(
            self.s.agent_id,
            self.peer.device_id,
            target,
            m.client_msg_id,
            m.content,
            convert.payload_dict(m.payload, m.HasField("payload")),
            list(m.mentions),
            signed,
            m.reply_to,
            m.auto_hops,
        )
        await self.net.refresh_for_send(self.s.agent_id, target, m.content, p.explicit)
        fut, unresolved = self.net.enqueue_send(p)
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
                    create_time=convert.ts(msg.create_time),
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
            if c.conversation != mine and (known is None or known == -1):
                raise InvalidArgument(
                    f"ack for {c.conversation!r}: not a conversation of this stream", reason="BAD_CURSOR"
                )
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
        c, t = ev.create_task, ev.create_task.task
        signed = convert.signed(c, self.peer)
        commit = await self.svc.tasks.create(
            self.s.agent_id,
            self.peer.device_id,
            t.title,
            t.description,
            t.assignee,
            t.group_id,
            t.priority,
            convert.us_of(t.due_time),
            c.client_task_id,
            signed,
        )
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id, task_result=events_pb2.TaskResult(task=convert.task(commit.task))
            )
        )

    async def on_update_task(self, ev: events_pb2.ClientEvent) -> None:
        assert self.svc.tasks is not None
        u = ev.update_task
        signed = convert.signed(u, self.peer)
        commit = await self.svc.tasks.update(
            self.s.agent_id,
            self.peer.device_id,
            u.task_id,
            u.status,
            u.assignee,
            u.note,
            u.result,
            u.expected_version,
            signed,
        )
        self.reply(
            events_pb2.ServerEvent(
                request_id=ev.request_id, task_result=events_pb2.TaskResult(task=convert.task(commit.task))
            )
        )

    def _flush_acks(self) -> None:
        """One ack write in flight per stream; later acks merge into the next write."""
        if self._ack_writing or not self._ack_pending:
            return
        batch = list(self._ack_pending.items())
        self._ack_pending = {}
        self._ack_writing = True
        fut = asyncio.ensure_future(self.net.ack(self.s.agent_id, self.peer.device_id, batch))

        def done(f: asyncio.Future[None]) -> None:
            self._ack_writing = False
            if not f.cancelled() and f.exception() is not None:
                log.warning("ack write failed: %s", f.exception())
            elif not f.cancelled():
                self.net.on_acked(self.s.agent_id, batch)
            self._flush_acks()

        fut.add_done_callback(done)


def read_markers_event(r: ReadResult) -> events_pb2.ReadMarkers:
    return events_pb2.ReadMarkers(
        markers=[resources_pb2.Cursor(conversation=c, seq=v) for c, v in r.markers.items()],
        item_seqs=r.items,
        unread_total=r.unread_total,
    )

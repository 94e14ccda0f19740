"""Live sessions: bounded outbound queues, fan-out, presence and heartbeat timeouts.

The hub never blocks a publisher. Each session has a bounded queue of sequenced envelopes;
when it is full the session is marked lagging, further envelopes for it are dropped, and the
session's writer catches up from the store (the log) before it takes live events again.
Sequenced envelopes carry (conversation, seq); the session's cursors turn duplicates into
no-ops and gaps into store reads, so nothing is lost and nothing arrives twice.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..records import Envelope

if TYPE_CHECKING:
    from agentnet.v1 import events_pb2

log = logging.getLogger("agentnet.hub")


class Event:
    """One unsequenced ServerEvent: a reply to one session, or shared by many (presence, read
    markers, the agent list). Like an Envelope it caches what each output format made of it, so
    a broadcast to N sessions is serialized once (`data`), and rendered once by a second format
    (`text`), not N times.

    `message()` is the ServerEvent. An event assembled directly in serialized form (the agent
    list, from cached per-agent entries) fills `data` and builds the message only if a format
    asks for it (`build`)."""

    __slots__ = ("_message", "data", "text")

    def __init__(self, message: events_pb2.ServerEvent | None = None, data: bytes | None = None) -> None:
        self._message = message
        self.data = data
        self.text: Any = None

    def message(self) -> events_pb2.ServerEvent:
        m = self._message
        if m is None:
            m = self._message = self.build()
        return m

    def build(self) -> events_pb2.ServerEvent:
        """The message of an event made without one (see encode.AgentListEvent)."""
        raise TypeError(f"{type(self).__name__} has no message")


@dataclasses.dataclass
class Close:
    """Ask a session to end with a gRPC status name and a message."""

    status: str
    message: str
    reason: str


_ids = itertools.count(1)


class Session:
    """Hub-side state of one live stream."""

    def __init__(self, agent_id: str, device_id: str, fingerprint: str, queue_limit: int, control_limit: int) -> None:
        self.id = f"s{next(_ids)}"
        self.agent_id = agent_id
        self.device_id = device_id
        self.fingerprint = fingerprint
        self.queue: collections.deque[Envelope] = collections.deque()
        self.queue_limit = queue_limit
        # Replies and unsequenced events (presence, read markers, the agent list). Bounded
        # separately: a client that never reads its replies is closed rather than allowed to grow
        # this without end.
        self.control: collections.deque[Event] = collections.deque()
        self.control_limit = control_limit
        self.lagging = False
        self.presence_stale = False
        self.closing: Close | None = None
        self.wake = asyncio.Event()
        self.last_activity = time.monotonic()
        self.dropped = 0
        self.lag_episodes = 0
        # conversation -> last seq delivered on this stream (None: left, deliver nothing).
        self.cursors: dict[str, int | None] = {}
        # Conversations whose envelopes were dropped while lagging (caught up from the store).
        self.dropped_convs: set[str] = set()

    def push(self, env: Envelope) -> None:
        if self.closing is not None:
            return
        if self.lagging or len(self.queue) >= self.queue_limit:
            if not self.lagging:
                self.lagging = True
                self.lag_episodes += 1
            self.dropped += 1
            self.dropped_convs.add(env.conv)
            self.wake.set()
            return
        self.queue.append(env)
        self.wake.set()

    def push_control(self, ev: Event) -> None:
        if self.closing is not None:
            return
        if len(self.control) >= self.control_limit:
            self.close(
                "RESOURCE_EXHAUSTED", "the client is not reading its stream; reconnect and resume", "NOT_READING"
            )
            return
        self.control.append(ev)
        self.wake.set()

    def push_presence(self, ev: Event) -> None:
        """Presence is droppable: a lagging session gets a fresh snapshot when it catches up."""
        if self.closing is not None:
            return
        if self.lagging or len(self.control) >= self.control_limit // 2:
            self.presence_stale = True
            self.wake.set()
            return
        self.control.append(ev)
        self.wake.set()

    def close(self, status: str, message: str, reason: str) -> None:
        if self.closing is None:
            self.closing = Close(status, message, reason)
            self.wake.set()

    def touch(self) -> None:
        self.last_activity = time.monotonic()


@dataclasses.dataclass(frozen=True)
class PresenceChange:
    agent_id: str
    online: bool
    last_seen: int  # microseconds


class Hub:
    """Routes envelopes to sessions by agent; tracks presence; closes silent sessions.

    The domain sees it through its own interface, `domain.live.Live` (publish, presence, the
    effects of a membership change and catching up on sessions); the hub imports nothing from
    the domain."""

    def __init__(
        self,
        heartbeat_interval: float,
        queue_limit: int,
        control_limit: int = 4096,
        presence_batch: float = 0.1,
        on_presence: Callable[[list[PresenceChange], list[PresenceChange]], None] | None = None,
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.queue_limit = queue_limit
        self.control_limit = control_limit
        self.presence_batch = presence_batch
        self.on_presence = on_presence
        self.by_agent: dict[str, set[Session]] = {}
        self.by_device: dict[str, set[Session]] = {}
        self._pending_presence: dict[str, PresenceChange] = {}
        # Changes of this replica's own sessions, for other replicas of the same store.
        self._pending_local: dict[str, PresenceChange] = {}
        # agent -> replica -> when its last word on that agent expires (monotonic seconds).
        self.remote: dict[str, dict[str, float]] = {}
        self.presence_version = 0  # bumped with every broadcast of presence changes
        self.session_count = 0
        self._presence_task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.published = 0
        self.delivered = 0  # envelopes handed to session queues (one per recipient session)

    # -- sessions ----------------------------------------------------------------------------

    def new_session(self, agent_id: str, device_id: str, fingerprint: str) -> Session:
        return Session(agent_id, device_id, fingerprint, self.queue_limit, self.control_limit)

    def attach(self, session: Session) -> None:
        """Make the session reachable; the agent comes online with its first session. Its
        heartbeat clock starts now: the time its registration took (a slow store) is not the
        client's silence."""
        session.touch()
        was_online = self.online(session.agent_id)
        sessions = self.by_agent.setdefault(session.agent_id, set())
        first = not sessions
        sessions.add(session)
        self.session_count += 1
        self.by_device.setdefault(session.device_id, set()).add(session)
        if first:
            change = PresenceChange(session.agent_id, True, _now_us())
            self._pending_local[change.agent_id] = change
            self._presence(change if not was_online else None)

    def detach(self, session: Session) -> None:
        sessions = self.by_agent.get(session.agent_id)
        if sessions is not None and session in sessions:
            sessions.discard(session)
            self.session_count -= 1
            if not sessions:
                del self.by_agent[session.agent_id]
                change = PresenceChange(session.agent_id, False, _now_us())
                self._pending_local[change.agent_id] = change
                self._presence(change if not self.online(session.agent_id) else None)
        devs = self.by_device.get(session.device_id)
        if devs is not None:
            devs.discard(session)
            if not devs:
                del self.by_device[session.device_id]

    def sessions(self) -> Iterable[Session]:
        for sessions in self.by_agent.values():
            yield from sessions

    def online(self, agent_id: str) -> bool:
        """Connected here, or (with several replicas) on another replica."""
        return agent_id in self.by_agent or agent_id in self.remote

    def has_sessions(self, agent_id: str) -> bool:
        """Has a live session on this replica."""
        return agent_id in self.by_agent

    def remote_presence(self, replica: str, online: Iterable[str], offline: Iterable[str], ttl: float) -> None:
        """What another replica says about its sessions; its word on an agent lasts `ttl` seconds."""
        expires = time.monotonic() + ttl
        for agent in online:
            was = self.online(agent)
            self.remote.setdefault(agent, {})[replica] = expires
            if not was:
                self._presence(PresenceChange(agent, True, _now_us()))
        for agent in offline:
            self._forget_remote(agent, replica)

    def _forget_remote(self, agent: str, replica: str) -> None:
        replicas = self.remote.get(agent)
        if replicas is None or replica not in replicas:
            return
        del replicas[replica]
        if not replicas:
            del self.remote[agent]
        if not self.online(agent):
            self._presence(PresenceChange(agent, False, _now_us()))

    def _expire_remote(self) -> None:
        now = time.monotonic()
        for agent, replicas in list(self.remote.items()):
            for replica, expires in list(replicas.items()):
                if expires < now:
                    self._forget_remote(agent, replica)

    def device_sessions(self, device_id: str) -> int:
        return len(self.by_device.get(device_id, ()))

    # -- fan-out ------------------------------------------------------------------------------

    def publish(self, env: Envelope, agents: Iterable[str]) -> None:
        by_agent = self.by_agent
        for agent in agents:
            sessions = by_agent.get(agent)
            if sessions:
                for s in sessions:
                    s.push(env)
                self.delivered += len(sessions)
        self.published += 1

    def send_control(self, agents: Iterable[str], ev: Event) -> None:
        """One event to every session of these agents (the same object: rendered once per format)."""
        for agent in agents:
            for s in self.by_agent.get(agent, ()):
                s.push_control(ev)

    def close_where(self, pred: Callable[[Session], bool], status: str, message: str, reason: str) -> int:
        n = 0
        for s in list(self.sessions()):
            if pred(s):
                s.close(status, message, reason)
                n += 1
        return n

    # -- memberships and catching up ----------------------------------------------------------

    def member_joined(self, agent_id: str, conv: str, seq: int) -> None:
        """The agent's sessions deliver the conversation after `seq`; a session that already has
        a cursor for it keeps that cursor."""
        for s in self.by_agent.get(agent_id, ()):
            if s.cursors.get(conv) is None:
                s.cursors[conv] = seq

    def member_left(self, agent_id: str, conv: str) -> None:
        """The agent's sessions deliver nothing more of the conversation."""
        for s in self.by_agent.get(agent_id, ()):
            s.cursors[conv] = None

    def catch_up(self, agent_id: str, conv: str) -> None:
        """The agent's sessions read the conversation from the store before going live again."""
        for s in self.by_agent.get(agent_id, ()):
            s.dropped_convs.add(conv)
            s.lagging = True
            s.wake.set()

    def catch_up_all(self) -> None:
        """Every session catches up from the store before going live again."""
        for s in self.sessions():
            s.lagging = True
            s.wake.set()

    # -- presence -----------------------------------------------------------------------------

    def _presence(self, change: PresenceChange | None) -> None:
        """Queue a change of the network-wide presence (None: only the local view changed)."""
        if change is not None:
            self._pending_presence[change.agent_id] = change
        if self._presence_task is None or self._presence_task.done():
            self._presence_task = asyncio.get_running_loop().create_task(self._flush_presence())

    async def _flush_presence(self) -> None:
        # The window grows with the number of sessions: every flush is one write per session, so a
        # reconnect storm of thousands costs a few broadcasts, not one per arriving agent.
        await asyncio.sleep(max(self.presence_batch, min(2.0, self.session_count / 1000)))
        changes = list(self._pending_presence.values())
        local = list(self._pending_local.values())
        if changes:
            self.presence_version += 1  # once per window, so cached rosters are rebuilt rarely
        self._pending_presence.clear()
        self._pending_local.clear()
        if (changes or local) and self.on_presence is not None:
            self.on_presence(changes, local)

    def broadcast_presence(self, ev: Event) -> None:
        for s in self.sessions():
            s.push_presence(ev)

    # -- heartbeats ---------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        limit = 3 * self.heartbeat_interval
        while True:
            await asyncio.sleep(self.heartbeat_interval / 4)
            self._expire_remote()
            cutoff = time.monotonic() - limit
            for s in list(self.sessions()):
                if s.last_activity >= cutoff:
                    continue
                if s.closing is None:
                    log.info("session %s (%s on %s) missed 3 heartbeats; closing", s.id, s.agent_id, s.device_id)
                    s.close(
                        "UNAVAILABLE",
                        f"no heartbeat or traffic for {limit:g} s (3 intervals); reconnect and resume",
                        "HEARTBEAT_TIMEOUT",
                    )
                # Presence must turn offline within the bound even if the stream is stuck in a
                # write to a frozen link; also for a session already asked to close (revoked,
                # not reading) whose closing error cannot be written either.
                self.detach(s)

    async def stop(self) -> None:
        for task in (self._sweeper, self._presence_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass


def _now_us() -> int:
    return time.time_ns() // 1000

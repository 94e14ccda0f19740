"""The delivery engine: what one live session receives, in order, with nothing lost or repeated.

The writer sends, in this order: replies, then replay from the store after (re)connect, then
`caught_up`, then live envelopes from the hub. Cursors per conversation make every delivery
gap-free and duplicate-free: a duplicate is skipped, a gap is filled from the store before going
on, history deleted by retention is announced with `history_gap`, and a session whose bounded
queue overflowed drops it and catches up from the store (docs/architecture.md, "Delivery").

The engine knows no transport: `frames()` is an async iterator of frames made by the session's
output format (format.py: the serialized ServerEvent for the gRPC Session stream, an SSE frame
for the REST event stream), which an adapter writes out. Pulling keeps the transport's flow
control: the next frame is produced when the last was taken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from agentnet.v1 import events_pb2, resources_pb2

from ..domain.network import Network
from ..errors import AgentnetError
from ..records import DM_PREFIX, GROUP_PREFIX, INBOX_PREFIX, Envelope
from . import encode
from .format import Format
from .hub import Event, Session
from .roster import Roster

log = logging.getLogger("agentnet.session")

REPLAY_PAGE = 500

T = TypeVar("T")


class Delivery(Generic[T]):
    """The writer side of one session, yielding what `fmt` makes of each event. The reader side
    sets `registered` and `heads` when the session registers; until then only replies go out."""

    def __init__(self, s: Session, net: Network, roster: Roster, register_timeout: float, fmt: Format[T]) -> None:
        self.s = s
        self.net = net
        self.roster = roster
        self.register_timeout = register_timeout
        self.fmt = fmt
        self.registered = False
        self.registering = False  # a register event is being handled (the deadline waits for it)
        self.replayed = 0
        self.heads: dict[str, int] = {}  # newest seq per conversation when the session registered

    async def frames(self) -> AsyncIterator[T]:
        """Replies until registered, then replay, caught_up, live; last, when the session closes
        with an error, a fatal Error event (the adapter then ends its stream with that status)."""
        s = self.s
        event = self.fmt.event
        deadline = asyncio.get_running_loop().time() + self.register_timeout
        while not self.registered:
            while s.control:
                yield event(s.control.popleft())
            if s.closing is not None or self.registered:
                break
            s.wake.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            timeout: float | None = remaining
            if remaining <= 0:
                if not self.registering:
                    s.close(
                        "DEADLINE_EXCEEDED",
                        f"not registered within {self.register_timeout:g} s of opening the stream "
                        "(send a register event first)",
                        "REGISTER_TIMEOUT",
                    )
                    break
                timeout = None  # a register is under way: its reply (or its error) wakes this loop
            try:
                await asyncio.wait_for(s.wake.wait(), timeout)
            except TimeoutError:
                pass
        if s.closing is None:
            async for data in self._replay():
                yield data
        if s.closing is None:
            caught_up = events_pb2.CaughtUp(
                heads=[resources_pb2.Cursor(conversation=c, seq=v) for c, v in s.cursors.items() if v is not None],
                replayed=self.replayed,
            )
            yield event(Event(events_pb2.ServerEvent(caught_up=caught_up)))
            async for data in self._live():
                yield data
        while s.control:
            yield event(s.control.popleft())
        close = s.closing
        if close is not None and close.status != "OK":
            exc = AgentnetError(close.message, close.reason)
            exc.status = close.status
            yield event(Event(encode.error_event(exc, fatal=True)))

    async def _live(self) -> AsyncIterator[T]:
        s = self.s
        cursors = s.cursors
        envelope = self.fmt.envelope
        event = self.fmt.event
        while True:
            if s.control:
                # One reply, then one delivery: neither a busy sender's acks nor a fan-out
                # storm starves the other.
                yield event(s.control.popleft())
            if s.closing is not None:
                return
            if s.lagging:
                async for data in self._recover():
                    yield data
                continue
            if s.presence_stale:
                s.presence_stale = False
                yield event(self.roster.presence_snapshot())
                continue
            if s.queue:
                env = s.queue.popleft()
                cur = cursors.get(env.conv, -1)
                if cur is not None and cur >= 0 and env.seq == cur + 1:
                    # The common case, without a generator per delivery. The cursor moves first:
                    # the client may ack this event before the write returns.
                    cursors[env.conv] = env.seq
                    yield envelope(env)
                else:
                    async for data in self._deliver(env):
                        yield data
                continue
            if s.control:
                continue
            s.wake.clear()
            await s.wake.wait()

    async def _deliver(self, env: Envelope) -> AsyncIterator[T]:
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
        yield self.fmt.envelope(env)

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

    async def _catch_up(self, conv: str, upto: int | None = None) -> AsyncIterator[T]:
        """Deliver from the store after this stream's cursor, until the store has no more (or upto)."""
        s = self.s
        envelope = self.fmt.envelope
        while True:
            cur = s.cursors.get(conv)
            if cur is None or (upto is not None and cur >= upto):
                return
            envs = await self.net.fetch(s.agent_id, conv, cur, REPLAY_PAGE)
            full_page = len(envs) == REPLAY_PAGE
            cur = s.cursors.get(conv)
            if cur is None or s.closing is not None:
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
                # meanwhile, the cursor is no longer ours to move; if the session was closed
                # (revoked, shut down), nothing more goes out but the closing error.
                if env.seq != cur + 1:
                    gap = self._gap(conv, cur + 1, env.seq - 1)
                    cur = env.seq - 1
                    yield gap
                    if s.cursors.get(conv) != cur or s.closing is not None:
                        return
                s.cursors[conv] = cur = env.seq
                self.replayed += 1
                yield envelope(env)
                if s.cursors.get(conv) != cur or s.closing is not None:
                    return
            while s.control:
                yield self.fmt.event(s.control.popleft())
            if not full_page:
                return

    def _gap(self, conv: str, first: int, last: int) -> T:
        """History this stream can no longer deliver (deleted by retention): tell the client and
        move the cursor past it, so nothing is skipped silently."""
        self.s.cursors[conv] = last
        log.info("session %s (%s): %s #%d-#%d no longer stored", self.s.id, self.s.agent_id, conv, first, last)
        gap = events_pb2.HistoryGap(conversation=conv, from_seq=first, to_seq=last)
        return self.fmt.event(Event(events_pb2.ServerEvent(history_gap=gap)))

    async def _replay(self) -> AsyncIterator[T]:
        while self.s.control:
            yield self.fmt.event(self.s.control.popleft())
        for conv in list(self.s.cursors):
            if self.s.closing is not None:
                return
            async for data in self._catch_up_past(conv, self.heads.get(conv, 0)):
                yield data

    async def _catch_up_past(self, conv: str, known: int) -> AsyncIterator[T]:
        """Catch up from the store. `known` is a seq that was committed (a head, or a delivery
        that was dropped): if the store ends before it, the rest was deleted: a gap."""
        async for data in self._catch_up(conv):
            yield data
        cur = self.s.cursors.get(conv)
        if cur is not None and cur < known:
            async for data in self._catch_up(conv, known):
                yield data

    async def _recover(self) -> AsyncIterator[T]:
        """The queue overflowed, or the replica resynchronised with the store: drop the queue and
        catch up from the store, then go live again."""
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
        # Every conversation the store has for the agent counts, also one this stream has never
        # seen (a first direct message whose live delivery was dropped or never announced here):
        # registration gave a cursor to each that existed then, so a new one starts like a live
        # delivery would have started it (_adopt).
        convs |= heads.keys()
        for conv in sorted(convs):
            if s.closing is not None:
                return
            if conv.startswith(GROUP_PREFIX) and conv not in heads:
                continue  # not a member any more (perhaps left through another replica)
            if conv not in s.cursors and not await self._adopt(conv):
                continue
            cur = s.cursors.get(conv)
            if cur is None or cur >= heads.get(conv, 0):
                continue  # left, or nothing after this cursor when the heads were read (no read)
            async for data in self._catch_up_past(conv, heads.get(conv, 0)):
                yield data
        s.presence_stale = True

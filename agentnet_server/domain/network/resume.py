"""Resume: cursors on (re)connect, heads, replay pages from the store, delivery acks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...records import (
    FEED,
    INBOX_PREFIX,
    MESSAGE,
    Envelope,
    FeedKind,
    FeedRec,
    inbox_conv,
)
from ...store import access, ops
from .chat import Chat
from .state import REPLAY_PAGE, _ref_key, log


class Resume(Chat):
    async def resume_cursors(
        self, agent_id: str, device: str, given: dict[str, int]
    ) -> tuple[dict[str, int | None], dict[str, int]]:
        """Starting cursors for a session and the heads it will be caught up to.

        Conversation cursors come from the client, else from what this device acknowledged,
        else from the join point. Cursors for conversations the agent is not in are ignored; a
        cursor beyond a conversation's head is clamped to the head (caught_up reports the heads).

        The result matches the membership cache when it is returned: a join or leave of the agent
        committed while the reads were under way could not reach a session that is not attached
        yet, so the reads are taken again. The caller attaches the session before it next awaits.
        """
        return await self._read_stable(
            self.membership_changes, agent_id, lambda: self._resume_cursors(agent_id, device, given)
        )

    async def _resume_cursors(
        self, agent_id: str, device: str, given: dict[str, int]
    ) -> tuple[dict[str, int | None], dict[str, int]]:
        # Through the writer queue (read-only): delivery acks the previous connection queued are
        # committed first, so a client that resumes from server-side acks gets no duplicates.
        heads_and_starts, acked, feed_head = await self.db.write(ops.resume_state, agent_id, device)
        mine = inbox_conv(agent_id)
        # Cursors for conversations the agent is not in (any more) are ignored, not refused: a
        # client's cache can outlive a membership or a server reset, and must still reconnect.
        stale = [c for c in given if c != mine and c not in heads_and_starts]
        if stale:
            log.info(
                "agent %s resumed with %d cursor(s) for conversations it is not in: %s",
                agent_id,
                len(stale),
                ", ".join(sorted(stale)[:5]),
            )
        cursors: dict[str, int | None] = {}
        heads: dict[str, int] = {}
        for conv, (last, start) in heads_and_starts.items():
            cur = given.get(conv, acked.get(conv, start))
            cursors[conv] = max(0, min(cur, last)) if cur is not None else start
            heads[conv] = last
        floors: dict[str, int] = await self.db.read(access.floors, agent_id)
        for conv, floor in floors.items():
            # From-join history: a cursor before the join point (0 asks for everything) starts there.
            start_at = cursors.get(conv)
            if start_at is not None and start_at < floor:
                cursors[conv] = floor
        cursors[mine] = max(0, min(given.get(mine, acked.get(mine, 0)), feed_head))
        heads[mine] = feed_head
        return cursors, heads

    async def heads(self, agent_id: str) -> dict[str, int]:
        """The newest seq of every conversation of the agent (its feed included), from the store."""
        return await self.db.read(ops.heads, agent_id)

    async def fetch(self, agent_id: str, conv: str, after: int, limit: int = REPLAY_PAGE) -> list[Envelope]:
        """Envelopes after a cursor, from the store (replay and gap repair)."""
        if conv.startswith(INBOX_PREFIX):
            items = await self.db.read(ops.feed_after, conv[len(INBOX_PREFIX) :], after, limit)
            refs = await self._feed_refs(items)
            return [Envelope(FEED, conv, it.seq, (it, refs.get(_ref_key(it)))) for it in items]
        msgs = await self.db.read(ops.messages_after, conv, after, limit)
        return [Envelope(MESSAGE, conv, m.seq, m) for m in msgs]

    async def _feed_refs(self, items: list[FeedRec]) -> dict[Any, Any]:
        keys = {
            (it.conversation, it.message_seq) for it in items if it.kind in (FeedKind.MENTION, FeedKind.DIRECT_MESSAGE)
        }
        refs: dict[Any, Any] = {}
        if keys:
            refs.update(await self.db.read(ops.messages_by_key, keys))
        if self.task_refs is not None:
            refs.update(await self.task_refs([it for it in items if it.task_id]))
        return refs

    async def ack(self, agent_id: str, device: str, cursors: Sequence[tuple[str, int]]) -> None:
        if cursors:
            await self.db.write(ops.ack, agent_id, device, list(cursors))

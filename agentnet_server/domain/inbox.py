"""The inbox: items addressed to an agent, read markers (forward only, per agent across its
devices) and delivery receipts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..errors import InvalidArgument, NotFound, PermissionDenied
from ..records import FeedRec, MessageRec
from ..store import inbox as store
from ..store import ops
from . import validate
from .network import Network

MAX_MARKS = 1000


@dataclasses.dataclass(frozen=True)
class InboxView:
    items: list[FeedRec]
    next_token: str
    unread_total: int
    unread_by_kind: dict[int, int]
    conversations: list[tuple[str, int, int, int, int]]  # conv, unread items, unread messages, read seq, last seq


@dataclasses.dataclass(frozen=True)
class ReadResult:
    markers: dict[str, int]
    items: list[int]
    unread_total: int


@dataclasses.dataclass(frozen=True)
class ReceiptRow:
    agent_id: str
    delivered_seq: int
    read_seq: int
    delivered: bool
    read: bool


class Inbox:
    def __init__(self, net: Network) -> None:
        self.net = net
        # Called with (agent, ReadResult) after markers moved; the rpc layer tells the agent's sessions.
        self.on_read: object = None

    async def view(self, agent_id: str, unread_only: bool, kind: int, page_size: int, token: str) -> InboxView:
        if kind and kind not in (1, 2, 3, 4):
            raise InvalidArgument(f"kind {kind} is not an InboxItemKind", reason="BAD_KIND")
        size = validate.page_size(page_size, default=50, maximum=500)
        before = validate.decode_token("inbox", token)
        items = await self.net.db.read(
            store.inbox_page, agent_id, unread_only, kind, int(before) if before is not None else 2**62, size + 1
        )
        by_kind, by_conv = await self.net.db.read(store.unread_counts, agent_id)
        convs = await self.net.db.read(store.conversation_unread, agent_id)
        nxt = validate.encode_token("inbox", items[size - 1].seq) if len(items) > size else ""
        return InboxView(
            items[:size],
            nxt,
            sum(by_kind.values()),
            by_kind,
            [(c, by_conv.get(c, 0), unread, read, last) for c, last, read, unread in convs],
        )

    async def mark_read(self, agent_id: str, up_to: Sequence[tuple[str, int]], item_seqs: Sequence[int]) -> ReadResult:
        if len(up_to) + len(item_seqs) > MAX_MARKS:
            raise InvalidArgument(f"at most {MAX_MARKS} markers and items per call", reason="TOO_MANY")
        if not up_to and not item_seqs:
            raise InvalidArgument("nothing to mark: give up_to cursors or item seqs", reason="EMPTY_MARK")
        for conv, seq in up_to:
            if not conv or len(conv) > 160:
                raise InvalidArgument(f"conversation {conv[:40]!r} is not valid", reason="BAD_CONVERSATION")
            if seq < 0:
                raise InvalidArgument(f"seq for {conv!r} must not be negative", reason="BAD_SEQ")
        if any(s <= 0 for s in item_seqs):
            raise InvalidArgument("item seqs start at 1", reason="BAD_SEQ")
        markers, items, total = await self.net.db.write(store.mark_read, agent_id, list(up_to), list(item_seqs))
        result = ReadResult(markers, items, total)
        if callable(self.on_read):
            self.on_read(agent_id, result)
        return result

    async def receipts(self, asker: str, conv: str, seq: int) -> tuple[MessageRec, list[ReceiptRow]]:
        if seq <= 0:
            raise InvalidArgument("seq must be a positive message seq", reason="BAD_SEQ")
        msg = await self.net.db.read(ops.message_get, conv, seq)
        if msg is None:
            raise NotFound(f"no message {seq} in {conv}", reason="MESSAGE_NOT_FOUND")
        if msg.sender != asker:
            raise PermissionDenied(
                f"only the sender ({msg.sender}) may see the receipts of this message", reason="NOT_SENDER"
            )
        rows = await self.net.db.read(store.receipts, conv, seq, asker)
        return msg, [
            ReceiptRow(agent, delivered, read, delivered >= seq, read >= seq or item_read)
            for agent, delivered, read, item_read in rows
        ]

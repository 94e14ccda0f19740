"""Inbox, read markers and receipts: reads and writes over the feed, read_marker and
delivery_cursor tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgument, PermissionDenied
from ..records import DM_PREFIX, GROUP_PREFIX, INBOX_PREFIX, FeedRec, dm_parties, now_us
from .db import Tx
from .ops.cursors import _FEED_COLS, _feed


def inbox_page(tx: Tx, agent_id: str, unread_only: bool, kind: int, before_seq: int, limit: int) -> list[FeedRec]:
    """Inbox items newest first (feed rows addressed to the agent)."""
    sql = f"SELECT {_FEED_COLS} FROM feed WHERE agent = ? AND in_inbox = ? AND seq < ?"
    params: list[Any] = [agent_id, True, before_seq]
    if unread_only:
        sql += " AND read_time IS NULL"
    if kind:
        sql += " AND kind = ?"
        params.append(kind)
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(limit)
    return [_feed(r) for r in tx.all(sql, params)]


def unread_counts(tx: Tx, agent_id: str) -> tuple[dict[int, int], dict[str, int]]:
    """Unread inbox items per kind and per conversation."""
    by_kind = {
        int(k): int(n)
        for k, n in tx.all(
            "SELECT kind, COUNT(*) FROM feed WHERE agent = ? AND in_inbox = ? AND read_time IS NULL GROUP BY kind",
            (agent_id, True),
        )
    }
    by_conv = {
        c: int(n)
        for c, n in tx.all(
            "SELECT conv, COUNT(*) FROM feed WHERE agent = ? AND in_inbox = ? AND read_time IS NULL "
            "AND conv <> '' GROUP BY conv",
            (agent_id, True),
        )
    }
    return by_kind, by_conv


def conversation_unread(tx: Tx, agent_id: str) -> list[tuple[str, int, int, int]]:
    """(conversation, last_seq, read_seq, unread messages from others) for the agent's conversations.

    Without a read marker a group counts from the agent's join point."""
    rows: list[tuple[str, int, int, int]] = []
    convs: list[tuple[str, int, int]] = [
        (conv, last, joined)
        for conv, last, joined in tx.all(
            "SELECT c.id, c.last_seq, m.joined_seq FROM member m JOIN conversation c ON c.id = 'group:' || m.group_id "
            "WHERE m.agent = ?",
            (agent_id,),
        )
    ]
    convs += [
        (conv, last, 0)
        for conv, last in tx.all(
            "SELECT id, last_seq FROM conversation WHERE kind = 'dm' AND (dm_a = ? OR dm_b = ?)", (agent_id, agent_id)
        )
    ]
    markers = dict(tx.all("SELECT conv, seq FROM read_marker WHERE agent = ?", (agent_id,)))
    for conv, last, start in sorted(convs):
        read = max(markers.get(conv, 0), start)
        unread = 0
        if last > read:
            unread = int(
                tx.scalar(
                    "SELECT COUNT(*) FROM message WHERE conv = ? AND seq > ? AND sender <> ?", (conv, read, agent_id)
                )
            )
        rows.append((conv, last, read, unread))
    return rows


def _check_conversation(tx: Tx, agent_id: str, conv: str) -> int:
    """The conversation's last seq, after checking the agent takes part in it."""
    if conv.startswith(GROUP_PREFIX):
        ok = tx.one("SELECT 1 FROM member WHERE group_id = ? AND agent = ?", (conv[len(GROUP_PREFIX) :], agent_id))
    elif conv.startswith(DM_PREFIX):
        ok = (1,) if agent_id in dm_parties(conv) else None
    else:
        raise InvalidArgument(f"{conv!r} is not a conversation id", reason="BAD_CONVERSATION")
    if ok is None:
        raise PermissionDenied(f"agent {agent_id!r} is not in conversation {conv!r}", reason="NOT_A_MEMBER")
    return int(tx.scalar("SELECT last_seq FROM conversation WHERE id = ?", (conv,)) or 0)


def mark_read(
    tx: Tx, agent_id: str, up_to: Sequence[tuple[str, int]], item_seqs: Sequence[int]
) -> tuple[dict[str, int], list[int], int]:
    """Move read markers forward. Returns (markers now, feed items newly read, unread total)."""
    t = now_us()
    markers: dict[str, int] = {}
    newly: list[int] = []
    mine = INBOX_PREFIX + agent_id
    # Everything that can refuse the request is checked before anything is written.
    lasts: dict[str, int] = {}
    for conv, seq in up_to:
        if seq < 0:
            raise InvalidArgument(f"read position for {conv!r} must not be negative", reason="BAD_SEQ")
        if conv != mine:
            if conv.startswith(INBOX_PREFIX):
                raise PermissionDenied(f"{conv!r} is another agent's inbox", reason="NOT_YOUR_FEED")
            lasts[conv] = _check_conversation(tx, agent_id, conv)
    unread_items: list[int] = []
    for s in item_seqs:
        row = tx.one("SELECT read_time FROM feed WHERE agent = ? AND seq = ?", (agent_id, s))
        if row is None:
            raise InvalidArgument(f"inbox item {s} does not exist for agent {agent_id!r}", reason="NO_SUCH_ITEM")
        if row[0] is None:
            unread_items.append(s)
    for conv, seq in up_to:
        if conv == mine:
            newly += [
                s
                for (s,) in tx.all(
                    "SELECT seq FROM feed WHERE agent = ? AND seq <= ? AND read_time IS NULL", (agent_id, seq)
                )
            ]
            tx.exec(
                "UPDATE feed SET read_time = ? WHERE agent = ? AND seq <= ? AND read_time IS NULL", (t, agent_id, seq)
            )
            continue
        seq = min(seq, lasts[conv])
        tx.exec(
            "INSERT INTO read_marker (agent, conv, seq) VALUES (?, ?, ?) ON CONFLICT (agent, conv) "
            "DO UPDATE SET seq = excluded.seq WHERE read_marker.seq < excluded.seq",
            (agent_id, conv, seq),
        )
        markers[conv] = int(tx.scalar("SELECT seq FROM read_marker WHERE agent = ? AND conv = ?", (agent_id, conv)))
        newly += [
            s
            for (s,) in tx.all(
                "SELECT seq FROM feed WHERE agent = ? AND conv = ? AND message_seq <= ? AND message_seq > 0 "
                "AND read_time IS NULL",
                (agent_id, conv, seq),
            )
        ]
        tx.exec(
            "UPDATE feed SET read_time = ? WHERE agent = ? AND conv = ? AND message_seq <= ? AND message_seq > 0 "
            "AND read_time IS NULL",
            (t, agent_id, conv, seq),
        )
    for s in unread_items:
        if tx.exec("UPDATE feed SET read_time = ? WHERE agent = ? AND seq = ? AND read_time IS NULL", (t, agent_id, s)):
            newly.append(s)
    total = int(
        tx.scalar("SELECT COUNT(*) FROM feed WHERE agent = ? AND in_inbox = ? AND read_time IS NULL", (agent_id, True))
    )
    return markers, sorted(set(newly)), total


def read_markers(tx: Tx, agent_id: str) -> dict[str, int]:
    return dict(tx.all("SELECT conv, seq FROM read_marker WHERE agent = ?", (agent_id,)))


def receipts(tx: Tx, conv: str, seq: int, sender: str) -> list[tuple[str, int, int, bool]]:
    """Per recipient: (agent, delivered seq, read seq, item read) for message `seq` of `conv`."""
    if conv.startswith(GROUP_PREFIX):
        recipients = [
            a
            for (a,) in tx.all(
                "SELECT agent FROM member WHERE group_id = ? AND joined_seq < ? AND agent <> ? ORDER BY agent",
                (conv[len(GROUP_PREFIX) :], seq, sender),
            )
        ]
    else:
        recipients = [a for a in dm_parties(conv) if a != sender]
    out = []
    for agent in recipients:
        delivered = int(
            tx.scalar("SELECT MAX(seq) FROM delivery_cursor WHERE agent = ? AND conv = ?", (agent, conv)) or 0
        )
        read = int(tx.scalar("SELECT seq FROM read_marker WHERE agent = ? AND conv = ?", (agent, conv)) or 0)
        item_read = (
            tx.one(
                "SELECT 1 FROM feed WHERE agent = ? AND conv = ? AND message_seq = ? AND read_time IS NOT NULL",
                (agent, conv, seq),
            )
            is not None
        )
        out.append((agent, delivered, read, item_read))
    return out

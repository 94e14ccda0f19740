"""Resume state: conversation heads, delivery cursors and acks, feed reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ...records import (
    FeedKind,
    FeedRec,
    MessageRec,
    inbox_conv,
)
from ..db import Tx
from .messages import message_get


def conversation_heads(tx: Tx, agent_id: str) -> dict[str, tuple[int, int]]:
    """conv -> (last_seq, start_seq) for every conversation of the agent (not its feed).

    start_seq is where live delivery begins for an agent with no cursor: the join point for a
    group, 0 for a direct-message pair.
    """
    out: dict[str, tuple[int, int]] = {}
    for conv, last, joined in tx.all(
        "SELECT c.id, c.last_seq, m.joined_seq FROM member m JOIN conversation c ON c.id = 'group:' || m.group_id "
        "WHERE m.agent = ?",
        (agent_id,),
    ):
        out[conv] = (last, joined)
    for conv, last in tx.all(
        "SELECT id, last_seq FROM conversation WHERE kind = 'dm' AND (dm_a = ? OR dm_b = ?)", (agent_id, agent_id)
    ):
        out[conv] = (last, 0)
    return out


def feed_head(tx: Tx, agent_id: str) -> int:
    return tx.scalar("SELECT feed_seq FROM agent WHERE id = ?", (agent_id,)) or 0


def delivery_cursors(tx: Tx, agent_id: str, device: str) -> dict[str, int]:
    return dict(tx.all("SELECT conv, seq FROM delivery_cursor WHERE agent = ? AND device = ?", (agent_id, device)))


def heads(tx: Tx, agent_id: str) -> dict[str, int]:
    """The newest seq of every conversation of the agent, its feed included."""
    out = {conv: last for conv, (last, _start) in conversation_heads(tx, agent_id).items()}
    out[inbox_conv(agent_id)] = feed_head(tx, agent_id)
    return out


def resume_state(tx: Tx, agent_id: str, device: str) -> tuple[dict[str, tuple[int, int]], dict[str, int], int]:
    """What a registering session resumes from, in one read: conversation heads and start
    points, this device's acknowledged cursors, and the head of the agent's feed."""
    return conversation_heads(tx, agent_id), delivery_cursors(tx, agent_id, device), feed_head(tx, agent_id)


_FEED_COLS = (
    "agent, seq, kind, conv, message_seq, task_id, task_version, actor, excerpt, in_inbox, read_time, create_time"
)


def _feed(r: Sequence[Any]) -> FeedRec:
    return FeedRec(r[0], r[1], FeedKind(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10] is not None, r[11])


def feed_after(tx: Tx, agent_id: str, after_seq: int, limit: int) -> list[FeedRec]:
    return [
        _feed(r)
        for r in tx.all(
            f"SELECT {_FEED_COLS} FROM feed WHERE agent = ? AND seq > ? ORDER BY seq LIMIT ?",
            (agent_id, after_seq, limit),
        )
    ]


def messages_by_key(tx: Tx, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], MessageRec]:
    out: dict[tuple[str, int], MessageRec] = {}
    for conv, seq in keys:
        m = message_get(tx, conv, seq)
        if m is not None:
            out[(conv, seq)] = m
    return out


def ack(tx: Tx, agent_id: str, device: str, cursors: Sequence[tuple[str, int]]) -> None:
    """Record what a device of the agent received (only moves forward)."""
    for conv, seq in cursors:
        tx.exec(
            "INSERT INTO delivery_cursor (agent, device, conv, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (agent, device, conv) DO UPDATE SET seq = excluded.seq "
            "WHERE delivery_cursor.seq < excluded.seq",
            (agent_id, device, conv, seq),
        )

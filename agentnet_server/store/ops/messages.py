"""Messages: history reads, the send transaction (dedupe, next seq, feed entries) and feed appends."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ...errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from ...records import (
    GROUP_PREFIX,
    FeedKind,
    FeedRec,
    MessageRec,
    MessageWrite,
    SendResult,
    dm_parties,
    now_us,
)
from ..db import Tx

_MSG_COLS = (
    "conv, seq, sender, sender_device, client_msg_id, content, payload, create_time, mentions, "
    "signature, signer_fp, sign_time, reply_to, auto_hops"
)


def _message(r: Sequence[Any]) -> MessageRec:
    return MessageRec(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        r[7],
        tuple(r[8].split(",")) if r[8] else (),
        bytes(r[9]) if r[9] is not None else b"",
        r[10],
        r[11],
        r[12],
        r[13],
    )


def messages_after(tx: Tx, conv: str, after_seq: int, limit: int) -> list[MessageRec]:
    return [
        _message(r)
        for r in tx.all(
            f"SELECT {_MSG_COLS} FROM message WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?",
            (conv, after_seq, limit),
        )
    ]


def messages_before(tx: Tx, conv: str, before_seq: int, after_seq: int, limit: int) -> list[MessageRec]:
    return [
        _message(r)
        for r in tx.all(
            f"SELECT {_MSG_COLS} FROM message WHERE conv = ? AND seq < ? AND seq > ? ORDER BY seq DESC LIMIT ?",
            (conv, before_seq, after_seq, limit),
        )
    ]


def message_get(tx: Tx, conv: str, seq: int) -> MessageRec | None:
    row = tx.one(f"SELECT {_MSG_COLS} FROM message WHERE conv = ? AND seq = ?", (conv, seq))
    return None if row is None else _message(row)


def conv_last_seq(tx: Tx, conv: str) -> int:
    return tx.scalar("SELECT last_seq FROM conversation WHERE id = ?", (conv,)) or 0


@dataclasses.dataclass(frozen=True, slots=True)
class FeedEntry:
    """What one committed change adds to the feed of each agent it concerns (the same for all)."""

    kind: FeedKind
    actor: str
    excerpt: str
    time: int
    conv: str = ""
    message_seq: int = 0
    task_id: str = ""
    task_version: int = 0


def feed_append(tx: Tx, agent: str, e: FeedEntry, in_inbox: bool = True) -> FeedRec:
    """Append `e` to `agent`'s feed at its next feed seq."""
    seq = tx.scalar("UPDATE agent SET feed_seq = feed_seq + 1 WHERE id = ? RETURNING feed_seq", (agent,))
    if seq is None:
        raise NotFound(f"agent {agent!r} does not exist", reason="AGENT_NOT_FOUND")
    tx.changes.feed.append((agent, seq))
    tx.exec(
        "INSERT INTO feed (agent, seq, kind, conv, message_seq, task_id, task_version, actor, excerpt, "
        "in_inbox, read_time, create_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
        (
            agent,
            seq,
            int(e.kind),
            e.conv,
            e.message_seq,
            e.task_id,
            e.task_version,
            e.actor,
            e.excerpt,
            in_inbox,
            e.time,
        ),
    )
    return FeedRec(
        agent,
        seq,
        e.kind,
        e.conv,
        e.message_seq,
        e.task_id,
        e.task_version,
        e.actor,
        e.excerpt,
        in_inbox,
        False,
        e.time,
    )


def send_message(tx: Tx, w: MessageWrite, check: Callable[[], None] | None = None) -> SendResult:
    """Commit one message: dedupe by (sender, client_msg_id), next seq, feed entries. `check` (the
    signature check) runs first, here in the writer thread, and may refuse the message. A
    `reply_to` must name a message of the same conversation that already exists."""
    if check is not None:
        check()
    sender, conv, client_msg_id = w.sender, w.conv, w.client_msg_id
    prior = tx.one(
        "SELECT conv, seq, digest FROM message WHERE sender = ? AND client_msg_id = ?", (sender, client_msg_id)
    )
    pruned = None
    if prior is None:
        pruned = tx.one(
            "SELECT conv, seq, digest, create_time FROM pruned_send WHERE sender = ? AND client_msg_id = ?",
            (sender, client_msg_id),
        )
        prior = pruned
    if prior is not None:
        if prior[2] != w.digest:
            raise AlreadyExists(
                f"client_msg_id {client_msg_id!r} was already used by {sender!r} for a different message "
                f"({prior[0]} seq {prior[1]}); use a new id for new content",
                reason="CLIENT_MSG_ID_REUSED",
                metadata={"conversation": prior[0], "seq": str(prior[1])},
            )
        if pruned is not None:
            # The original was deleted by retention: its place and time, without the content.
            gone = MessageRec(pruned[0], pruned[1], sender, "", client_msg_id, "", None, pruned[3])
            return SendResult(gone, True, ())
        original = message_get(tx, prior[0], prior[1])
        assert original is not None
        return SendResult(original, True, ())
    if conv.startswith(GROUP_PREFIX):
        group_id = conv[len(GROUP_PREFIX) :]
        if tx.one("SELECT 1 FROM member WHERE group_id = ? AND agent = ?", (group_id, sender)) is None:
            if tx.one("SELECT 1 FROM agent_group WHERE id = ?", (group_id,)) is None:
                raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
            raise PermissionDenied(
                f"agent {sender!r} is not a member of group {group_id!r}; join it first",
                reason="NOT_A_MEMBER",
            )
        recipient = ""
    reply_to = w.reply_to
    if reply_to:
        # Checked before anything is written: a refused op in a group commit is not rolled back.
        last = tx.scalar("SELECT last_seq FROM conversation WHERE id = ?", (conv,)) or 0
        if reply_to > last:
            raise InvalidArgument(
                f"reply_to {reply_to} is not a message of {conv} (its newest message is seq {last}); "
                "reply_to names the seq of an earlier message in the same conversation",
                reason="REPLY_TO_NOT_FOUND",
            )
    if not conv.startswith(GROUP_PREFIX):
        a, b = dm_parties(conv)
        recipient = b if a == sender else a
        tx.exec(
            "INSERT INTO conversation (id, kind, dm_a, dm_b, last_seq, create_time) VALUES (?, 'dm', ?, ?, 0, ?) "
            "ON CONFLICT (id) DO NOTHING",
            (conv, a, b, now_us()),
        )
    seq = tx.scalar("UPDATE conversation SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq", (conv,))
    if seq is None:
        raise FailedPrecondition(f"conversation {conv!r} does not exist", reason="CONVERSATION_NOT_FOUND")
    tx.changes.messages.append((conv, seq))
    t = now_us()
    tx.exec(
        f"INSERT INTO message ({_MSG_COLS}, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            conv,
            seq,
            sender,
            w.device,
            client_msg_id,
            w.content,
            w.payload_json,
            t,
            ",".join(w.mentions),
            w.signature or None,
            w.signer_fp,
            w.sign_time,
            reply_to,
            w.auto_hops,
            w.digest,
        ),
    )
    feed: list[FeedRec] = []
    if w.mentions:
        mention = FeedEntry(FeedKind.MENTION, sender, w.excerpt, t, conv, seq)
        feed.extend(feed_append(tx, agent, mention) for agent in w.mentions if agent != sender)
    if recipient and recipient != sender:
        feed.append(feed_append(tx, recipient, FeedEntry(FeedKind.DIRECT_MESSAGE, sender, w.excerpt, t, conv, seq)))
    msg = MessageRec(
        conv,
        seq,
        sender,
        w.device,
        client_msg_id,
        w.content,
        w.payload_json,
        t,
        w.mentions,
        w.signature,
        w.signer_fp,
        w.sign_time,
        reply_to,
        w.auto_hops,
    )
    return SendResult(msg, False, tuple(feed))

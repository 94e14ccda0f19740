"""Messages: history reads and the send transaction (dedupe, next seq, feed entries)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from ...records import (
    GROUP_PREFIX,
    FeedKind,
    FeedRec,
    MessageRec,
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


def _feed_append(
    tx: Tx,
    agent: str,
    kind: FeedKind,
    conv: str,
    message_seq: int,
    task_id: str,
    task_version: int,
    actor: str,
    excerpt: str,
    in_inbox: bool,
    t: int,
) -> FeedRec:
    seq = tx.scalar("UPDATE agent SET feed_seq = feed_seq + 1 WHERE id = ? RETURNING feed_seq", (agent,))
    if seq is None:
        raise NotFound(f"agent {agent!r} does not exist", reason="AGENT_NOT_FOUND")
    tx.changes.feed.append((agent, seq))
    tx.exec(
        "INSERT INTO feed (agent, seq, kind, conv, message_seq, task_id, task_version, actor, excerpt, "
        "in_inbox, read_time, create_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
        (agent, seq, int(kind), conv, message_seq, task_id, task_version, actor, excerpt, in_inbox, t),
    )
    return FeedRec(agent, seq, kind, conv, message_seq, task_id, task_version, actor, excerpt, in_inbox, False, t)


def send_message(
    tx: Tx,
    sender: str,
    device: str,
    conv: str,
    client_msg_id: str,
    digest: str,
    content: str,
    payload_json: str | None,
    mentions: tuple[str, ...],
    excerpt: str,
    signature: bytes,
    signer_fp: str,
    sign_time: int,
    check: Callable[[], None] | None = None,
    reply_to: int = 0,
    auto_hops: int = 0,
) -> SendResult:
    """Commit one message: dedupe by (sender, client_msg_id), next seq, feed entries. `check` (the
    signature check) runs first, here in the writer thread, and may refuse the message. A
    `reply_to` must name a message of the same conversation that already exists."""
    if check is not None:
        check()
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
        if prior[2] != digest:
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
            device,
            client_msg_id,
            content,
            payload_json,
            t,
            ",".join(mentions),
            signature or None,
            signer_fp,
            sign_time,
            reply_to,
            auto_hops,
            digest,
        ),
    )
    feed: list[FeedRec] = []
    for agent in mentions:
        if agent != sender:
            feed.append(_feed_append(tx, agent, FeedKind.MENTION, conv, seq, "", 0, sender, excerpt, True, t))
    if recipient and recipient != sender:
        feed.append(_feed_append(tx, recipient, FeedKind.DIRECT_MESSAGE, conv, seq, "", 0, sender, excerpt, True, t))
    msg = MessageRec(
        conv,
        seq,
        sender,
        device,
        client_msg_id,
        content,
        payload_json,
        t,
        mentions,
        signature,
        signer_fp,
        sign_time,
        reply_to,
        auto_hops,
    )
    return SendResult(msg, False, tuple(feed))

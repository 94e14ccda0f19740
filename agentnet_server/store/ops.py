"""Store operations: reads (run on reader threads) and writes (run on the writer thread).

Every function takes a Tx first and returns plain records. Writes check everything they can
refuse before they change anything (see Database)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from ..records import (
    GROUP_PREFIX,
    AgentRec,
    DeviceCertRec,
    DeviceRec,
    FeedKind,
    FeedRec,
    GroupRec,
    MemberRec,
    MessageRec,
    SendResult,
    dm_parties,
    group_conv,
    inbox_conv,
    now_us,
)
from .db import Tx

# -- agents -----------------------------------------------------------------------------------

_AGENT_COLS = "id, display_name, role, description, owner_device, create_time, last_seen"


def _agent(row: Sequence[Any], devices: tuple[str, ...]) -> AgentRec:
    return AgentRec(row[0], row[1], row[2], row[3], row[4], devices, row[5], row[6])


def agents_all(tx: Tx) -> list[AgentRec]:
    devices: dict[str, list[str]] = {}
    for agent, device in tx.all("SELECT agent, device FROM agent_device ORDER BY agent, grant_time"):
        devices.setdefault(agent, []).append(device)
    return [_agent(r, tuple(devices.get(r[0], ()))) for r in tx.all(f"SELECT {_AGENT_COLS} FROM agent ORDER BY id")]


def agent_get(tx: Tx, agent_id: str) -> AgentRec | None:
    row = tx.one(f"SELECT {_AGENT_COLS} FROM agent WHERE id = ?", (agent_id,))
    if row is None:
        return None
    devices = tuple(
        d for (d,) in tx.all("SELECT device FROM agent_device WHERE agent = ? ORDER BY grant_time", (agent_id,))
    )
    return _agent(row, devices)


def register_agent(
    tx: Tx,
    device: str,
    agent_id: str,
    display_name: str,
    name_key: str,
    role: str,
    description: str,
    max_agents_per_device: int,
) -> tuple[AgentRec, bool]:
    """Create the agent owned by `device`, or update it if `device` may act as it."""
    tx.changes.agents.add(agent_id)  # (a refused request only makes other replicas re-read it)
    existing = agent_get(tx, agent_id)
    holder = tx.one("SELECT id FROM agent WHERE name_key = ? AND id <> ?", (name_key, agent_id))
    if existing is not None:
        if device not in existing.devices:
            raise PermissionDenied(
                f"agent {agent_id!r} belongs to device {existing.owner_device!r}; device {device!r} "
                "may not act as it (the owner can authorize more devices)",
                reason="AGENT_OWNED_BY_OTHER_DEVICE",
            )
        if holder is not None:
            raise AlreadyExists(
                f"display name {display_name!r} is already used by agent {holder[0]!r}",
                reason="DISPLAY_NAME_TAKEN",
            )
        if (existing.display_name, existing.role, existing.description) == (display_name, role, description):
            return existing, False
        tx.exec(
            "UPDATE agent SET display_name = ?, name_key = ?, role = ?, description = ? WHERE id = ?",
            (display_name, name_key, role, description, agent_id),
        )
        return AgentRec(
            agent_id,
            display_name,
            role,
            description,
            existing.owner_device,
            existing.devices,
            existing.create_time,
            existing.last_seen,
        ), False
    if holder is not None:
        raise AlreadyExists(
            f"display name {display_name!r} is already used by agent {holder[0]!r}",
            reason="DISPLAY_NAME_TAKEN",
        )
    if max_agents_per_device:
        owned = tx.scalar("SELECT COUNT(*) FROM agent_device WHERE device = ?", (device,))
        if owned >= max_agents_per_device:
            raise ResourceExhausted(
                f"device {device!r} already acts as {owned} agents (limit {max_agents_per_device})",
                reason="TOO_MANY_AGENTS",
            )
    t = now_us()
    tx.exec(
        "INSERT INTO agent (id, display_name, name_key, role, description, owner_device, create_time, "
        "last_seen, feed_seq) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0)",
        (agent_id, display_name, name_key, role, description, device, t),
    )
    tx.exec("INSERT INTO agent_device (agent, device, grant_time) VALUES (?, ?, ?)", (agent_id, device, t))
    return AgentRec(agent_id, display_name, role, description, device, (device,), t, None), True


def authorize_device(tx: Tx, owner_device: str, agent_id: str, device: str) -> AgentRec:
    tx.changes.agents.add(agent_id)
    existing = agent_get(tx, agent_id)
    if existing is None:
        raise NotFound(f"agent {agent_id!r} does not exist", reason="AGENT_NOT_FOUND")
    if existing.owner_device != owner_device:
        raise PermissionDenied(
            f"only the owner device {existing.owner_device!r} may authorize devices for {agent_id!r}",
            reason="NOT_AGENT_OWNER",
        )
    if device in existing.devices:
        return existing
    tx.exec("INSERT INTO agent_device (agent, device, grant_time) VALUES (?, ?, ?)", (agent_id, device, now_us()))
    return AgentRec(
        existing.id,
        existing.display_name,
        existing.role,
        existing.description,
        existing.owner_device,
        (*existing.devices, device),
        existing.create_time,
        existing.last_seen,
    )


def notify(tx: Tx, payload: str) -> None:
    """A change notification for other replicas of a PostgreSQL store (sent when this commits)."""
    tx.exec("SELECT pg_notify('agentnet', ?)", (payload,))


def touch_seen(tx: Tx, agent_id: str, device: str, t: int) -> None:
    tx.exec("UPDATE agent SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)", (t, agent_id, t))
    tx.exec("UPDATE device SET last_seen = ? WHERE id = ?", (t, device))


# -- groups -----------------------------------------------------------------------------------

_GROUP_SELECT = (
    "SELECT g.id, g.title, g.description, g.creator, g.create_time, c.last_seq, "
    "(SELECT COUNT(*) FROM member m WHERE m.group_id = g.id) "
    "FROM agent_group g JOIN conversation c ON c.id = " + ("'group:' || g.id")
)


def _group(row: Sequence[Any]) -> GroupRec:
    return GroupRec(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def group_get(tx: Tx, group_id: str) -> GroupRec | None:
    row = tx.one(_GROUP_SELECT + " WHERE g.id = ?", (group_id,))
    return None if row is None else _group(row)


def groups_page(tx: Tx, after_id: str, limit: int, member: str = "") -> list[GroupRec]:
    if member:
        rows = tx.all(
            _GROUP_SELECT + " WHERE g.id > ? AND g.id IN (SELECT group_id FROM member WHERE agent = ?) "
            "ORDER BY g.id LIMIT ?",
            (after_id, member, limit),
        )
    else:
        rows = tx.all(_GROUP_SELECT + " WHERE g.id > ? ORDER BY g.id LIMIT ?", (after_id, limit))
    return [_group(r) for r in rows]


def joined_seq(tx: Tx, group_id: str, agent_id: str) -> int | None:
    row = tx.one("SELECT joined_seq FROM member WHERE group_id = ? AND agent = ?", (group_id, agent_id))
    return None if row is None else int(row[0])


def members_all(tx: Tx) -> list[MemberRec]:
    return [MemberRec(*r) for r in tx.all("SELECT group_id, agent, joined_seq, join_time FROM member")]


def members_page(tx: Tx, group_id: str, after_agent: str, limit: int) -> list[MemberRec]:
    return [
        MemberRec(*r)
        for r in tx.all(
            "SELECT group_id, agent, joined_seq, join_time FROM member WHERE group_id = ? AND agent > ? "
            "ORDER BY agent LIMIT ?",
            (group_id, after_agent, limit),
        )
    ]


def _check_group_quota(tx: Tx, agent_id: str, max_groups: int) -> None:
    if not max_groups:
        return
    n = tx.scalar("SELECT COUNT(*) FROM member WHERE agent = ?", (agent_id,))
    if n >= max_groups:
        raise ResourceExhausted(
            f"agent {agent_id!r} is already in {n} groups (limit {max_groups}); leave one first",
            reason="TOO_MANY_GROUPS",
        )


def create_group(
    tx: Tx, agent_id: str, group_id: str, title: str, description: str, max_groups: int
) -> tuple[GroupRec, MemberRec]:
    tx.changes.groups.add(group_id)
    if tx.one("SELECT 1 FROM agent_group WHERE id = ?", (group_id,)) is not None:
        raise AlreadyExists(f"group {group_id!r} already exists; join it instead", reason="GROUP_EXISTS")
    _check_group_quota(tx, agent_id, max_groups)
    t = now_us()
    tx.exec(
        "INSERT INTO agent_group (id, title, description, creator, create_time) VALUES (?, ?, ?, ?, ?)",
        (group_id, title or group_id, description, agent_id, t),
    )
    tx.exec(
        "INSERT INTO conversation (id, kind, dm_a, dm_b, last_seq, create_time) VALUES (?, 'group', NULL, NULL, 0, ?)",
        (group_conv(group_id), t),
    )
    tx.exec("INSERT INTO member (group_id, agent, joined_seq, join_time) VALUES (?, ?, 0, ?)", (group_id, agent_id, t))
    return GroupRec(group_id, title or group_id, description, agent_id, t, 0, 1), MemberRec(group_id, agent_id, 0, t)


def join_group(
    tx: Tx, agent_id: str, group_id: str, create_if_missing: bool, title: str, max_groups: int
) -> tuple[GroupRec, MemberRec, bool]:
    """Returns (group, membership, newly_joined)."""
    tx.changes.groups.add(group_id)
    group = group_get(tx, group_id)
    if group is None:
        if not create_if_missing:
            raise NotFound(
                f"group {group_id!r} does not exist; create it first (or join with create_if_missing)",
                reason="GROUP_NOT_FOUND",
            )
        g, m = create_group(tx, agent_id, group_id, title, "", max_groups)
        return g, m, True
    row = tx.one("SELECT joined_seq, join_time FROM member WHERE group_id = ? AND agent = ?", (group_id, agent_id))
    if row is not None:
        return group, MemberRec(group_id, agent_id, row[0], row[1]), False
    _check_group_quota(tx, agent_id, max_groups)
    t = now_us()
    tx.exec(
        "INSERT INTO member (group_id, agent, joined_seq, join_time) VALUES (?, ?, ?, ?)",
        (group_id, agent_id, group.last_seq, t),
    )
    g = GroupRec(
        group.id,
        group.title,
        group.description,
        group.creator,
        group.create_time,
        group.last_seq,
        group.member_count + 1,
    )
    return g, MemberRec(group_id, agent_id, group.last_seq, t), True


def leave_group(tx: Tx, agent_id: str, group_id: str) -> bool:
    tx.changes.groups.add(group_id)
    if tx.one("SELECT 1 FROM agent_group WHERE id = ?", (group_id,)) is None:
        raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
    return tx.exec("DELETE FROM member WHERE group_id = ? AND agent = ?", (group_id, agent_id)) > 0


# -- messages ---------------------------------------------------------------------------------

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


# -- resume -----------------------------------------------------------------------------------


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


# -- devices ----------------------------------------------------------------------------------


def record_device_cert(
    tx: Tx, device_id: str, fingerprint: str, serial: str, not_after: int, pem: str, enrolled: bool
) -> None:
    """Remember a device certificate (at enrollment, or when first seen on a connection)."""
    t = now_us()
    tx.exec(
        "INSERT INTO device (id, create_time, revoked_at, last_seen) VALUES (?, ?, NULL, NULL) "
        "ON CONFLICT (id) DO NOTHING",
        (device_id, t),
    )
    if enrolled:
        # Enrolling again is how a revoked device comes back with a new certificate.
        tx.exec("UPDATE device SET revoked_at = NULL WHERE id = ?", (device_id,))
    tx.exec(
        "INSERT INTO device_cert (fingerprint, device, serial, not_after, enrolled_at, revoked_at, pem) "
        "VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (fingerprint) DO NOTHING",
        (fingerprint, device_id, serial, not_after, t, pem),
    )


def revoke_device(tx: Tx, device_id: str) -> int:
    """Revoke every certificate of a device; returns how many were revoked."""
    if tx.one("SELECT 1 FROM device WHERE id = ?", (device_id,)) is None:
        raise NotFound(f"device {device_id!r} is not enrolled", reason="DEVICE_NOT_FOUND")
    t = now_us()
    tx.exec("UPDATE device SET revoked_at = ? WHERE id = ?", (t, device_id))
    return tx.exec("UPDATE device_cert SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL", (t, device_id))


def revocations(tx: Tx) -> tuple[frozenset[str], frozenset[str]]:
    """(revoked certificate fingerprints, revoked device ids)."""
    fps = frozenset(fp for (fp,) in tx.all("SELECT fingerprint FROM device_cert WHERE revoked_at IS NOT NULL"))
    devices = frozenset(d for (d,) in tx.all("SELECT id FROM device WHERE revoked_at IS NOT NULL"))
    return fps, devices


_CERT_COLS = "fingerprint, device, serial, not_after, enrolled_at, revoked_at, pem"


def device_certs(tx: Tx, device_id: str) -> list[DeviceCertRec]:
    return [
        DeviceCertRec(*r)
        for r in tx.all(f"SELECT {_CERT_COLS} FROM device_cert WHERE device = ? ORDER BY enrolled_at", (device_id,))
    ]


def device_cert(tx: Tx, fingerprint: str) -> DeviceCertRec | None:
    r = tx.one(f"SELECT {_CERT_COLS} FROM device_cert WHERE fingerprint = ?", (fingerprint,))
    return None if r is None else DeviceCertRec(*r)


def devices_all(tx: Tx) -> list[DeviceRec]:
    agents: dict[str, list[str]] = {}
    for agent, device in tx.all("SELECT agent, device FROM agent_device ORDER BY agent"):
        agents.setdefault(device, []).append(agent)
    certs: dict[str, list[DeviceCertRec]] = {}
    for r in tx.all(f"SELECT {_CERT_COLS} FROM device_cert ORDER BY enrolled_at"):
        certs.setdefault(r[1], []).append(DeviceCertRec(*r))
    return [
        DeviceRec(r[0], r[1], r[2], r[3], tuple(certs.get(r[0], ())), tuple(agents.get(r[0], ())))
        for r in tx.all("SELECT id, revoked_at, create_time, last_seen FROM device ORDER BY id")
    ]


def prune_history(tx: Tx, cutoff: int, limit: int) -> tuple[int, int]:
    """Delete up to `limit` of the oldest messages and of the oldest inbox entries created before
    `cutoff` (microseconds). Sequence counters live in conversation and agent rows, so seqs
    never repeat; sessions that resume across the deleted range are told with history_gap; the
    send ids stay taken (pruned_send), so a late resend is still a duplicate."""
    # The same batch twice (the order is total): first keep the send ids, then delete.
    batch = "(SELECT conv, seq FROM message WHERE create_time < ? ORDER BY create_time, conv, seq LIMIT ?)"
    tx.exec(
        "INSERT INTO pruned_send (sender, client_msg_id, conv, seq, digest, create_time) "
        f"SELECT sender, client_msg_id, conv, seq, digest, create_time FROM message WHERE (conv, seq) IN {batch} "
        "ON CONFLICT DO NOTHING",
        (cutoff, limit),
    )
    messages = tx.exec(f"DELETE FROM message WHERE (conv, seq) IN {batch}", (cutoff, limit))
    feed = tx.exec(
        "DELETE FROM feed WHERE (agent, seq) IN "
        "(SELECT agent, seq FROM feed WHERE create_time < ? ORDER BY create_time LIMIT ?)",
        (cutoff, limit),
    )
    return messages, feed

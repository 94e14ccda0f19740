"""Groups and memberships."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import AlreadyExists, NotFound, ResourceExhausted
from ...records import (
    GroupRec,
    MemberRec,
    group_conv,
    now_us,
)
from ..db import Tx

_GROUP_SELECT = (
    "SELECT g.id, g.title, g.description, g.creator, g.create_time, c.last_seq, "
    "(SELECT COUNT(*) FROM member m WHERE m.group_id = g.id), g.join_rule, g.history "
    "FROM agent_group g JOIN conversation c ON c.id = " + ("'group:' || g.id")
)


def _group(row: Sequence[Any]) -> GroupRec:
    return GroupRec(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])


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
        group.join_rule,
        group.history,
    )
    return g, MemberRec(group_id, agent_id, group.last_seq, t), True


def leave_group(tx: Tx, agent_id: str, group_id: str) -> bool:
    tx.changes.groups.add(group_id)
    if tx.one("SELECT 1 FROM agent_group WHERE id = ?", (group_id,)) is None:
        raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
    return tx.exec("DELETE FROM member WHERE group_id = ? AND agent = ?", (group_id, agent_id)) > 0

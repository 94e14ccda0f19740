"""Who may join a group and what its members may read: join rules, invitations, history
visibility (SECURITY.md "Groups"; Matrix's join_rules and history_visibility are the model)."""

from __future__ import annotations

import dataclasses

from ..errors import NotFound, PermissionDenied
from ..records import GroupRec, GroupWrite, MemberRec, now_us
from . import ops
from .db import Tx

PUBLIC, INVITE = "public", "invite"
SHARED, JOINED = "shared", "joined"


def rules(tx: Tx, group_id: str) -> tuple[str, str] | None:
    """(join_rule, history) of a group, None when it does not exist."""
    row = tx.one("SELECT join_rule, history FROM agent_group WHERE id = ?", (group_id,))
    return None if row is None else (str(row[0]), str(row[1]))


def set_rules(tx: Tx, group_id: str, join_rule: str, history: str) -> None:
    tx.exec("UPDATE agent_group SET join_rule = ?, history = ? WHERE id = ?", (join_rule, history, group_id))


def check_join(tx: Tx, group_id: str, agent_id: str) -> None:
    """Refuse joining an invite-only group without an invitation (inside the join transaction)."""
    r = rules(tx, group_id)
    if r is None or r[0] != INVITE:
        return
    if tx.one("SELECT 1 FROM group_invite WHERE group_id = ? AND agent = ?", (group_id, agent_id)) is None:
        raise PermissionDenied(
            f"group {group_id!r} is invite-only and {agent_id!r} has no invitation; ask a member to invite it",
            reason="NOT_INVITED",
        )


def invite(tx: Tx, group_id: str, inviter: str, invitee: str) -> bool:
    """Record an invitation by a member; False when there already was one (or it is a member)."""
    tx.changes.groups.add(group_id)
    if tx.one("SELECT 1 FROM agent_group WHERE id = ?", (group_id,)) is None:
        raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
    if tx.one("SELECT 1 FROM member WHERE group_id = ? AND agent = ?", (group_id, inviter)) is None:
        raise PermissionDenied(
            f"agent {inviter!r} is not a member of group {group_id!r}; only members may invite",
            reason="NOT_A_MEMBER",
        )
    if tx.one("SELECT 1 FROM agent WHERE id = ?", (invitee,)) is None:
        raise NotFound(f"agent {invitee!r} does not exist", reason="AGENT_NOT_FOUND")
    if tx.one("SELECT 1 FROM member WHERE group_id = ? AND agent = ?", (group_id, invitee)) is not None:
        return False
    return (
        tx.exec(
            "INSERT INTO group_invite (group_id, agent, inviter, create_time) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (group_id, agent) DO NOTHING",
            (group_id, invitee, inviter, now_us()),
        )
        > 0
    )


def visible_from(tx: Tx, group_id: str, agent_id: str) -> int:
    """The first seq a member may read minus one: its join point in a from-join group, else 0."""
    r = rules(tx, group_id)
    if r is None or r[1] != JOINED:
        return 0
    row = tx.one("SELECT joined_seq FROM member WHERE group_id = ? AND agent = ?", (group_id, agent_id))
    return int(row[0]) if row is not None else 0


def create_group(tx: Tx, g: GroupWrite, max_groups: int) -> tuple[GroupRec, MemberRec]:
    """ops.create_group with the group's join rule and history visibility."""
    group, member = ops.create_group(tx, g.creator, g.group_id, g.title, g.description, max_groups)
    set_rules(tx, g.group_id, g.join_rule, g.history)
    return dataclasses.replace(group, join_rule=g.join_rule, history=g.history), member


def join_group(
    tx: Tx, agent_id: str, group_id: str, create_if_missing: bool, title: str, max_groups: int
) -> tuple[GroupRec, MemberRec, bool]:
    """ops.join_group, refused for an invite-only group without an invitation (which joining uses up)."""
    if tx.one("SELECT 1 FROM member WHERE group_id = ? AND agent = ?", (group_id, agent_id)) is None:
        check_join(tx, group_id, agent_id)
    result = ops.join_group(tx, agent_id, group_id, create_if_missing, title, max_groups)
    tx.exec("DELETE FROM group_invite WHERE group_id = ? AND agent = ?", (group_id, agent_id))
    return result


def floors(tx: Tx, agent_id: str) -> dict[str, int]:
    """conv -> join point, for the agent's groups whose history is visible from the join on."""
    return {
        "group:" + g: int(seq)
        for g, seq in tx.all(
            "SELECT m.group_id, m.joined_seq FROM member m JOIN agent_group g ON g.id = m.group_id "
            "WHERE m.agent = ? AND g.history = ?",
            (agent_id, JOINED),
        )
    }

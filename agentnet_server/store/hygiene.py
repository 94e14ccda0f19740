"""Deleting what nobody uses any more: groups without members (DESIGN: bounded growth)."""

from __future__ import annotations

from ..records import group_conv
from .db import Tx


def empty_groups(tx: Tx) -> list[str]:
    """Groups that have no members."""
    return [
        g
        for (g,) in tx.all(
            "SELECT id FROM agent_group WHERE NOT EXISTS (SELECT 1 FROM member WHERE member.group_id = agent_group.id)"
        )
    ]


def delete_empty_groups(tx: Tx, group_ids: list[str]) -> list[str]:
    """Delete each group that still has no members, with its history. The send ids of its
    messages stay taken (pruned_send), as after retention. Returns the groups deleted."""
    gone: list[str] = []
    for gid in group_ids:
        if tx.one("SELECT 1 FROM member WHERE group_id = ?", (gid,)) is not None:
            continue  # someone joined meanwhile
        if tx.exec("DELETE FROM agent_group WHERE id = ?", (gid,)) == 0:
            continue
        conv = group_conv(gid)
        tx.exec(
            "INSERT INTO pruned_send (sender, client_msg_id, conv, seq, digest, create_time) "
            "SELECT sender, client_msg_id, conv, seq, digest, create_time FROM message WHERE conv = ? "
            "ON CONFLICT DO NOTHING",
            (conv,),
        )
        tx.exec("DELETE FROM message WHERE conv = ?", (conv,))
        tx.exec("DELETE FROM conversation WHERE id = ?", (conv,))
        tx.exec("DELETE FROM read_marker WHERE conv = ?", (conv,))
        tx.exec("DELETE FROM delivery_cursor WHERE conv = ?", (conv,))
        tx.exec("DELETE FROM group_invite WHERE group_id = ?", (gid,))
        tx.changes.groups.add(gid)
        gone.append(gid)
    return gone

"""Tasks and their history. Every change writes a task_change row and feed rows for the assignee,
the creator and the members of the task's group, in the same transaction."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import Aborted, AlreadyExists, NotFound, PermissionDenied
from ..records import (
    FeedKind,
    FeedRec,
    TaskChangeRec,
    TaskChangeWrite,
    TaskFilter,
    TaskRec,
    TaskStatus,
    TaskWrite,
    now_us,
)
from .db import Tx
from .ops.messages import FeedEntry, feed_append

_TASK_COLS = (
    "id, title, description, creator, assignee, group_id, priority, due_time, status, version, result, "
    "create_time, update_time"
)
_CHANGE_COLS = "task, version, actor, from_status, to_status, from_assignee, to_assignee, note, time"


@dataclasses.dataclass(frozen=True)
class TaskCommit:
    """A committed task change: the task after it, the change, and the feed rows it produced."""

    task: TaskRec
    change: TaskChangeRec
    feed: tuple[FeedRec, ...]
    created: bool = True


def _task(r: Sequence[Any]) -> TaskRec:
    return TaskRec(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], TaskStatus(r[8]), r[9], r[10], r[11], r[12])


def _change(r: Sequence[Any]) -> TaskChangeRec:
    return TaskChangeRec(*r)


def task_get(tx: Tx, task_id: str, with_history: bool = False, lock: bool = False) -> TaskRec | None:
    sql = f"SELECT {_TASK_COLS} FROM task WHERE id = ?"
    if lock and tx.pg:
        sql += " FOR UPDATE"
    row = tx.one(sql, (task_id,))
    if row is None:
        return None
    t = _task(row)
    if with_history:
        hist = tuple(
            _change(r)
            for r in tx.all(f"SELECT {_CHANGE_COLS} FROM task_change WHERE task = ? ORDER BY version", (task_id,))
        )
        t = dataclasses.replace(t, history=hist)
    return t


def task_changes(tx: Tx, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[TaskRec, TaskChangeRec]]:
    """Tasks as they were at given versions (status and assignee from the change), for replay."""
    out: dict[tuple[str, int], tuple[TaskRec, TaskChangeRec]] = {}
    tasks: dict[str, TaskRec | None] = {}
    for task_id, version in keys:
        if task_id not in tasks:
            tasks[task_id] = task_get(tx, task_id)
        t = tasks[task_id]
        row = tx.one(f"SELECT {_CHANGE_COLS} FROM task_change WHERE task = ? AND version = ?", (task_id, version))
        if t is None or row is None:
            continue
        c = _change(row)
        at = dataclasses.replace(
            t, status=TaskStatus(c.to_status), assignee=c.to_assignee, version=c.version, update_time=c.time
        )
        out[(task_id, version)] = (at, c)
    return out


def tasks_page(
    tx: Tx, viewer: str, viewer_groups: Sequence[str], f: TaskFilter, before: tuple[int, str] | None, limit: int
) -> list[TaskRec]:
    """Tasks the viewer may see (creator, assignee or member of the task's group), newest change first."""
    groups = list(viewer_groups)
    visible = "(creator = ? OR assignee = ?"
    params: list[Any] = [viewer, viewer]
    if groups:
        visible += f" OR group_id IN ({', '.join('?' for _ in groups)})"
        params += groups
    visible += ")"
    sql = f"SELECT {_TASK_COLS} FROM task WHERE {visible}"
    for col, value in (("assignee", f.assignee), ("creator", f.creator), ("group_id", f.group_id)):
        if value:
            sql += f" AND {col} = ?"
            params.append(value)
    if f.status:
        sql += " AND status = ?"
        params.append(f.status)
    if before is not None:
        sql += " AND (update_time < ? OR (update_time = ? AND id < ?))"
        params += [before[0], before[0], before[1]]
    sql += " ORDER BY update_time DESC, id DESC LIMIT ?"
    params.append(limit)
    return [_task(r) for r in tx.all(sql, params)]


def _group_members(tx: Tx, group_id: str) -> list[str]:
    if not group_id:
        return []
    return [a for (a,) in tx.all("SELECT agent FROM member WHERE group_id = ? ORDER BY agent", (group_id,))]


def _fan_out(
    tx: Tx,
    t: TaskRec,
    change: TaskChangeRec,
    involved: Sequence[str],
    new_assignee: str,
    actor: str,
    now: int,
) -> tuple[FeedRec, ...]:
    """Feed rows for everyone involved or in the task's group: TASK_ASSIGNED when the change gives the
    task to a new assignee (creation, reassignment), else TASK_UPDATED. Only those involved get inbox
    rows; the actor's own change is never unread."""
    feed: list[FeedRec] = []
    seen: set[str] = set()
    audience = [*involved, *_group_members(tx, t.group_id)]
    kind = FeedKind.TASK_ASSIGNED if new_assignee else FeedKind.TASK_UPDATED
    entry = FeedEntry(kind, actor, t.title[:280], now, task_id=t.id, task_version=t.version)
    for agent in audience:
        if agent in seen:
            continue
        seen.add(agent)
        item = feed_append(tx, agent, entry, agent in involved)
        if agent == actor:
            tx.exec("UPDATE feed SET read_time = ? WHERE agent = ? AND seq = ?", (now, agent, item.seq))
            item = dataclasses.replace(item, read=True)
        feed.append(item)
    return tuple(feed)


def _insert_change(tx: Tx, c: TaskChangeRec, device: str, signature: bytes, signer_fp: str) -> None:
    tx.exec(
        f"INSERT INTO task_change ({_CHANGE_COLS}, actor_device, signature, signer_fp) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            c.task_id,
            c.version,
            c.actor,
            c.from_status,
            c.to_status,
            c.from_assignee,
            c.to_assignee,
            c.note,
            c.time,
            device,
            signature or None,
            signer_fp,
        ),
    )


def create_task(tx: Tx, w: TaskWrite) -> TaskCommit:
    """Create a task, or return the one this (creator, client_task_id) already created."""
    creator, client_task_id, assignee, group_id = w.creator, w.client_task_id, w.assignee, w.group_id
    prior = tx.one("SELECT id, digest FROM task WHERE creator = ? AND client_task_id = ?", (creator, client_task_id))
    if prior is not None:
        if prior[1] != w.digest:
            raise AlreadyExists(
                f"client_task_id {client_task_id!r} was already used by {creator!r} for another task ({prior[0]})",
                reason="CLIENT_TASK_ID_REUSED",
                metadata={"task_id": prior[0]},
            )
        t = task_get(tx, prior[0])
        assert t is not None
        first = tx.one(f"SELECT {_CHANGE_COLS} FROM task_change WHERE task = ? AND version = 1", (t.id,))
        assert first is not None
        return TaskCommit(t, _change(first), (), created=False)
    if tx.one("SELECT 1 FROM agent WHERE id = ?", (assignee,)) is None:
        raise NotFound(f"assignee {assignee!r} is not a registered agent", reason="AGENT_NOT_FOUND")
    if group_id:
        members = set(_group_members(tx, group_id))
        if not members and tx.one("SELECT 1 FROM agent_group WHERE id = ?", (group_id,)) is None:
            raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
        if creator not in members:
            raise PermissionDenied(f"{creator!r} is not a member of group {group_id!r}", reason="NOT_A_MEMBER")
        if assignee not in members:
            raise PermissionDenied(
                f"assignee {assignee!r} is not a member of group {group_id!r}; invite them or leave the group out",
                reason="ASSIGNEE_NOT_A_MEMBER",
            )
    now = now_us()
    task_id = "t-" + os.urandom(8).hex()
    tx.exec(
        f"INSERT INTO task ({_TASK_COLS}, client_task_id, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            task_id,
            w.title,
            w.description,
            creator,
            assignee,
            group_id,
            w.priority,
            w.due_time,
            int(TaskStatus.PENDING),
            1,
            "",
            now,
            now,
            client_task_id,
            w.digest,
        ),
    )
    t = TaskRec(
        task_id,
        w.title,
        w.description,
        creator,
        assignee,
        group_id,
        w.priority,
        w.due_time,
        TaskStatus.PENDING,
        1,
        "",
        now,
        now,
    )
    change = TaskChangeRec(task_id, 1, creator, 0, int(TaskStatus.PENDING), "", assignee, "created", now)
    _insert_change(tx, change, w.device, w.signature, w.signer_fp)
    feed = _fan_out(tx, t, change, [assignee, creator], assignee, creator, now)
    return TaskCommit(t, change, feed)


Rules = Callable[[TaskRec, TaskChangeWrite], None]


def update_task(tx: Tx, w: TaskChangeWrite, rules: Rules) -> TaskCommit:
    """Apply one change after `rules(task, change)` accepted it (it raises otherwise)."""
    actor, task_id, assignee, expected_version = w.actor, w.task_id, w.assignee, w.expected_version
    t = task_get(tx, task_id, lock=True)
    if t is None:
        raise NotFound(f"task {task_id!r} does not exist", reason="TASK_NOT_FOUND")
    if expected_version and expected_version != t.version:
        raise Aborted(
            f"task {task_id} is at version {t.version}, not {expected_version}; re-read it and retry",
            reason="VERSION_MISMATCH",
            metadata={"current_version": str(t.version)},
        )
    rules(t, w)
    if assignee and assignee != t.assignee:
        if tx.one("SELECT 1 FROM agent WHERE id = ?", (assignee,)) is None:
            raise NotFound(f"assignee {assignee!r} is not a registered agent", reason="AGENT_NOT_FOUND")
        if (
            t.group_id
            and tx.one("SELECT 1 FROM member WHERE group_id = ? AND agent = ?", (t.group_id, assignee)) is None
        ):
            raise PermissionDenied(
                f"assignee {assignee!r} is not a member of group {t.group_id!r}", reason="ASSIGNEE_NOT_A_MEMBER"
            )
    now = now_us()
    new_assignee = assignee or t.assignee
    # A new assignee starts from pending unless the change also names a status.
    new_status = TaskStatus(w.status) if w.status else (TaskStatus.PENDING if new_assignee != t.assignee else t.status)
    new_result = t.result if w.result is None else w.result
    version = t.version + 1
    tx.exec(
        "UPDATE task SET status = ?, assignee = ?, result = ?, version = ?, update_time = ? "
        "WHERE id = ? AND version = ?",
        (int(new_status), new_assignee, new_result, version, now, task_id, t.version),
    )
    change = TaskChangeRec(
        task_id, version, actor, int(t.status), int(new_status), t.assignee, new_assignee, w.note, now
    )
    _insert_change(tx, change, w.device, w.signature, w.signer_fp)
    after = dataclasses.replace(
        t, status=new_status, assignee=new_assignee, result=new_result, version=version, update_time=now
    )
    involved = [new_assignee, t.creator] + ([t.assignee] if t.assignee != new_assignee else [])
    feed = _fan_out(tx, after, change, involved, new_assignee if new_assignee != t.assignee else "", actor, now)
    return TaskCommit(after, change, feed)

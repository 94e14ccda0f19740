"""Task rules: the state machine, who may do what, and the task use cases.

| from \\ to   | accepted | in_progress | blocked | done | failed | rejected | cancelled |
| ----------- | -------- | ----------- | ------- | ---- | ------ | -------- | --------- |
| pending     | A        | A           |         |      |        | A        | C         |
| accepted    |          | A           | A       |      | A      | A        | C         |
| in_progress |          |             | A       | A    | A      |          | C         |
| blocked     |          | A           |         |      | A      |          | C         |

A = the assignee, C = the creator. done, failed, rejected and cancelled are terminal. The creator
may also reassign a task that is not terminal (it goes back to pending for the new assignee);
either of them may add a note, and the assignee may update the result, without changing status.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from ..records import (
    FEED,
    TERMINAL,
    Envelope,
    FeedRec,
    TaskChangeWrite,
    TaskFilter,
    TaskRec,
    TaskStatus,
    TaskWrite,
    inbox_conv,
)
from ..store import tasks as store
from ..store.tasks import TaskCommit
from . import signatures, validate
from .commands import CreateTask, UpdateTask
from .network import Network

S = TaskStatus
log = logging.getLogger("agentnet.tasks")
ASSIGNEE, CREATOR = "assignee", "creator"

TRANSITIONS: dict[TaskStatus, dict[TaskStatus, str]] = {
    S.PENDING: {S.ACCEPTED: ASSIGNEE, S.IN_PROGRESS: ASSIGNEE, S.REJECTED: ASSIGNEE, S.CANCELLED: CREATOR},
    S.ACCEPTED: {
        S.IN_PROGRESS: ASSIGNEE,
        S.BLOCKED: ASSIGNEE,
        S.FAILED: ASSIGNEE,
        S.REJECTED: ASSIGNEE,
        S.CANCELLED: CREATOR,
    },
    S.IN_PROGRESS: {S.BLOCKED: ASSIGNEE, S.DONE: ASSIGNEE, S.FAILED: ASSIGNEE, S.CANCELLED: CREATOR},
    S.BLOCKED: {S.IN_PROGRESS: ASSIGNEE, S.FAILED: ASSIGNEE, S.CANCELLED: CREATOR},
}
MAX_TITLE = 200
MAX_TEXT = 16 * 1024


def name(status: int) -> str:
    return S(status).name.lower() if status else "unspecified"


def check_change(task: TaskRec, change: TaskChangeWrite) -> None:
    """Raise unless `change.actor` may make this change to `task` now. The one place of these rules:
    the store runs it inside the update's transaction, on the task as locked there."""
    actor, status, assignee = change.actor, change.status, change.assignee
    involved = actor in (task.assignee, task.creator)
    if not involved:
        raise PermissionDenied(
            f"only the assignee ({task.assignee}) or the creator ({task.creator}) may change task {task.id}",
            reason="NOT_INVOLVED",
        )
    if task.status in TERMINAL:
        raise FailedPrecondition(
            f"task {task.id} is {name(task.status)}; terminal states are final",
            reason="TASK_TERMINAL",
            metadata={"status": name(task.status)},
        )
    if assignee and assignee != task.assignee and actor != task.creator:
        raise PermissionDenied(f"only the creator ({task.creator}) may reassign task {task.id}", reason="NOT_CREATOR")
    if change.result is not None and actor != task.assignee:
        raise PermissionDenied(
            f"only the assignee ({task.assignee}) may set the result of task {task.id}", reason="NOT_ASSIGNEE"
        )
    if status and status != task.status:
        target = S(status)
        allowed = TRANSITIONS.get(task.status, {})
        who = allowed.get(target)
        if who is None:
            raise FailedPrecondition(
                f"task {task.id} cannot go from {name(task.status)} to {name(target)}; allowed: "
                + (", ".join(f"{name(s)} ({w})" for s, w in allowed.items()) or "nothing"),
                reason="INVALID_TRANSITION",
                metadata={"from": name(task.status), "to": name(target)},
            )
        if who == ASSIGNEE and actor != task.assignee:
            raise PermissionDenied(
                f"only the assignee ({task.assignee}) may move task {task.id} to {name(target)}", reason="NOT_ASSIGNEE"
            )
        if who == CREATOR and actor != task.creator:
            raise PermissionDenied(
                f"only the creator ({task.creator}) may move task {task.id} to {name(target)}", reason="NOT_CREATOR"
            )


class Tasks:
    def __init__(self, net: Network) -> None:
        self.net = net
        net.task_refs = self.refs

    async def refs(self, items: list[FeedRec]) -> dict[Any, Any]:
        keys = sorted({(it.task_id, it.task_version) for it in items if it.task_id})
        found = await self.net.db.read(store.task_changes, keys)
        return {("task", tid, v): ref for (tid, v), ref in found.items()}

    def _publish(self, c: TaskCommit) -> None:
        ch = c.change
        log.info(
            "task %s v%d %s by %s: %s -> %s (assignee %s)",
            c.task.id,
            c.task.version,
            "created" if ch.from_status == 0 else "changed",
            ch.actor,
            TaskStatus(ch.from_status).name.lower() if ch.from_status else "new",
            TaskStatus(ch.to_status).name.lower() if ch.to_status else "-",
            c.task.assignee,
        )
        for item in c.feed:
            self.net.live.publish(
                Envelope(FEED, inbox_conv(item.agent), item.seq, (item, (c.task, c.change))), (item.agent,)
            )

    async def create(self, cmd: CreateTask) -> TaskCommit:
        """The signature covers the fields exactly as the client sent them."""
        assignee, group_id, priority, due_time = cmd.assignee, cmd.group_id, cmd.priority, cmd.due_time
        signed = cmd.signed
        cid = validate.idempotency_key(
            "client_task_id", cmd.client_task_id, bool(signed.signature or self.net.settings.require_signatures)
        )
        signatures.check_task_create(cmd, signatures.Policy.of(self.net.settings))
        title = validate.check_text("title", cmd.title.strip(), MAX_TITLE, required=True)
        validate.check_text("description", cmd.description, MAX_TEXT, single_line=False)
        validate.check_id("assignee", assignee)
        if group_id:
            validate.check_id("group_id", group_id)
        if priority < 0 or priority > 4:
            raise InvalidArgument(f"priority {priority} is not a TaskPriority", reason="BAD_PRIORITY")
        if due_time < 0:
            raise InvalidArgument("due_time must be after 1970", reason="BAD_DUE_TIME")
        digest = validate.digest(title, cmd.description, assignee, group_id, str(priority or 2), str(due_time))
        write = TaskWrite(
            cmd.creator,
            cmd.device,
            cid,
            digest,
            title,
            cmd.description,
            assignee,
            group_id,
            priority or 2,
            due_time or None,
            signed.signature,
            signed.signer_fp,
        )
        return await self.net.db.write(store.create_task, write, on_commit=self._publish)

    async def update(self, cmd: UpdateTask) -> TaskCommit:
        task_id, status, assignee, note, result = cmd.task_id, cmd.status, cmd.assignee, cmd.note, cmd.result
        signatures.check_task_update(cmd, signatures.Policy.of(self.net.settings))
        self._check_task_id(task_id)
        if status and status not in S._value2member_map_:
            raise InvalidArgument(f"status {status} is not a TaskStatus", reason="BAD_STATUS")
        if assignee:
            validate.check_id("assignee", assignee)
        validate.check_text("note", note, MAX_TEXT, single_line=False)
        validate.check_text("result", result, MAX_TEXT, single_line=False)
        if cmd.expected_version < 0:
            raise InvalidArgument("expected_version must not be negative", reason="BAD_VERSION")
        if not status and not assignee and not note and not result:
            raise InvalidArgument(
                "nothing to change: give a status, an assignee, a note or a result", reason="EMPTY_UPDATE"
            )
        write = TaskChangeWrite(
            cmd.actor,
            cmd.device,
            task_id,
            status,
            assignee,
            note,
            result or None,
            cmd.expected_version,
            cmd.signed.signature,
            cmd.signed.signer_fp,
        )
        return await self.net.db.write(store.update_task, write, check_change, on_commit=self._publish)

    def _check_task_id(self, task_id: str) -> None:
        if not (task_id.startswith("t-") and len(task_id) == 18 and all(c in "0123456789abcdef" for c in task_id[2:])):
            raise InvalidArgument(
                f"task id {task_id[:40]!r} is not valid (expected t- and 16 hex digits)", reason="BAD_TASK_ID"
            )

    def _may_see(self, viewer: str, t: TaskRec) -> None:
        if viewer in (t.creator, t.assignee) or (t.group_id and self.net.is_member(viewer, t.group_id)):
            return
        raise PermissionDenied(f"task {t.id} is not visible to {viewer!r}", reason="NOT_VISIBLE")

    async def get(self, viewer: str, task_id: str) -> TaskRec:
        self._check_task_id(task_id)
        t = await self.net.db.read(store.task_get, task_id, True)
        if t is None:
            raise NotFound(f"task {task_id!r} does not exist", reason="TASK_NOT_FOUND")
        self._may_see(viewer, t)
        return t

    async def list(self, viewer: str, f: TaskFilter, page_size: int, token: str) -> tuple[list[TaskRec], str]:
        for what, value in (("assignee", f.assignee), ("creator", f.creator), ("group_id", f.group_id)):
            if value:
                validate.check_id(what, value)
        if f.status and f.status not in S._value2member_map_:
            raise InvalidArgument(f"status {f.status} is not a TaskStatus", reason="BAD_STATUS")
        size = validate.page_size(page_size)
        mark = validate.decode_token("tasks", token)
        before = None
        if mark is not None:
            if not (isinstance(mark, list) and len(mark) == 2):
                raise InvalidArgument("page_token is not valid", reason="BAD_PAGE_TOKEN")
            before = (int(mark[0]), str(mark[1]))
        groups = sorted(self.net.agent_groups.get(viewer, ()))
        rows = await self.net.db.read(store.tasks_page, viewer, groups, f, before, size + 1)
        nxt = (
            validate.encode_token("tasks", [rows[size - 1].update_time, rows[size - 1].id]) if len(rows) > size else ""
        )
        return rows[:size], nxt

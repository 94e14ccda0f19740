"""Tasks: `agentnet task create|list|show|accept|start|block|done|fail|reject|cancel|reassign|note`."""

from __future__ import annotations

import argparse

from ..argtypes import iso_time, nonneg_int
from .common import Add, acting, make_client, nested
from .output import emit, fmt_task

STATUSES = ["pending", "accepted", "in_progress", "blocked", "done", "failed", "cancelled", "rejected"]
ACTIONS = {
    "accept": "accept a task assigned to you",
    "start": "start working on it (in_progress)",
    "block": "mark it blocked",
    "done": "mark it done",
    "fail": "mark it failed",
    "reject": "decline it",
    "cancel": "cancel a task you created",
    "reassign": "give a task you created to another agent",
    "note": "add a note (and/or --result) without changing the status",
}
ACTION_STATUS = {
    "accept": "accepted",
    "start": "in_progress",
    "block": "blocked",
    "done": "done",
    "fail": "failed",
    "reject": "rejected",
    "cancel": "cancelled",
}


def _status_value(name: str) -> int:
    from agentnet.v1 import resources_pb2

    return resources_pb2.TaskStatus.Value("TASK_STATUS_" + name.upper())


async def cmd_task(ns: argparse.Namespace) -> int:
    action = ns.task_cmd
    async with make_client(ns) as c:
        agent = acting(ns)
        if action == "create":
            from agentnet.v1 import resources_pb2

            t = await c.create_task(
                ns.title,
                ns.assignee,
                description=ns.description,
                group_id=ns.group or "",
                priority=resources_pb2.TaskPriority.Value("TASK_PRIORITY_" + ns.priority.upper()),
                due_time=ns.due,
                agent_id=agent,
                client_task_id=ns.id or "",
            )
            emit(ns, t, lambda: print(fmt_task(t)))
        elif action == "list":
            assignee = ns.assignee or ((await c.acting_agent(agent)) if ns.mine else "")
            tasks = await c.list_tasks(
                assignee=assignee,
                creator=ns.creator or "",
                status=_status_value(ns.status) if ns.status else 0,
                group_id=ns.group or "",
                agent_id=agent,
            )
            emit(ns, tasks, lambda: print("\n".join(fmt_task(t) for t in tasks)) if tasks else None)
        elif action == "show":
            t = await c.get_task(ns.task_id, agent)
            emit(ns, t, lambda: print(fmt_task(t, history=True)))
        else:
            status = _status_value(ACTION_STATUS[action]) if action in ACTION_STATUS else 0
            t = await c.update_task(
                ns.task_id,
                status=status,
                assignee=getattr(ns, "assignee", "") or "",
                note=ns.note,
                result=ns.result or "",
                expected_version=ns.version,
                agent_id=agent,
            )
            emit(ns, t, lambda: print(fmt_task(t)))
    return 0


def register(add: Add) -> None:
    p = add("task", cmd_task, "create, list, show and move tasks")
    sub = p.add_subparsers(dest="task_cmd", required=True, metavar="action")
    t = nested(sub, "create", "create a task for an agent")
    t.add_argument("title")
    t.add_argument("--assignee", required=True)
    t.add_argument("--group", help="the task's group: its members see every change")
    t.add_argument("--description", default="")
    t.add_argument("--priority", choices=["low", "normal", "high", "urgent"], default="normal")
    t.add_argument("--due", type=iso_time, help="due time, ISO 8601 with a zone (e.g. 2026-12-01T18:00:00+08:00)")
    t.add_argument("--id", help="client_task_id (retrying with the same id never creates twice)")
    t = nested(sub, "list", "list tasks you can see")
    t.add_argument("--assignee")
    t.add_argument("--creator")
    t.add_argument("--status", choices=STATUSES)
    t.add_argument("--group")
    t.add_argument("--mine", action="store_true", help="only tasks assigned to you")
    t = nested(sub, "show", "show a task with its history")
    t.add_argument("task_id")
    for action, helptext in ACTIONS.items():
        t = nested(sub, action, helptext)
        t.add_argument("task_id")
        if action == "reassign":
            t.add_argument("assignee")
        t.add_argument("--note", default="")
        t.add_argument("--result", help="result text (assignee)")
        t.add_argument("--version", type=nonneg_int, default=0, help="apply only at this version (else ABORTED)")

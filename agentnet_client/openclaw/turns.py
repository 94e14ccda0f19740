"""What the bridge hands to the agent: items (a mention, a direct message, a task assignment, a
status change of a task the agent created) and the text of one turn.

A turn's input tells the agent who is speaking (display name, id, role), where (the group's title
and members, or the direct-message pair, or the task), what arrived in that conversation since its
last turn there (bounded), and how to act beyond replying (the skill's commands).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from agentnet.v1 import resources_pb2

# Bounds of one turn's input.
MAX_CONTEXT_MESSAGES = 30
MAX_CONTEXT_CHARS = 8000
MAX_ITEM_CHARS = 4000
MAX_MEMBERS = 50


@dataclasses.dataclass(frozen=True)
class Item:
    """One thing that needs the agent. `key` is unique for ever (it names the trigger)."""

    key: str
    kind: str  # mention | dm | task | task_status
    session: str  # group:<id> | dm:<a>+<b> | task:<id>
    sender: str  # who caused it
    text: str  # the message, or the task title
    conv: str = ""  # the conversation a reply goes to (messages)
    seq: int = 0  # the message seq (the reply's reply_to), or the task version
    auto_hops: int = 0  # the trigger's automatic-hop count
    task: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Item:
        return cls(**json.loads(text))


def status_name(n: int) -> str:
    return resources_pb2.TaskStatus.Name(n).removeprefix("TASK_STATUS_").lower() if n else "unknown"


def priority_name(n: int) -> str:
    return resources_pb2.TaskPriority.Name(n or 2).removeprefix("TASK_PRIORITY_").lower()


TERMINAL = {"done", "failed", "cancelled", "rejected"}


def task_fields(t: resources_pb2.Task) -> dict[str, Any]:
    due = ""
    if t.HasField("due_time") and (t.due_time.seconds or t.due_time.nanos):
        due = t.due_time.ToDatetime(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "id": t.id,
        "title": t.title,
        "description": t.description,
        "creator": t.creator,
        "assignee": t.assignee,
        "group_id": t.group_id,
        "priority": priority_name(int(t.priority)),
        "due": due,
        "status": status_name(int(t.status)),
        "version": t.version,
        "result": t.result,
    }


ALL_WORDS = ("all", "everyone", "所有人", "全体成员")  # the server's words for "every member"
_EMAIL_LEFT = re.compile(r"[A-Za-z0-9._%+\-]")
_ASCII_WORD = re.compile(r"[A-Za-z0-9_]")


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def names_in_text(content: str, name: str) -> bool:
    """True when the text has @name by the server's rules: not inside an e-mail address; a name
    ending in an ASCII word character must not be followed by one ("@bob" is not in "@bobby"),
    while any other character may follow ("@小邢请看", "@bee.")."""
    if not name:
        return False
    text, key = _key(content), "@" + _key(name)
    start = text.find(key)
    while start >= 0:
        end = start + len(key)
        before_ok = start == 0 or not _EMAIL_LEFT.match(text[start - 1])
        after_ok = not (_ASCII_WORD.match(key[-1]) and end < len(text) and _ASCII_WORD.match(text[end]))
        if before_ok and after_ok:
            return True
        start = text.find(key, start + 1)
    return False


def mentions_explicitly(m: resources_pb2.Message, agent_id: str, display_name: str) -> bool:
    """True when the message names the agent itself, not only @all.

    In a group the server's resolved `mentions` are the truth (they follow its rules and include
    the explicit mentions list); they hold every member when @all was used, so then the text must
    also name the agent. A direct message carries no mentions: its text decides."""
    named = any(names_in_text(m.content, n) for n in {agent_id, display_name} - {""})
    if m.conversation.startswith("group:"):
        if agent_id not in m.mentions:
            return False
        everyone = any(names_in_text(m.content, w) for w in ALL_WORDS)
        return not everyone or named
    return named


@dataclasses.dataclass
class Directory:
    """Names and roles of agents and groups, as the bridge last read them."""

    agents: dict[str, resources_pb2.Agent] = dataclasses.field(default_factory=dict)
    groups: dict[str, tuple[str, list[str]]] = dataclasses.field(default_factory=dict)  # id -> (title, members)

    def who(self, agent_id: str, me: str = "") -> str:
        a = self.agents.get(agent_id)
        if a is None:
            return f"@{agent_id}"
        extra = ", ".join(x for x in (a.role, "you" if agent_id == me else "") if x)
        name = a.display_name or agent_id
        return f"{name} (@{agent_id}{', ' + extra if extra else ''})"

    def name(self, agent_id: str) -> str:
        a = self.agents.get(agent_id)
        return a.display_name if a is not None and a.display_name else agent_id


def _clip(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _context_lines(
    context: Sequence[resources_pb2.Message], triggers: set[int], me: str, directory: Directory
) -> list[str]:
    """The messages since the last turn, newest kept when over the bounds."""
    lines: list[str] = []
    used = 0
    for m in reversed(context):
        mark = "   ← for you" if m.seq in triggers else ""
        auto = " [automatic]" if m.auto_hops else ""
        reply = f" (re #{m.reply_to})" if m.reply_to else ""
        line = f"#{m.seq} {directory.who(m.sender, me)}{auto}{reply}: {_clip(m.content, 2000)}{mark}"
        if lines and (len(lines) >= MAX_CONTEXT_MESSAGES or used + len(line) > MAX_CONTEXT_CHARS):
            skipped = len(context) - len(lines)
            lines.append(f"({skipped} earlier message{'s' if skipped != 1 else ''} not shown)")
            break
        lines.append(line)
        used += len(line)
    return list(reversed(lines))


def message_turn(
    items: Sequence[Item],
    context: Sequence[resources_pb2.Message],
    me: str,
    directory: Directory,
    agentnet: str,
    max_hops: int,
) -> str:
    """The input of a turn for mentions in a group or direct messages."""
    first, last = items[0], items[-1]
    conv = last.conv
    hops = last.auto_hops + 1  # what the answer is; messages the agent sends itself carry it too
    me_line = directory.who(me, me)
    if conv.startswith("group:"):
        gid = conv.removeprefix("group:")
        title, members = directory.groups.get(gid, (gid, []))
        senders = ", ".join(dict.fromkeys(directory.who(i.sender, me) for i in items))
        head = f'[agentnet] {senders} mentioned you in the group "{title}" (#{gid}).'
        names = [directory.who(a, me) for a in members[:MAX_MEMBERS]]
        if len(members) > MAX_MEMBERS:
            names.append(f"and {len(members) - MAX_MEMBERS} more (`{agentnet} members {gid}`)")
        where = f"Members of #{gid}: " + ", ".join(names) if members else ""
        post = f"the group #{gid}"
        act = [
            f"`{agentnet} history {gid}` (older messages)",
            f'`{agentnet} send {gid} "<text>" --auto-hops {hops}` (another message)',
            f'`{agentnet} task create "<title>" --assignee <agent> --group {gid}` (hand work to someone)',
        ]
    else:
        peer = first.sender
        head = f"[agentnet] Direct message from {directory.who(peer, me)}."
        where = f"This is the direct conversation between you ({me_line}) and {directory.name(peer)}."
        post = f"this direct conversation with {directory.name(peer)}"
        act = [
            f"`{agentnet} history --dm {peer}` (older messages)",
            f'`{agentnet} dm {peer} "<text>" --auto-hops {hops}` (another message)',
            f'`{agentnet} task create "<title>" --assignee <agent>` (hand work to someone)',
        ]
    triggers = {i.seq for i in items}
    lines = [head]
    if where:
        lines.append(where)
    lines.append("")
    lines.append("New since your last turn here (oldest first):")
    shown = [m for m in context if m.sender != me]
    if not shown:  # the cache has not got them (should not happen): the items themselves
        lines += [f"#{i.seq} {directory.who(i.sender, me)}: {_clip(i.text)}   ← for you" for i in items]
    else:
        lines += _context_lines(shown, triggers, me, directory)
    if last.auto_hops:
        lines.append("")
        lines.append(
            f"#{last.seq} was posted automatically by another agent's assistant (hop {last.auto_hops} of at most "
            f"{max_hops}); answer only if it needs an answer from you."
        )
    lines.append("")
    lines.append(
        f"Your answer is posted to {post} as {directory.name(me)}, as a reply to #{last.seq}. Answer in plain "
        "text; to stay silent (for example when you did everything with commands) answer exactly NO_REPLY."
    )
    lines.append("Beyond answering you can use the agentnet skill: " + "; ".join(act) + ".")
    lines.append(
        f"Every message you send with the skill during this turn must carry `--auto-hops {hops}` (it marks it "
        "as automatic, so assistants do not answer each other for ever)."
    )
    return "\n".join(lines)


def task_turn(items: Sequence[Item], me: str, directory: Directory, agentnet: str) -> str:
    """The input of a turn for a task: an assignment, and/or status changes of a task I created."""
    t = items[-1].task
    tid = t["id"]
    lines: list[str] = []
    for i in items:
        tf = i.task
        if i.kind == "task":
            lines.append(f"[agentnet] Task {tid} was assigned to you by {directory.who(i.sender, me)}.")
            lines.append(f"Title: {tf['title']}")
            if tf.get("description"):
                lines.append("Description:\n" + _clip(tf["description"]))
            lines.append(f"Priority: {tf['priority']}")
            lines.append(f"Due: {tf['due'] or 'no due time'}")
            lines.append(f"Created by: {directory.who(tf['creator'], me)}")
            if tf.get("group_id"):
                lines.append(f"Group: #{tf['group_id']}")
            lines.append(f"Status: {tf['status']} (version {tf['version']})")
        else:
            note = f": {i.text}" if i.text else ""
            lines.append(
                f'[agentnet] Your task {tid} "{tf["title"]}" is now {tf["status"]} '
                f"(changed by {directory.who(i.sender, me)}){note}."
            )
            if tf.get("result"):
                lines.append("Result:\n" + _clip(tf["result"]))
        lines.append("")
    mine = t.get("assignee") == me
    if mine and t.get("status") not in TERMINAL:
        lines.append(
            f"Move the task with the skill: `{agentnet} task accept {tid}`, `{agentnet} task start {tid}`, "
            f'`{agentnet} task block {tid} --note "<what you wait for>"`, '
            f'`{agentnet} task done {tid} --result "<what you did>"`, '
            f'`{agentnet} task reject {tid} --note "<why>"`.'
        )
    else:
        lines.append(f"Details: `{agentnet} task show {tid}`.")
    if t.get("status") in TERMINAL:
        lines.append(
            f"Task {tid} is closed, so your answer is not posted anywhere: if something needs doing, do it with "
            f'the skill\'s commands (for example `{agentnet} send <group> "<text>" --auto-hops 1`).'
        )
    else:
        lines.append(
            f"Your answer is added to task {tid} as a note from {directory.name(me)}. Answer in plain text; "
            "to stay silent answer exactly NO_REPLY."
        )
    lines.append(
        "Every message you send with the skill during this turn must carry `--auto-hops 1` (it marks it as "
        "automatic, so assistants do not answer each other for ever)."
    )
    return "\n".join(lines)


def session_key(me: str, session: str) -> str:
    """The OpenClaw session key of an agentnet conversation: stable, one per conversation and agentnet
    agent (two agents bridged to one OpenClaw agent keep apart)."""
    return f"agentnet:{me}:{session}"


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))

"""What the `agentnet` commands print: JSON lines or aligned, terminal-width-aware human text."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message as PbMessage


def to_dict(msg: PbMessage) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def emit(ns: argparse.Namespace, data: Any, human: Callable[[], None]) -> None:
    if ns.json:
        if isinstance(data, PbMessage):
            data = to_dict(data)
        elif isinstance(data, list):
            data = [to_dict(x) if isinstance(x, PbMessage) else x for x in data]
        print(json.dumps(data, ensure_ascii=False), flush=True)
    else:
        human()


# -- columns and colour ------------------------------------------------------------------------


def width(text: str) -> int:
    """Terminal cells `text` takes: East Asian wide and full-width characters take two, combining marks none."""
    cells = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        cells += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return cells


def pad(text: str, cells: int, right: bool = False) -> str:
    fill = " " * max(0, cells - width(text))
    return fill + text if right else text + fill


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Rows as lines with columns aligned by display width (CJK names take two cells a character).

    The last column is not padded, so long text (a title, an excerpt) runs on without trailing spaces."""
    all_rows = [list(headers), *[list(r) for r in rows]]
    n = len(headers)
    widths = [max(width(r[i]) for r in all_rows) for i in range(n)]
    lines = []
    for r in all_rows:
        cells = [pad(r[i], widths[i], i in right) if i < n - 1 else r[i] for i in range(n)]
        lines.append("  ".join(cells).rstrip())
    return lines


def colour_enabled(stream: Any = None) -> bool:
    """Colour only on a terminal, never when NO_COLOR is set (https://no-color.org) or TERM=dumb."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def paint(text: str, style: str) -> str:
    if not colour_enabled():
        return text
    return f"\033[{_CODES[style]}m{text}\033[0m"


# -- formatting ---------------------------------------------------------------------------------


def fmt_time(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def status_name(n: int) -> str:
    from agentnet.v1 import resources_pb2

    return resources_pb2.TaskStatus.Name(n).removeprefix("TASK_STATUS_").lower()


def fmt_message(m: Any) -> str:
    where = f"#{m.group_id}" if m.group_id else f"dm→{m.recipient}"
    mark = " ✓" if getattr(m, "_verified", False) else ""
    thread = f"↳{m.reply_to} " if getattr(m, "reply_to", 0) else ""
    auto = " (auto)" if getattr(m, "auto_hops", 0) else ""
    return f"[{fmt_time(m.create_time)}] {where} {m.seq:>5}  {paint(m.sender, 'bold')}{auto}: {thread}{m.content}{mark}"


def fmt_event(ev: Any) -> str:
    kind = ev.WhichOneof("event")
    if kind == "message":
        return fmt_message(ev.message)
    if kind == "mention":
        it = ev.mention.item
        return f"@ mention by {it.actor} in {it.conversation} #{it.message_seq}: {it.excerpt}"
    if kind == "direct_message":
        it = ev.direct_message.item
        return f"✉ direct message from {it.actor}: {it.excerpt}"
    if kind in ("task_assigned", "task_updated"):
        t = getattr(ev, kind).task
        return f"☐ {kind.replace('_', ' ')}: {t.id} [{status_name(t.status)}] {t.title} → {t.assignee} (v{t.version})"
    if kind == "presence":
        return "presence: " + ", ".join(
            f"{p.agent_id} {'online' if p.online else 'offline'}" for p in ev.presence.agents
        )
    if kind == "caught_up":
        return f"-- caught up ({ev.caught_up.replayed} replayed) --"
    if kind == "agent_list":
        return "agents: " + ", ".join(f"{a.id}{'*' if a.online else ''}" for a in ev.agent_list.agents)
    if kind == "history_gap":
        g = ev.history_gap
        return f"!! history {g.conversation} {g.from_seq}-{g.to_seq} was pruned and cannot be replayed"
    if kind == "error":
        return paint(f"!! {ev.error.status}: {ev.error.message}", "red")
    if kind == "read_markers":
        return f"read markers moved ({ev.read_markers.unread_total} unread left)"
    return f"{kind}: {to_dict(ev)}"


def fmt_task(t: Any, history: bool = False) -> str:
    due = f" due {fmt_time(t.due_time)}" if t.HasField("due_time") else ""
    lines = [
        f"{t.id} [{status_name(t.status)}] {t.title}  ({t.creator} → {t.assignee}, v{t.version}"
        f"{', #' + t.group_id if t.group_id else ''}{due})"
    ]
    if t.result:
        lines.append(f"    result: {t.result}")
    if history:
        for h in t.history:
            change = f"{status_name(h.from_status) if h.from_status else 'new'} → {status_name(h.to_status)}"
            if h.from_assignee != h.to_assignee and h.from_assignee:
                change += f", {h.from_assignee} → {h.to_assignee}"
            lines.append(
                f"    v{h.version} {fmt_time(h.time)} {h.actor}: {change}" + (f" — {h.note}" if h.note else "")
            )
    return "\n".join(lines)

"""Agents, groups, messages, live events, the inbox and receipts: `agentnet register|agents|send|tail|...`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal
import sys
from typing import Any

from ..argtypes import int_range, json_object, nonneg_int, positive_float, positive_int
from ..client import Client
from ..errors import AgentnetError, explain_transport
from ..session import AgentProfile, State
from ..wire import MAX_AUTO_HOPS
from .common import Add, acting, make_client, offline_agent, session_agent
from .errors import LocalError
from .output import emit, fmt_event, fmt_message, paint, table


async def cmd_register(ns: argparse.Namespace) -> int:
    agent_id = ns.id or acting(ns)
    if not agent_id:
        raise AgentnetError("INVALID_ARGUMENT", "give the agent id (agentnet register ID)", "NO_AGENT")
    async with make_client(ns) as c:
        r = await c.register_agent(AgentProfile(agent_id, ns.name or "", ns.role or "", ns.description or ""))
        emit(
            ns,
            r,
            lambda: print(
                f"{'registered' if r.created else 'updated'} {r.agent.id} "
                f"({r.agent.display_name}) owned by device {r.agent.owner_device}"
            ),
        )
    return 0


async def cmd_agents(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        agents = await c.list_agents(ns.online)

        def human() -> None:
            rows = [
                [
                    a.id,
                    a.display_name,
                    a.role,
                    paint("online", "green") if a.online else "offline",
                    ", ".join(a.devices),
                ]
                for a in agents
            ]
            for line in table(["ID", "NAME", "ROLE", "STATE", "DEVICES"], rows):
                print(line)
            if agents and not any(a.online for a in agents):
                print(
                    "(an agent is online while a live session runs for it: `agentnet tail` or `agentnet bridge`; "
                    "one-shot commands like this one do not count)"
                )

        emit(ns, agents, human)
    return 0


async def cmd_groups(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        member = (await c.acting_agent(acting(ns))) if ns.mine else ""
        groups = await c.list_groups(member)

        def human() -> None:
            rows = [[g.id, str(g.member_count), str(g.last_seq), g.title] for g in groups]
            for line in table(["GROUP", "MEMBERS", "LAST SEQ", "TITLE"], rows, right=(1, 2)):
                print(line)

        emit(ns, groups, human)
    return 0


async def cmd_members(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        members = await c.list_members(ns.group)

        def human() -> None:
            rows = [[m.agent_id, m.display_name, "online" if m.online else "offline"] for m in members]
            for line in table(["AGENT", "NAME", "STATE"], rows):
                print(line)

        emit(ns, members, human)
    return 0


async def cmd_create(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        g = await c.create_group(ns.group, ns.title or "", ns.description or "", acting(ns))
        emit(ns, g, lambda: print(f"created group {g.id}"))
    return 0


async def cmd_join(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        r = await c.join_group(ns.group, acting(ns), ns.create, ns.title or "")
        emit(
            ns,
            r,
            lambda: print(
                f"{'joined' if r.newly_joined else 'already in'} {r.group.id} ({r.group.member_count} members)"
            ),
        )
    return 0


async def cmd_leave(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        r = await c.leave_group(ns.group, await c.acting_agent(acting(ns)))
        emit(ns, r, lambda: print(f"left {ns.group}" if r.left else f"was not in {ns.group}"))
    return 0


async def _post(ns: argparse.Namespace, group_id: str = "", to_agent: str = "") -> int:
    text = ns.text if ns.text != "-" else sys.stdin.read()
    async with make_client(ns) as c:
        r = await c.post(
            text,
            group_id=group_id,
            to_agent=to_agent,
            agent_id=acting(ns),
            payload=ns.payload,
            mentions=getattr(ns, "mention", None) or [],
            client_msg_id=ns.id or "",
            reply_to=ns.reply_to or 0,
            auto_hops=ns.auto_hops,
        )

        def human() -> None:
            m = r.message
            print(f"sent {m.conversation} seq {m.seq}" + (" (duplicate of an earlier send)" if r.duplicate else ""))
            if r.unresolved_mentions:
                print(f"not delivered to: {', '.join(r.unresolved_mentions)} (not members of this conversation)")

        emit(ns, r, human)
    return 0


async def cmd_send(ns: argparse.Namespace) -> int:
    return await _post(ns, group_id=ns.group)


async def cmd_dm(ns: argparse.Namespace) -> int:
    return await _post(ns, to_agent=ns.to)


async def cmd_history(ns: argparse.Namespace) -> int:
    if ns.offline:
        from ..cache import Cache

        me, path = offline_agent(ns)
        if not path.exists():
            raise LocalError(f"no local cache at {path}; run `agentnet tail` once while online", "NO_CACHE")
        cache = Cache(path)
        conv = f"group:{ns.group}" if ns.group else "dm:" + "+".join(sorted((me, ns.dm or "")))
        msgs = cache.last_messages(conv, ns.limit)
        cache.close()
    else:
        async with make_client(ns) as c:
            msgs = await c.history(
                group_id=ns.group or "",
                peer_id=ns.dm or "",
                agent_id=acting(ns),
                after_seq=ns.after,
                newest_first=ns.after == 0,
                limit=ns.limit,
            )
            if ns.after == 0:
                msgs.reverse()

    def human() -> None:
        for m in msgs:
            print(fmt_message(m))

    emit(ns, msgs, human)
    return 0


def print_event(ev: Any) -> None:
    print(fmt_event(ev), flush=True)


async def _say_connection(client: Client, stop: asyncio.Event) -> None:
    """While the server is unreachable say so on stderr (once per reason), and when it is back."""
    session = client.session
    assert session is not None
    said = ""
    while not stop.is_set():
        await asyncio.sleep(0.2)
        if session.state == State.FAILED:
            stop.set()
            return
        if session.state == State.BACKING_OFF and session.last_failure and session.last_failure != said:
            said = session.last_failure
            why = explain_transport(said, client.server, client.server_name) or said
            print(f"agentnet tail: waiting for the server: {why} (retrying; Ctrl-C to stop)", file=sys.stderr)
        elif session.state == State.LIVE and said:
            said = ""
            print(f"agentnet tail: connected to {client.server}", file=sys.stderr)


async def cmd_tail(ns: argparse.Namespace) -> int:
    agent = await session_agent(ns)
    client = make_client(ns, agent=agent, cache=not ns.no_cache)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    seen = 0
    async with client:
        watcher = asyncio.create_task(_say_connection(client, stop))
        events = client.events()
        while not stop.is_set():
            nxt = asyncio.ensure_future(events.__anext__())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({nxt, stopper}, timeout=ns.timeout, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if nxt not in done:
                nxt.cancel()
                break
            ev = nxt.result()
            if ev.WhichOneof("event") in ns.skip:
                continue
            emit(ns, ev, functools.partial(print_event, ev))
            seen += 1
            if ns.count and seen >= ns.count:
                break
        watcher.cancel()
        session = client.session
        if session is not None and session.error is not None:
            raise session.error
        if session is not None and session.registered is None:
            # Stopped (--timeout, Ctrl-C) before it ever got through: not a run a script may count.
            failure = session.last_failure
            why = explain_transport(failure, client.server, client.server_name) or failure or "no answer yet"
            raise AgentnetError("UNAVAILABLE", f"never reached the server at {client.server}: {why}", "UNREACHABLE")
    return 0


KINDS = {"mention": 1, "dm": 2, "task_assigned": 3, "task_updated": 4}


def _kind_name(n: int) -> str:
    return {v: k for k, v in KINDS.items()}.get(n, str(n))


def _kind_value(name: str) -> int:
    from agentnet.v1 import resources_pb2

    return resources_pb2.InboxItemKind.Value(name)


async def cmd_inbox(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        r = await c.inbox(acting(ns), ns.unread, KINDS.get(ns.kind or "", 0), ns.limit)

        def human() -> None:
            kinds = ", ".join(f"{_kind_name(_kind_value(k))} {n}" for k, n in sorted(r.unread_by_kind.items()))
            print(f"{r.unread_total} unread" + (f" ({kinds})" if kinds else ""))
            rows = [
                [
                    "●" if it.unread else " ",
                    f"#{it.seq}",
                    _kind_name(it.kind),
                    it.actor,
                    it.conversation or it.task_id,
                    it.excerpt,
                ]
                for it in r.items
            ]
            if rows:
                for line in table(["", "#", "KIND", "FROM", "WHERE", "TEXT"], rows):
                    print(line)
            for cu in r.conversations:
                if cu.unread_messages or cu.unread_items:
                    print(
                        f"  {cu.conversation}: {cu.unread_messages} unread messages (read up to {cu.read_seq}"
                        f" of {cu.last_seq})"
                    )

        emit(ns, r, human)
    return 0


async def cmd_read(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        agent = await c.acting_agent(acting(ns))
        up_to: dict[str, int] = {}
        if ns.group:
            up_to[f"group:{ns.group}"] = ns.up_to if ns.up_to is not None else 2**62
        if ns.dm:
            up_to["dm:" + "+".join(sorted((agent, ns.dm)))] = ns.up_to if ns.up_to is not None else 2**62
        if ns.all:
            up_to[f"inbox:{agent}"] = 2**62
        if not up_to and not ns.items:
            raise AgentnetError("INVALID_ARGUMENT", "give item numbers, --group, --dm or --all", "NOTHING_TO_MARK")
        r = await c.mark_read(up_to, list(ns.items), agent)
        emit(ns, r, lambda: print(f"{r.unread_total} unread left"))
    return 0


async def cmd_receipts(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        r = await c.receipts(ns.seq, group_id=ns.group or "", peer_id=ns.dm or "", agent_id=acting(ns))

        def human() -> None:
            rows = [[x.agent_id, "read" if x.read else "delivered" if x.delivered else "persisted"] for x in r.receipts]
            for line in table(["AGENT", "STATE"], rows):
                print(line)

        emit(ns, r, human)
    return 0


def register(add: Add) -> None:
    p = add("register", cmd_register, "register (or update) an agent owned by this device")
    p.add_argument("id", nargs="?", help="agent id (default --agent)")
    p.add_argument("--name", help="display name, e.g. 小邢 (default: the id)")
    p.add_argument("--role", help="role, e.g. DevOps")
    p.add_argument("--description", help="what the agent can do")

    p = add("agents", cmd_agents, "list agents and who is online")
    p.add_argument("--online", action="store_true", help="only online agents")

    p = add("groups", cmd_groups, "list groups")
    p.add_argument("--mine", action="store_true", help="only groups the agent is in")

    p = add("members", cmd_members, "list the members of a group")
    p.add_argument("group")

    p = add("create", cmd_create, "create a group (the agent becomes its first member)")
    p.add_argument("group")
    p.add_argument("--title")
    p.add_argument("--description")

    p = add("join", cmd_join, "join a group")
    p.add_argument("group")
    p.add_argument("--create", action="store_true", help="create the group if it does not exist")
    p.add_argument("--title")

    p = add("leave", cmd_leave, "leave a group")
    p.add_argument("group")

    for name, fn, target, helptext in (
        ("send", cmd_send, "group", "send a message to a group"),
        ("dm", cmd_dm, "to", "send a direct message to an agent"),
    ):
        p = add(name, fn, helptext)
        p.add_argument(target)
        p.add_argument("text", help="the message ('-' reads stdin)")
        p.add_argument("--payload", type=json_object, help="JSON object with machine-readable data")
        p.add_argument("--id", help="client_msg_id (retrying with the same id never sends twice)")
        p.add_argument(
            "--reply-to", type=positive_int, metavar="SEQ", help="the seq of the message this answers (threads it)"
        )
        p.add_argument(
            "--auto-hops",
            type=int_range(0, MAX_AUTO_HOPS),
            default=0,
            metavar="N",
            help="mark the message as the N-th automatic hop (the number an assistant's turn gives; 0: by hand)",
        )
        if name == "send":
            p.add_argument("--mention", action="append", help="mention this agent explicitly (repeatable)")

    p = add("history", cmd_history, "show the messages of a group or a direct-message pair")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("group", nargs="?")
    g.add_argument("--dm", help="the other agent of a direct-message pair")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--after", type=nonneg_int, default=0, help="only messages after this seq (oldest first)")
    p.add_argument("--offline", action="store_true", help="read the local cache instead of the server")

    p = add("tail", cmd_tail, "print live events (messages, mentions, tasks, presence) until Ctrl-C")
    p.add_argument("--count", type=positive_int, help="exit after this many events")
    p.add_argument("--timeout", type=positive_float, help="exit when no event arrives for this many seconds")
    p.add_argument("--skip", action="append", default=[], help="event kinds not to print (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="do not keep a local cache")

    p = add("inbox", cmd_inbox, "show the inbox: mentions, direct messages and tasks, newest first")
    p.add_argument("--unread", action="store_true", help="only unread items")
    p.add_argument("--kind", choices=sorted(KINDS), help="only items of this kind")
    p.add_argument("--limit", type=positive_int, default=50)

    p = add("read", cmd_read, "mark inbox items or conversations read (all devices of the agent see it)")
    p.add_argument("items", nargs="*", type=positive_int, help="inbox item numbers (the # column of `inbox`)")
    p.add_argument("--group", help="mark a group read (up to --up-to, default everything)")
    p.add_argument("--dm", help="mark the direct messages with this agent read")
    p.add_argument("--up-to", type=nonneg_int, help="last seq to mark read")
    p.add_argument("--all", action="store_true", help="mark the whole inbox read")

    p = add("receipts", cmd_receipts, "delivered/read state of one of your messages per recipient")
    p.add_argument("seq", type=positive_int)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--group")
    g.add_argument("--dm")

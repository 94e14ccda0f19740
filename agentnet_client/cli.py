"""`agentnet`: the command line for agents, scripts and people.

Settings come from flags or AGENTNET_SERVER, AGENTNET_DEVICE_DIR and AGENTNET_AGENT.
Every command takes --json for machine-readable output.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message as PbMessage

from .argtypes import nonneg_int, positive_int
from .bench import add_arguments as add_bench_arguments
from .bench import cmd_bench
from .client import Client
from .device import DeviceError
from .errors import AgentnetError
from .session import AgentProfile, make_send

Handler = Callable[[argparse.Namespace], Awaitable[int]]


# -- output -------------------------------------------------------------------------------------


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


def _time(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_message(m: Any) -> str:
    where = f"#{m.group_id}" if m.group_id else f"dm→{m.recipient}"
    mark = " ✓" if getattr(m, "_verified", False) else ""
    thread = f"↳{m.reply_to} " if getattr(m, "reply_to", 0) else ""
    auto = " (auto)" if getattr(m, "auto_hops", 0) else ""
    return f"[{_time(m.create_time)}] {where} {m.seq:>5}  {m.sender}{auto}: {thread}{m.content}{mark}"


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
        return f"☐ {kind.replace('_', ' ')}: {t.id} [{_status(t.status)}] {t.title} → {t.assignee} (v{t.version})"
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
        return f"!! {ev.error.status}: {ev.error.message}"
    if kind == "read_markers":
        return f"read markers moved ({ev.read_markers.unread_total} unread left)"
    return f"{kind}: {to_dict(ev)}"


def _status(n: int) -> str:
    from agentnet.v1 import resources_pb2

    return resources_pb2.TaskStatus.Name(n).removeprefix("TASK_STATUS_").lower()


# -- commands -----------------------------------------------------------------------------------


def make_client(ns: argparse.Namespace, session: bool = False, cache: bool | str = False) -> Client:
    agent: AgentProfile | None = None
    if session:
        agent_id = ns.agent or os.environ.get("AGENTNET_AGENT") or ""
        if not agent_id:
            raise AgentnetError("INVALID_ARGUMENT", "this command needs --agent (or AGENTNET_AGENT)", "NO_AGENT")
        agent = AgentProfile(agent_id)
    return Client(ns.server, ns.device_dir, agent, cache=cache, server_name=ns.server_name)


def acting(ns: argparse.Namespace) -> str:
    return ns.agent or os.environ.get("AGENTNET_AGENT") or ""


async def cmd_register(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        agent_id = ns.id or acting(ns)
        if not agent_id:
            raise AgentnetError("INVALID_ARGUMENT", "give the agent id (--agent or positional)", "NO_AGENT")
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
            print(f"{'ID':<24} {'NAME':<16} {'ROLE':<12} {'STATE':<8} DEVICES")
            for a in agents:
                print(
                    f"{a.id:<24} {a.display_name:<16} {a.role:<12} {'online' if a.online else 'offline':<8} "
                    f"{', '.join(a.devices)}"
                )

        emit(ns, agents, human)
    return 0


async def cmd_groups(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        member = (await c.acting_agent(acting(ns))) if ns.mine else ""
        groups = await c.list_groups(member)

        def human() -> None:
            print(f"{'GROUP':<24} {'MEMBERS':>7} {'LAST SEQ':>8}  TITLE")
            for g in groups:
                print(f"{g.id:<24} {g.member_count:>7} {g.last_seq:>8}  {g.title}")

        emit(ns, groups, human)
    return 0


async def cmd_members(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        members = await c.list_members(ns.group)

        def human() -> None:
            for m in members:
                print(f"{m.agent_id:<24} {m.display_name:<16} {'online' if m.online else 'offline'}")

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


def _payload(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentnetError("INVALID_ARGUMENT", f"--payload is not valid JSON: {exc}", "BAD_PAYLOAD") from None
    if not isinstance(value, dict):
        raise AgentnetError("INVALID_ARGUMENT", "--payload must be a JSON object", "BAD_PAYLOAD")
    return value


async def _post(ns: argparse.Namespace, group_id: str = "", to_agent: str = "") -> int:
    text = ns.text if ns.text != "-" else sys.stdin.read()
    async with make_client(ns) as c:
        r = await c.post(
            text,
            group_id=group_id,
            to_agent=to_agent,
            agent_id=acting(ns),
            payload=_payload(ns.payload),
            mentions=getattr(ns, "mention", None) or [],
            client_msg_id=ns.id or "",
            reply_to=ns.reply_to or 0,
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
        client = make_client(ns, session=True, cache=True)
        path = client.cache_path()
        if path is None or not path.exists():
            raise AgentnetError(
                "FAILED_PRECONDITION", f"no local cache at {path}; run `agentnet tail` first", "NO_CACHE"
            )
        from .cache import Cache

        cache = Cache(path)
        me = client.agent.id if client.agent else ""
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


async def cmd_tail(ns: argparse.Namespace) -> int:
    client = make_client(ns, session=True, cache=not ns.no_cache)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    seen = 0
    async with client:
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
            emit(ns, ev, functools.partial(print, fmt_event(ev), flush=True))
            seen += 1
            if ns.count and seen >= ns.count:
                break
        if client.session is not None and client.session.error is not None:
            raise client.session.error
    return 0


KINDS = {"mention": 1, "dm": 2, "task_assigned": 3, "task_updated": 4}
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


def _kind_name(n: int) -> str:
    return {v: k for k, v in KINDS.items()}.get(n, str(n))


async def cmd_inbox(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        r = await c.inbox(acting(ns), ns.unread, KINDS.get(ns.kind or "", 0), ns.limit)

        def human() -> None:
            kinds = ", ".join(f"{_kind_name(resources_kind(k))} {n}" for k, n in sorted(r.unread_by_kind.items()))
            print(f"{r.unread_total} unread" + (f" ({kinds})" if kinds else ""))
            for it in r.items:
                mark = "●" if it.unread else " "
                where = it.conversation or it.task_id
                print(f"{mark} #{it.seq:<5} {_kind_name(it.kind):<13} {it.actor:<16} {where:<28} {it.excerpt}")
            for cu in r.conversations:
                if cu.unread_messages or cu.unread_items:
                    print(
                        f"  {cu.conversation}: {cu.unread_messages} unread messages (read up to {cu.read_seq}"
                        f" of {cu.last_seq})"
                    )

        emit(ns, r, human)
    return 0


def resources_kind(name: str) -> int:
    from agentnet.v1 import resources_pb2

    return resources_pb2.InboxItemKind.Value(name)


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
            for x in r.receipts:
                state = "read" if x.read else "delivered" if x.delivered else "persisted"
                print(f"{x.agent_id:<24} {state}")

        emit(ns, r, human)
    return 0


def fmt_task(t: Any, history: bool = False) -> str:
    due = f" due {_time(t.due_time)}" if t.HasField("due_time") else ""
    lines = [
        f"{t.id} [{_status(t.status)}] {t.title}  ({t.creator} → {t.assignee}, v{t.version}"
        f"{', #' + t.group_id if t.group_id else ''}{due})"
    ]
    if t.result:
        lines.append(f"    result: {t.result}")
    if history:
        for h in t.history:
            change = f"{_status(h.from_status) if h.from_status else 'new'} → {_status(h.to_status)}"
            if h.from_assignee != h.to_assignee and h.from_assignee:
                change += f", {h.from_assignee} → {h.to_assignee}"
            lines.append(f"    v{h.version} {_time(h.time)} {h.actor}: {change}" + (f" — {h.note}" if h.note else ""))
    return "\n".join(lines)


async def cmd_task(ns: argparse.Namespace) -> int:
    async with make_client(ns) as c:
        agent = acting(ns)
        action = ns.task_cmd
        if action == "create":
            from agentnet.v1 import resources_pb2

            due = dt.datetime.fromisoformat(ns.due) if ns.due else None
            if due is not None and due.tzinfo is None:
                raise AgentnetError("INVALID_ARGUMENT", "--due needs a time zone, e.g. +08:00 or Z", "BAD_DUE")
            t = await c.create_task(
                ns.title,
                ns.assignee,
                description=ns.description,
                group_id=ns.group or "",
                priority=resources_pb2.TaskPriority.Value("TASK_PRIORITY_" + ns.priority.upper()),
                due_time=due,
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


async def cmd_sign(ns: argparse.Namespace) -> int:
    """Offline when --agent (or AGENTNET_AGENT) is given; otherwise asks the server which agent this device has."""
    from .signing import Signer

    text = ns.text if ns.text != "-" else sys.stdin.read()
    sm = make_send(
        text,
        group_id=ns.group or "",
        to_agent=ns.to or "",
        payload=_payload(ns.payload),
        client_msg_id=ns.id or "",
        reply_to=ns.reply_to or 0,
    )
    agent = acting(ns)
    client = make_client(ns)
    if not agent:
        async with client:
            agent = await client.acting_agent()
    Signer(client.device).sign_send(sm, agent)
    if ns.stream:
        body: dict[str, Any] = {"message": to_dict(sm)}
    else:
        body = to_dict(sm)
        if "to_agent" in body:
            body["peer_id"] = body.pop("to_agent")
        if agent:
            body["agent_id"] = agent
    print(json.dumps(body, ensure_ascii=False))
    return 0


async def cmd_enroll_request(ns: argparse.Namespace) -> int:
    """The device side of CSR enrollment: the operator signs request.csr with `agentnet-server enroll`."""
    import os
    import pathlib
    import re

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not re.match(r"^[a-z0-9][a-z0-9._-]{0,63}$", ns.device_id):
        raise AgentnetError(
            "INVALID_ARGUMENT",
            f"device id {ns.device_id!r} is not valid: use 1-64 characters of "
            "a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            "BAD_ID",
        )
    folder = pathlib.Path(ns.out)
    if (folder / "key.pem").exists():
        raise AgentnetError("ALREADY_EXISTS", f"{folder}/key.pem exists; choose another --out", "KEY_EXISTS")
    key = ec.generate_private_key(ec.SECP256R1())  # P-256: TLS refuses Ed25519 keys
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agentnet device"),
                    x509.NameAttribute(NameOID.COMMON_NAME, ns.device_id),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    fd = os.open(folder / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    (folder / "request.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    emit(
        ns,
        {"device_id": ns.device_id, "key": str(folder / "key.pem"), "csr": str(folder / "request.csr")},
        lambda: print(
            f"wrote {folder}/key.pem (0600, stays here) and {folder}/request.csr\n"
            f"send request.csr to the operator, who runs:\n"
            f"  agentnet-server enroll --csr request.csr --device {ns.device_id} --out <dir>\n"
            f"then put the returned cert.pem and ca.pem into {folder}/"
        ),
    )
    return 0


async def cmd_bridge(ns: argparse.Namespace) -> int:
    from .bridge import KINDS, Bridge, BridgeError, HookConfig

    if not ns.hook_url.startswith(("http://", "https://")):
        raise AgentnetError(
            "INVALID_ARGUMENT", "--hook-url must be the gateway's http(s)://.../hooks/agent URL", "BAD_HOOK_URL"
        )
    token = os.environ.get(ns.hook_token_env, "")
    if not token:
        raise AgentnetError("INVALID_ARGUMENT", f"set {ns.hook_token_env} to the gateway's hooks.token", "NO_TOKEN")
    kinds = {k.strip() for k in ns.kinds.split(",") if k.strip()}
    if not kinds or not kinds <= set(KINDS):
        raise AgentnetError("INVALID_ARGUMENT", f"--kinds takes {', '.join(KINDS)}", "BAD_KINDS")
    hook = HookConfig(ns.hook_url, token, ns.openclaw_agent, ns.session_key_prefix, ns.deliver)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("agentnet.client").setLevel(logging.WARNING)
    client = make_client(ns, session=True, cache=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with client:
        try:
            await Bridge(client, hook, kinds).run(stop)
        except BridgeError as exc:
            raise AgentnetError("FAILED_PRECONDITION", str(exc), "BRIDGE_CONFIG") from None
    return 0


async def cmd_skill(ns: argparse.Namespace) -> int:
    import pathlib
    import shutil

    src = pathlib.Path(__file__).parent / "skill"
    if ns.install:
        dest = pathlib.Path(ns.install) / "agentnet"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "SKILL.md", dest / "SKILL.md")
        print(dest)
    else:
        print(src)
    return 0


# -- parser -------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="agentnet", description="agentnet command line")
    ap.add_argument("--server", help="host:port of the server (env AGENTNET_SERVER, default 127.0.0.1:50051)")
    ap.add_argument("--device-dir", help="folder with cert.pem, key.pem, ca.pem (env AGENTNET_DEVICE_DIR)")
    ap.add_argument("--agent", help="the agent to act as (env AGENTNET_AGENT; default: the device's only agent)")
    ap.add_argument("--server-name", help="TLS name to expect when the address is not in the server certificate")
    ap.add_argument("--json", action="store_true", help="machine-readable JSON output")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="command")

    def add(name: str, fn: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

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
        p.add_argument("--payload", help="JSON object with machine-readable data")
        p.add_argument("--id", help="client_msg_id (retrying with the same id never sends twice)")
        p.add_argument(
            "--reply-to", type=positive_int, metavar="SEQ", help="the seq of the message this answers (threads it)"
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
    p.add_argument("--timeout", type=float, help="exit when no event arrives for this many seconds")
    p.add_argument("--skip", action="append", default=[], help="event kinds not to print (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="do not keep a local cache")

    p = add(
        "bench", cmd_bench, "benchmark a throwaway local server against the raw gRPC ceiling (see docs/performance.md)"
    )
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the report as JSON")
    add_bench_arguments(p)

    p = add("sign", cmd_sign, "print a signed send request as JSON, for grpcurl -d or curl -d")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--group", help="a group message")
    g.add_argument("--to", help="a direct message to this agent")
    p.add_argument("text", help="the message ('-' reads stdin)")
    p.add_argument("--payload", help="JSON object with machine-readable data")
    p.add_argument("--id", help="client_msg_id (default: a new random id)")
    p.add_argument("--reply-to", type=positive_int, metavar="SEQ", help="the seq of the message this answers")
    p.add_argument("--stream", action="store_true", help="print a Session stream event instead of a unary request")

    p = add(
        "enroll-request",
        cmd_enroll_request,
        "make a device key and certificate request here; the key never leaves this machine",
    )
    p.add_argument("device_id")
    p.add_argument("--out", required=True, help="device folder to create (key.pem 0600 and request.csr)")

    p = add("bridge", cmd_bridge, "hand mentions, direct messages and tasks to the local OpenClaw gateway")
    p.add_argument(
        "--hook-url",
        default=os.environ.get("AGENTNET_HOOK_URL", ""),
        help="the gateway's /hooks/agent URL (env AGENTNET_HOOK_URL)",
    )
    p.add_argument(
        "--hook-token-env",
        default="AGENTNET_HOOK_TOKEN",
        help="environment variable holding hooks.token (default AGENTNET_HOOK_TOKEN; never a flag, "
        "so it stays out of process listings)",
    )
    p.add_argument("--openclaw-agent", default="", help="agentId to run (default: the gateway's default agent)")
    p.add_argument(
        "--session-key-prefix",
        default="",
        help="send sessionKey=<prefix><conversation> (needs hooks.allowRequestSessionKey)",
    )
    p.add_argument("--deliver", action="store_true", help="let OpenClaw deliver the agent's reply to its channel")
    p.add_argument("--kinds", default="mention,dm,task", help="what to hand over (mention,dm,task)")

    p = add("skill", cmd_skill, "print the OpenClaw skill folder, or install it with --install DIR")
    p.add_argument("--install", help="copy the skill into DIR/agentnet/")

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

    p = add("task", cmd_task, "create, list, show and move tasks")
    tsub = p.add_subparsers(dest="task_cmd", required=True, metavar="action")
    t = tsub.add_parser("create", help="create a task for an agent")
    t.add_argument("title")
    t.add_argument("--assignee", required=True)
    t.add_argument("--group", help="the task's group: its members see every change")
    t.add_argument("--description", default="")
    t.add_argument("--priority", choices=["low", "normal", "high", "urgent"], default="normal")
    t.add_argument("--due", help="due time, ISO 8601 (e.g. 2026-12-01T18:00:00+08:00)")
    t.add_argument("--id", help="client_task_id (retrying with the same id never creates twice)")
    t = tsub.add_parser("list", help="list tasks you can see")
    t.add_argument("--assignee")
    t.add_argument("--creator")
    t.add_argument("--status", choices=STATUSES)
    t.add_argument("--group")
    t.add_argument("--mine", action="store_true", help="only tasks assigned to you")
    t = tsub.add_parser("show", help="show a task with its history")
    t.add_argument("task_id")
    for action, helptext in ACTIONS.items():
        t = tsub.add_parser(action, help=helptext)
        t.add_argument("task_id")
        if action == "reassign":
            t.add_argument("assignee")
        t.add_argument("--note", default="")
        t.add_argument("--result", help="result text (assignee)")
        t.add_argument("--version", type=nonneg_int, default=0, help="apply only at this version (else ABORTED)")

    return ap


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    try:
        return asyncio.run(ns.fn(ns))
    except AgentnetError as exc:
        if ns.json:
            print(
                json.dumps(
                    {"error": {"status": exc.status, "message": exc.message, "reason": exc.reason}}, ensure_ascii=False
                ),
                file=sys.stderr,
            )
        else:
            print(f"agentnet {ns.cmd}: {exc.status}: {exc.message}", file=sys.stderr)
        return 3 if exc.status == "UNAVAILABLE" else 1
    except DeviceError as exc:
        print(f"agentnet {ns.cmd}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Mentions, the unread inbox, receipts and tasks (docs/architecture.md guarantees 6-9) against the real server."""

from __future__ import annotations

import asyncio

import pytest

from agentnet.v1 import resources_pb2
from agentnet_client import AgentnetError, AgentProfile, Client
from tests.conftest import Clients, collect

S = resources_pb2.TaskStatus
MENTION = resources_pb2.INBOX_ITEM_KIND_MENTION


async def team(clients: Clients, group: str = "dev-team") -> tuple[Client, Client, Client]:
    lao = await clients.live("laoxing-vps", "laoxing", "老邢")
    xiao = await clients.live("xiaoxing-mac", "xiaoxing", "小邢")
    jin = await clients.live("xiaojin-mini", "xiaojin", "小金")
    await lao.join(group, create=True)
    await xiao.join(group)
    await jin.join(group)
    return lao, xiao, jin


async def no_event(c: Client, kind: str, wait: float = 0.5) -> None:
    await asyncio.sleep(wait)
    assert c.session is not None
    while (ev := c.session.get_event_nowait()) is not None:
        assert ev.WhichOneof("event") != kind, ev


async def test_cjk_mention_notifies_exactly_that_member(clients: Clients) -> None:
    lao, xiao, jin = await team(clients)
    outsider = await clients.live("d4", "outsider", "局外人")  # not in the group
    ack = await lao.send("@小邢，部署好了吗？顺便看看 bob@example.com", group_id="dev-team")
    assert list(ack.mentioned) == ["xiaoxing"] and list(ack.unresolved_mentions) == []
    [m] = await collect(xiao, "mention", 1)
    assert (m.item.actor, m.item.conversation, m.item.message_seq) == ("laoxing", "group:dev-team", ack.seq)
    assert m.item.kind == MENTION and m.item.unread and m.message.content.startswith("@小邢，")
    await no_event(jin, "mention")
    await no_event(outsider, "mention")
    await no_event(lao, "mention")


async def test_at_all_reaches_every_member_once(clients: Clients) -> None:
    lao, xiao, jin = await team(clients)
    ack = await lao.send("@all standup now @所有人", group_id="dev-team")
    assert sorted(ack.mentioned) == ["xiaojin", "xiaoxing"]
    for c in (xiao, jin):
        [m] = await collect(c, "mention", 1)
        assert m.item.message_seq == ack.seq
        await no_event(c, "mention")
    await no_event(lao, "mention")  # never yourself


async def test_unknown_and_non_member_mentions_are_reported(clients: Clients) -> None:
    lao, _, _ = await team(clients)
    outsider = await clients.live("d4", "outsider", "局外人")
    ack = await lao.send("@nobody and @局外人 and @小邢", group_id="dev-team", mentions=["ghost"])
    assert list(ack.mentioned) == ["xiaoxing"]
    assert list(ack.unresolved_mentions) == ["@nobody", "@局外人", "ghost"]
    await no_event(outsider, "mention")


async def test_offline_agent_sees_mentions_and_tasks_unread_on_both_devices(clients: Clients) -> None:
    lao, xiao, _ = await team(clients)
    # 小邢 also runs on a second device, authorized by its owner device.
    await xiao.stub.AuthorizeDevice(  # type: ignore[union-attr]
        __import__("agentnet.v1.service_pb2", fromlist=["x"]).AuthorizeDeviceRequest(
            agent_id="xiaoxing", device_id="d5"
        )
    )
    await xiao.close()
    for i in range(3):
        await lao.send(f"@小邢 question {i}", group_id="dev-team")
    t1 = await lao.create_task("rotate the keys", "xiaoxing", group_id="dev-team")
    t2 = await lao.create_task("update the runbook", "xiaoxing")
    assert t1.status == S.TASK_STATUS_PENDING and t1.version == 1

    mac = await clients.live("xiaoxing-mac", "xiaoxing")
    mentions = await collect(mac, "mention", 3)
    assert [m.message.content for m in mentions] == [f"@小邢 question {i}" for i in range(3)]
    assigned = await collect(mac, "task_assigned", 2)
    assert [a.task.id for a in assigned] == [t1.id, t2.id]
    assert all(a.item.unread for a in (*mentions, *assigned))

    inbox = await mac.inbox(unread_only=True)
    assert inbox.unread_total == 5
    assert dict(inbox.unread_by_kind) == {"INBOX_ITEM_KIND_MENTION": 3, "INBOX_ITEM_KIND_TASK_ASSIGNED": 2}
    room = {c.conversation: c for c in inbox.conversations}["group:dev-team"]
    assert (room.unread_items, room.unread_messages) == (3, 3)
    assert [i.kind for i in inbox.items][:2] == [resources_pb2.INBOX_ITEM_KIND_TASK_ASSIGNED] * 2  # newest first

    other = await clients.live("d5", "xiaoxing")  # the same agent on its second device
    assert (await other.inbox(unread_only=True)).unread_total == 5
    # Mark read on the MacBook: the conversation up to its last seq, and the two task items.
    assert mac.session is not None
    markers = await mac.session.mark_read({"group:dev-team": 2**40}, [a.item.seq for a in assigned])
    assert markers.unread_total == 0
    [pushed] = await collect(other, "read_markers", 1)
    assert pushed.unread_total == 0
    after = await other.inbox()
    assert after.unread_total == 0 and all(not i.unread for i in after.items)
    room = {c.conversation: c for c in after.conversations}["group:dev-team"]
    assert room.unread_messages == 0 and room.read_seq == room.last_seq
    # Markers only move forward.
    await other.mark_read({"group:dev-team": 1})
    assert {c.conversation: c for c in (await mac.inbox()).conversations}["group:dev-team"].read_seq == room.last_seq


async def test_own_messages_never_count_as_unread(clients: Clients) -> None:
    lao, xiao, _ = await team(clients)
    for i in range(3):
        await lao.send(f"mine {i}", group_id="dev-team")
    await xiao.send("theirs", group_id="dev-team")
    mine = {c.conversation: c for c in (await lao.inbox()).conversations}["group:dev-team"]
    assert mine.unread_messages == 1
    theirs = {c.conversation: c for c in (await xiao.inbox()).conversations}["group:dev-team"]
    assert theirs.unread_messages == 3


async def test_sender_sees_receipts_change(clients: Clients) -> None:
    lao, xiao, jin = await team(clients)
    await jin.close()
    ack = await lao.send("please ack", group_id="dev-team")

    async def states() -> dict[str, tuple[bool, bool, bool]]:
        r = await lao.receipts(ack.seq, group_id="dev-team")
        return {x.agent_id: (x.persisted, x.delivered, x.read) for x in r.receipts}

    await collect(xiao, "message", 1)
    await until_async(lambda s: s["xiaoxing"] == (True, True, False), states)
    assert (await states())["xiaojin"] == (True, False, False)
    await xiao.mark_read({"group:dev-team": ack.seq})
    await until_async(lambda s: s["xiaoxing"] == (True, True, True), states)
    jin2 = await clients.live("xiaojin-mini", "xiaojin")
    await collect(jin2, "message", 1)
    await until_async(lambda s: s["xiaojin"] == (True, True, False), states)
    with pytest.raises(AgentnetError) as err:
        await xiao.receipts(ack.seq, group_id="dev-team")
    assert (err.value.status, err.value.reason) == ("PERMISSION_DENIED", "NOT_SENDER")


async def until_async(pred, fetch, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if pred(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met: {value}")
        await asyncio.sleep(0.05)


async def test_task_life_cycle_live_and_replayed(clients: Clients) -> None:
    lao, xiao, jin = await team(clients)
    watcher = await clients.live("d4", "watcher")
    await watcher.join("dev-team")
    await jin.close()  # offline for the whole life cycle

    t = await lao.create_task(
        "ship v2",
        "xiaoxing",
        group_id="dev-team",
        description="release notes too",
        priority=resources_pb2.TASK_PRIORITY_HIGH,
    )
    steps = [
        (xiao, S.TASK_STATUS_ACCEPTED, "on it"),
        (xiao, S.TASK_STATUS_IN_PROGRESS, ""),
        (xiao, S.TASK_STATUS_BLOCKED, "waiting for CI"),
        (xiao, S.TASK_STATUS_IN_PROGRESS, "CI is back"),
        (xiao, S.TASK_STATUS_DONE, "shipped"),
    ]
    version = t.version
    for who, status, note in steps:
        t = await who.update_task(t.id, status=status, note=note, expected_version=version)
        version = t.version
    assert (t.status, t.version) == (S.TASK_STATUS_DONE, 6)
    expected = [S.TASK_STATUS_PENDING] + [s for _, s, _ in steps]

    async def seen(c: Client) -> list[int]:
        first = await collect(c, "task_assigned", 1)
        rest = await collect(c, "task_updated", 5)
        events = [*first, *rest]
        assert [e.task.version for e in events] == list(range(1, 7))
        assert all(e.task.id == t.id for e in events)
        return [e.change.to_status for e in events]

    for c in (lao, xiao, watcher):
        assert await seen(c) == expected
    jin2 = await clients.live("xiaojin-mini", "xiaojin")
    assert await seen(jin2) == expected  # replayed in order after reconnecting

    full = await watcher.get_task(t.id)
    assert [h.to_status for h in full.history] == expected
    assert [h.note for h in full.history] == ["created", "on it", "", "waiting for CI", "CI is back", "shipped"]
    assert full.priority == resources_pb2.TASK_PRIORITY_HIGH
    # Inbox: the assignee's own changes are not unread; the creator's inbox has the updates.
    mine = await xiao.inbox(unread_only=True, kind=resources_pb2.INBOX_ITEM_KIND_TASK_UPDATED)
    assert len(mine.items) == 0 and dict(mine.unread_by_kind) == {"INBOX_ITEM_KIND_TASK_ASSIGNED": 1}
    creator = await lao.inbox(unread_only=True, kind=resources_pb2.INBOX_ITEM_KIND_TASK_UPDATED)
    assert len(creator.items) == 5


async def test_task_rules(clients: Clients) -> None:
    lao, xiao, jin = await team(clients)
    t = await lao.create_task("fix the build", "xiaoxing", group_id="dev-team")

    async def refused(c: Client, code: str, reason: str, **kw) -> AgentnetError:  # type: ignore[no-untyped-def]
        with pytest.raises(AgentnetError) as err:
            await c.update_task(t.id, **kw)
        assert (err.value.status, err.value.reason) == (code, reason), err.value
        return err.value

    await refused(jin, "PERMISSION_DENIED", "NOT_INVOLVED", status=S.TASK_STATUS_ACCEPTED)
    await refused(lao, "PERMISSION_DENIED", "NOT_ASSIGNEE", status=S.TASK_STATUS_ACCEPTED)
    await refused(xiao, "PERMISSION_DENIED", "NOT_CREATOR", status=S.TASK_STATUS_CANCELLED)
    await refused(xiao, "PERMISSION_DENIED", "NOT_CREATOR", assignee="xiaojin")
    await refused(xiao, "FAILED_PRECONDITION", "INVALID_TRANSITION", status=S.TASK_STATUS_DONE)
    await refused(xiao, "INVALID_ARGUMENT", "EMPTY_UPDATE")
    t = await xiao.update_task(t.id, status=S.TASK_STATUS_ACCEPTED)
    stale = await refused(xiao, "ABORTED", "VERSION_MISMATCH", status=S.TASK_STATUS_IN_PROGRESS, expected_version=1)
    assert stale.metadata["current_version"] == "2"
    # Reassign (creator): back to pending for the new assignee, who gets task_assigned.
    t = await lao.update_task(t.id, assignee="xiaojin", note="小邢 is busy")
    assert (t.assignee, t.status, t.version) == ("xiaojin", S.TASK_STATUS_PENDING, 3)
    created, assigned = await collect(jin, "task_assigned", 2)  # as a group member, then as the assignee
    assert created.change.to_assignee == "xiaoxing" and not created.item.in_inbox
    assert assigned.task.id == t.id and assigned.change.from_assignee == "xiaoxing" and assigned.item.in_inbox
    await refused(xiao, "PERMISSION_DENIED", "NOT_INVOLVED", status=S.TASK_STATUS_IN_PROGRESS)
    t = await jin.update_task(t.id, status=S.TASK_STATUS_REJECTED, note="not my area")
    for who, kw in (
        (jin, {"status": S.TASK_STATUS_ACCEPTED}),
        (lao, {"status": S.TASK_STATUS_CANCELLED}),
        (lao, {"note": "please?"}),
        (lao, {"assignee": "laoxing"}),
    ):
        await refused(who, "FAILED_PRECONDITION", "TASK_TERMINAL", **kw)

    with pytest.raises(AgentnetError) as err:
        await lao.create_task("x", "outsider-agent", group_id="dev-team")
    assert err.value.status == "NOT_FOUND"
    outsider = await clients.live("d4", "outsider")
    with pytest.raises(AgentnetError) as err:
        await lao.create_task("x", "outsider", group_id="dev-team")
    assert err.value.reason == "ASSIGNEE_NOT_A_MEMBER"
    with pytest.raises(AgentnetError) as err:
        await outsider.get_task(t.id)
    assert err.value.reason == "NOT_VISIBLE"
    with pytest.raises(AgentnetError) as err:
        await lao.create_task("  ", "xiaoxing")
    assert err.value.status == "INVALID_ARGUMENT"
    with pytest.raises(AgentnetError) as err:
        await lao.get_task("t-nothex")
    assert err.value.reason == "BAD_TASK_ID"


async def test_create_task_is_idempotent_and_lists_filter(clients: Clients) -> None:
    lao, xiao, jin = await team(clients)
    a = await lao.create_task("a", "xiaoxing", client_task_id="same-id")
    again = await lao.create_task("a", "xiaoxing", client_task_id="same-id")
    assert again.id == a.id and again.version == 1
    with pytest.raises(AgentnetError) as err:
        await lao.create_task("b", "xiaoxing", client_task_id="same-id")
    assert err.value.reason == "CLIENT_TASK_ID_REUSED"
    b = await lao.create_task("b", "xiaojin", group_id="dev-team")
    c = await xiao.create_task("c", "laoxing")
    await xiao.update_task(a.id, status=S.TASK_STATUS_ACCEPTED)
    ids = lambda ts: {t.id for t in ts}  # noqa: E731
    assert ids(await lao.list_tasks()) == {a.id, b.id, c.id}
    assert ids(await lao.list_tasks(assignee="xiaoxing")) == {a.id}
    assert ids(await lao.list_tasks(status=S.TASK_STATUS_ACCEPTED)) == {a.id}
    assert ids(await jin.list_tasks()) == {b.id}  # sees group tasks and its own, not others' private ones
    assert ids(await xiao.list_tasks(group_id="dev-team")) == {b.id}
    newest = await lao.list_tasks(limit=1)
    assert newest[0].id == a.id  # most recently updated first


async def test_cli_inbox_read_and_task(clients: Clients) -> None:
    from tests.test_tools import run_cli

    lao, _, _ = await team(clients)
    await lao.send("@小邢 see the task", group_id="dev-team")
    server = clients.server

    def cli(device: str, *args: str) -> str:
        r = run_cli(server, device, *args)
        assert r.returncode == 0, r.stderr
        return r.stdout

    import json

    out = json.loads(
        cli(
            "laoxing-vps",
            "--json",
            "task",
            "create",
            "write the postmortem",
            "--assignee",
            "xiaoxing",
            "--group",
            "dev-team",
            "--priority",
            "high",
            "--due",
            "2026-12-01T18:00:00+08:00",
        )
    )
    task_id = out["id"]
    assert out["status"] == "TASK_STATUS_PENDING" and out["priority"] == "TASK_PRIORITY_HIGH"
    assert "2 unread" in cli("xiaoxing-mac", "inbox", "--unread")
    assert "[accepted]" in cli("xiaoxing-mac", "task", "accept", task_id, "--note", "mine")
    assert "[in_progress]" in cli("xiaoxing-mac", "task", "start", task_id)
    assert "[done]" in cli("xiaoxing-mac", "task", "done", task_id, "--result", "published")
    shown = cli("laoxing-vps", "task", "show", task_id)
    assert "v4" in shown and "in_progress → done" in shown and "result: published" in shown
    r = run_cli(server, "laoxing-vps", "task", "cancel", task_id)
    assert r.returncode == 1 and "terminal states are final" in r.stderr
    cli("xiaoxing-mac", "read", "--all")
    assert "0 unread" in cli("xiaoxing-mac", "inbox", "--unread")
    assert "xiaoxing" in cli("laoxing-vps", "receipts", "1", "--group", "dev-team")


async def test_join_by_unary_rpc_and_register_profile(clients: Clients) -> None:
    c = await clients.make("laoxing-vps", connect=False)
    r = await c.register_agent(AgentProfile("solo", "独行侠", "Ops", "does everything"))
    assert r.agent.description == "does everything"
    j = await c.join_group("solo-room", create=True)
    assert j.newly_joined and j.group.member_count == 1

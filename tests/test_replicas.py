"""Two server replicas on one PostgreSQL database: agents on different replicas chat, mention,
hand over tasks and resume as if they were on one server (AGENTNET_TEST_POSTGRES)."""

from __future__ import annotations

from typing import Any

import pytest

from agentnet.v1 import resources_pb2
from tests.conftest import Clients, ServerProc, collect

pytestmark = pytest.mark.postgres


@pytest.fixture
def replicas(make_server: Any, pg_database: str) -> tuple[ServerProc, ServerProc]:
    return make_server(db=pg_database), make_server(db=pg_database)


async def test_agents_on_two_replicas_work_as_one_network(replicas: tuple[ServerProc, ServerProc]) -> None:
    one, two = replicas
    cs = Clients(one.certs, one, one.workdir)
    try:
        lao = await cs.live("laoxing-vps", "laoxing", "老邢", addr=one.addr)
        xiao = await cs.live("xiaoxing-mac", "xiaoxing", "小邢", addr=two.addr)
        await lao.join("dev-team", create=True)
        await xiao.join("dev-team")  # joined through the other replica
        # Mentions resolve on replica one against a member who joined on replica two.
        ack = await lao.send("@小邢 ping from the VPS", group_id="dev-team")
        assert list(ack.mentioned) == ["xiaoxing"]
        [m] = await collect(xiao, "message", 1, conv="group:dev-team")
        assert m.content == "@小邢 ping from the VPS"
        [mention] = await collect(xiao, "mention", 1)
        assert mention.item.message_seq == ack.seq
        back = await xiao.send("pong", group_id="dev-team")
        assert back.seq == ack.seq + 1  # one gap-free order across replicas
        got = await collect(lao, "message", 2, conv="group:dev-team")
        assert [x.content for x in got] == ["@小邢 ping from the VPS", "pong"]
        await xiao.send("direct", to_agent="laoxing")
        [dm] = await collect(lao, "message", 1, conv="dm:laoxing+xiaoxing")
        assert dm.content == "direct"
        task = await lao.create_task("check replica lag", "xiaoxing", group_id="dev-team")
        [assigned] = await collect(xiao, "task_assigned", 1)
        assert assigned.task.id == task.id
        await xiao.update_task(task.id, status=resources_pb2.TASK_STATUS_ACCEPTED)
        updates = await collect(lao, "task_updated", 1)
        assert updates[0].change.to_status == resources_pb2.TASK_STATUS_ACCEPTED

        # Offline on replica two, back through replica one: everything missed, in order.
        await xiao.close()
        for i in range(20):
            await lao.send(f"while away {i}", group_id="dev-team")
        xiao2 = await cs.live("xiaoxing-mac", "xiaoxing", addr=one.addr)
        got = await collect(xiao2, "message", 20, conv="group:dev-team")
        assert [x.content for x in got] == [f"while away {i}" for i in range(20)]
        assert [x.seq for x in got] == list(range(back.seq + 1, back.seq + 21))
    finally:
        await cs.close_all()


async def test_presence_spans_replicas_and_expires_with_a_dead_replica(
    replicas: tuple[ServerProc, ServerProc],
) -> None:
    from tests.conftest import until

    one, two = replicas
    cs = Clients(one.certs, one, one.workdir)
    try:
        watcher = await cs.live("laoxing-vps", "watcher", addr=one.addr)
        far = await cs.live("xiaoxing-mac", "far-away", addr=two.addr)

        def seen_online(agent: str) -> bool | None:
            return watcher.session.presence.get(agent) if watcher.session else None

        await until(lambda: seen_online("far-away") is True, timeout=10)
        assert "far-away" in {a.id for a in await watcher.list_agents(online_only=True)}
        await far.close()
        await until(lambda: seen_online("far-away") is False, timeout=10)
        assert "far-away" not in {a.id for a in await watcher.list_agents(online_only=True)}

        await cs.live("xiaoxing-mac", "far-away", addr=two.addr)
        await until(lambda: seen_online("far-away") is True, timeout=10)
        two.kill()  # no goodbye: replica one forgets it after 3 heartbeat intervals
        await until(lambda: seen_online("far-away") is False, timeout=3 * 1.0 + 3)
    finally:
        await cs.close_all()

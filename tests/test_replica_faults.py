"""Replicas that survive their database (docs/deploy.md): every store connection that dies is
replaced, the replica stops serving until it has resynchronised, and no acknowledged message is
lost or delivered twice. Faults are real: backends terminated on the shared PostgreSQL (only
this test's own database), and a private PostgreSQL cluster stopped and started again.
The longer scenarios carry the `replicas` marker (`make test-replicas`, run by CI)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Clients, ServerProc, collect, postgres_url, until

pytestmark = [pytest.mark.postgres, pytest.mark.fault]


def http_status(srv: ServerProc, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.health_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def terminate(base: str, database: str, srv: ServerProc, kind: str) -> int:
    """pg_terminate_backend of one replica's connections of one kind (writer, read, listen)."""
    import psycopg

    assert srv.proc is not None
    pattern = f"agentnet[{srv.proc.pid}] agentnet-{kind}%"
    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s",
            (database, pattern),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


async def steady_sends(client: Any, group: str, n: int, acked: list[int], pause: float = 0.01) -> None:
    for i in range(n):
        ack = await asyncio.wait_for(client.send(f"{group} {i}", group_id=group), 60)
        acked.append(ack.seq)
        await asyncio.sleep(pause)


async def exactly_once(client: Any, conv: str, acked: list[int]) -> None:
    """The client saw every acknowledged seq of the conversation once, in order, and nothing else."""
    got = await collect(client, "message", len(acked), conv=conv, timeout=30)
    assert [m.seq for m in got] == sorted(acked)
    assert sorted(acked) == list(range(min(acked), min(acked) + len(acked)))
    with pytest.raises(AssertionError):
        await collect(client, "message", 1, conv=conv, timeout=0.5)


@pytest.mark.replicas
async def test_terminated_connections_of_each_kind_lose_nothing(make_server: Any, pg_database: str) -> None:
    base = postgres_url()
    assert base is not None
    database = pg_database.rsplit("/", 1)[1]
    one, two = make_server(db=pg_database), make_server(db=pg_database)
    cs = Clients(one.certs, one, one.workdir)
    try:
        lao = await cs.live("laoxing-vps", "laoxing", addr=one.addr)
        xiao = await cs.live("xiaoxing-mac", "xiaoxing", addr=two.addr)
        jin = await cs.live("xiaojin-mini", "xiaojin", addr=one.addr)
        await lao.join("ops", create=True)
        await xiao.join("ops")
        await jin.join("ops")
        acked: list[int] = []
        # Each kind of connection of the receiving replica, then the sending replica's writer.
        for srv, kind in ((two, "listen"), (two, "read"), (two, "writer"), (one, "writer"), (one, "read")):
            load = asyncio.create_task(steady_sends(lao, "ops", 25, acked))
            await asyncio.sleep(0.15)
            if kind != "read":  # readers connect on demand; the load has started them by now
                assert terminate(base, database, srv, kind) >= 1, kind
            else:
                terminate(base, database, srv, kind)
            await load
        await exactly_once(xiao, "group:ops", acked)
        await exactly_once(jin, "group:ops", acked)
        for srv in (one, two):
            await until(lambda s=srv: http_status(s, "/readyz")[0] == 200, timeout=15)
        status, text = http_status(two, "/metrics")
        assert status == 200
        for kind in ("listen", "reader", "writer"):
            assert f'agentnet_store_reconnects_total{{connection="{kind}"}}' in text, kind
        # Each loss took the replica out of service until it had resynchronised with the store.
        assert _metric(two, "agentnet_resyncs_total") >= 1 and _metric(one, "agentnet_resyncs_total") >= 1
        assert _metric(two, "agentnet_ready") == 1
    finally:
        await cs.close_all()


# -- a private PostgreSQL cluster that the test may stop and start ---------------------------


def _pg_bindir() -> pathlib.Path | None:
    for candidate in sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """initdb + pg_ctl on a free port in a temporary folder; as root, run as the postgres user."""

    def __init__(self, bindir: pathlib.Path) -> None:
        self.bindir = bindir
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="agentnet-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]

    def run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self.run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        import psycopg

        name = f"agentnet_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def private_pg() -> Iterator[Cluster]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = Cluster(bindir)
    cluster.init()
    try:
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(cluster.root, ignore_errors=True)


async def grpc_health(srv: ServerProc, device_dir: pathlib.Path) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from agentnet_client.device import load_device, secure_channel

    channel = secure_channel(srv.addr, load_device(device_dir))
    try:
        resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
    finally:
        await channel.close()


@pytest.mark.replicas
async def test_replicas_recover_from_a_postgresql_restart_under_load(make_server: Any, private_pg: Cluster) -> None:
    url = private_pg.new_database()
    one, two = make_server(db=url), make_server(db=url)
    cs = Clients(one.certs, one, one.workdir)
    try:
        lao = await cs.live("laoxing-vps", "laoxing", addr=one.addr)
        xiao = await cs.live("xiaoxing-mac", "xiaoxing", addr=two.addr)
        jin = await cs.live("xiaojin-mini", "xiaojin", addr=one.addr)
        await lao.join("ops", create=True)
        await xiao.join("ops")
        await jin.join("ops")
        assert await grpc_health(two, cs.device_dir("d4")) == "SERVING"
        acked: list[int] = []
        load = asyncio.create_task(steady_sends(lao, "ops", 80, acked, pause=0.02))
        await until(lambda: len(acked) >= 20, timeout=20)
        private_pg.stop("fast")
        try:
            for srv in (one, two):
                await until(lambda s=srv: http_status(s, "/readyz")[0] == 503, timeout=10)
            assert "not ready" in http_status(two, "/readyz")[1]
            assert await grpc_health(two, cs.device_dir("d4")) == "NOT_SERVING"
            assert http_status(two, "/healthz")[0] == 200  # alive, only not ready
            await asyncio.sleep(1.5)
        finally:
            private_pg.start()
        for srv in (one, two):
            await until(lambda s=srv: http_status(s, "/readyz")[0] == 200, timeout=20)
        assert await grpc_health(two, cs.device_dir("d4")) == "SERVING"
        await load
        await exactly_once(xiao, "group:ops", acked)
        await exactly_once(jin, "group:ops", acked)
        for srv in (one, two):
            assert srv.proc is not None and srv.proc.poll() is None  # recovered without a restart
        text = http_status(one, "/metrics")[1]
        assert 'agentnet_store_errors_total{kind="connection_lost"}' in text
    finally:
        await cs.close_all()


@pytest.mark.replicas
async def test_presence_of_300_agents_with_long_ids_reaches_the_other_replica(
    make_server: Any, pg_database: str
) -> None:
    """300 agents with 64-character ids on one replica: every presence snapshot is larger than
    PostgreSQL's 8000-byte NOTIFY limit, so it must be cut by size; the other replica sees all."""
    flags = {"max_agents_per_device": 0, "max_sessions_per_device": 0, "events_per_second": 0}
    one, two = make_server(db=pg_database, **flags), make_server(db=pg_database, **flags)
    cs = Clients(one.certs, one, one.workdir)
    try:
        watcher = await cs.live("laoxing-vps", "watcher", addr=two.addr)
        ids = [f"agent-{i:03d}-" + "x" * 54 for i in range(300)]
        assert all(len(a) == 64 for a in ids)
        for start in range(0, len(ids), 50):
            await asyncio.gather(
                *(
                    cs.live(DEVICES_FOR_LOAD[i % 3], a, addr=one.addr, event_queue=0)
                    for i, a in enumerate(ids[start : start + 50])
                )
            )

        def online_on_two() -> int:
            seen = watcher.session.presence if watcher.session else {}
            return sum(1 for a in ids if seen.get(a))

        await until(lambda: online_on_two() == len(ids), timeout=20)
        # Snapshots keep them online past three heartbeat intervals (the other replica's expiry).
        await asyncio.sleep(3.5)
        assert online_on_two() == len(ids)
        assert len({a.id for a in await watcher.list_agents(online_only=True)} & set(ids)) == len(ids)
        assert "payload string too long" not in one.logs()
        status, text = http_status(one, "/metrics")
        assert status == 200 and 'agentnet_store_errors_total{kind="notify"}' not in text
    finally:
        await cs.close_all()


DEVICES_FOR_LOAD = ("xiaoxing-mac", "xiaojin-mini", "d4")


async def test_a_locked_conversation_fails_fast_and_others_keep_flowing(make_server: Any, pg_database: str) -> None:
    """Another transaction holds a conversation's row lock for 10 s: sends to it fail with
    UNAVAILABLE within the store deadline (nothing acknowledged), sends elsewhere keep flowing."""
    import grpc
    import psycopg

    from agentnet.v1 import service_pb2, service_pb2_grpc
    from agentnet_client.device import load_device, secure_channel
    from agentnet_client.session import make_send
    from agentnet_client.signing import Signer

    srv = make_server(db=pg_database, store_timeout=3, store_lock_timeout=0.5)
    cs = Clients(srv.certs, srv, srv.workdir)
    device = load_device(cs.device_dir("laoxing-vps"))
    channel = secure_channel(srv.addr, device)

    def signed_request(i: int) -> Any:
        sm = make_send(f"stuck {i}", group_id="stuck", client_msg_id=f"stuck-{i}")
        Signer(device).sign_send(sm, "laoxing")
        return service_pb2.SendGroupMessageRequest(
            group_id="stuck",
            agent_id="laoxing",
            client_msg_id=sm.client_msg_id,
            content=sm.content,
            signature=sm.signature,
            sign_time=sm.sign_time,
        )

    try:
        lao = await cs.live("laoxing-vps", "laoxing")
        xiao = await cs.live("xiaoxing-mac", "xiaoxing")
        await lao.join("stuck", create=True)
        await xiao.join("free", create=True)
        stub = service_pb2_grpc.AgentNetStub(channel)
        locker = await psycopg.AsyncConnection.connect(pg_database)
        try:
            await locker.execute("BEGIN")
            await locker.execute("SELECT 1 FROM conversation WHERE id = 'group:stuck' FOR UPDATE")
            locked_at = asyncio.get_running_loop().time()

            async def stuck_sends() -> list[tuple[str, float]]:
                out = []
                for i in range(4):
                    t0 = asyncio.get_running_loop().time()
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await stub.SendGroupMessage(signed_request(i), timeout=30)
                    out.append((err.value.code().name, asyncio.get_running_loop().time() - t0))
                return out

            async def free_sends() -> list[float]:
                out = []
                for i in range(40):
                    t0 = asyncio.get_running_loop().time()
                    await asyncio.wait_for(xiao.send(f"free {i}", group_id="free"), 30)
                    out.append(asyncio.get_running_loop().time() - t0)
                    await asyncio.sleep(0.05)
                return out

            stuck, free = await asyncio.gather(stuck_sends(), free_sends())
            assert asyncio.get_running_loop().time() - locked_at < 10  # all of it while the lock was held
        finally:
            await locker.execute("ROLLBACK")
            await locker.close()
        print(f"locked conversation: {stuck}; unrelated sends p50 {sorted(free)[20]:.3f} s max {max(free):.3f} s")
        assert [code for code, _ in stuck] == ["UNAVAILABLE"] * 4
        assert max(t for _, t in stuck) < 3 + 2  # the store deadline, with slack for a loaded machine
        assert len(free) == 40
        assert sorted(free)[len(free) // 2] < 1.0  # the median unrelated send did not wait for the lock
        # Nothing of the refused sends was stored; once the lock is gone the conversation works.
        ack = await asyncio.wait_for(lao.send("after the lock", group_id="stuck"), 30)
        assert ack.seq == 1
    finally:
        await channel.close()
        await cs.close_all()


@pytest.mark.replicas
async def test_clients_with_several_addresses_fail_over_within_2s_and_drift_back(
    make_server: Any, pg_database: str
) -> None:
    """Three replicas; every client is given all three addresses and starts at its own. One
    replica is killed with SIGKILL: its clients are live on another within 2 s, and no message
    is lost or delivered twice. When it is back, its clients move home again (rebalance)."""
    replicas = [make_server(db=pg_database) for _ in range(3)]
    addrs = ",".join(r.addr for r in replicas)
    cs = Clients(replicas[0].certs, replicas[0], replicas[0].workdir)
    try:
        devices = ("laoxing-vps", "xiaoxing-mac", "xiaojin-mini", "d4", "d5", "d6")
        members = [await cs.live(d, f"member-{i}", addr=addrs, rebalance=1.0) for i, d in enumerate(devices)]
        await members[0].join("team", create=True)
        for m in members[1:]:
            await m.join("team")

        def where(c: Any) -> str:
            return str(c.session.target.addr) if c.session and c.session.target else ""

        homes = {where(c) for c in members}
        assert len(homes) >= 2, homes  # clients spread over the replicas by identity
        victim = next(r for r in replicas if r.addr in homes)
        on_victim = [c for c in members if where(c) == victim.addr]
        sender = next(c for c in members if where(c) != victim.addr)
        acked: list[int] = []
        load = asyncio.create_task(steady_sends(sender, "team", 40, acked, pause=0.02))
        await until(lambda: len(acked) >= 10, timeout=20)
        victim.kill()
        killed_at = asyncio.get_running_loop().time()
        await until(
            lambda: all(c.state.value == "live" and where(c) not in ("", victim.addr) for c in on_victim), timeout=10
        )
        moved_in = asyncio.get_running_loop().time() - killed_at
        print(f"{len(on_victim)} client(s) live on another replica {moved_in:.3f} s after kill -9")
        assert moved_in < 2.0 + 1.0  # 2 s, with slack for a loaded machine
        await load
        for c in members:
            await exactly_once(c, "group:team", acked)

        victim.start()  # same port
        await until(lambda: all(where(c) == victim.addr and c.state.value == "live" for c in on_victim), timeout=20)
        after: list[int] = []
        await steady_sends(sender, "team", 5, after)
        for c in members:
            got = await collect(c, "message", 5, conv="group:team", timeout=20)
            assert [m.seq for m in got] == after
    finally:
        await cs.close_all()


HAPROXY_CFG = pathlib.Path(__file__).resolve().parent.parent / "contrib" / "haproxy" / "agentnet.cfg"


def start_haproxy(binary: str, env: dict[str, str], log_path: pathlib.Path) -> tuple[subprocess.Popen[bytes], Any]:
    """The repository's HAProxy config, in the foreground, logging to a file."""
    log = open(log_path, "wb")  # noqa: SIM115 - the caller closes it
    return subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CFG)], env=env, stdout=log, stderr=subprocess.STDOUT), log


def _metric(srv: ServerProc, name: str) -> float:
    for line in http_status(srv, "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.replicas
async def test_haproxy_passes_client_certificates_through_and_drops_an_unready_replica(
    make_server: Any, private_pg: Cluster, tmp_path: pathlib.Path
) -> None:
    """HAProxy (Debian's) in TCP mode with the repository's config in front of two replicas:
    devices are identified by their own certificates through it, and a replica whose /readyz
    fails (its store stopped) is taken out: every client ends up live on the other one."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (`make system-deps` installs it)")
    flaky = make_server(db=private_pg.new_database(), store_outage_grace=1.0)
    steady = make_server()  # its own SQLite store: only the route is under test here
    lb = f"127.0.0.1:{_free_port()}"
    env = dict(
        os.environ,
        AGENTNET_LB_BIND=lb,
        AGENTNET_REPLICA1=flaky.addr,
        AGENTNET_REPLICA1_HEALTH_PORT=str(flaky.health_port),
        AGENTNET_REPLICA2=steady.addr,
        AGENTNET_REPLICA2_HEALTH_PORT=str(steady.health_port),
    )
    proxy, log = start_haproxy(haproxy, env, tmp_path / "haproxy.log")
    cs = Clients(steady.certs, steady, steady.workdir)
    stopped = False
    try:
        await asyncio.sleep(1.5)  # two good checks of each replica
        assert proxy.poll() is None, (tmp_path / "haproxy.log").read_text()
        devices = ("laoxing-vps", "xiaoxing-mac", "xiaojin-mini", "d4", "d5", "d6")
        members = [await cs.live(d, f"lb-{i}", addr=lb) for i, d in enumerate(devices)]
        for i, m in enumerate(members):
            # The server took the identity from the certificate that came through the proxy.
            assert m.session is not None and m.session.registered is not None
            agent = await m.get_agent(f"lb-{i}")
            assert devices[i] in agent.devices
        assert _metric(flaky, "agentnet_sessions") >= 1 and _metric(steady, "agentnet_sessions") >= 1
        private_pg.stop("fast")
        stopped = True
        await until(lambda: http_status(flaky, "/readyz")[0] == 503, timeout=10)
        await until(lambda: _metric(steady, "agentnet_sessions") == len(members), timeout=20)
        await until(lambda: all(m.state.value == "live" for m in members), timeout=10)
        assert _metric(flaky, "agentnet_sessions") == 0
        # New connections avoid it too: with leastconn an idle replica would be first in line,
        # so these land on the steady one only because HAProxy took the other one out.
        through_lb = ServerProc(steady.certs, "", tmp_path)
        through_lb.port = int(lb.rsplit(":", 1)[1])
        for _ in range(4):
            assert await grpc_health(through_lb, cs.device_dir("d4")) == "SERVING"
        ack = await asyncio.wait_for(members[0].send("still here", to_agent="lb-1"), 20)
        assert ack.seq >= 1
    finally:
        await cs.close_all()
        proxy.terminate()
        proxy.wait(10)
        log.close()
        if stopped:
            private_pg.start()


@pytest.mark.replicas
def test_bench_replicas_scenario_loses_nothing(pg_database: str) -> None:
    """`agentnet bench --scenario replicas` at toy sizes: three replicas on PostgreSQL, members
    spread over them, against one replica; figures are not asserted, losses are."""
    import json
    import sys

    base = postgres_url()
    assert base is not None
    bench = [sys.executable, "-m", "agentnet_bench.bench"]
    args = ["--scenario", "replicas", "--postgres", base, "--json", "--quiet", "--rounds", "1", "--members", "9"]
    out = subprocess.run(
        [*bench, *args, "--senders", "2", "--messages", "30"], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)["results"]["replicas"]
    assert r["params"]["replicas"] == 3 and r["params"]["remote_members"] == 6
    t = r["totals"]
    assert (t["duplicates"], t["lost"], t["errors"], t["raw_duplicates"], t["raw_lost"]) == (0, 0, 0, 0, 0), t
    assert t["acks"] == 30 and r["delivered_per_s"]["ratio"]["median"] > 0


def test_change_notifications_are_cut_by_bytes_for_every_kind() -> None:
    """Every kind of change (agents, groups, messages, inbox items, presence) is packed into
    notifications under PostgreSQL's 8000-byte limit, whatever the ids, and none is dropped."""
    import json

    from agentnet_server.store.db import NOTIFY_LIMIT, Changes

    def long_id(kind: str, i: int) -> str:
        return f"{kind}-{i:04d}-" + "x" * 40 + "群组"  # non-ASCII is escaped: more bytes than characters

    c = Changes()
    c.agents = {long_id("a", i) for i in range(300)}
    c.groups = {long_id("g", i) for i in range(300)}
    c.messages = [(f"group:{long_id('g', i)}", i + 1) for i in range(300)]
    c.feed = [(long_id("a", i), i + 1) for i in range(300)]
    c.online = [long_id("a", i) for i in range(300)]
    c.offline = [long_id("b", i) for i in range(300)]
    payloads = c.payloads("replica-1")
    assert len(payloads) > 6
    assert NOTIFY_LIMIT < 8000 and all(len(p.encode()) <= NOTIFY_LIMIT for p in payloads)
    merged: dict[str, list[Any]] = {}
    for p in payloads:
        data = json.loads(p)
        assert data["r"] == "replica-1" and isinstance(data["t"], int)
        for key, values in data.items():
            if key not in ("r", "t"):
                merged.setdefault(key, []).extend(values)
    assert sorted(merged["a"]) == sorted(c.agents) and sorted(merged["g"]) == sorted(c.groups)
    assert [tuple(m) for m in merged["m"]] == c.messages and [tuple(f) for f in merged["f"]] == c.feed
    assert merged["po"] == c.online and merged["pf"] == c.offline


def _store_reachable(base: str, database: str, reachable: bool) -> None:
    """Make this test's database refuse every connection (and end the open ones), or accept them
    again: to the replica the store is gone, while the shared PostgreSQL server keeps running."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"true" if reachable else "false"}')
        if not reachable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )


async def test_streams_end_and_new_ones_are_refused_while_the_store_is_lost(make_server: Any, pg_database: str) -> None:
    """The store becomes unreachable (its database refuses connections, open ones are ended):
    after the outage grace the replica ends its gRPC Session streams with UNAVAILABLE and its
    SSE streams with an UNAVAILABLE error event, and refuses new ones at once (gRPC UNAVAILABLE,
    HTTP 503 with Retry-After, both saying STORE_UNAVAILABLE), so clients go elsewhere instead of
    waiting for a store deadline. When the store is back it serves both kinds again."""
    import time

    from agentnet.v1 import events_pb2, resources_pb2, service_pb2_grpc
    from agentnet_client.device import load_device, secure_channel
    from tests.test_hardening import _stream_outcome
    from tests.test_rest import Rest, Sse

    base = postgres_url()
    assert base is not None
    database = pg_database.rsplit("/", 1)[1]
    srv = make_server(db=pg_database, http_addr="127.0.0.1:0", store_outage_grace=1.0, store_timeout=1.0)
    rest = Rest(srv, srv.certs)
    await asyncio.to_thread(rest.register, "xiaoxing-mac", "xiaoxing")
    channel = secure_channel(srv.addr, load_device(srv.certs.device_dir("laoxing-vps")))
    call = service_pb2_grpc.AgentNetStub(channel).Session()
    stream = Sse(rest, "xiaoxing-mac", "?agent_id=xiaoxing")
    lost = False
    try:
        await call.write(
            events_pb2.ClientEvent(
                request_id="r", register=events_pb2.Register(agent=resources_pb2.Agent(id="laoxing"))
            )
        )
        first = await asyncio.wait_for(call.read(), 20)
        assert first is not grpc_eof() and first.WhichOneof("event") == "registered"
        await asyncio.to_thread(stream.next, "caught_up")

        _store_reachable(base, database, False)
        lost = True
        await until(lambda: http_status(srv, "/readyz")[0] == 503, timeout=10)
        error = (await asyncio.to_thread(stream.next, "error", 10))["json"]["error"]
        assert (error["status"], error["reason"]) == ("UNAVAILABLE", "STORE_UNAVAILABLE")

        async def grpc_end() -> str:
            import grpc

            try:
                while True:
                    ev = await call.read()
                    if ev is grpc.aio.EOF:
                        return "EOF"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        assert await asyncio.wait_for(grpc_end(), 10) == "UNAVAILABLE"

        # The unauthenticated probe says why in general words, never which store or where.
        await asyncio.sleep(1.5)  # past the store deadline (1 s): reconnect attempts have failed
        status, body = http_status(srv, "/readyz")
        assert status == 503 and "store" in body
        assert database not in body and "5432" not in body and "postgres" not in body.lower(), body
        # New streams are refused at once, without waiting for the store deadline.
        started = time.monotonic()
        refused = await asyncio.to_thread(rest.call, "xiaoxing-mac", "GET", "/api/events?agent_id=xiaoxing")
        took = time.monotonic() - started
        assert refused.status == 503, (refused.status, refused.body[:300])
        assert refused.error()[1] == "STORE_UNAVAILABLE" and refused.headers.get("retry-after") == "1"
        assert database not in refused.error()[2]
        assert took < 2.0, took
        outcome, took = await _stream_outcome(srv.addr, srv.certs.device_dir("laoxing-vps"), "laoxing", True)
        assert outcome == "UNAVAILABLE" and took < 2.0, (outcome, took)

        _store_reachable(base, database, True)
        lost = False
        await until(lambda: http_status(srv, "/readyz")[0] == 200, timeout=20)
        again = Sse(rest, "xiaoxing-mac", "?agent_id=xiaoxing")
        try:
            await asyncio.to_thread(again.next, "caught_up")
        finally:
            again.close()
        outcome, _ = await _stream_outcome(srv.addr, srv.certs.device_dir("laoxing-vps"), "laoxing", True)
        assert outcome == "registered"
    finally:
        if lost:
            _store_reachable(base, database, True)
        stream.close()
        call.cancel()
        await channel.close()


def grpc_eof() -> Any:
    import grpc

    return grpc.aio.EOF


async def test_a_first_direct_message_missed_during_an_outage_is_delivered_after_resync(
    make_server: Any, pg_database: str
) -> None:
    """Replica two loses its store (its own login role is refused and its connections are ended)
    while replica one stays up; during the outage an agent on one sends the FIRST direct message
    to an agent whose session on two stays open (within the outage grace). When two is back it
    resynchronises, and the session gets that message in its new conversation, not only the
    inbox notice of it: nothing is left behind for a conversation the session had no cursor for."""
    import psycopg

    base = postgres_url()
    assert base is not None
    role = f"agentnet_r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    one = make_server(db=pg_database)
    two_url = pg_database.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    assert two_url != pg_database
    two = make_server(db=two_url, store_outage_grace=60)
    cs = Clients(one.certs, one, one.workdir)
    blocked = False

    def login(allowed: bool) -> None:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'ALTER ROLE "{role}" {"LOGIN" if allowed else "NOLOGIN"}')
            if not allowed:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))

    try:
        lao = await cs.live("laoxing-vps", "laoxing", addr=one.addr)
        xiao = await cs.live("xiaoxing-mac", "xiaoxing", addr=two.addr)
        login(False)
        blocked = True
        await until(lambda: http_status(two, "/readyz")[0] == 503, timeout=10)
        assert http_status(one, "/readyz")[0] == 200
        ack = await asyncio.wait_for(lao.dm("xiaoxing", "the first words between us"), 20)
        await asyncio.sleep(0.5)
        login(True)
        blocked = False
        await until(lambda: http_status(two, "/readyz")[0] == 200, timeout=20)
        assert xiao.state.value == "live"  # the same session throughout
        got = await collect(xiao, "message", 1, conv=ack.conversation, timeout=10)
        assert [(m.seq, m.content) for m in got] == [(ack.seq, "the first words between us")]
    finally:
        if blocked:
            login(True)
        await cs.close_all()
        for srv in (one, two):
            srv.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


async def test_a_connection_blip_resynchronises_many_groups_within_the_outage_grace(
    make_server: Any, pg_database: str
) -> None:
    """3,000 memberships this replica has not heard of (written by another replica while it was
    not listening), then its LISTEN connection is terminated: the resynchronisation re-reads the
    memberships in one go and the replica serves again within the outage grace, so the live
    session on it is kept (not closed and reconnected) and the memberships are known after it."""
    import time

    import psycopg

    base = postgres_url()
    assert base is not None
    database = pg_database.rsplit("/", 1)[1]
    srv = make_server(db=pg_database, store_outage_grace=1.0)
    cs = Clients(srv.certs, srv, srv.workdir)
    try:
        lao = await cs.live("laoxing-vps", "laoxing")
        xiao = await cs.live("xiaoxing-mac", "xiaoxing")
        await xiao.close()
        now = int(time.time() * 1_000_000)
        with psycopg.connect(pg_database, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO member (group_id, agent, joined_seq, join_time) VALUES (%s, 'xiaoxing', 0, %s)",
                [(f"bulk-{i:04d}", now) for i in range(3000)],
            )
        connects = lao.session.connects if lao.session else 0
        started = time.monotonic()
        assert terminate(base, database, srv, "listen") >= 1
        await until(lambda: _metric(srv, "agentnet_resyncs_total") >= 1, timeout=20)
        took = time.monotonic() - started
        print(f"resynchronised 3000 memberships {took:.3f} s after the LISTEN connection was terminated")
        await asyncio.sleep(1.5)  # past the grace: a replica still resynchronising would close sessions
        assert lao.session is not None and lao.session.connects == connects and lao.state.value == "live"
        assert took < 1.0 + 2.0, took  # the grace, plus the listener's reconnect and the ping
    finally:
        await cs.close_all()


async def test_all_connections_terminated_at_once_resynchronise_once(make_server: Any, pg_database: str) -> None:
    """Every store connection of a replica is terminated at once (what a PostgreSQL restart does
    to it): the first thread that notices makes the others replace theirs before use, so the
    replica resynchronises once, not once per reader thread that finds its connection dead,
    and its live sessions catch up from the store once."""
    base = postgres_url()
    assert base is not None
    database = pg_database.rsplit("/", 1)[1]
    srv = make_server(db=pg_database)
    cs = Clients(srv.certs, srv, srv.workdir)
    try:
        lao = await cs.live("laoxing-vps", "laoxing")
        await lao.join("ops", create=True)
        for i in range(20):  # every reader thread opens its connection
            await lao.list_members("ops")
            await lao.send(f"warm {i}", group_id="ops")
        assert srv.proc is not None
        before = srv.logs().count("catching up from the store")
        assert terminate(base, database, srv, "") >= 3  # writer, listener and readers
        await until(lambda: _metric(srv, "agentnet_resyncs_total") >= 1, timeout=20)
        await asyncio.sleep(1.0)
        for _ in range(20):  # the reader threads are all used again
            await lao.list_members("ops")
        await asyncio.sleep(0.5)
        catchups = srv.logs().count("catching up from the store") - before
        assert catchups == 1, catchups
    finally:
        await cs.close_all()

"""Test harness: real server processes (grpc.aio, real TLS, port 0, SQLite file or PostgreSQL),
certificates made by the project's own PKI code, and the real client library."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agentnet_client import AgentProfile, Backoff, Client
from agentnet_server import pki
from agentnet_server.process import ServerProcess, serve_args

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEVICES = ("laoxing-vps", "xiaoxing-mac", "xiaojin-mini", "d4", "d5", "d6")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pki.CertsDir:
    """A CA, a server certificate and six enrolled devices."""
    root = tmp_path_factory.mktemp("certs")
    cd = pki.CertsDir(root)
    pki.ensure_server(cd, [])
    for d in DEVICES:
        pki.issue_device(cd, d)
    return cd


class ServerProc:
    """`agentnet-server serve` as a child process."""

    def __init__(self, certs: pki.CertsDir, db: str, workdir: pathlib.Path, **flags: Any) -> None:
        self.certs = certs
        self.db = db
        self.workdir = workdir
        self.flags = {"heartbeat": 1.0, "grace": 1.0, **flags}
        self.port = 0
        self.http_port: int | None = None
        self.health_port: int | None = None
        self.log = workdir / "server.log"
        self.process = ServerProcess(self.log, workdir)
        self.starts = 0
        self._ready = workdir / "ready-0.json"
        self.stopped_at = 0.0

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProc:
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it to listen (`wait_ready` does)."""
        self._ready = self.workdir / f"ready-{self.starts}.json"
        self.starts += 1
        flags = {k: v for k, v in self.flags.items() if k != "http_addr"}
        http = self.flags.get("http_addr", "off")
        health = self.flags.get("health_addr", "127.0.0.1:0")
        flags.pop("health_addr", None)
        args = serve_args(
            self.certs.root,
            self.db,
            f"127.0.0.1:{self.port}",
            log_level="INFO",
            http_addr=http if http == "off" else f"127.0.0.1:{self.http_port or 0}",
            health_addr=health if health == "off" else f"127.0.0.1:{self.health_port or 0}",
            **flags,
        )
        self.process.spawn(args, self._ready)

    def wait_ready(self, timeout: float = 30.0) -> ServerProc:
        info = self.process.wait_ready(self._ready, timeout)
        self.port = int(info["grpc"].rsplit(":", 1)[1])
        if info.get("http"):
            self.http_port = int(info["http"].rsplit(":", 1)[1])
        if info.get("health"):
            self.health_port = int(info["health"].rsplit(":", 1)[1])
        return self

    def stop(self, timeout: float = 15.0) -> int:
        return self.process.stop(timeout)

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> ServerProc:
        self.stop()
        return self.start()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def _db_url(tmp: pathlib.Path) -> str:
    return f"sqlite:///{tmp / 'agentnet.db'}"


class ServerPool:
    """Fresh default servers (a new SQLite file, default flags, no health port), each started one test ahead: the
    next test's server boots while the current test runs, so a test still gets a server of its
    own but rarely waits for one. Stopped servers are reaped in the background."""

    def __init__(self, certs: pki.CertsDir, root: pathlib.Path) -> None:
        self.certs = certs
        self.root = root
        self.count = 0
        self.next: ServerProc | None = None
        self.stopping: list[ServerProc] = []

    def _spawn(self) -> ServerProc:
        workdir = self.root / f"srv{self.count}"
        self.count += 1
        workdir.mkdir()
        # The plain-HTTP health port is off: no test of a pooled server reads it (its own tests
        # start servers with it on), and without it the server does not load the HTTP stack.
        srv = ServerProc(self.certs, _db_url(workdir), workdir, health_addr="off")
        srv.spawn()
        return srv

    def take(self) -> ServerProc:
        srv, self.next = self.next or self._spawn(), None
        try:
            srv.wait_ready()
        finally:
            self.next = self._spawn()
        return srv

    def release(self, servers: list[ServerProc]) -> None:
        """SIGTERM now; the exit is awaited later (a server that is still up 15 s later is killed)."""
        for srv in servers:
            srv.process.terminate()
            srv.stopped_at = time.monotonic()
            self.stopping.append(srv)
        self.reap(block=False)

    def reap(self, block: bool) -> None:
        left: list[ServerProc] = []
        for srv in self.stopping:
            if srv.proc is None or srv.proc.poll() is not None:
                continue
            if block or time.monotonic() - srv.stopped_at > 15:
                srv.stop()
            else:
                left.append(srv)
        self.stopping = left

    def close(self) -> None:
        if self.next is not None:
            self.next.kill()
        self.reap(block=True)


@pytest.fixture(scope="session")
def server_pool(certs: pki.CertsDir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(certs, tmp_path_factory.mktemp("pool"))
    yield pool
    pool.close()


@pytest.fixture
def make_server(certs: pki.CertsDir, tmp_path: pathlib.Path, server_pool: ServerPool) -> Iterator[Any]:
    """Start a server with these settings (a fresh SQLite file unless `db` is given)."""
    started: list[ServerProc] = []

    def make(db: str | None = None, **flags: Any) -> ServerProc:
        workdir = tmp_path / f"srv{len(started)}"
        workdir.mkdir()
        srv = ServerProc(certs, db or _db_url(workdir), workdir, **flags)
        started.append(srv)
        return srv.start()

    yield make
    server_pool.release(started)


@pytest.fixture
def server(server_pool: ServerPool) -> Iterator[ServerProc]:
    """A fresh server with the default settings, for this test alone (taken from the pool)."""
    srv = server_pool.take()
    yield srv
    server_pool.release([srv])


class Clients:
    """Builds clients for the test server and closes them afterwards."""

    def __init__(self, certs: pki.CertsDir, server: ServerProc, tmp: pathlib.Path) -> None:
        self.certs = certs
        self.server = server
        self.tmp = tmp
        self.open: list[Client] = []

    def device_dir(self, device: str) -> pathlib.Path:
        return self.certs.device_dir(device)

    async def make(
        self,
        device: str,
        agent: str | None = None,
        name: str = "",
        *,
        connect: bool = True,
        cache: bool | str = False,
        addr: str | None = None,
        **kw: Any,
    ) -> Client:
        profile = AgentProfile(agent, name or "") if agent else None
        kw.setdefault("backoff", Backoff(base=0.05, cap=0.5))
        c = Client(addr or self.server.addr, self.device_dir(device), profile, cache=cache, **kw)
        await c.open(connect=connect)
        self.open.append(c)
        return c

    async def live(self, device: str, agent: str, name: str = "", **kw: Any) -> Client:
        c = await self.make(device, agent, name, **kw)
        await c.wait_live(timeout=20)
        return c

    async def close_all(self) -> None:
        for c in self.open:
            with contextlib.suppress(Exception):
                await c.close()
        self.open.clear()


@pytest.fixture
async def clients(certs: pki.CertsDir, server: ServerProc, tmp_path: pathlib.Path) -> AsyncIterator[Clients]:
    cs = Clients(certs, server, tmp_path)
    yield cs
    await cs.close_all()


def uid(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def collect(client: Client, kind: str, n: int, timeout: float = 20.0, conv: str | None = None) -> list[Any]:
    """The next n events of a kind (optionally of one conversation), in arrival order."""
    out: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(out) < n:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError(f"got only {len(out)} of {n} {kind} events within {timeout} s")
        try:
            ev = await client.next_event(timeout=remaining)
        except TimeoutError:
            continue
        if ev.WhichOneof("event") != kind:
            continue
        body = getattr(ev, kind)
        if conv is not None and getattr(body, "conversation", conv) != conv:
            continue
        out.append(body)
    return out


async def until(pred: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def postgres_url() -> str | None:
    return os.environ.get("AGENTNET_TEST_POSTGRES") or None


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (AGENTNET_TEST_POSTGRES), dropped afterwards."""
    base = postgres_url()
    if not base:
        pytest.skip("AGENTNET_TEST_POSTGRES is not set")
    import psycopg

    name = f"agentnet_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

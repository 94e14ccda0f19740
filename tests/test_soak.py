"""A bounded soak (`make soak`, not in the default run): minutes of steady traffic from several
agents with random disconnects, against one real server. After a warm-up, the server's memory
(RSS) and open file descriptors must stay within a small bound, and nothing may be lost.

AGENTNET_SOAK_SECONDS sets the length (default 180)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import time
from typing import Any

import pytest

from agentnet_client import Client
from tests.conftest import Clients, ServerProc, until

SOAK_SECONDS = float(os.environ.get("AGENTNET_SOAK_SECONDS", "180"))
WARMUP = min(30.0, SOAK_SECONDS / 4)
AGENTS = [("laoxing-vps", "soak1"), ("xiaoxing-mac", "soak2"), ("xiaojin-mini", "soak3"), ("d4", "soak4")]
GROUP = "soak"

pytestmark = [pytest.mark.soak, pytest.mark.timeout(SOAK_SECONDS + 180)]


def _rss(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _db_bytes(server: ServerProc) -> int:
    path = pathlib.Path(server.db.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.exists())


async def test_soak_steady_traffic_with_random_disconnects(server: ServerProc, clients: Clients) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    rng = random.Random(42)
    live: dict[str, Client] = {}
    for device, agent in AGENTS:
        live[agent] = await clients.live(device, agent)
    await live["soak1"].join(GROUP, create=True)
    for agent in list(live)[1:]:
        await live[agent].join(GROUP)

    acked: dict[str, int] = {}
    attempted: set[str] = set()
    stop = asyncio.Event()
    disconnects = {"graceful": 0, "abrupt": 0}

    async def sender(agent: str) -> None:
        i = 0
        while not stop.is_set():
            c = live[agent]
            cid = f"{agent}-{i}"
            i += 1
            attempted.add(cid)
            try:
                ack = await asyncio.wait_for(
                    c.send(f"{agent} {i} " + "x" * rng.randint(10, 2000), group_id=GROUP, client_msg_id=cid), 30
                )
                acked[cid] = ack.seq
            except Exception:
                pass
            await asyncio.sleep(rng.uniform(0.01, 0.08))

    async def chaos() -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            device, agent = rng.choice(AGENTS)
            c = live[agent]
            if rng.random() < 0.5 and c.session is not None and c.session._call is not None:
                # Abrupt: the stream breaks under the client, which reconnects and resumes.
                c.session._call.cancel()
                disconnects["abrupt"] += 1
            else:
                # Graceful: the client goes away and a new one (new connection) takes its place.
                fresh = await clients.live(device, agent)
                live[agent] = fresh
                await c.close()
                clients.open.remove(c)
                disconnects["graceful"] += 1

    tasks = [asyncio.create_task(sender(a)) for _, a in AGENTS] + [asyncio.create_task(chaos())]
    samples: list[tuple[float, int, int, int]] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < SOAK_SECONDS:
            await asyncio.sleep(5.0)
            samples.append((time.monotonic() - t0, _rss(pid), _fds(pid), _db_bytes(server)))
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)

    # Nothing lost: every acknowledged message is stored once with its seq, and the log is gap-free.
    reader = live["soak1"]
    await until(lambda: all(c.session is not None and c.session.outbox_size == 0 for c in live.values()), timeout=60)
    history = await reader.history(group_id=GROUP, limit=1_000_000)
    by_cid = {m.client_msg_id: m.seq for m in history}
    assert len(by_cid) == len(history), "a message was stored twice"
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    for cid, seq in acked.items():
        assert by_cid.get(cid) == seq, cid
    assert set(by_cid) <= attempted
    assert disconnects["graceful"] + disconnects["abrupt"] >= SOAK_SECONDS / 4

    warm = [s for s in samples if s[0] >= WARMUP]
    assert len(warm) >= 2, samples
    _, rss0, fds0, db0 = warm[0]
    _, rss1, fds1, db1 = warm[-1]
    peak_rss = max(s[1] for s in warm)
    report: dict[str, Any] = {
        "seconds": SOAK_SECONDS,
        "messages": len(history),
        "disconnects": disconnects,
        "rss_mib_after_warmup": round(rss0 / 2**20, 1),
        "rss_mib_end": round(rss1 / 2**20, 1),
        "rss_mib_peak": round(peak_rss / 2**20, 1),
        "fds_after_warmup": fds0,
        "fds_end": fds1,
        "db_mib_growth": round((db1 - db0) / 2**20, 1),
    }
    print("soak:", report)
    # Memory: a small fixed allowance plus what the growing database may keep in SQLite's page
    # cache (bounded at 32 MiB by the server's cache_size pragma).
    allowance = 16 * 2**20 + min(db1 - db0, 32 * 2**20)
    assert peak_rss - rss0 <= allowance, report
    # File descriptors: the same few connections come and go; nothing may accumulate.
    assert max(s[2] for s in warm) - fds0 <= 12, report

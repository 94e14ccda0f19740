"""The OpenClaw bridge's own overhead, against a fast fake gateway endpoint.

    .venv/bin/python scripts/bench_bridge.py [--items 300] [--json]

Starts a throwaway agentnet server (real TLS, SQLite file), a `/v1/responses` endpoint on loopback
that answers at once, and the bridge in this process for agent `helper`. Another agent mentions
`helper` in a group, one item at a time, and waits for the answer. Per item it reports:

- trigger → request: from the mention's commit (the server's create_time) to the bridge's
  request reaching the endpoint;
- answer → reply: from the endpoint's answer to the reply's commit (its create_time).

Both ends of each figure are wall-clock times on this machine (server and endpoint share it).
Nothing here is a test: it prints figures (README "Connect your OpenClaw", docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import pathlib
import re
import statistics
import sys
import tempfile
import time
from typing import Any

from aiohttp import web

from agentnet_client import AgentProfile, Client
from agentnet_client.openclaw import Bridge, BridgeOptions, GatewayConfig
from agentnet_server import pki
from agentnet_server.process import ServerProcess, serve_args

TOKEN = "bench-token"


class FastEndpoint:
    def __init__(self) -> None:
        self.received: dict[int, float] = {}
        self.answered: dict[int, float] = {}
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def responses(self, request: web.Request) -> web.Response:
        t = time.time()
        body = await request.json()
        seqs = [int(s) for s in re.findall(r"^#(\d+) .*← for you$", body.get("input", ""), re.M)]
        for s in seqs:
            self.received[s] = t
        resp = {
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}]
        }
        done = time.time()
        for s in seqs:
            self.answered[s] = done
        return web.json_response(resp)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["mid"]})

    async def readyz(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models/{mid}", self.models)
        app.router.add_get("/readyz", self.readyz)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def us(ts: Any) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


def summary(values_ms: list[float]) -> dict[str, float]:
    v = sorted(values_ms)
    q = statistics.quantiles(v, n=100, method="inclusive")
    return {"n": len(v), "p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "max_ms": round(v[-1], 2)}


async def run(n: int, warmup: int) -> dict[str, Any]:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    certs = pki.CertsDir(tmp / "certs")
    pki.ensure_server(certs, [])
    for d in ("boss-dev", "helper-dev"):
        pki.issue_device(certs, d)
    server = ServerProcess(tmp / "server.log", tmp)
    info = server.start(serve_args(certs.root, f"sqlite:///{tmp / 'agentnet.db'}"), tmp / "ready.json")
    addr = info["grpc"]
    endpoint = FastEndpoint()
    await endpoint.start()
    boss = Client(addr, certs.device_dir("boss-dev"), AgentProfile("boss", "Boss"), cache=False)
    helper = Client(
        addr, certs.device_dir("helper-dev"), AgentProfile("helper", "Helper"), cache=str(tmp / "helper.sqlite")
    )
    try:
        await boss.open()
        await boss.wait_live()
        await helper.open()
        await helper.wait_live()
        await boss.join("bench", create=True)
        await helper.join("bench")
        cfg = GatewayConfig(f"http://127.0.0.1:{endpoint.port}", TOKEN, "main")
        opts = BridgeOptions(rate_per_minute=1e9, burst=1_000_000, agentnet="agentnet")
        bridge = Bridge(helper, cfg, opts)
        stop = asyncio.Event()
        task = asyncio.ensure_future(bridge.run(stop))
        await asyncio.sleep(0.5)
        trigger_to_request: list[float] = []
        answer_to_reply: list[float] = []
        for i in range(warmup + n):
            ack = await boss.send(f"@helper item {i}", group_id="bench")
            while True:
                ev = await boss.next_event(timeout=30)
                if ev.WhichOneof("event") == "message" and ev.message.reply_to == ack.seq:
                    reply = ev.message
                    break
            if i < warmup:
                continue
            trigger_to_request.append((endpoint.received[ack.seq] - us(ack.create_time)) * 1000)
            answer_to_reply.append((us(reply.create_time) - endpoint.answered[ack.seq]) * 1000)
        stop.set()
        await task
        return {
            "items": n,
            "trigger_commit_to_request": summary(trigger_to_request),
            "answer_to_reply_commit": summary(answer_to_reply),
            "turns": bridge.stats.turns,
        }
    finally:
        await helper.close()
        await boss.close()
        if endpoint.runner is not None:
            await endpoint.runner.cleanup()
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description="bridge overhead against a fast fake gateway endpoint")
    ap.add_argument("--items", type=int, default=300, help="measured items (default 300)")
    ap.add_argument("--warmup", type=int, default=20, help="items before measuring (default 20)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ns = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report = asyncio.run(run(ns.items, ns.warmup))
    if ns.json:
        print(json.dumps(report))
    else:
        for leg in ("trigger_commit_to_request", "answer_to_reply_commit"):
            r = report[leg]
            print(f"{leg:<28} n={r['n']}  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  max {r['max_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

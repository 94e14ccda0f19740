"""The OpenClaw bridge (`agentnet bridge`) as a real process against a hook endpoint that follows
the OpenClaw /hooks/agent contract (bearer token, Idempotency-Key, 200 {"ok", "runId"}). A run
against a real OpenClaw gateway is in test_openclaw.py (marker `openclaw`)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import uuid
from typing import Any

from aiohttp import web

from agentnet.v1 import resources_pb2
from tests.conftest import Clients, until

BIN = pathlib.Path(sys.executable).parent
TOKEN = "hook-secret-token"


class HookEndpoint:
    """The gateway side of the hook contract, recording what it was handed."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.runs: dict[str, str] = {}
        self.status_override: int | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401, text="Unauthorized")
        if self.status_override is not None:
            return web.Response(status=self.status_override, text="unavailable")
        body = await request.json()
        key = request.headers.get("Idempotency-Key", "")
        if key in self.runs:
            return web.json_response({"ok": True, "runId": self.runs[key]})
        run_id = uuid.uuid4().hex
        self.runs[key] = run_id
        self.calls.append({"key": key, **body})
        return web.json_response({"ok": True, "runId": run_id})

    async def start(self) -> HookEndpoint:
        app = web.Application()
        app.router.add_post("/hooks/agent", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/agent"


def start_bridge(clients: Clients, device: str, agent: str, url: str, token: str = TOKEN) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        AGENTNET_SERVER=clients.server.addr,
        AGENTNET_DEVICE_DIR=str(clients.device_dir(device)),
        AGENTNET_AGENT=agent,
        AGENTNET_HOOK_TOKEN=token,
        AGENTNET_CACHE_DIR=str(clients.server.workdir / "caches"),
    )
    return subprocess.Popen(
        [str(BIN / "agentnet"), "bridge", "--hook-url", url, "--openclaw-agent", "main"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    return err


async def test_bridge_hands_over_mentions_dms_and_tasks_once(clients: Clients) -> None:
    hook = await HookEndpoint().start()
    lao = await clients.live("laoxing-vps", "laoxing", "老邢")
    xiao = await clients.live("xiaoxing-mac", "xiaoxing", "小邢")
    await lao.join("dev-team", create=True)
    await xiao.join("dev-team")
    # 老邢's bridge runs on the VPS; 老邢's interactive client there is closed (the agent is the bridge).
    await lao.close()
    proc = start_bridge(clients, "laoxing-vps", "laoxing", hook.url)
    try:
        await until(lambda: xiao.session is not None and xiao.session.presence.get("laoxing") is True, timeout=20)
        await xiao.send("@老邢 please check the deploy", group_id="dev-team")
        await xiao.send("no mention here", group_id="dev-team")
        await xiao.send("psst, the key is rotated", to_agent="laoxing")
        task = await xiao.create_task("review PR 42", "laoxing", group_id="dev-team")
        await until(lambda: len(hook.calls) >= 3, timeout=20)
        await asyncio.sleep(0.5)
        # Order is kept within a conversation, not across them: look the three up by kind.
        assert len(hook.calls) == 3, [c["message"] for c in hook.calls]
        by_kind = {c["key"].split(":")[1]: c["message"] for c in hook.calls}
        assert "mentioned you in group dev-team" in by_kind["mention"]
        assert "@老邢 please check the deploy" in by_kind["mention"] and "agentnet send dev-team" in by_kind["mention"]
        assert "direct message from xiaoxing" in by_kind["dm"] and "psst" in by_kind["dm"]
        assert f"task {task.id} assigned to you by xiaoxing" in by_kind["task"]
        assert "agentnet task accept" in by_kind["task"]
        assert all(c["agentId"] == "main" and c["name"] == "agentnet" and c["wakeMode"] == "now" for c in hook.calls)
        assert len({c["key"] for c in hook.calls}) == 3

        # The bridge stops; meanwhile more arrives; it starts again and hands over only the new items.
        stop(proc)
        await xiao.send("@老邢 are you there?", group_id="dev-team")
        await xiao.update_task(task.id, note="low priority")  # not a status change: not handed over
        proc = start_bridge(clients, "laoxing-vps", "laoxing", hook.url)
        await until(lambda: len(hook.calls) >= 4, timeout=20)
        await asyncio.sleep(1.0)
        assert len(hook.calls) == 4 and "are you there?" in hook.calls[3]["message"]

        # 老邢 finishes the task from the CLI; 小邢 (the creator) hears back through the server, and
        # the bridge on the VPS does not hand 老邢 its own change.
        from tests.test_tools import run_cli

        r = run_cli(clients.server, "laoxing-vps", "task", "reject", task.id, "--note", "busy", agent="laoxing")
        assert r.returncode == 0, r.stderr
        assert (await xiao.get_task(task.id)).status == resources_pb2.TASK_STATUS_REJECTED
        await asyncio.sleep(1.0)
        assert len(hook.calls) == 4
    finally:
        err = stop(proc)
        await hook.stop()
    assert "Traceback" not in err, err


async def test_bridge_retries_while_the_gateway_is_down_and_stops_on_a_bad_token(clients: Clients) -> None:
    hook = await HookEndpoint().start()
    hook.status_override = 503
    sender = await clients.live("xiaoxing-mac", "sender")
    target = await clients.live("laoxing-vps", "target")
    await target.close()
    proc = start_bridge(clients, "laoxing-vps", "target", hook.url)
    try:
        await asyncio.sleep(1.0)
        await sender.send("are you up?", to_agent="target")
        await asyncio.sleep(2.0)
        assert hook.calls == []
        hook.status_override = None
        await until(lambda: len(hook.calls) == 1, timeout=30)
        assert "are you up?" in hook.calls[0]["message"]
    finally:
        stop(proc)
    bad = start_bridge(clients, "laoxing-vps", "target", hook.url, token="wrong")
    await sender.send("again", to_agent="target")
    err = await asyncio.to_thread(lambda: bad.communicate(timeout=30)[1])
    assert bad.returncode == 1 and "refused the hook token (401)" in err
    await hook.stop()

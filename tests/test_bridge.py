"""The OpenClaw bridge (`agentnet bridge`) as a real process against a small HTTP server that
implements the gateway's endpoint contract (README "Connect your OpenClaw"): bearer token, `model:
"openclaw:<agent>"`, one session per `x-openclaw-session-key`, the reply text in the answer, 401 /
404 / 400 / 5xx errors, a 500 for parallel requests on a brand-new session, and /hooks/agent for
the fire-and-forget mode. The same scenarios against a real OpenClaw gateway are in
test_openclaw.py (marker `openclaw`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentnet.v1 import resources_pb2
from agentnet_client import Client
from agentnet_client.cli import parser
from agentnet_client.openclaw.bridge import START_GRACE, TRUNCATED, clip_utf8
from agentnet_client.openclaw.gateway import EMPTY_PLACEHOLDER, reply_text
from agentnet_client.openclaw.turns import Directory, Item, mentions_explicitly, message_turn
from agentnet_client.signing import Verification
from tests.conftest import Clients, until

BIN = pathlib.Path(sys.executable).parent
TOKEN = "gateway-secret-token"
HOOK_TOKEN = "hook-secret-token"
FAST = ("--rate-per-minute", "6000")  # for tests that need many turns in one conversation


class FakeGateway:
    """The gateway side of the endpoint contract, recording every turn it ran."""

    def __init__(self, reply: Callable[[str, str], str] | None = None, delay: float = 0.0) -> None:
        self.turns: list[dict[str, Any]] = []  # {session, input, model}
        self.hooks: list[dict[str, Any]] = []
        self.hook_runs: dict[str, str] = {}
        self.sessions: set[str] = set()
        self.running: dict[str, int] = {}
        self.reply = reply or (lambda session, text: "on it: " + text.rsplit("← for you", 1)[0][-40:].strip())
        self.delay = delay
        self.status_override: int | None = None  # every authenticated request answers this status
        self.on_turn: Callable[[str, str], Awaitable[None]] | None = None  # runs inside a turn (the agent's tools)
        self.attempts: dict[str, int] = {}  # requests per session key, including failed ones
        self.races = 0
        self.fail_turns = 0  # the next n turns fail with 502 after reaching the gateway
        self.readyz_delay = 0.0  # seconds /readyz takes (a gateway slow to answer the start-up check)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def responses(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": {"message": "Unauthorized", "type": "unauthorized"}}, status=401)
        if self.status_override is not None:
            return web.Response(status=self.status_override, text="gateway trouble")
        body = await request.json()
        if body.get("model") != "openclaw:main":
            name = str(body.get("model", "")).removeprefix("openclaw:")
            return web.json_response({"error": {"message": f"Unknown agent '{name}'.", "type": "x"}}, status=400)
        if not isinstance(body.get("input"), str) or not body["input"]:
            return web.json_response({"error": {"message": "input: Invalid input", "type": "x"}}, status=400)
        key = request.headers.get("x-openclaw-session-key", "")
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.fail_turns:
            self.fail_turns -= 1
            return web.json_response({"error": {"message": "model provider failed"}}, status=502)
        if key and self.running.get(key) and key not in self.sessions:
            self.races += 1  # the real gateway: two parallel requests on a new session, one fails
            return web.json_response({"error": {"message": "SessionWorkStartChangedError"}}, status=500)
        self.running[key] = self.running.get(key, 0) + 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.sessions.add(key)
            self.turns.append({"session": key, "input": body["input"], "time": time.time()})
            if self.on_turn is not None:
                await self.on_turn(key, body["input"])
            text = self.reply(key, body["input"])
        finally:
            self.running[key] -= 1
        content = [{"type": "output_text", "text": text}] if text else []
        return web.json_response(
            {
                "object": "response",
                "status": "completed",
                "output": [{"type": "message", "role": "assistant", "content": content}],
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": {"message": "Unauthorized"}}, status=401)
        mid = request.match_info["mid"]
        if mid != "openclaw/main":
            return web.json_response({"error": {"message": f"Model '{mid}' not found."}}, status=404)
        return web.json_response({"id": mid, "object": "model"})

    async def hook(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {HOOK_TOKEN}":
            return web.Response(status=401, text="Unauthorized")
        body = await request.json()
        if not body.get("message"):
            return web.json_response({"ok": False, "error": "message required"}, status=400)
        key = request.headers.get("Idempotency-Key", "")
        if key not in self.hook_runs:
            self.hook_runs[key] = uuid.uuid4().hex
            self.hooks.append({"key": key, **body})
        return web.json_response({"ok": True, "runId": self.hook_runs[key]})

    async def readyz(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.readyz_delay)
        return web.json_response({"ready": True})

    async def start(self) -> FakeGateway:
        app = web.Application()
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models/{mid}", self.models)
        app.router.add_post("/hooks/agent", self.hook)
        app.router.add_get("/readyz", self.readyz)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inputs(self, session: str = "") -> list[str]:
        return [t["input"] for t in self.turns if not session or t["session"] == session]


def bridge_env(clients: Clients, device: str, agent: str, token: str = TOKEN) -> dict[str, str]:
    return dict(
        os.environ,
        AGENTNET_SERVER=clients.server.addr,
        AGENTNET_DEVICE_DIR=str(clients.device_dir(device)),
        AGENTNET_AGENT=agent,
        AGENTNET_OPENCLAW_TOKEN=token,
        AGENTNET_HOOK_TOKEN=HOOK_TOKEN,
        AGENTNET_CACHE_DIR=str(clients.server.workdir / "caches"),
        AGENTNET_BIN="agentnet",
    )


def start_bridge(
    clients: Clients,
    device: str,
    agent: str,
    url: str,
    *args: str,
    token: str = TOKEN,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "agentnet"), "bridge", "--gateway-url", url, *args],
        env=bridge_env(clients, device, agent, token) | (env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_sync(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[float, str]:
    """Signal the bridge; (seconds until it exited, its stderr)."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    return time.monotonic() - t0, err


async def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[float, str]:
    """stop_sync off the event loop (the fake gateway runs on it)."""
    return await asyncio.to_thread(stop_sync, proc, sig)


def cache_db(clients: Clients, device: str, agent: str) -> pathlib.Path:
    return clients.server.workdir / "caches" / f"cache-{device}-{agent}.sqlite"


def items(clients: Clients, device: str, agent: str) -> list[tuple[str, str, str]]:
    path = cache_db(clients, device, agent)
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
        try:
            return list(conn.execute("SELECT key, state, note FROM bridge_item ORDER BY ord"))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # the cache exists, the bridge has not created its tables yet
            raise


async def wait_online(watcher: Client, agent: str) -> None:
    await until(lambda: watcher.session is not None and watcher.session.presence.get(agent) is True, timeout=30)


def bridge_started(clients: Clients, device: str, agent: str) -> bool:
    """The bridge has marked its first start on this device: what is sent from now on is answered.
    Earlier events, older than START_GRACE, count as history and are skipped; a slow start (a loaded
    machine) can take longer than that between start_bridge and this mark."""
    path = cache_db(clients, device, agent)
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            return False
        return conn.execute("SELECT 1 FROM meta WHERE key = 'bridge_since'").fetchone() is not None


async def wait_bridge(watcher: Client, clients: Clients, device: str, agent: str) -> None:
    """Presence alone does not say the bridge is up: the agent's just-closed test client may still
    count as online, and a message or task sent before the bridge's first start is not answered."""
    await wait_online(watcher, agent)
    await until(lambda: bridge_started(clients, device, agent), timeout=30)


def bridge_up(clients: Clients, device: str, agent: str) -> bool:
    """The bridge has created its records (it has its signal handlers by then). Presence alone
    does not say so: the agent's just-closed test client may still count as online."""
    path = cache_db(clients, device, agent)
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'bridge_item'").fetchone() is not None


async def messages_by(c: Client, agent: str, **where: str) -> list[resources_pb2.Message]:
    return [m for m in await c.history(**where) if m.sender == agent]


async def test_mentions_dms_and_tasks_get_one_threaded_answer_each(clients: Clients) -> None:
    gw = await FakeGateway(
        reply=lambda s, text: (
            EMPTY_PLACEHOLDER if "stay quiet" in text else "on it: " + text.split("← for you")[0][-30:].strip()
        )
    ).start()
    lao = await clients.live("laoxing-vps", "laoxing", "老邢")
    xiao = await clients.live("xiaoxing-mac", "xiaoxing", "小邢")
    await lao.join("dev-team", create=True, title="Dev team")
    await xiao.join("dev-team")
    await xiao.close()  # 小邢 is the bridge on her Mac
    old = await lao.send("@小邢 from last week", group_id="dev-team")  # history: never answered
    await asyncio.sleep(START_GRACE + 0.5)
    proc = start_bridge(clients, "xiaoxing-mac", "xiaoxing", gw.url)
    try:
        await wait_bridge(lao, clients, "xiaoxing-mac", "xiaoxing")
        ask = await lao.send("@小邢 please check the deploy", group_id="dev-team")
        await until(lambda: len(gw.turns) == 1, timeout=30)
        assert items(clients, "xiaoxing-mac", "xiaoxing")[0][:2] == ("mention:group:dev-team:1", "skipped")
        assert old.seq == 1
        [answer] = await _wait_messages(lao, "xiaoxing", 1, group_id="dev-team")
        assert (answer.reply_to, answer.auto_hops, answer.sender_device) == (ask.seq, 1, "xiaoxing-mac")
        assert answer.content.startswith("on it:") and "please check the deploy" in answer.content
        assert await lao.verify(answer) is Verification.VERIFIED
        turn = gw.turns[0]
        assert turn["session"] == "agentnet:xiaoxing:group:dev-team"
        text = turn["input"]
        assert '老邢 (@laoxing) mentioned you in the group "Dev team" (#dev-team)' in text
        assert "Members of #dev-team: 老邢 (@laoxing), 小邢 (@xiaoxing, you)" in text
        assert f"#{ask.seq} 老邢 (@laoxing): @小邢 please check the deploy   ← for you" in text
        assert f"as a reply to #{ask.seq}" in text and "agentnet history dev-team" in text

        # A plain message, then a second mention: same session; the turn shows what arrived since
        # the last turn (the plain message, not the first mention again).
        await lao.send("fyi the build is green", group_id="dev-team")
        ask2 = await lao.send("@小邢 and the disk?", group_id="dev-team")
        await until(lambda: len(gw.turns) == 2, timeout=30)
        second = gw.turns[1]
        assert second["session"] == "agentnet:xiaoxing:group:dev-team"
        assert "fyi the build is green" in second["input"] and "please check the deploy" not in second["input"]
        assert f"#{ask2.seq} 老邢 (@laoxing): @小邢 and the disk?   ← for you" in second["input"]
        replies = await _wait_messages(lao, "xiaoxing", 2, group_id="dev-team")
        assert replies[1].reply_to == ask2.seq

        # A direct message: answered in the DM, threaded.
        dm = await lao.send("can you restart nginx?", to_agent="xiaoxing")
        [dm_answer] = await _wait_messages(lao, "xiaoxing", 1, peer_id="xiaoxing")
        assert (dm_answer.reply_to, dm_answer.auto_hops, dm_answer.recipient) == (dm.seq, 1, "laoxing")
        assert gw.turns[-1]["session"] == f"agentnet:xiaoxing:{dm.conversation}"
        assert "Direct message from 老邢 (@laoxing)" in gw.turns[-1]["input"]

        # The agent chose silence (OpenClaw answers an empty turn with its placeholder): nothing is posted.
        await lao.send("@小邢 stay quiet please", group_id="dev-team")
        await until(lambda: len(gw.turns) == 4, timeout=30)
        await asyncio.sleep(0.5)
        assert len(await messages_by(lao, "xiaoxing", group_id="dev-team")) == 2

        # A task: a turn with its fields; the answer becomes a note on the task.
        due = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        task = await lao.create_task(
            "rotate the keys",
            "xiaoxing",
            description="all three devices",
            group_id="dev-team",
            priority=resources_pb2.TASK_PRIORITY_HIGH,
            due_time=due,
        )
        await until(lambda: any(t["session"] == f"agentnet:xiaoxing:task:{task.id}" for t in gw.turns), timeout=30)
        tin = next(t["input"] for t in gw.turns if t["session"] == f"agentnet:xiaoxing:task:{task.id}")
        for part in (
            "Title: rotate the keys",
            "all three devices",
            "Priority: high",
            "Due: 20",
            "Created by: 老邢 (@laoxing)",
        ):
            assert part in tin, (part, tin)
        assert f"task accept {task.id}" in tin

        async def note_added() -> bool:
            t = await lao.get_task(task.id)
            return any(c.actor == "xiaoxing" and c.note.startswith("on it:") for c in t.history)

        await _until_async(note_added)

        # Status changes of a task 小邢 created are reported to her, in that task's session.
        async with unary(clients, "xiaoxing-mac") as u:
            mine = await u.create_task("write the notes", "laoxing", agent_id="xiaoxing")
        await lao.update_task(mine.id, status=resources_pb2.TASK_STATUS_ACCEPTED)
        await until(lambda: any(t["session"] == f"agentnet:xiaoxing:task:{mine.id}" for t in gw.turns), timeout=30)
        report = next(t["input"] for t in gw.turns if t["session"] == f"agentnet:xiaoxing:task:{mine.id}")
        assert f'Your task {mine.id} "write the notes" is now accepted (changed by 老邢 (@laoxing))' in report

        # Stop (SIGTERM: within 2 s, no traceback) and start again: nothing is answered twice.
        took, err = await stop(proc)
        assert took < 2.0 and proc.returncode == 0 and "Traceback" not in err, (took, err)
        turns_before = len(gw.turns)
        proc = start_bridge(clients, "xiaoxing-mac", "xiaoxing", gw.url)
        await wait_online(lao, "xiaoxing")
        await asyncio.sleep(1.0)
        assert len(gw.turns) == turns_before
        assert len(await messages_by(lao, "xiaoxing", group_id="dev-team")) == 2
        assert len(await messages_by(lao, "xiaoxing", peer_id="xiaoxing")) == 1
    finally:
        _, err = await stop(proc)
        await gw.stop()
    assert "Traceback" not in err, err
    assert gw.races == 0


async def test_loop_guard_and_hop_limit(clients: Clients) -> None:
    """Two bridged agents whose models always name the other: a chain started by a person stops
    at --max-hops; automatic answers that do not name an agent are never answered."""
    gw_a = await FakeGateway(reply=lambda s, text: "@bee naming you" if "naming" in text else "noted").start()
    gw_b = await FakeGateway(reply=lambda s, text: "@ant naming you" if "naming" in text else "noted").start()
    ant_person = await clients.live("laoxing-vps", "ant", "Ant")
    bee = await clients.live("xiaoxing-mac", "bee", "Bee")
    jin = await clients.live("xiaojin-mini", "jin", "Jin")
    for c in (ant_person, bee, jin):
        await c.join("hive", create=True)
    await bee.close()
    pa = start_bridge(clients, "laoxing-vps", "ant", gw_a.url)
    pb = start_bridge(clients, "xiaoxing-mac", "bee", gw_b.url)
    try:
        await wait_online(jin, "bee")
        await until(lambda: cache_db(clients, "laoxing-vps", "ant").exists(), timeout=20)
        await asyncio.sleep(1.0)  # the ant bridge is up too (its session shares the agent with the person)
        # The person at Ant's device writes to Bee directly (hop 0), naming her.
        first = await ant_person.send("@bee naming you: ready?", to_agent="bee")
        conv = first.conversation

        async def chain() -> list[resources_pb2.Message]:
            return [m for m in await ant_person.history(peer_id="bee") if m.auto_hops]

        await _until_async(lambda: _len_is(chain, 3), timeout=60)
        await asyncio.sleep(1.5)
        auto = await chain()
        assert [(m.sender, m.auto_hops) for m in auto] == [("bee", 1), ("ant", 2), ("bee", 3)]
        assert [m.reply_to for m in auto] == [first.seq, auto[0].seq, auto[1].seq]
        last = f"dm:{conv}:{auto[2].seq}"
        await until(lambda: any(k == last for k, _, _ in items(clients, "laoxing-vps", "ant")), timeout=10)
        notes = dict((k, n) for k, _, n in items(clients, "laoxing-vps", "ant"))
        assert "hop limit" in notes[last]
        # The person's own message was never an item for Ant's bridge.
        assert f"dm:{conv}:{first.seq}" not in notes

        # In the group, Jin names both; each answers once ("noted", naming nobody): nobody answers those.
        ask = await jin.send("@ant @bee status please", group_id="hive")
        await _until_async(lambda: _len_is(lambda: _group_auto(jin, "hive"), 2), timeout=60)
        await asyncio.sleep(1.5)
        answers = await _group_auto(jin, "hive")
        assert sorted(m.sender for m in answers) == ["ant", "bee"]
        assert all((m.reply_to, m.auto_hops, m.content) == (ask.seq, 1, "noted") for m in answers)
    finally:
        _, err_a = await stop(pa)
        _, err_b = await stop(pb)
        await gw_a.stop()
        await gw_b.stop()
    assert "Traceback" not in err_a + err_b, err_a + err_b


async def test_outage_keeps_order_once_each_and_signals_stop_fast(clients: Clients) -> None:
    """Gateway down: SIGTERM while backing off exits within 2 s; three mentions during the outage
    are answered in order, once each, when it is back; a burst during a running turn is batched."""
    gw = await FakeGateway().start()
    lao = await clients.live("laoxing-vps", "lao2", "Lao")
    await lao.join("ops", create=True)
    xiao = await clients.live("xiaoxing-mac", "xiao2", "Xiao")
    await xiao.join("ops")
    await xiao.close()
    proc = start_bridge(clients, "xiaoxing-mac", "xiao2", gw.url, *FAST)
    try:
        await wait_online(lao, "xiao2")
        await until(lambda: bridge_up(clients, "xiaoxing-mac", "xiao2"), timeout=30)
        port = gw.port
        await gw.stop()  # connection refused from now on
        asks = [await lao.send(f"@xiao2 question {i}", group_id="ops") for i in range(3)]
        await asyncio.sleep(1.5)
        took, err = await stop(proc)  # backing off
        assert took < 2.0 and proc.returncode == 0, (took, err)
        assert "not reachable" in err and "Traceback" not in err
        assert [s for _, s, _ in items(clients, "xiaoxing-mac", "xiao2")] == ["pending"] * 3

        gw.port = port
        await gw.start()
        proc = start_bridge(clients, "xiaoxing-mac", "xiao2", gw.url, *FAST)
        answers = await _wait_messages(lao, "xiao2", 3, group_id="ops", timeout=40)
        assert [a.reply_to for a in answers] == [a.seq for a in asks]
        assert [t["input"].count("← for you") for t in gw.turns] == [1, 1, 1]
        assert "question 0" in gw.turns[0]["input"] and "question 2" in gw.turns[2]["input"]

        # A burst while a turn runs: the first gets a turn, the rest arrive during it and share the next.
        gw.delay = 1.0
        n = len(gw.turns)
        burst = [await lao.send(f"@xiao2 burst {i}", group_id="ops") for i in range(4)]
        await _wait_messages(lao, "xiao2", 5, group_id="ops", timeout=40)
        await asyncio.sleep(0.5)
        assert [t["input"].count("← for you") for t in gw.turns[n:]] == [1, 3]
        answers = await messages_by(lao, "xiao2", group_id="ops")
        assert [a.reply_to for a in answers[3:]] == [burst[0].seq, burst[3].seq]

        # SIGINT in the middle of a turn: stops within 2 s; the turn runs again after the restart and
        # its answer is posted once.
        gw.delay = 5.0
        mid = await lao.send("@xiao2 slow one", group_id="ops")
        await until(lambda: any(r for r in gw.running.values()), timeout=20)
        took, err = await stop(proc, signal.SIGINT)
        assert took < 2.0 and "Traceback" not in err, (took, err)
        gw.delay = 0.0
        proc = start_bridge(clients, "xiaoxing-mac", "xiao2", gw.url, *FAST)
        answers = await _wait_messages(lao, "xiao2", 6, group_id="ops", timeout=40)
        assert answers[-1].reply_to == mid.seq
        await asyncio.sleep(1.0)
        assert len(await messages_by(lao, "xiao2", group_id="ops")) == 6
    finally:
        _, err = await stop(proc)
        await gw.stop()
    assert "Traceback" not in err, err


async def test_start_checks_refuse_with_one_line(clients: Clients) -> None:
    gw = await FakeGateway().start()
    await clients.live("xiaojin-mini", "jin3", "Jin3")

    async def run(*args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "agentnet"), "bridge", *args],
            env=bridge_env(clients, "xiaojin-mini", "jin3", token),
            capture_output=True,
            text=True,
            timeout=30,
        )

    try:
        with contextlib.suppress(SystemExit):  # argparse refuses it (exit 2) before anything runs
            parser().parse_args(["bridge", "--rate-per-minute", "0"])
            raise AssertionError("--rate-per-minute 0 accepted")
        wrong = await run("--gateway-url", gw.url, token="wrong-token")
        assert wrong.returncode == 78, wrong.stderr
        [line] = wrong.stderr.strip().splitlines()
        assert line.startswith("agentnet bridge: token accepted: the gateway refused the token (401)"), line
        assert "AGENTNET_OPENCLAW_TOKEN" in line and "--hook-token" not in line

        agent = await run("--gateway-url", gw.url, "--openclaw-agent", "nobody")
        [line] = agent.stderr.strip().splitlines()
        assert agent.returncode == 78 and "openclaw agent exists: the gateway has no agent 'nobody'" in line

        down = await run("--gateway-url", "http://127.0.0.1:9")
        [line] = down.stderr.strip().splitlines()
        assert down.returncode == 69 and "gateway reachable: nothing answers at http://127.0.0.1:9" in line

        # A gateway failing on its side (5xx, or rate-limiting) may recover: 69, which the unit restarts.
        gw.status_override = 503
        failing = await run("--gateway-url", gw.url)
        [line] = failing.stderr.strip().splitlines()
        assert failing.returncode == 69 and "answers 503" in line, failing.stderr
        gw.status_override = 429
        limited = await run("--gateway-url", gw.url)
        assert limited.returncode == 69 and "rate-limits" in limited.stderr, limited.stderr
        gw.status_override = None

        no_token = await run("--gateway-url", gw.url, token="")
        [line] = no_token.stderr.strip().splitlines()
        assert no_token.returncode != 0 and "set AGENTNET_OPENCLAW_TOKEN" in line
    finally:
        await gw.stop()


async def test_a_message_sent_while_the_bridge_starts_is_answered(clients: Clients) -> None:
    """The bridge's first start on a device is when the command was started: a mention sent while
    it still checks the gateway and waits for the server is new, not history (a slow start had
    taken it for history and never answered it)."""
    gw = await FakeGateway(reply=lambda s, text: "here").start()
    gw.readyz_delay = START_GRACE + 2.0
    lao = await clients.live("laoxing-vps", "lao6", "Lao6")
    await lao.join("st6", create=True)
    xiao = await clients.live("xiaoxing-mac", "xiao6", "Xiao6")
    await xiao.join("st6")
    await xiao.close()
    proc = start_bridge(clients, "xiaoxing-mac", "xiao6", gw.url)
    try:
        await asyncio.sleep(1.5)  # the bridge is in its gateway check now
        ask = await lao.send("@xiao6 are you there?", group_id="st6")
        [answer] = await _wait_messages(lao, "xiao6", 1, group_id="st6")
        assert (answer.reply_to, answer.content) == (ask.seq, "here")
        assert [i[:2] for i in items(clients, "xiaoxing-mac", "xiao6")] == [(f"mention:group:st6:{ask.seq}", "done")]
    finally:
        stop_sync(proc)
        await gw.stop()


async def test_rate_limit_makes_items_wait_and_share_a_turn(clients: Clients) -> None:
    """One turn per 2 s at most in a conversation: items that arrive while the next turn waits
    for the limit go into it together; nothing is dropped."""
    gw = await FakeGateway().start()
    lao = await clients.live("laoxing-vps", "lao9", "Lao9")
    await lao.join("rl", create=True)
    xiao = await clients.live("xiaoxing-mac", "xiao9", "Xiao9")
    await xiao.join("rl")
    await xiao.close()
    proc = start_bridge(clients, "xiaoxing-mac", "xiao9", gw.url, "--rate-per-minute", "30", "--burst", "1")
    try:
        await wait_bridge(lao, clients, "xiaoxing-mac", "xiao9")
        first = await lao.send("@xiao9 one", group_id="rl")
        await _wait_messages(lao, "xiao9", 1, group_id="rl")
        later = [await lao.send(f"@xiao9 more {i}", group_id="rl") for i in range(3)]
        answers = await _wait_messages(lao, "xiao9", 2, group_id="rl")
        await asyncio.sleep(1.5)
        assert [t["input"].count("← for you") for t in gw.turns] == [1, 3]
        assert [a.reply_to for a in await messages_by(lao, "xiao9", group_id="rl")] == [first.seq, later[-1].seq]
        assert answers[0].reply_to == first.seq
    finally:
        _, err = await stop(proc)
        await gw.stop()
    assert "rate limit for group:rl: next turn in" in err and "Traceback" not in err, err


async def test_hook_mode_hands_over_once(clients: Clients) -> None:
    """--mode hook keeps the fire-and-forget hand-over to /hooks/agent, with an idempotency key."""
    gw = await FakeGateway().start()
    lao = await clients.live("laoxing-vps", "lao4", "Lao4")
    await (await clients.live("xiaoxing-mac", "xiao4", "Xiao4")).close()
    proc = start_bridge(
        clients,
        "xiaoxing-mac",
        "xiao4",
        gw.url,
        "--mode",
        "hook",
        "--hook-url",
        gw.url + "/hooks/agent",
        "--openclaw-agent",
        "main",
    )
    try:
        await wait_bridge(lao, clients, "xiaoxing-mac", "xiao4")
        await lao.send("ping", to_agent="xiao4")
        await until(lambda: len(gw.hooks) == 1, timeout=30)
        h = gw.hooks[0]
        assert h["agentId"] == "main" and h["deliver"] is False
        assert "Direct message from Lao4 (@lao4)" in h["message"] and h["wakeMode"] == "now"
        # Recorded as handed over once the gateway has answered.
        await until(lambda: [s for _, s, _ in items(clients, "xiaoxing-mac", "xiao4")] == ["done"], timeout=10)
        assert gw.turns == []
    finally:
        _, err = await stop(proc)
        await gw.stop()
    assert "Traceback" not in err, err


# -- helpers --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def unary(clients: Clients, device: str) -> Any:
    """A client without a live session (the bridge holds the agent's session); calls name agent_id."""
    c = Client(clients.server.addr, clients.device_dir(device), None, cache=False)
    await c.open(connect=False)
    try:
        yield c
    finally:
        await c.close()


async def _group_auto(c: Client, group: str) -> list[resources_pb2.Message]:
    return [m for m in await c.history(group_id=group) if m.auto_hops]


async def _len_is(fn: Callable[[], Any], n: int) -> bool:
    return len(await fn()) >= n


async def _until_async(pred: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def _wait_messages(
    c: Client, sender: str, n: int, timeout: float = 30.0, **where: str
) -> list[resources_pb2.Message]:
    deadline = time.monotonic() + timeout
    while True:
        got = await messages_by(c, sender, **where)
        if len(got) >= n:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(got)} of {n} messages from {sender} within {timeout} s")
        await asyncio.sleep(0.1)


async def test_setup_applies_config_skill_and_env_and_doctor_finds_each_problem(
    clients: Clients, tmp_path: pathlib.Path
) -> None:
    gw = await FakeGateway().start()
    await (await clients.live("xiaojin-mini", "jin8", "Jin8")).close()
    config = tmp_path / "openclaw.json"
    config.write_text(json.dumps({"gateway": {"port": 18789, "auth": {"mode": "token", "token": TOKEN}}, "x": 1}))
    skills, env_file = tmp_path / "skills", tmp_path / "agentnet" / "openclaw.env"
    env = bridge_env(clients, "xiaojin-mini", "jin8") | {"PATH": "/usr/bin:/bin"}
    env.pop("AGENTNET_OPENCLAW_TOKEN")

    async def agentnet(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "agentnet"), "openclaw", *args],
            env=env | extra,
            capture_output=True,
            text=True,
            timeout=60,
        )

    common = ("--config", str(config), "--skills-dir", str(skills), "--gateway-url", gw.url)
    try:
        dry = await agentnet("setup", *common, "--env-file", str(env_file))
        assert dry.returncode == 0, dry.stderr
        assert '"responses": {' in dry.stdout and '"chatCompletions": {' in dry.stdout and "--apply" in dry.stdout
        assert json.loads(config.read_text())["x"] == 1 and not env_file.exists() and not skills.exists()

        done = await agentnet("setup", *common, "--env-file", str(env_file), "--apply")
        assert done.returncode == 0, done.stderr
        cfg = json.loads(config.read_text())
        assert cfg["x"] == 1 and cfg["gateway"]["port"] == 18789  # the rest of the file is kept
        assert cfg["gateway"]["auth"] == {"mode": "token", "token": TOKEN}  # its token too
        endpoints = cfg["gateway"]["http"]["endpoints"]
        assert endpoints["responses"]["enabled"] is True and endpoints["chatCompletions"]["enabled"] is True
        entry = cfg["skills"]["entries"]["agentnet"]
        assert entry["env"] == {
            "AGENTNET_SERVER": clients.server.addr,
            "AGENTNET_DEVICE_DIR": str(clients.device_dir("xiaojin-mini")),
            "AGENTNET_AGENT": "jin8",
        }
        assert str(skills) in cfg["skills"]["load"]["extraDirs"]
        assert (config.stat().st_mode & 0o777, env_file.stat().st_mode & 0o777) == (0o600, 0o600)
        assert (tmp_path / "openclaw.json.bak").exists()
        skill = (skills / "agentnet" / "SKILL.md").read_text()
        assert f"`{BIN / 'agentnet'} send <group>" in skill and "bins:" not in skill
        assert f"AGENTNET_OPENCLAW_TOKEN={TOKEN}" in env_file.read_text()

        ok = await agentnet("doctor", *common, "--env-file", str(env_file))
        lines = ok.stdout.splitlines()
        assert ok.returncode == 0 and all(ln.startswith("ok") for ln in lines), ok.stdout + ok.stderr
        for check in (
            "gateway reachable",
            "endpoint enabled",
            "token accepted",
            "openclaw agent exists",
            "skill installed",
            "skill visible",
            "agentnet runs from the gateway",
            "device certificate",
            "server reachable",
        ):
            assert any(ln.split(": ", 1)[0].endswith(check) for ln in lines), (check, lines)

        # Each problem is one FAIL line with its fix (a wrong token, and agentnet unable to reach the
        # server with the skill's environment); the other checks still run.
        cfg["skills"]["entries"]["agentnet"]["env"]["AGENTNET_SERVER"] = "127.0.0.1:9"
        config.write_text(json.dumps(cfg))
        bad = await agentnet("doctor", *common, "--env-file", str(env_file), AGENTNET_OPENCLAW_TOKEN="wrong")
        fails = [ln for ln in bad.stdout.splitlines() if ln.startswith("FAIL")]
        assert bad.returncode == 1 and len(fails) == 2, bad.stdout
        assert fails[0].startswith("FAIL  token accepted: the gateway refused the token (401)")
        assert fails[1].startswith("FAIL  agentnet runs from the gateway: `") and "127.0.0.1:9" in fails[1]
        assert "ok    device certificate" in bad.stdout and "ok    server reachable" in bad.stdout
        (skills / "agentnet" / "SKILL.md").unlink()
        # The bridge runs the same checks at start and refuses with the same line.
        bridge = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "agentnet"), "bridge", "--env-file", str(env_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        [line] = bridge.stderr.strip().splitlines()
        assert bridge.returncode == 78 and line.startswith("agentnet bridge: skill installed: no "), bridge.stderr
        assert "openclaw setup --apply" in line
    finally:
        await gw.stop()


def test_service_files_for_the_bridge(tmp_path: pathlib.Path) -> None:
    """The systemd user unit verifies (with this checkout's agentnet) and the launchd plist runs
    the same command; both run arguments the bridge accepts."""
    import plistlib
    import re
    import shutil

    root = pathlib.Path(__file__).resolve().parent.parent / "contrib" / "openclaw"
    unit = (root / "agentnet-bridge.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M)
    assert exec_start is not None and exec_start.group(1) == "%h/agentnet/.venv/bin/agentnet"
    assert "RestartPreventExitStatus=78" in unit and "TimeoutStopSec=5s" in unit
    args = exec_start.group(2).replace("%h", "/home/u").split()
    assert parser().parse_args(args).env_file == "/home/u/.config/agentnet/openclaw.env"
    plist = plistlib.loads((root / "net.agentnet.bridge.plist").read_bytes())
    assert plist["ProgramArguments"][1:3] == ["bridge", "--env-file"] and plist["KeepAlive"] == {
        "SuccessfulExit": False
    }
    assert plist["Umask"] == 0o077
    parser().parse_args(plist["ProgramArguments"][1:])
    if shutil.which("systemd-analyze"):
        installed = tmp_path / "agentnet-bridge.service"
        installed.write_text(unit.replace("%h/agentnet/.venv/bin/agentnet", str(BIN / "agentnet")))
        runtime = tmp_path / "run"
        runtime.mkdir(mode=0o700)
        r = subprocess.run(
            ["systemd-analyze", "--user", "verify", str(installed)],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)),
        )
        assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


# -- the bridge's pure functions -------------------------------------------------------------------


def test_silence_placeholder_and_no_reply_post_nothing() -> None:
    def responses(text: str) -> dict[str, Any]:
        return {
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]
        }

    assert reply_text("responses", responses("No response from OpenClaw.")) == ""
    assert reply_text("responses", responses("  No response from OpenClaw.\n")) == ""
    assert reply_text("responses", responses("NO_REPLY")) == ""
    assert reply_text("chat", {"choices": [{"message": {"content": " NO_REPLY "}}]}) == ""
    assert reply_text("chat", {"choices": [{"message": {"content": "No response from OpenClaw."}}]}) == ""
    # Only the exact texts: an answer that quotes them is an answer.
    assert reply_text("responses", responses("NO_REPLY needed? I think not.")) == "NO_REPLY needed? I think not."
    turn = message_turn(
        [Item("dm:dm:a+b:1", "dm", "dm:a+b", "a", "hi", "dm:a+b", 1, 0)], [], "b", Directory(), "agentnet", 3
    )
    assert "answer exactly NO_REPLY" in turn


def test_replies_are_clipped_by_utf8_bytes_with_a_marker() -> None:
    assert clip_utf8("short", 100) == "short"
    text = "邢" * 30_000  # 90,000 bytes of UTF-8, 30,000 characters
    clipped = clip_utf8(text, 65_536)
    data = clipped.encode()
    assert len(data) <= 65_536 and clipped.endswith(TRUNCATED)
    assert set(clipped.removesuffix(TRUNCATED)) == {"邢"}  # no character cut in half
    assert len(data) > 65_536 - 3 - len(TRUNCATED.encode())
    exact = "a" * 65_536
    assert clip_utf8(exact, 65_536) == exact


def _msg(conv: str, content: str, mentions: tuple[str, ...] = (), hops: int = 1) -> resources_pb2.Message:
    return resources_pb2.Message(
        conversation=conv, seq=5, sender="ant", content=content, mentions=list(mentions), auto_hops=hops
    )


def test_explicit_mention_follows_the_server_resolution() -> None:
    g = "group:hive"
    # The server resolved these (CJK right after the name, a sentence-final dot, the mentions list).
    assert mentions_explicitly(_msg(g, "@小邢请看", ("xiaoxing",)), "xiaoxing", "小邢")
    assert mentions_explicitly(_msg(g, "over to you @bee.", ("bee",)), "bee", "Bee")
    assert mentions_explicitly(_msg(g, "see the list", ("bee",)), "bee", "Bee")
    # Not resolved by the server: not a mention, whatever the text looks like.
    assert not mentions_explicitly(_msg(g, "write to bob@bee.example", ()), "bee", "Bee")
    assert not mentions_explicitly(_msg(g, "@beekeeper here", ()), "bee", "Bee")
    # @all puts every member in `mentions`; it does not count unless the agent is named too.
    assert not mentions_explicitly(_msg(g, "@all status", ("bee", "jin")), "bee", "Bee")
    assert not mentions_explicitly(_msg(g, "@所有人 请看", ("xiaoxing", "jin")), "xiaoxing", "小邢")
    assert mentions_explicitly(_msg(g, "@all status, @bee first", ("bee", "jin")), "bee", "Bee")
    assert mentions_explicitly(_msg(g, "@所有人 @小邢请看", ("xiaoxing", "jin")), "xiaoxing", "小邢")
    # Direct messages carry no mentions: the text decides, by the same rules.
    assert mentions_explicitly(_msg("dm:ant+bee", "thanks @bee."), "bee", "Bee")
    assert mentions_explicitly(_msg("dm:ant+xiaoxing", "@小邢请看"), "xiaoxing", "小邢")
    assert not mentions_explicitly(_msg("dm:ant+bee", "@beekeeper"), "bee", "Bee")


def test_turn_gives_the_exact_send_command_with_the_next_hop() -> None:
    group = message_turn(
        [Item("mention:group:hive:4", "mention", "group:hive", "ant", "@bee", "group:hive", 4, 1)],
        [],
        "bee",
        Directory(),
        "/opt/agentnet",
        3,
    )
    assert '`/opt/agentnet send hive "<text>" --auto-hops 2`' in group
    assert "must carry `--auto-hops 2`" in group
    dm = message_turn(
        [Item("dm:dm:ant+bee:1", "dm", "dm:ant+bee", "ant", "hi", "dm:ant+bee", 1, 0)],
        [],
        "bee",
        Directory(),
        "agentnet",
        3,
    )
    assert '`agentnet dm ant "<text>" --auto-hops 1`' in dm


# -- the bridge as a process -----------------------------------------------------------------------


async def test_send_and_dm_take_auto_hops(clients: Clients) -> None:
    lao = await clients.live("laoxing-vps", "lao6", "Lao6")
    await lao.join("hops", create=True)
    xiao = await clients.live("xiaoxing-mac", "xiao6", "Xiao6")
    await xiao.join("hops")
    await xiao.close()
    env = bridge_env(clients, "xiaoxing-mac", "xiao6")

    def agentnet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "agentnet"), *args], env=env, capture_output=True, text=True, timeout=60)

    sent = await asyncio.to_thread(agentnet, "send", "hops", "from a turn", "--auto-hops", "2")
    assert sent.returncode == 0, sent.stderr
    dm = await asyncio.to_thread(agentnet, "dm", "lao6", "also from a turn", "--auto-hops", "1")
    assert dm.returncode == 0, dm.stderr
    [g] = await messages_by(lao, "xiao6", group_id="hops")
    [d] = await messages_by(lao, "xiao6", peer_id="xiao6")
    assert (g.content, g.auto_hops, d.content, d.auto_hops) == ("from a turn", 2, "also from a turn", 1)


async def test_task_answers_survive_a_closed_task_and_repeat_notes(clients: Clients) -> None:
    """The agent closes its task during the turn: the answer (no longer a possible note) is posted
    in the task's group, or to the creator directly. Two answers with the same text to two status
    changes are two notes."""
    lao = await clients.live("laoxing-vps", "lao5", "Lao5")
    await lao.join("t5", create=True)
    xiao = await clients.live("xiaoxing-mac", "xiao5", "Xiao5")
    await xiao.join("t5")
    await xiao.close()
    async with unary(clients, "xiaoxing-mac") as u:

        async def close_it(key: str, text: str) -> None:
            if "close me" in text and key.startswith("agentnet:xiao5:task:"):
                tid = key.removeprefix("agentnet:xiao5:task:")
                await u.update_task(tid, status=resources_pb2.TASK_STATUS_IN_PROGRESS, agent_id="xiao5")
                await u.update_task(tid, status=resources_pb2.TASK_STATUS_DONE, result="did it", agent_id="xiao5")

        gw = await FakeGateway(reply=lambda s, text: "Noted.").start()
        gw.on_turn = close_it
        proc = start_bridge(clients, "xiaoxing-mac", "xiao5", gw.url, *FAST)
        try:
            await wait_bridge(lao, clients, "xiaoxing-mac", "xiao5")
            in_group = await lao.create_task("close me quickly", "xiao5", group_id="t5")
            [posted] = await _wait_messages(lao, "xiao5", 1, group_id="t5")
            assert posted.content == f"[task {in_group.id}] Noted." and posted.auto_hops == 1
            assert (await lao.get_task(in_group.id)).status == resources_pb2.TASK_STATUS_DONE

            direct = await lao.create_task("close me too", "xiao5")
            [dm] = await _wait_messages(lao, "xiao5", 1, peer_id="xiao5")
            assert dm.content == f"[task {direct.id}] Noted." and dm.recipient == "lao5"

            # Two status changes of a task Xiao5 created, the same answer to each: two notes.
            mine = await u.create_task("write the notes", "lao5", agent_id="xiao5")

            async def notes(n: int) -> bool:
                t = await lao.get_task(mine.id)
                return [c.note for c in t.history if c.actor == "xiao5" and c.note != "created"] == ["Noted."] * n

            await lao.update_task(mine.id, status=resources_pb2.TASK_STATUS_ACCEPTED)
            await _until_async(lambda: notes(1))
            await lao.update_task(mine.id, status=resources_pb2.TASK_STATUS_IN_PROGRESS)
            await _until_async(lambda: notes(2))
            await asyncio.sleep(0.5)
            assert await notes(2)
            assert len(await messages_by(lao, "xiao5", group_id="t5")) == 1
        finally:
            _, err = await stop(proc)
            await gw.stop()
    assert "Traceback" not in err, err


async def test_failing_turns_are_given_up_after_three_attempts(clients: Clients) -> None:
    """A turn that fails after reaching the gateway (5xx) may have run: it is tried 3 times, then
    its item is recorded as failed with the reason; the bridge keeps running and answers the next."""
    gw = await FakeGateway().start()
    lao = await clients.live("laoxing-vps", "lao7", "Lao7")
    await lao.join("g7", create=True)
    xiao = await clients.live("xiaoxing-mac", "xiao7", "Xiao7")
    await xiao.join("g7")
    await xiao.close()
    proc = start_bridge(clients, "xiaoxing-mac", "xiao7", gw.url, *FAST)
    key = "agentnet:xiao7:group:g7"
    try:
        await wait_bridge(lao, clients, "xiaoxing-mac", "xiao7")
        gw.fail_turns = 100
        bad = await lao.send("@xiao7 this one fails", group_id="g7")
        want = (f"mention:group:g7:{bad.seq}", "failed")
        await until(lambda: [i[:2] for i in items(clients, "xiaoxing-mac", "xiao7")] == [want], timeout=30)
        [(_, _, note)] = items(clients, "xiaoxing-mac", "xiao7")
        assert "502" in note and "gave up after 3 attempts" in note, note
        assert gw.attempts[key] == 3
        gw.fail_turns = 0
        ok = await lao.send("@xiao7 this one works", group_id="g7")
        [answer] = await _wait_messages(lao, "xiao7", 1, group_id="g7")
        assert answer.reply_to == ok.seq and gw.attempts[key] == 4
    finally:
        _, err = await stop(proc)
        await gw.stop()
    assert "gave up after 3 attempts" in err and "Traceback" not in err, err


async def test_stop_during_the_skill_check_is_fast(clients: Clients, tmp_path: pathlib.Path) -> None:
    """SIGTERM while the start-up check runs the skill's agentnet (a slow one here) stops the bridge
    within 2 s and kills that command."""
    gw = await FakeGateway().start()
    await (await clients.live("xiaojin-mini", "jin7", "Jin7")).close()
    slow = tmp_path / "bin" / "agentnet"
    slow.parent.mkdir()
    pid_file = tmp_path / "pid"
    slow.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    slow.chmod(0o755)
    skills = tmp_path / "skills"
    (skills / "agentnet").mkdir(parents=True)
    (skills / "agentnet" / "SKILL.md").write_text(f"run `{slow} send <group>`\n")
    config = tmp_path / "openclaw.json"
    skill_env = {"AGENTNET_SERVER": "x", "AGENTNET_DEVICE_DIR": "y", "AGENTNET_AGENT": "jin7"}
    config.write_text(json.dumps({"skills": {"entries": {"agentnet": {"env": skill_env}}}}))
    env = {"AGENTNET_OPENCLAW_CONFIG": str(config), "AGENTNET_OPENCLAW_SKILLS": str(skills)}
    proc = start_bridge(clients, "xiaojin-mini", "jin7", gw.url, env=env)
    try:
        await until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout=30)
        pid = int(pid_file.read_text())
        took, err = await stop(proc)
        assert took < 2.0 and proc.returncode == 0 and "Traceback" not in err, (took, err)
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, "the skill check's command outlived the bridge"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        await gw.stop()

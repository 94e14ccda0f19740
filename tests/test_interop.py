"""Issue 12 finding 8: a client in another language (Node.js with @grpc/grpc-js), written from
docs/signing.md and the protos alone, signs messages that Python recipients verify, and verifies
the Python client's signed messages. `make test-interop` installs the Node packages into a
git-ignored folder and runs this (marker `interop`)."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import sys

import pytest

from agentnet_client import AgentProfile
from agentnet_client.signing import Verification
from tests.conftest import ROOT, Clients, collect

pytestmark = pytest.mark.interop

PAYLOAD = {
    "count": 3,
    "big": 9007199254740991,
    "ratio": 0.1,
    "tiny": 1e-7,
    "huge": 1e21,
    "whole": 2.0,
    "name": "小邢 😀 é",
    "nested": {"list": [1, 2.5, "x", None, True, {"z": 1, "a": [{"deep": -0.5}]}], "empty": {}},
}


def _node_env() -> tuple[str, pathlib.Path]:
    folder = os.environ.get("AGENTNET_TEST_INTEROP")
    if not folder:
        pytest.skip("AGENTNET_TEST_INTEROP is not set (run `make test-interop`)")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    return node, pathlib.Path(folder)


def _include_dirs() -> list[str]:
    import google.api

    site = pathlib.Path(next(iter(google.api.__path__))).parent.parent
    return [str(ROOT / "protos"), str(site)]


async def test_node_and_python_verify_each_other(clients: Clients, tmp_path: pathlib.Path) -> None:
    node, modules = _node_env()
    py = await clients.live("laoxing-vps", "py-agent")
    await py.join("interop", create=True)
    sent = await py.send("from python", group_id="interop", payload=PAYLOAD)
    cfg = {
        "server": clients.server.addr,
        "device_dir": str(clients.device_dir("xiaoxing-mac")),
        "device_id": "xiaoxing-mac",
        "agent": "node-agent",
        "group": "interop",
        "protos": _include_dirs(),
        "payload": PAYLOAD,
        "content": "from node ✓",
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg, ensure_ascii=False))
    proc = await asyncio.create_subprocess_exec(
        node,
        str(ROOT / "tests" / "interop" / "client.mjs"),
        str(tmp_path / "cfg.json"),
        cwd=str(modules),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    print("\nnode:", json.dumps(result, ensure_ascii=False))
    # Node verified the Python client's message, payload and all.
    [theirs] = [v for v in result["verified"] if v["seq"] == sent.seq]
    assert theirs["verified"] is True and theirs["tampered_rejected"] is True
    assert theirs["payload"] == PAYLOAD and theirs["content"] == "from python"
    # Python verifies Node's message (signed as raw r||s over the RFC 8785 payload text).
    [mine] = [m for m in await collect(py, "message", 2, conv="group:interop") if m.sender == "node-agent"]
    assert mine.seq == result["sent"]["seq"] and mine.content == "from node ✓"
    assert py.verification(mine) == Verification.VERIFIED
    from google.protobuf import json_format

    assert json_format.MessageToDict(mine.payload) == json.loads(json.dumps(PAYLOAD), parse_int=float)
    # A fresh recipient that was offline verifies both from history too.
    late = await clients.make("d4", connect=False)
    await late.register_agent(AgentProfile("late-reader"))
    await late.join_group("interop", "late-reader")
    history = await late.history(group_id="interop", agent_id="late-reader")
    assert {m.sender for m in history} == {"py-agent", "node-agent"} and late.rejected == 0
    assert sys.version_info >= (3, 11)

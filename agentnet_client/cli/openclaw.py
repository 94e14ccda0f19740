"""OpenClaw: `agentnet bridge` (hand events to the local gateway) and `agentnet skill`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from ..errors import AgentnetError
from .common import Add, make_client, session_agent


async def cmd_bridge(ns: argparse.Namespace) -> int:
    from ..bridge import KINDS, Bridge, BridgeError, HookConfig

    if not ns.hook_url.startswith(("http://", "https://")):
        raise AgentnetError(
            "INVALID_ARGUMENT", "--hook-url must be the gateway's http(s)://.../hooks/agent URL", "BAD_HOOK_URL"
        )
    token = os.environ.get(ns.hook_token_env, "")
    if not token:
        raise AgentnetError("INVALID_ARGUMENT", f"set {ns.hook_token_env} to the gateway's hooks.token", "NO_TOKEN")
    kinds = {k.strip() for k in ns.kinds.split(",") if k.strip()}
    if not kinds or not kinds <= set(KINDS):
        raise AgentnetError("INVALID_ARGUMENT", f"--kinds takes {', '.join(KINDS)}", "BAD_KINDS")
    hook = HookConfig(ns.hook_url, token, ns.openclaw_agent, ns.session_key_prefix, ns.deliver)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("agentnet.client").setLevel(logging.WARNING)
    client = make_client(ns, agent=await session_agent(ns), cache=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with client:
        try:
            await Bridge(client, hook, kinds).run(stop)
        except BridgeError as exc:
            raise AgentnetError("FAILED_PRECONDITION", str(exc), "BRIDGE_CONFIG") from None
    return 0


async def cmd_skill(ns: argparse.Namespace) -> int:
    import pathlib
    import shutil

    src = pathlib.Path(__file__).parent.parent / "skill"
    if ns.install:
        dest = pathlib.Path(ns.install) / "agentnet"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "SKILL.md", dest / "SKILL.md")
        print(dest)
    else:
        print(src)
    return 0


def register(add: Add) -> None:
    p = add("bridge", cmd_bridge, "hand mentions, direct messages and tasks to the local OpenClaw gateway")
    p.add_argument(
        "--hook-url",
        default=os.environ.get("AGENTNET_HOOK_URL", ""),
        help="the gateway's /hooks/agent URL (env AGENTNET_HOOK_URL)",
    )
    p.add_argument(
        "--hook-token-env",
        default="AGENTNET_HOOK_TOKEN",
        help="environment variable holding hooks.token (default AGENTNET_HOOK_TOKEN; never a flag, "
        "so it stays out of process listings)",
    )
    p.add_argument("--openclaw-agent", default="", help="agentId to run (default: the gateway's default agent)")
    p.add_argument(
        "--session-key-prefix",
        default="",
        help="send sessionKey=<prefix><conversation> (needs hooks.allowRequestSessionKey)",
    )
    p.add_argument("--deliver", action="store_true", help="let OpenClaw deliver the agent's reply to its channel")
    p.add_argument("--kinds", default="mention,dm,task", help="what to hand over (mention,dm,task)")

    p = add("skill", cmd_skill, "print the OpenClaw skill folder, or install it with --install DIR")
    p.add_argument("--install", help="copy the skill into DIR/agentnet/")

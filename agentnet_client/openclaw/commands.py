"""Commands: `agentnet bridge`, `agentnet openclaw setup|doctor`, `agentnet skill`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import shutil
import signal
import sys
import time
from typing import Any

from ..argtypes import positive_float, positive_int
from ..cli.errors import LocalError
from ..errors import AgentnetError
from .options import DEFAULT_URL, KINDS, BridgeOptions, GatewayConfig

# Exit codes of `agentnet bridge` a supervisor can act on (systemd: RestartPreventExitStatus=78).
EXIT_CONFIG = 78  # EX_CONFIG: wrong token, endpoint disabled, unknown agent... restarting cannot help
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the gateway or the server is not reachable yet


def _load_env_file(path: str | None) -> None:
    """Fill the environment from the file `agentnet openclaw setup` wrote (set variables win)."""
    from .setup import default_env_file, read_env_file

    file = pathlib.Path(path) if path else default_env_file()
    if path and not file.exists():
        raise AgentnetError("FAILED_PRECONDITION", f"--env-file {file} does not exist", "NO_ENV_FILE")
    if file.exists():
        for k, v in read_env_file(file).items():
            os.environ.setdefault(k, v)


def _gateway_config(ns: argparse.Namespace, mode: str) -> GatewayConfig:
    if mode == "hook":
        url = ns.hook_url or os.environ.get("AGENTNET_HOOK_URL", "")
        if not url.startswith(("http://", "https://")):
            raise AgentnetError(
                "INVALID_ARGUMENT", "--hook-url must be the gateway's http(s)://.../hooks/agent URL", "BAD_HOOK_URL"
            )
        token = os.environ.get(ns.hook_token_env, "")
        if not token:
            raise AgentnetError("INVALID_ARGUMENT", f"set {ns.hook_token_env} to the gateway's hooks.token", "NO_TOKEN")
        base, _, path = url.partition("//")[2].partition("/")
        scheme = url.partition("//")[0]
        return GatewayConfig(f"{scheme}//{base}", token, ns.openclaw_agent or "", "hook", 30.0, "/" + path)
    url = ns.gateway_url or os.environ.get("AGENTNET_OPENCLAW_URL") or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise AgentnetError("INVALID_ARGUMENT", "--gateway-url must be http(s)://host:port", "BAD_GATEWAY_URL")
    token = os.environ.get(ns.token_env, "")
    if not token:
        raise AgentnetError(
            "INVALID_ARGUMENT",
            f"set {ns.token_env} to the gateway's gateway.auth.token (`agentnet openclaw setup` prints it and "
            "writes it to the environment file `agentnet bridge --env-file` reads)",
            "NO_TOKEN",
        )
    agent = ns.openclaw_agent or os.environ.get("AGENTNET_OPENCLAW_AGENT") or "main"
    return GatewayConfig(url, token, agent, ns.endpoint, ns.turn_timeout)


async def cmd_bridge(ns: argparse.Namespace) -> int:
    started = time.time()  # before the imports, checks and the wait for the server below
    from ..client import Client
    from ..device import DeviceError
    from .bridge import Bridge, BridgeError
    from .setup import agentnet_executable, certificate_check

    _load_env_file(ns.env_file)
    mode = ns.mode or ("hook" if ns.hook_url else "reply")
    cfg = _gateway_config(ns, mode)
    kinds = {k.strip() for k in ns.kinds.split(",") if k.strip()}
    if not kinds or not kinds <= set(KINDS):
        raise LocalError(f"--kinds takes {', '.join(KINDS)}", "BAD_KINDS", "INVALID_ARGUMENT")
    if not 1 <= ns.max_hops <= 16:
        raise LocalError("--max-hops must be between 1 and 16", "BAD_MAX_HOPS", "INVALID_ARGUMENT")
    options = BridgeOptions(
        kinds=frozenset(kinds),
        max_hops=ns.max_hops,
        parallel=ns.parallel,
        rate_per_minute=ns.rate_per_minute,
        burst=ns.burst,
        batch_max=ns.batch_max,
        agentnet=os.environ.get("AGENTNET_BIN") or agentnet_executable(),
        session_key_prefix=ns.session_key_prefix,
        deliver=ns.deliver,
        started=started,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("agentnet.client").setLevel(logging.WARNING)
    log = logging.getLogger("agentnet.bridge")

    def refuse(line: str, code: int) -> int:
        print(f"agentnet bridge: {line}", file=sys.stderr)
        return code

    from ..client import settings_from_env
    from .setup import gateway_checks

    server, device_dir = settings_from_env(ns.server, ns.device_dir)
    cert = certificate_check(str(device_dir))
    if not cert.ok and "expires in" not in cert.detail:
        return refuse(f"{cert.name}: {cert.detail}", EXIT_CONFIG)
    if not cert.ok:
        log.warning("%s: %s", cert.name, cert.detail)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = {"n": 0}

    def on_signal() -> None:
        signals["n"] += 1
        stop.set()
        if signals["n"] > 1:
            os._exit(130)  # a second Ctrl-C: leave now

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    async def stoppable(aw: Any) -> Any:
        """Await `aw` unless a stop signal comes first (then None)."""
        task = asyncio.ensure_future(aw)
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task not in done:
            task.cancel()  # and wait for it: a subprocess it runs is killed
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    if not ns.no_checks:
        checks = await stoppable(gateway_checks(cfg))
        if checks is None:
            return 0
        for c in checks:
            if not c.ok:
                return refuse(f"{c.name}: {c.detail}", EXIT_UNAVAILABLE if c.transient else EXIT_CONFIG)
        # After `agentnet openclaw setup`, the skill and the agent's environment are checked too.
        config, skills = os.environ.get("AGENTNET_OPENCLAW_CONFIG"), os.environ.get("AGENTNET_OPENCLAW_SKILLS")
        if config and skills and mode == "reply":
            from .setup import skill_checks

            found = await stoppable(skill_checks(pathlib.Path(config), pathlib.Path(skills), None))
            if found is None:
                return 0
            for c in found:
                if not c.ok:
                    return refuse(f"{c.name}: {c.detail}", EXIT_UNAVAILABLE if c.transient else EXIT_CONFIG)
    from ..cli.common import session_agent

    def refuse_error(exc: AgentnetError) -> int:
        """A failure to reach or use the server: transient ones (unreachable, overloaded) let a
        supervisor restart the bridge; the rest (unknown agent, no permission) are configuration."""
        transient = exc.retryable or exc.status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
        return refuse(exc.message, EXIT_UNAVAILABLE if transient else EXIT_CONFIG)

    try:
        agent = await stoppable(session_agent(ns))
    except AgentnetError as exc:
        return refuse_error(exc)
    if agent is None:
        return 0
    try:
        client = Client(server, device_dir, agent, cache=True, server_name=ns.server_name)
    except DeviceError as exc:
        return refuse(str(exc), EXIT_CONFIG)
    try:
        await client.open()
    except AgentnetError as exc:
        return refuse_error(exc)
    try:
        bridge = Bridge(client, cfg, options)
        log.info(
            "bridge for %s: %s mode, gateway %s, OpenClaw agent %s, max hops %d",
            agent,
            mode,
            cfg.base,
            cfg.agent or "(default)",
            options.max_hops,
        )
        running = asyncio.ensure_future(bridge.run(stop))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not running.done():
            # Stopped while starting (reading the agent list from an unreachable server, say):
            # give run() a moment to return by itself, then cancel it.
            done, _ = await asyncio.wait({running}, timeout=0.5)
            if not done:
                running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            return 0
        try:
            running.result()
        except BridgeError as exc:
            return refuse(str(exc), EXIT_CONFIG)
        except AgentnetError as exc:
            return refuse_error(exc)
    finally:
        try:
            await asyncio.wait_for(client.close(), 1.5)
        except (TimeoutError, asyncio.CancelledError):
            pass
    return 0


async def cmd_openclaw_setup(ns: argparse.Namespace) -> int:
    import json

    from ..cli.common import session_agent
    from ..client import settings_from_env
    from .setup import apply, default_config_path, default_env_file, plan

    server, device_dir = settings_from_env(ns.server, ns.device_dir)
    agent = await session_agent(ns)
    config_path = pathlib.Path(ns.config) if ns.config else default_config_path()
    p = await asyncio.to_thread(
        plan,
        config_path,
        server,
        str(device_dir),
        agent,
        ns.gateway_url or DEFAULT_URL,
        ns.openclaw_agent or "main",
        pathlib.Path(ns.skills_dir) if ns.skills_dir else None,
        pathlib.Path(ns.env_file) if ns.env_file else default_env_file(),
    )
    if ns.json:
        print(json.dumps({"config_path": str(p.config_path), "patch": p.patch, "env": p.env, "applied": ns.apply}))
    else:
        print(f"# OpenClaw gateway configuration for agentnet (merge into {p.config_path}):")
        print(json.dumps(p.patch, indent=2, ensure_ascii=False))
        print(f"# skill: {p.skills_dir / 'agentnet' / 'SKILL.md'} (commands run {p.agentnet})")
        print(f"# environment file for the bridge: {p.env_file}")
    if ns.apply:
        for line in await asyncio.to_thread(apply, p):
            if not ns.json:
                print(line)
        if not ns.json:
            print("next: `agentnet openclaw doctor`, then `agentnet bridge` (or the systemd/launchd unit in contrib/)")
    elif not ns.json:
        print("(nothing written: add --apply to write the configuration, the skill and the environment file)")
    return 0


async def cmd_openclaw_doctor(ns: argparse.Namespace) -> int:
    from ..client import settings_from_env
    from .setup import certificate_check, default_config_path, openclaw_home, server_check, skill_checks

    _load_env_file(ns.env_file)
    token = os.environ.get("AGENTNET_OPENCLAW_TOKEN", "")
    url = ns.gateway_url or os.environ.get("AGENTNET_OPENCLAW_URL") or DEFAULT_URL
    agent = ns.openclaw_agent or os.environ.get("AGENTNET_OPENCLAW_AGENT") or "main"
    from .setup import Check, gateway_checks

    checks: list[Check] = []
    if not token:
        checks.append(
            Check("token accepted", False, "AGENTNET_OPENCLAW_TOKEN is not set: run `agentnet openclaw setup --apply`")
        )
    else:
        checks += await gateway_checks(GatewayConfig(url, token, agent, ns.endpoint, 30.0))
    config_path = pathlib.Path(ns.config or os.environ.get("AGENTNET_OPENCLAW_CONFIG") or default_config_path())
    skills = pathlib.Path(ns.skills_dir or os.environ.get("AGENTNET_OPENCLAW_SKILLS") or openclaw_home() / "skills")
    openclaw_bin = ns.openclaw_bin or shutil.which("openclaw")
    checks += await skill_checks(config_path, skills, openclaw_bin)
    try:
        server, device_dir = settings_from_env(ns.server, ns.device_dir)
        checks.append(certificate_check(str(device_dir)))
        checks.append(await server_check(server, str(device_dir)))
    except AgentnetError as exc:
        checks.append(Check("device certificate", False, exc.message))
    for c in checks:
        print(c.line())
    bad = [c for c in checks if not c.ok]
    return 1 if bad else 0


async def cmd_openclaw(ns: argparse.Namespace) -> int:
    if ns.openclaw_cmd == "setup":
        return await cmd_openclaw_setup(ns)
    return await cmd_openclaw_doctor(ns)


async def cmd_skill(ns: argparse.Namespace) -> int:
    from .setup import SKILL_SRC, agentnet_executable, skill_text

    if ns.install:
        dest = pathlib.Path(ns.install) / "agentnet"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "SKILL.md").write_text(skill_text(agentnet_executable()))
        print(dest)
    else:
        print(SKILL_SRC.parent)
    return 0


def _gateway_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gateway-url", help=f"the OpenClaw gateway (env AGENTNET_OPENCLAW_URL, default {DEFAULT_URL})")
    p.add_argument("--openclaw-agent", help="the OpenClaw agent id (env AGENTNET_OPENCLAW_AGENT, default main)")
    p.add_argument(
        "--endpoint",
        choices=("responses", "chat"),
        default="responses",
        help="the gateway endpoint turns run on: /v1/responses (default) or /v1/chat/completions",
    )


def register(add: Any) -> None:
    d = BridgeOptions()
    p = add(
        "bridge",
        cmd_bridge,
        "answer mentions, direct messages and tasks with the local OpenClaw agent and post its answers back",
    )
    p.add_argument(
        "--mode",
        choices=("reply", "hook"),
        help="reply (default): run a turn and post the answer; hook: hand over to /hooks/agent, fire-and-forget",
    )
    _gateway_args(p)
    p.add_argument(
        "--token-env",
        default="AGENTNET_OPENCLAW_TOKEN",
        help="environment variable holding gateway.auth.token (default AGENTNET_OPENCLAW_TOKEN; never a flag, so "
        "it stays out of process listings)",
    )
    p.add_argument("--env-file", help="read settings from this file (default: the one `agentnet openclaw setup` wrote)")
    p.add_argument(
        "--max-hops", type=positive_int, default=d.max_hops, help=f"longest automatic chain (default {d.max_hops})"
    )
    p.add_argument("--parallel", type=positive_int, default=d.parallel, help=f"turns at a time (default {d.parallel})")
    p.add_argument(
        "--rate-per-minute",
        type=positive_float,
        default=d.rate_per_minute,
        help=f"turns per conversation per minute, sustained (default {d.rate_per_minute:g})",
    )
    p.add_argument(
        "--burst", type=positive_int, default=d.burst, help=f"turns per conversation at once (default {d.burst})"
    )
    p.add_argument(
        "--batch-max", type=positive_int, default=d.batch_max, help=f"items in one turn (default {d.batch_max})"
    )
    p.add_argument("--turn-timeout", type=positive_float, default=600.0, help="seconds one turn may take (default 600)")
    p.add_argument("--kinds", default="mention,dm,task", help="what to answer (mention,dm,task)")
    p.add_argument("--no-checks", action="store_true", help="skip the gateway checks at start")
    hook = p.add_argument_group("hook mode (fire-and-forget)")
    hook.add_argument("--hook-url", help="the gateway's /hooks/agent URL (env AGENTNET_HOOK_URL); implies --mode hook")
    hook.add_argument(
        "--hook-token-env",
        default="AGENTNET_HOOK_TOKEN",
        help="environment variable holding hooks.token (default AGENTNET_HOOK_TOKEN)",
    )
    hook.add_argument("--deliver", action="store_true", help="let OpenClaw deliver the agent's reply to its channel")
    hook.add_argument(
        "--session-key-prefix",
        default="",
        help="send sessionKey=<prefix><conversation> (needs hooks.allowRequestSessionKey)",
    )

    p = add("openclaw", cmd_openclaw, "set up and check the local OpenClaw gateway for agentnet")
    sub = p.add_subparsers(dest="openclaw_cmd", required=True, metavar="command")
    from ..cli.common import nested

    s = nested(sub, "setup", "print (or --apply) the gateway configuration, install the skill, write the environment")
    _gateway_args(s)
    s.add_argument(
        "--config", help="the gateway's configuration file (default $OPENCLAW_CONFIG_PATH or ~/.openclaw/openclaw.json)"
    )
    s.add_argument(
        "--skills-dir", help="install the skill here (default: the gateway's skills folder, ~/.openclaw/skills)"
    )
    s.add_argument("--env-file", help="write the environment here (default ~/.config/agentnet/openclaw.env)")
    s.add_argument(
        "--apply", action="store_true", help="write the configuration (keeping a .bak), the skill and the file"
    )
    s = nested(sub, "doctor", "check everything the bridge and the agent's commands need, one line each with the fix")
    _gateway_args(s)
    s.add_argument("--config", help="the gateway's configuration file")
    s.add_argument("--skills-dir", help="the folder the skill was installed in")
    s.add_argument("--env-file", help="read settings from this file (default: the one setup wrote)")
    s.add_argument("--openclaw-bin", help="the openclaw command, for a live skill check (default: openclaw on PATH)")

    p = add("skill", cmd_skill, "print the OpenClaw skill folder, or install it with --install DIR")
    p.add_argument("--install", help="write the skill (with this machine's agentnet path) into DIR/agentnet/")

"""What every `agentnet` command shares: global options, the client it talks through, the acting agent."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol

from ..argtypes import positive_float
from ..client import Client, settings_from_env
from ..device import Device, load_device
from ..session import AgentProfile
from .errors import LocalError, usage

Handler = Callable[[argparse.Namespace], Awaitable[int]]


class Add(Protocol):
    """Adds a subcommand to `agentnet` (global options included) and returns its parser."""

    def __call__(self, name: str, fn: Handler, help: str) -> argparse.ArgumentParser: ...


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's rule for failures: a command line it refuses (a value out of range,
    a missing argument) is one line that names the mistake and the --help to read, exit 2; not the
    usage text followed by the error. Subcommand parsers are of this class too."""

    json_errors = False  # set from the command line before parsing: --json makes the line JSON

    def error(self, message: str) -> NoReturn:
        raise SystemExit(usage(self.prog, message, self.json_errors))


# Options every command accepts, before or after the subcommand: `agentnet --json agents` and
# `agentnet agents --json` mean the same.
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--server",), {"help": "host:port of the server (env AGENTNET_SERVER, default 127.0.0.1:50051)"}),
    (("--device-dir",), {"help": "folder with cert.pem, key.pem, ca.pem (env AGENTNET_DEVICE_DIR)"}),
    (("--agent",), {"help": "the agent to act as (env AGENTNET_AGENT; default: the device's only agent)"}),
    (("--server-name",), {"help": "TLS name to expect when the address is not in the server certificate"}),
    (("--profile",), {"help": "connection profile to use (env AGENTNET_PROFILE; see `agentnet profile`)"}),
    (
        ("--connect-timeout",),
        {"type": positive_float, "help": "seconds to wait for the server to answer a connection (default 10)"},
    ),
    (("--json",), {"action": "store_true", "help": "machine-readable JSON output"}),
    (("--debug",), {"action": "store_true", "help": "show the full error (traceback, gRPC details)"}),
]


def add_global_options(p: argparse.ArgumentParser, top: bool) -> None:
    """On the top parser with real defaults; on subcommands with SUPPRESS so they never undo the top's."""
    for flags, kw in GLOBAL_OPTIONS:
        kw = dict(kw)
        if not top:
            kw["default"] = argparse.SUPPRESS
        p.add_argument(*flags, **kw)


def nested(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand parser (of `agentnet` or of a command such as `task`) that takes the global options."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    add_global_options(p, top=False)
    return p


def make_client(ns: argparse.Namespace, agent: str = "", cache: bool | str = False) -> Client:
    """A client for this command; with `agent` it also opens that agent's live session."""
    profile = AgentProfile(agent) if agent else None
    client = Client(
        ns.server,
        ns.device_dir,
        profile,
        cache=cache,
        server_name=ns.server_name,
        connect_timeout=ns.connect_timeout or 10.0,
    )
    warn_expiry(client.device)
    return client


EXPIRY_WARNING_DAYS = 30
_warned: set[str] = set()


def warn_expiry(device: Device) -> None:
    """One stderr line per run when this device's certificate expires within EXPIRY_WARNING_DAYS."""
    left = (device.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    if left >= EXPIRY_WARNING_DAYS or device.fingerprint in _warned:
        return
    _warned.add(device.fingerprint)
    print(
        f"agentnet: warning: the certificate of device {device.id!r} expires in {max(left, 0):.0f} days "
        f"({device.cert.not_valid_after_utc:%Y-%m-%d}); ask the operator for a new one "
        f"(agentnet-server certs --device {device.id} --force)",
        file=sys.stderr,
    )


def acting(ns: argparse.Namespace) -> str:
    """The agent named on the command line or in the environment ("" means: ask the server)."""
    return str(ns.agent or os.environ.get("AGENTNET_AGENT") or "")


async def session_agent(ns: argparse.Namespace) -> str:
    """The agent a live session runs as: --agent, AGENTNET_AGENT, or the device's only agent."""
    agent = acting(ns)
    if agent:
        return agent
    async with make_client(ns) as c:
        return await c.acting_agent()


def offline_agent(ns: argparse.Namespace) -> tuple[str, pathlib.Path]:
    """The agent and cache file for offline reads: --agent, or the one agent with a cache on this device."""
    _, folder = settings_from_env(ns.server, ns.device_dir)
    device = load_device(folder)
    cache_dir = pathlib.Path(os.environ.get("AGENTNET_CACHE_DIR") or device.folder)
    agent = acting(ns)
    if agent:
        return agent, cache_dir / f"cache-{device.id}-{agent}.sqlite"
    prefix = f"cache-{device.id}-"
    found = sorted(cache_dir.glob(prefix + "*.sqlite"))
    if len(found) == 1:
        return found[0].name[len(prefix) : -len(".sqlite")], found[0]
    if not found:
        raise LocalError(f"no local cache in {cache_dir}; run `agentnet tail` once while online to fill it", "NO_CACHE")
    names = ", ".join(p.name[len(prefix) : -len(".sqlite")] for p in found)
    raise LocalError(f"this device has caches for several agents ({names}); give --agent", "AGENT_AMBIGUOUS")

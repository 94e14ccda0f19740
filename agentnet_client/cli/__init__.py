# PYTHON_ARGCOMPLETE_OK
"""`agentnet`: the command line for agents, scripts and people.

Settings come from flags or AGENTNET_SERVER, AGENTNET_DEVICE_DIR and AGENTNET_AGENT. Every command
takes --json for machine-readable output; global options go before or after the subcommand.

Each module here adds its own subcommands with a `register(add)` function; a new group of commands
is a new module listed in COMMAND_MODULES.
"""

from __future__ import annotations

import os
import sys

# gRPC's C core prints its own log lines (TLS handshake failures...) unless told otherwise before it
# loads; a person sees our one-line explanation instead, and --debug shows everything.
if "--debug" not in sys.argv[1:]:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import asyncio
from types import ModuleType

import argcomplete

from . import chat, device, doctor, errors, openclaw, profile, tasks
from .common import Handler, Parser, add_global_options, nested

COMMAND_MODULES: list[ModuleType] = [chat, tasks, device, doctor, profile, openclaw]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentnet")
    except PackageNotFoundError:
        return "unknown"


def parser() -> argparse.ArgumentParser:
    ap = Parser(prog="agentnet", description="agentnet command line")
    ap.add_argument("--version", action="version", version=f"agentnet {_version()}")
    add_global_options(ap, top=True)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="command")

    def add(name: str, fn: Handler, help: str) -> argparse.ArgumentParser:
        p = nested(sub, name, help)
        p.set_defaults(fn=fn)
        return p

    for module in COMMAND_MODULES:
        module.register(add)

    # The benchmark is its own package, loaded only by this command; it parses its own arguments.
    p = sub.add_parser(
        "bench",
        help="benchmark a throwaway local server against the raw gRPC ceiling (see docs/performance.md)",
        add_help=False,
        prefix_chars="+",
    )
    p.set_defaults(fn=cmd_bench)
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="see `agentnet bench --help`")
    return ap


async def cmd_bench(ns: argparse.Namespace) -> int:
    from agentnet_bench.bench import run

    try:
        return await run(ns.bench_args, json_output=ns.json)
    except SystemExit as exc:  # its own argument parser: --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    argcomplete.autocomplete(ap)
    Parser.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    ns = ap.parse_args(argv)
    try:
        profile.apply(ns)
        return asyncio.run(ns.fn(ns))
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line (or a traceback with --debug)
        return errors.report(ns, exc)
    finally:
        errors.quiet_exit()


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["COMMAND_MODULES", "main", "parser"]

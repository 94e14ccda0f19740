"""Every failure of an `agentnet` command is one line on stderr that says what to do (`--debug`: everything)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from ..cache import CacheError
from ..device import DeviceError
from ..errors import AgentnetError

# Exit codes: 1 a refused request, 2 a local problem (flags, device folder), 3 the server is unreachable.
EXIT_REFUSED, EXIT_LOCAL, EXIT_UNAVAILABLE = 1, 2, 3


class LocalError(Exception):
    """A problem on this machine (a settings file, a value given on the command line): exit 2.

    The message names what is wrong and how to fix it; with --json, `status` (a gRPC code name) and
    `reason` (a word) go with it."""

    def __init__(self, message: str, reason: str = "", status: str = "FAILED_PRECONDITION") -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


def report(ns: argparse.Namespace, exc: BaseException) -> int:
    """Print `exc` as one line (JSON with --json) and return the exit code."""
    if isinstance(exc, BrokenPipeError):
        # The reader went away (`agentnet history | head -1`): not an error, and nothing more to say.
        silence_stdout()
        return 0
    debug = bool(getattr(ns, "debug", False))
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    cmd = getattr(ns, "cmd", "") or ""
    status, reason, code = "", "", EXIT_REFUSED
    json_status = ""  # the status --json shows when the line itself names none
    if isinstance(exc, AgentnetError):
        status, reason, message = exc.status, exc.reason, exc.message
        code = EXIT_UNAVAILABLE if exc.status in ("UNAVAILABLE", "DEADLINE_EXCEEDED") else EXIT_REFUSED
    elif isinstance(exc, LocalError):
        message, reason, json_status, code = str(exc), exc.reason, exc.status, EXIT_LOCAL
    elif isinstance(exc, (DeviceError, CacheError)):
        message, code = str(exc), EXIT_LOCAL
    elif isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        message, code = f"{exc.strerror or exc}{where}", EXIT_LOCAL
    elif isinstance(exc, ValueError):
        message, code = str(exc), EXIT_LOCAL
    else:
        message = f"unexpected {type(exc).__name__}: {exc}" + ("" if debug else " (run again with --debug for details)")
    if getattr(ns, "json", False):
        err = {"status": status or json_status or "UNKNOWN", "message": message, "reason": reason}
        print(json.dumps({"error": err}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"agentnet {cmd}: " + (f"{status}: " if status else "") + message, file=sys.stderr)
    return code


def usage(prog: str, message: str, json_output: bool) -> int:
    """Print a command line argparse refused as one line (JSON with --json) and return the exit code."""
    line = f"{message} (see `{prog} --help`)"
    if json_output:
        err = {"status": "INVALID_ARGUMENT", "message": line, "reason": "BAD_ARGUMENT"}
        print(json.dumps({"error": err}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"{prog}: {line}", file=sys.stderr)
    return EXIT_LOCAL


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def quiet_exit() -> None:
    """Flush stdout now; a reader that already left is not an error."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except (OSError, ValueError):
        pass

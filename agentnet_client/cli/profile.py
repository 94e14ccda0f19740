"""Connection profiles (`agentnet profile add|use|list|remove`): named server + device folder pairs.

A profile fills in what neither a flag nor an AGENTNET_* variable gives. They live in
$AGENTNET_CONFIG_DIR/profiles.json (default ~/.config/agentnet/), readable by the owner only."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from typing import Any

from .common import Add, nested
from .errors import LocalError
from .output import emit, table

FIELDS = {"server": "AGENTNET_SERVER", "device_dir": "AGENTNET_DEVICE_DIR", "agent": "AGENTNET_AGENT"}
OPTIONAL = ("server_name",)


def config_dir() -> pathlib.Path:
    explicit = os.environ.get("AGENTNET_CONFIG_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return pathlib.Path(base) / "agentnet"


def _path() -> pathlib.Path:
    return config_dir() / "profiles.json"


SHAPE = '{"current": "NAME", "profiles": {"NAME": {"server": "HOST:PORT", "device_dir": "FOLDER"}}}'


def load() -> dict[str, Any]:
    """The profiles file, checked for form: a file that is not what `agentnet profile` writes is one
    clear error naming it, not a failure somewhere in a command."""
    path = _path()
    if not path.exists():
        return {"current": "", "profiles": {}}

    def bad(problem: str) -> LocalError:
        return LocalError(f"{path} {problem}; fix or delete the file", "BAD_PROFILES")

    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise bad(f"is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise bad(f"is not valid JSON ({exc})") from None
    except (ValueError, RecursionError):
        raise bad("is not valid JSON (nested too deep or a number too long)") from None
    problem = _shape_problem(data)
    if problem:
        raise bad(f"{problem} (expected {SHAPE})")
    data.setdefault("current", "")
    data.setdefault("profiles", {})
    return data


def _shape_problem(data: Any) -> str:
    """What is wrong with the form of a parsed profiles file ("" when nothing)."""
    if not isinstance(data, dict):
        return f"holds a JSON {_kind(data)}, not an object"
    if not isinstance(data.get("current", ""), str):
        return f'has a "current" that is a JSON {_kind(data["current"])}, not a profile name'
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        return f'has "profiles" as a JSON {_kind(profiles)}, not an object of named profiles'
    for name, profile in profiles.items():
        if not isinstance(profile, dict):
            return f"has profile {name!r} as a JSON {_kind(profile)}, not an object"
        for field in (*FIELDS, *OPTIONAL):
            if not isinstance(profile.get(field, ""), str):
                return f"has profile {name!r} with {field} a JSON {_kind(profile[field])}, not a string"
    return ""


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def save(data: dict[str, Any]) -> None:
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    tmp = folder / "profiles.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
    os.replace(tmp, _path())


def apply(ns: argparse.Namespace) -> None:
    """Fill the connection settings of `ns` from the chosen profile (--profile, AGENTNET_PROFILE, current)."""
    if getattr(ns, "cmd", "") == "profile":
        return
    name = getattr(ns, "profile", None) or os.environ.get("AGENTNET_PROFILE") or ""
    data: dict[str, Any] = load() if (name or _path().exists()) else {"current": "", "profiles": {}}
    name = name or data["current"]
    if not name:
        return
    profile = data["profiles"].get(name)
    if profile is None:
        known = ", ".join(sorted(data["profiles"])) or "none"
        raise LocalError(
            f"no profile {name!r} (profiles: {known}); add it with `agentnet profile add`", "NO_PROFILE", "NOT_FOUND"
        )
    for field, env in FIELDS.items():
        if getattr(ns, field, None) is None and not os.environ.get(env) and profile.get(field):
            setattr(ns, field, profile[field])
    for field in OPTIONAL:
        if getattr(ns, field, None) is None and profile.get(field):
            setattr(ns, field, profile[field])


async def cmd_profile(ns: argparse.Namespace) -> int:
    data = load()
    action = ns.profile_cmd
    if action == "add":
        if not ns.server or not ns.device_dir:
            raise LocalError(
                "a profile needs --server HOST:PORT and --device-dir FOLDER", "BAD_PROFILE", "INVALID_ARGUMENT"
            )
        entry = {"server": ns.server, "device_dir": str(pathlib.Path(ns.device_dir).expanduser().resolve())}
        if ns.server_name:
            entry["server_name"] = ns.server_name
        if ns.agent:
            entry["agent"] = ns.agent
        data["profiles"][ns.name] = entry
        if ns.use or not data["current"]:
            data["current"] = ns.name
        save(data)
        emit(
            ns,
            {"name": ns.name, **entry, "current": data["current"] == ns.name},
            lambda: print(
                f"added profile {ns.name}"
                + (" (in use)" if data["current"] == ns.name else f"; `agentnet profile use {ns.name}`")
            ),
        )
    elif action == "use":
        if ns.name not in data["profiles"]:
            raise LocalError(f"no profile {ns.name!r}; add it with `agentnet profile add`", "NO_PROFILE", "NOT_FOUND")
        data["current"] = ns.name
        save(data)
        emit(ns, {"current": ns.name}, lambda: print(f"using profile {ns.name}"))
    elif action == "remove":
        if data["profiles"].pop(ns.name, None) is None:
            raise LocalError(f"no profile {ns.name!r}", "NO_PROFILE", "NOT_FOUND")
        if data["current"] == ns.name:
            data["current"] = ""
        save(data)
        emit(ns, {"removed": ns.name}, lambda: print(f"removed profile {ns.name}"))
    else:
        rows = [
            [
                "*" if name == data["current"] else "",
                name,
                p.get("server", ""),
                p.get("device_dir", ""),
                p.get("agent", ""),
            ]
            for name, p in sorted(data["profiles"].items())
        ]

        def human() -> None:
            if not rows:
                print("no profiles; add one with `agentnet profile add NAME --server HOST:PORT --device-dir FOLDER`")
                return
            for line in table(["", "PROFILE", "SERVER", "DEVICE FOLDER", "AGENT"], rows):
                print(line)

        emit(ns, {"current": data["current"], "profiles": data["profiles"]}, human)
    return 0


def register(add: Add) -> None:
    p = add("profile", cmd_profile, "named connection profiles: add, use, list, remove (like `nats context`)")
    sub = p.add_subparsers(dest="profile_cmd", required=True, metavar="action")
    t = nested(sub, "add", "save --server, --device-dir (and --server-name, --agent) under a name")
    t.add_argument("name")
    t.add_argument("--use", action="store_true", help="also make it the current profile")
    t = nested(sub, "use", "make a profile the current one")
    t.add_argument("name")
    nested(sub, "list", "list profiles (* marks the current one)")
    t = nested(sub, "remove", "delete a profile")
    t.add_argument("name")

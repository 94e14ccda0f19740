"""`agentnet openclaw setup` and `agentnet openclaw doctor`: the gateway configuration the bridge
needs, the skill installed with the absolute path of `agentnet`, the environment the agent's
commands need, and one line per check with the fix when something is missing.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import json
import os
import pathlib
import secrets
import shutil
import sys
from typing import Any

from ..device import DeviceError, load_device
from .gateway import Gateway
from .options import GatewayConfig

SKILL_SRC = pathlib.Path(__file__).resolve().parent.parent / "skill" / "SKILL.md"
NEAR_EXPIRY_DAYS = 14
ENV_KEYS = ("AGENTNET_SERVER", "AGENTNET_DEVICE_DIR", "AGENTNET_AGENT")


def openclaw_home() -> pathlib.Path:
    """The gateway's state folder (OPENCLAW_STATE_DIR, default ~/.openclaw)."""
    state = os.environ.get("OPENCLAW_STATE_DIR")
    return pathlib.Path(state) if state else pathlib.Path.home() / ".openclaw"


def default_config_path() -> pathlib.Path:
    env = os.environ.get("OPENCLAW_CONFIG_PATH")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".openclaw" / "openclaw.json"


def default_env_file() -> pathlib.Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(pathlib.Path.home() / ".config")
    return pathlib.Path(base) / "agentnet" / "openclaw.env"


def agentnet_executable() -> str:
    """The absolute path of the `agentnet` command this Python runs (next to the interpreter, as a
    venv or pip install puts it), so the gateway finds it without PATH."""
    here = pathlib.Path(sys.executable).parent / "agentnet"
    if here.exists():
        return str(here)
    found = shutil.which("agentnet")
    return str(pathlib.Path(found).resolve()) if found else str(here)


@dataclasses.dataclass
class Plan:
    config_path: pathlib.Path
    config: dict[str, Any]  # the merged configuration
    patch: dict[str, Any]  # what agentnet needs in it
    token: str
    skills_dir: pathlib.Path
    env_file: pathlib.Path
    env: dict[str, str]
    agentnet: str


def load_config(path: pathlib.Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    text = path.read_text()
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ValueError(
            f"{path} is not plain JSON ({exc}); merge the configuration printed by `agentnet openclaw setup` by hand"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)  # type: ignore[assignment]
    return d


def plan(
    config_path: pathlib.Path,
    server: str,
    device_dir: str,
    agent: str,
    gateway_url: str,
    openclaw_agent: str,
    skills_dir: pathlib.Path | None,
    env_file: pathlib.Path,
) -> Plan:
    config = load_config(config_path)
    device_dir = os.path.abspath(device_dir)
    skills_dir = pathlib.Path(os.path.abspath(skills_dir)) if skills_dir is not None else None
    token = _get(config, "gateway", "auth", "token")
    if not isinstance(token, str) or not token or _get(config, "gateway", "auth", "mode") not in (None, "token"):
        token = secrets.token_urlsafe(32)
    exe = agentnet_executable()
    skill_env = {"AGENTNET_SERVER": server, "AGENTNET_DEVICE_DIR": device_dir, "AGENTNET_AGENT": agent}
    skills = skills_dir or openclaw_home() / "skills"
    patch: dict[str, Any] = {
        "gateway": {
            "auth": {"mode": "token", "token": token},
            "http": {"endpoints": {"responses": {"enabled": True}, "chatCompletions": {"enabled": True}}},
        },
        "skills": {"entries": {"agentnet": {"enabled": True, "env": skill_env}}},
    }
    if skills_dir is not None:
        dirs = list(_get(config, "skills", "load", "extraDirs") or [])
        if str(skills) not in dirs:
            dirs.append(str(skills))
        patch["skills"]["load"] = {"extraDirs": dirs}
    env = dict(skill_env)
    env |= {
        "AGENTNET_OPENCLAW_URL": gateway_url,
        "AGENTNET_OPENCLAW_AGENT": openclaw_agent,
        "AGENTNET_OPENCLAW_TOKEN": token,
        "AGENTNET_OPENCLAW_CONFIG": str(config_path),
        "AGENTNET_OPENCLAW_SKILLS": str(skills),
        "AGENTNET_BIN": exe,
    }
    return Plan(config_path, merge(config, patch), patch, token, skills, env_file, env, exe)


def skill_text(agentnet: str) -> str:
    """The skill with the absolute path of agentnet in every command (the gateway's PATH may not
    have it: OpenClaw hides a skill whose required binary is not on PATH, without an error)."""
    text = SKILL_SRC.read_text()
    text = text.replace('metadata:\n  openclaw:\n    requires:\n      bins: ["agentnet"]\n', "")
    text = text.replace("`agentnet ", f"`{agentnet} ")
    note = f"The agentnet command on this machine is `{agentnet}`: use this full path (it may not be on PATH).\n\n"
    title, sep, body = text.partition("# agentnet:")
    if not sep:
        return text + "\n" + note
    head, nl, rest = (sep + body).partition("\n\n")
    return title + head + nl + note + rest


def write_private(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def apply(p: Plan) -> list[str]:
    """Write the configuration (the old one kept as .bak), the skill and the environment file."""
    done: list[str] = []
    if p.config_path.exists():
        backup = p.config_path.with_name(p.config_path.name + ".bak")
        shutil.copy2(p.config_path, backup)
        os.chmod(backup, 0o600)
    write_private(p.config_path, json.dumps(p.config, indent=2, ensure_ascii=False) + "\n")
    done.append(f"wrote {p.config_path} (the gateway reloads the endpoint settings by itself)")
    dest = p.skills_dir / "agentnet" / "SKILL.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(skill_text(p.agentnet))
    done.append(f"installed the skill as {dest}")
    lines = [f"{k}={v}" for k, v in p.env.items()]
    write_private(
        p.env_file, "# agentnet + OpenClaw (written by `agentnet openclaw setup`)\n" + "\n".join(lines) + "\n"
    )
    done.append(f"wrote {p.env_file} (0600; the bridge reads it: `agentnet bridge --env-file {p.env_file}`)")
    return done


def read_env_file(path: pathlib.Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        out[k.strip()] = v.strip()
    return out


# -- doctor --------------------------------------------------------------------------------------


EXIT_SERVER_UNAVAILABLE = 3  # `agentnet`'s exit code when the server is not reachable (cli/errors.py)


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    transient: bool = False  # a failure that may pass by itself (unreachable, 5xx, 429): not configuration

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


async def gateway_checks(cfg: GatewayConfig) -> list[Check]:
    async with Gateway(cfg) as gw:
        return [Check(n, ok, d, gw.transient and not ok) for n, ok, d in await gw.probe()]


def certificate_check(device_dir: str) -> Check:
    try:
        device = load_device(device_dir)
    except DeviceError as exc:
        return Check("device certificate", False, str(exc))
    not_after = device.cert.not_valid_after_utc
    left = not_after - dt.datetime.now(dt.UTC)
    if left.total_seconds() <= 0:
        return Check(
            "device certificate", False, f"{device.id}: expired on {not_after:%Y-%m-%d}; ask the operator for a new one"
        )
    if left.days < NEAR_EXPIRY_DAYS:
        return Check(
            "device certificate",
            False,
            f"{device.id}: expires in {left.days} days ({not_after:%Y-%m-%d}); renew it before it does",
        )
    return Check("device certificate", True, f"{device.id}, valid until {not_after:%Y-%m-%d}")


async def server_check(server: str | None, device_dir: str | None) -> Check:
    from ..client import Client

    try:
        async with Client(server, device_dir, None, cache=False, connect_timeout=5.0) as c:
            agents = await asyncio.wait_for(c.list_agents(), 10)
        return Check("server reachable", True, f"{c.server} ({len(agents)} agents)")
    except Exception as exc:  # noqa: BLE001 - every failure is reported as this check's line
        msg = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        return Check("server reachable", False, f"{server or 'AGENTNET_SERVER'}: {msg}")


async def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a command (returncode, stdout, stderr); killed when it times out or the caller is
    cancelled (a stop signal must not wait for it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def skill_checks(config_path: pathlib.Path, skills_dir: pathlib.Path, openclaw_bin: str | None) -> list[Check]:
    out: list[Check] = []
    try:
        config = load_config(config_path)
    except ValueError as exc:
        return [Check("skill installed", False, str(exc))]
    skill = skills_dir / "agentnet" / "SKILL.md"
    if not skill.exists():
        out.append(Check("skill installed", False, f"no {skill}: run `agentnet openclaw setup --apply`"))
        return out
    text = skill.read_text()
    exe = next((w.strip("`") for w in text.split() if w.strip("`").endswith("/agentnet")), "")
    if not exe or not os.access(exe, os.X_OK):
        out.append(
            Check(
                "skill installed",
                False,
                f"{skill} names `{exe or 'agentnet'}`, which is not an executable path: run setup --apply again",
            )
        )
        return out
    out.append(Check("skill installed", True, f"{skill} (runs {exe})"))
    entry = _get(config, "skills", "entries", "agentnet") or {}
    if isinstance(entry, dict) and entry.get("enabled") is False:
        out.append(
            Check("skill visible", False, "skills.entries.agentnet.enabled is false in the gateway configuration")
        )
        return out
    if openclaw_bin:
        try:
            _, stdout, _ = await _run([openclaw_bin, "skills", "list", "--json"], 120)
            listed = {s.get("name"): s for s in json.loads(stdout).get("skills", [])}
        except (OSError, ValueError, TimeoutError) as exc:
            out.append(Check("skill visible", False, f"`{openclaw_bin} skills list --json` failed: {exc}"))
            return out
        s = listed.get("agentnet")
        if s is None:
            out.append(
                Check(
                    "skill visible", False, f"the gateway does not list the skill: is {skills_dir} its skills folder?"
                )
            )
        elif not s.get("eligible") or s.get("disabled"):
            out.append(
                Check("skill visible", False, f"the gateway lists it as not eligible (missing: {s.get('missing')})")
            )
        else:
            out.append(Check("skill visible", True, "listed as eligible by `openclaw skills list`"))
    else:
        out.append(Check("skill visible", True, "by configuration (put `openclaw` on PATH for a live check)"))
    env = entry.get("env") if isinstance(entry, dict) else None
    missing = [k for k in ENV_KEYS if not (isinstance(env, dict) and env.get(k))]
    if missing:
        out.append(
            Check(
                "agentnet runs from the gateway",
                False,
                f"skills.entries.agentnet.env lacks {', '.join(missing)}: run `agentnet openclaw setup --apply`",
            )
        )
        return out
    assert isinstance(env, dict)
    # The gateway's environment, as a service has it: a minimal PATH plus what the skill entry injects.
    run_env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), **{k: str(v) for k, v in env.items()}}
    try:
        code, _, stderr = await _run([exe, "agents", "--json"], 30, run_env)
    except (OSError, TimeoutError) as exc:
        out.append(Check("agentnet runs from the gateway", False, f"`{exe} agents` did not run: {exc or 'timed out'}"))
        return out
    if code != 0:
        line = (stderr.strip().splitlines() or ["no output"])[-1]
        out.append(
            Check(
                "agentnet runs from the gateway",
                False,
                f"`{exe} agents` with the skill's environment: {line}",
                transient=code == EXIT_SERVER_UNAVAILABLE,
            )
        )
    else:
        out.append(Check("agentnet runs from the gateway", True, f"`{exe} agents` works with the skill's environment"))
    return out

"""HTTP client for the local OpenClaw gateway: agent turns over its OpenAI-compatible endpoints
(`POST /v1/responses`, or `POST /v1/chat/completions`), the fire-and-forget `/hooks/agent`
hand-over, and the probes that `agentnet openclaw doctor` and the bridge's start-up run.

The gateway's contract (see README "Connect your OpenClaw"): `Authorization: Bearer <token>`,
`model: "openclaw:<agent>"`, one session per `x-openclaw-session-key`, the reply text in the
response. It ignores idempotency keys, so the bridge keeps its own record of turns; two parallel
requests on a brand-new session key make one fail with 500, so the bridge runs one turn at a time
per session and retries 5xx answers.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import aiohttp

from .options import GatewayConfig


class GatewayError(Exception):
    """A gateway answer the bridge must act on. `fatal`: a configuration problem that retrying
    cannot fix (wrong token, endpoint disabled, unknown agent); `retry_after`: a pause the gateway
    asked for; otherwise (not fatal) the gateway refused this one request."""

    def __init__(self, message: str, *, fatal: bool = False, status: int = 0) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.status = status


class GatewayUnavailable(Exception):
    """The gateway could not be reached or failed on its side (5xx, timeout): try again later.
    `ran`: the request reached the gateway, so a turn may have run (model calls, tool side effects)
    and retrying runs it again; the bridge retries those a few times only."""

    def __init__(self, message: str, retry_after: float | None = None, *, ran: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.ran = ran


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return body.strip()[:300]


# OpenClaw answers a turn that produced no text with this placeholder (after stripping the agent's
# NO_REPLY token); both mean the agent chose to stay silent.
EMPTY_PLACEHOLDER = "No response from OpenClaw."
SILENT_TOKEN = "NO_REPLY"


def reply_text(endpoint: str, data: Any) -> str:
    """The agent's reply in a /v1/responses or /v1/chat/completions answer ("" when it said nothing,
    answered NO_REPLY, or OpenClaw filled the empty turn with its placeholder)."""
    text = _raw_reply(endpoint, data)
    return "" if text in (EMPTY_PLACEHOLDER, SILENT_TOKEN) else text


def _raw_reply(endpoint: str, data: Any) -> str:
    parts: list[str] = []
    if endpoint == "chat":
        for choice in data.get("choices") or []:
            content = (choice.get("message") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
        return "\n".join(parts).strip()
    for item in data.get("output") or []:
        if item.get("type") not in (None, "message") or item.get("role", "assistant") != "assistant":
            continue
        for c in item.get("content") or []:
            if c.get("type") in ("output_text", "text") and isinstance(c.get("text"), str):
                parts.append(c["text"])
    if not parts and isinstance(data.get("output_text"), str):
        parts.append(data["output_text"])
    return "\n".join(parts).strip()


class Gateway:
    """One aiohttp session to the gateway. Use as `async with Gateway(cfg) as gw`."""

    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self._http: aiohttp.ClientSession | None = None
        # Set by probe() when its failing check is one that may pass by itself later (the gateway
        # unreachable, starting, failing with 5xx or rate-limiting): not a configuration error.
        self.transient = False

    async def __aenter__(self) -> Gateway:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _headers(self, session_key: str = "") -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.cfg.token}", "Content-Type": "application/json"}
        if session_key:
            h["x-openclaw-session-key"] = session_key
        return h

    async def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str], timeout: float
    ) -> tuple[int, str, Any]:
        assert self._http is not None, "use Gateway as an async context manager"
        try:
            async with self._http.post(
                self.cfg.base + path, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                return resp.status, await resp.text(), resp.headers
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            raise GatewayUnavailable(
                f"the OpenClaw gateway at {self.cfg.base} is not reachable ({_describe(exc)})"
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise GatewayUnavailable(
                f"the OpenClaw gateway at {self.cfg.base} did not answer ({_describe(exc)})", ran=True
            ) from None

    def _classify(self, status: int, text: str, headers: Any, what: str) -> None:
        """Raise for anything but 2xx."""
        if 200 <= status < 300:
            return
        detail = _error_text(text)
        if status == 401 or status == 403:
            raise GatewayError(
                f"the OpenClaw gateway refused the token ({status} {detail}): set AGENTNET_OPENCLAW_TOKEN to the "
                f"gateway's {'hooks.token' if self.cfg.endpoint == 'hook' else 'gateway.auth.token'} "
                "(`agentnet openclaw setup` prints it)",
                fatal=True,
                status=status,
            )
        if status == 404:
            if self.cfg.endpoint == "hook":
                fix = 'set hooks.enabled: true and hooks.path: "/hooks"'
            else:
                key = "responses" if self.cfg.endpoint == "responses" else "chatCompletions"
                fix = f"set gateway.http.endpoints.{key}.enabled: true"
            raise GatewayError(
                f"the OpenClaw gateway has {what} disabled (404): {fix} in its configuration "
                "(`agentnet openclaw setup --apply` does it)",
                fatal=True,
                status=status,
            )
        if status == 429:
            wait = _float(headers.get("Retry-After"), 5.0)
            raise GatewayUnavailable(f"the OpenClaw gateway asks to slow down (429); waiting {wait:.0f} s", wait)
        if status == 400 and "unknown agent" in detail.lower():
            raise GatewayError(
                f"the OpenClaw gateway has no agent {self.cfg.agent!r} ({detail}): pass --openclaw-agent with an id "
                "from `openclaw agents list`",
                fatal=True,
                status=status,
            )
        if 400 <= status < 500:
            raise GatewayError(f"the OpenClaw gateway refused the request ({status} {detail})", status=status)
        raise GatewayUnavailable(f"the OpenClaw gateway failed ({status} {detail})", ran=True)

    async def turn(self, session_key: str, text: str) -> str:
        """Run one agent turn in the session and return its reply ("" = the agent stayed silent)."""
        if self.cfg.endpoint == "chat":
            body: dict[str, Any] = {"model": self.cfg.model, "messages": [{"role": "user", "content": text}]}
            path, what = "/v1/chat/completions", "the chat completions endpoint"
        else:
            body = {"model": self.cfg.model, "input": text}
            path, what = "/v1/responses", "the /v1/responses endpoint"
        status, body_text, headers = await self._post(path, body, self._headers(session_key), self.cfg.timeout)
        self._classify(status, body_text, headers, what)
        try:
            data = json.loads(body_text)
        except ValueError:
            raise GatewayUnavailable(f"the OpenClaw gateway answered {status} with no JSON body", ran=True) from None
        return reply_text(self.cfg.endpoint, data)

    async def hook(self, key: str, session_key: str, text: str, extra: dict[str, Any]) -> str:
        """Hand a text to /hooks/agent (fire-and-forget); returns the run id."""
        body: dict[str, Any] = {"message": text, "name": "agentnet", "wakeMode": "now", "deliver": False} | extra
        if self.cfg.agent:
            body["agentId"] = self.cfg.agent
        if session_key:
            body["sessionKey"] = session_key
        headers = self._headers() | {"Idempotency-Key": key}
        status, body_text, hdrs = await self._post(self.cfg.hook_path, body, headers, 30.0)
        self._classify(status, body_text, hdrs, "hooks")
        try:
            return str(json.loads(body_text).get("runId", ""))
        except (ValueError, AttributeError):
            return ""

    # -- probes (doctor and start-up) -------------------------------------------------------------

    async def probe(self) -> list[tuple[str, bool, str]]:
        """(check, ok, detail-or-fix) for: reachable, endpoint enabled, token accepted, agent exists.
        Stops at the first failure (later checks depend on it). Sends the token once."""
        assert self._http is not None
        self.transient = False
        try:
            return await self._probe()
        except GatewayUnavailable as exc:
            self.transient = True
            return [("gateway reachable", False, str(exc))]

    async def _probe(self) -> list[tuple[str, bool, str]]:
        assert self._http is not None
        out: list[tuple[str, bool, str]] = []
        base = self.cfg.base
        try:
            async with self._http.get(base + "/readyz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                await resp.read()
                ready = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.transient = True
            out.append(
                (
                    "gateway reachable",
                    False,
                    f"nothing answers at {base} ({_describe(exc)}): start the gateway (`openclaw gateway run`) "
                    "or pass --gateway-url",
                )
            )
            return out
        if ready >= 500:
            self.transient = True
            out.append(("gateway reachable", False, f"{base}/readyz answers {ready}: the gateway is still starting"))
            return out
        out.append(("gateway reachable", True, base))
        if self.cfg.endpoint == "hook":
            status, text, _ = await self._post(self.cfg.hook_path, {}, self._headers(), 10.0)
            return out + self._probe_endpoint(status, text, "hooks", "hooks.enabled: true")
        path = "/v1/chat/completions" if self.cfg.endpoint == "chat" else "/v1/responses"
        key = "chatCompletions" if self.cfg.endpoint == "chat" else "responses"
        # An empty body: refused as invalid (400) by an enabled endpoint after the token check,
        # without running a turn.
        status, text, _ = await self._post(path, {}, self._headers(), 10.0)
        checks = self._probe_endpoint(status, text, path, f"gateway.http.endpoints.{key}.enabled: true")
        out += checks
        if not all(ok for _, ok, _ in checks):
            return out
        quoted = urllib.parse.quote(f"openclaw/{self.cfg.agent}", safe="")
        try:
            async with self._http.get(
                f"{base}/v1/models/{quoted}", headers=self._headers(), timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                mstatus, mtext = resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.transient = True
            out.append(("openclaw agent exists", False, f"could not ask the gateway ({_describe(exc)})"))
            return out
        if mstatus == 200:
            out.append(("openclaw agent exists", True, self.cfg.agent))
        elif mstatus == 404 and "not found" in mtext.lower():
            out.append(
                (
                    "openclaw agent exists",
                    False,
                    f"the gateway has no agent {self.cfg.agent!r}: pass --openclaw-agent with an id from "
                    "`openclaw agents list`",
                )
            )
        else:
            out.append(
                (
                    "openclaw agent exists",
                    True,
                    f"not checked ({mstatus} from /v1/models: enable gateway.http.endpoints.chatCompletions to "
                    "let doctor list agents)",
                )
            )
        return out

    def _probe_endpoint(self, status: int, text: str, what: str, key: str) -> list[tuple[str, bool, str]]:
        if status == 404:
            return [("endpoint enabled", False, f"{what} answers 404: set {key} in the gateway configuration")]
        if status in (401, 403):
            return [
                ("endpoint enabled", True, what),
                (
                    "token accepted",
                    False,
                    f"the gateway refused the token ({status}): set AGENTNET_OPENCLAW_TOKEN to the gateway's "
                    f"{'hooks.token' if self.cfg.endpoint == 'hook' else 'gateway.auth.token'}",
                ),
            ]
        if status == 429:
            self.transient = True
            return [("endpoint enabled", True, what), ("token accepted", False, "the gateway rate-limits auth (429)")]
        if status >= 500:
            self.transient = True
            return [("endpoint enabled", False, f"{what} answers {status}: {_error_text(text)}")]
        return [("endpoint enabled", True, what), ("token accepted", True, "the gateway accepts it")]


def _float(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value else default
    except ValueError:
        return default


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.split(" [")[0][:200]

"""The bridge's and the gateway client's settings: plain data, so that `agentnet` can build its
argument parser (defaults, choices) without loading the HTTP client or the bridge."""

from __future__ import annotations

import dataclasses

DEFAULT_URL = "http://127.0.0.1:18789"
KINDS = ("mention", "dm", "task")


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    url: str = DEFAULT_URL  # the gateway's base URL (http://host:port)
    token: str = ""
    agent: str = "main"  # the OpenClaw agent id
    endpoint: str = "responses"  # responses | chat | hook
    timeout: float = 600.0  # one agent turn, seconds
    hook_path: str = "/hooks/agent"

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    @property
    def model(self) -> str:
        return f"openclaw:{self.agent}"


@dataclasses.dataclass(frozen=True)
class BridgeOptions:
    kinds: frozenset[str] = frozenset(KINDS)
    max_hops: int = 3  # automatic hops a chain may reach
    parallel: int = 4  # turns at a time across conversations
    rate_per_minute: float = 6.0  # turns per conversation, sustained
    burst: int = 3  # turns per conversation without waiting
    batch_max: int = 20  # items in one turn
    agentnet: str = "agentnet"  # the command the agent runs (absolute path after setup)
    session_key_prefix: str = ""  # hook mode: sessionKey prefix (needs hooks.allowRequestSessionKey)
    deliver: bool = False  # hook mode: let OpenClaw deliver the agent's reply to its channel
    retry_cap: float = 30.0  # longest pause between retries, seconds
    # When the bridge was started (time.time()), before its checks and its wait for the server:
    # on its first start on a device, what was sent from then on is answered. 0: when it opens.
    started: float = 0.0

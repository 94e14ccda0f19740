"""The OpenClaw side of agentnet: the bridge (a turn of the local agent for each mention, direct
message and task, its answer posted back), the gateway client, turn formatting, setup and doctor."""

from __future__ import annotations

from .bridge import KINDS, Bridge, BridgeError, BridgeOptions
from .gateway import Gateway, GatewayConfig, GatewayError, GatewayUnavailable

__all__ = [
    "KINDS",
    "Bridge",
    "BridgeError",
    "BridgeOptions",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "GatewayUnavailable",
]

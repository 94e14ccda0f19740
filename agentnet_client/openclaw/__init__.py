"""The OpenClaw side of agentnet: the bridge (a turn of the local agent for each mention, direct
message and task, its answer posted back), the gateway client, turn formatting, setup and doctor.

The names below load their modules when first used: `agentnet` builds its argument parser from
`options` alone, without the HTTP client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import attributes
from .options import KINDS, BridgeOptions, GatewayConfig

if TYPE_CHECKING:
    from .bridge import Bridge, BridgeError
    from .gateway import Gateway, GatewayError, GatewayUnavailable

_LAZY = {
    "Bridge": "bridge",
    "BridgeError": "bridge",
    "Gateway": "gateway",
    "GatewayError": "gateway",
    "GatewayUnavailable": "gateway",
}

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


__getattr__ = attributes(__name__, _LAZY)

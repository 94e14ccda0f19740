"""The OpenClaw side of agentnet: the bridge (a turn of the local agent for each mention, direct
message and task, its answer posted back), the gateway client, turn formatting, setup and doctor.

The names below load their modules when first used: `agentnet` builds its argument parser from
`options` alone, without the HTTP client."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

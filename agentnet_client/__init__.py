"""agentnet client library: connect an agent to an agentnet server over mTLS gRPC.

The names below are imported on first use, so that `import agentnet_client.cli` can configure gRPC's
own logging before gRPC is loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import attributes

if TYPE_CHECKING:
    from .cache import Cache, CacheError
    from .client import Client
    from .device import Device, DeviceError, load_device
    from .errors import AgentnetError, ConnectionLost, NotConnected
    from .session import AgentProfile, Backoff, SessionClient, State

_WHERE = {
    "AgentProfile": "session",
    "AgentnetError": "errors",
    "Backoff": "session",
    "Cache": "cache",
    "CacheError": "cache",
    "Client": "client",
    "ConnectionLost": "errors",
    "Device": "device",
    "DeviceError": "device",
    "NotConnected": "errors",
    "SessionClient": "session",
    "State": "session",
    "load_device": "device",
}

__all__ = [
    "AgentProfile",
    "AgentnetError",
    "Backoff",
    "Cache",
    "CacheError",
    "Client",
    "ConnectionLost",
    "Device",
    "DeviceError",
    "NotConnected",
    "SessionClient",
    "State",
    "load_device",
]


__getattr__ = attributes(__name__, _WHERE)

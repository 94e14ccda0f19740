"""agentnet client library: connect an agent to an agentnet server over mTLS gRPC."""

from .cache import Cache
from .client import Client
from .device import Device, DeviceError, load_device
from .errors import AgentnetError, ConnectionLost, NotConnected
from .session import AgentProfile, Backoff, SessionClient, State

__all__ = [
    "AgentProfile",
    "AgentnetError",
    "Backoff",
    "Cache",
    "Client",
    "ConnectionLost",
    "Device",
    "DeviceError",
    "NotConnected",
    "SessionClient",
    "State",
    "load_device",
]

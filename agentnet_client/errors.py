"""Errors the client raises, carrying the server's gRPC status and machine-readable reason."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"

# Codes that retrying the same request can fix.
RETRYABLE = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"}
)


class AgentnetError(Exception):
    """A request failed. `status` is the gRPC code name, `reason` the server's reason word."""

    def __init__(
        self,
        status: str,
        message: str,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}" + (f" [{reason}]" if reason else ""))
        self.status = status
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE

    @classmethod
    def from_event(cls, err: Any) -> AgentnetError:
        retry = err.retry_after.ToTimedelta().total_seconds() if err.HasField("retry_after") else None
        return cls(err.status, err.message, err.reason, dict(err.metadata), retry)

    @classmethod
    def from_rpc(cls, exc: grpc.aio.AioRpcError | grpc.RpcError) -> AgentnetError:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        reason, metadata, retry = "", {}, None
        trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
        for key, value in trailing or ():
            if key == DETAILS_KEY:
                st = status_pb2.Status.FromString(value)
                for d in st.details:
                    if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                        info = error_details_pb2.ErrorInfo()
                        d.Unpack(info)
                        reason, metadata = info.reason, dict(info.metadata)
                    elif d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        ri = error_details_pb2.RetryInfo()
                        d.Unpack(ri)
                        retry = ri.retry_delay.ToTimedelta().total_seconds()
        return cls(code.name if code else "UNKNOWN", details or "", reason, metadata, retry)


class ConnectionLost(AgentnetError):
    """The stream ended before the server answered; the request may or may not have happened."""

    def __init__(self, message: str = "the connection was lost before the server answered") -> None:
        super().__init__("UNAVAILABLE", message, "CONNECTION_LOST")


class NotConnected(AgentnetError):
    """The client has no live stream right now (it is reconnecting)."""

    def __init__(self, message: str = "not connected; the client is reconnecting") -> None:
        super().__init__("UNAVAILABLE", message, "NOT_CONNECTED")


# Transport failures that a retry cannot fix (the TLS set-up is wrong, not the network).
_PERMANENT_TRANSPORT = (
    "CERTIFICATE_VERIFY_FAILED",
    "Hostname Verification",
    "not in peer certificate",
    "ALPN",
    "WRONG_VERSION_NUMBER",
    "Domain name not found",
)


def permanent_transport(details: str) -> bool:
    return any(marker in details for marker in _PERMANENT_TRANSPORT)


def explain_transport(details: str, server: str, server_name: str | None = None) -> str | None:
    """One sentence with a fix for a connection that failed before any request reached the server.

    gRPC reports these as UNAVAILABLE with the C-core's text ("failed to connect to all addresses;
    last error: ... CERTIFICATE_VERIFY_FAILED ..."); None when `details` is not such a failure."""
    name = server_name or server.rsplit(":", 1)[0].strip("[]")
    if "CERTIFICATE_VERIFY_FAILED" in details or "unable to get local issuer" in details:
        return (
            f"the server at {server} shows a certificate that this device's ca.pem does not trust (another CA); "
            "copy ca.pem from the server's certs/ folder into the device folder"
        )
    if "Hostname Verification" in details or "Peer name" in details or "not in peer certificate" in details:
        return (
            f"the server certificate at {server} does not name {name!r}; connect by a name it has, pass "
            f"--server-name, or on the server run `make certs HOST={name}` and restart the server"
        )
    if "Connection refused" in details:
        return (
            f"nothing listens on {server} (connection refused); is agentnet-server running there, and is "
            "this its gRPC port (--server or AGENTNET_SERVER; default port 50051)?"
        )
    if "ALPN" in details or "WRONG_VERSION_NUMBER" in details or "wrong version number" in details.lower():
        return (
            f"{server} answers, but not with gRPC over TLS (the REST port or another service?); "
            "use the server's gRPC port (default 50051)"
        )
    if "Socket closed" in details or "Connection reset" in details:
        return (
            f"the server at {server} closed the connection during the TLS handshake: it does not accept this "
            "device's certificate (issued by another CA?); `agentnet doctor` checks the device folder"
        )
    if "resolving" in details or "Domain name not found" in details or "DNS" in details:
        return f"cannot resolve the host in {server!r}; check --server or AGENTNET_SERVER"
    if "Handshake read failed" in details or "Deadline Exceeded" in details or "timed out" in details:
        return f"the server at {server} did not complete the TLS handshake; is this the agentnet gRPC port?"
    return None

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

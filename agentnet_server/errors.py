"""The domain error tree. Domain code raises these; the rpc layer maps them to gRPC status."""

from __future__ import annotations


class AgentnetError(Exception):
    """Base of all errors a caller should see. `reason` is a stable machine-readable word."""

    status = "INTERNAL"
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after


class InvalidArgument(AgentnetError):
    status = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"


class NotFound(AgentnetError):
    status = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(AgentnetError):
    status = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class PermissionDenied(AgentnetError):
    status = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(AgentnetError):
    status = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class FailedPrecondition(AgentnetError):
    status = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class Aborted(AgentnetError):
    status = "ABORTED"
    default_reason = "ABORTED"


class ResourceExhausted(AgentnetError):
    status = "RESOURCE_EXHAUSTED"
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(AgentnetError):
    status = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"


class Internal(AgentnetError):
    status = "INTERNAL"
    default_reason = "INTERNAL"


class StoreUnavailable(Unavailable):
    """The store refused a write or read (disk full, read-only, connection lost)."""

    default_reason = "STORE_UNAVAILABLE"

"""The one table from domain errors to gRPC status, with google.rpc error details."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from agentnet.v1 import events_pb2

from ..errors import AgentnetError
from ..live import encode

log = logging.getLogger("agentnet.rpc")

DOMAIN = "agentnet.v1"
DETAILS_KEY = "grpc-status-details-bin"
REASON_KEY = "agentnet-reason"

CODES: dict[str, grpc.StatusCode] = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "PERMISSION_DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "ABORTED": grpc.StatusCode.ABORTED,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "INTERNAL": grpc.StatusCode.INTERNAL,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "CANCELLED": grpc.StatusCode.CANCELLED,
    "UNIMPLEMENTED": grpc.StatusCode.UNIMPLEMENTED,
    "OUT_OF_RANGE": grpc.StatusCode.OUT_OF_RANGE,
    "DATA_LOSS": grpc.StatusCode.DATA_LOSS,
    "UNKNOWN": grpc.StatusCode.UNKNOWN,
    "OK": grpc.StatusCode.OK,
}


def code_of(status: str) -> grpc.StatusCode:
    return CODES.get(status, grpc.StatusCode.INTERNAL)


def rich_status(
    status: str, message: str, reason: str, metadata: dict[str, str], retry_after: float | None
) -> status_pb2.Status:
    code = code_of(status)
    st = status_pb2.Status(code=code.value[0], message=message)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))
    st.details.append(info)
    if retry_after is not None:
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=_duration(retry_after)))
        st.details.append(retry)
    return st


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def trailing(
    status: str, message: str, reason: str, metadata: dict[str, str], retry_after: float | None
) -> tuple[tuple[str, str | bytes], ...]:
    st = rich_status(status, message, reason, metadata, retry_after)
    return ((DETAILS_KEY, st.SerializeToString()), (REASON_KEY, reason))


async def abort(context: grpc.aio.ServicerContext, exc: AgentnetError) -> None:
    """End the RPC with the status that matches the domain error (raises)."""
    await context.abort(
        code_of(exc.status),
        exc.message,
        trailing_metadata=trailing(exc.status, exc.message, exc.reason, exc.metadata, exc.retry_after),
    )


def error_event(exc: AgentnetError, request_id: str = "", fatal: bool = False) -> events_pb2.ServerEvent:
    return encode.error_event(exc, request_id, fatal)

"""Errors of the REST shim: grpc-gateway's body `{"code", "message", "details"}` and its table
from gRPC codes to HTTP statuses (runtime.HTTPStatusFromCode)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2

from ..errors import AgentnetError
from ..rpc import status

# grpc-gateway's table from gRPC codes to HTTP statuses (runtime.HTTPStatusFromCode).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class HttpError(Exception):
    """An error the gateway itself answers (routing, JSON, size), with its gRPC code."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str,
        *,
        http_status: int | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        field: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.http_status = http_status or HTTP_STATUS.get(code, 500)
        self.metadata = dict(metadata or {})
        self.headers = dict(headers or {})
        self.field = field
        if field:
            self.metadata.setdefault("field", field)


def bad_request(message: str, reason: str = "INVALID_ARGUMENT", field: str = "") -> HttpError:
    return HttpError(grpc.StatusCode.INVALID_ARGUMENT, message, reason, field=field)


def grpc_code(name: str) -> grpc.StatusCode:
    code = getattr(grpc.StatusCode, name, None)
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.INTERNAL


def error_body(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: Mapping[str, str],
    retry_after: float | None = None,
    field: str = "",
) -> dict[str, Any]:
    """grpc-gateway's error body: google.rpc.Status as JSON, with ErrorInfo (and BadRequest)."""
    st = status.rich_status("INTERNAL", message, reason, dict(metadata), retry_after)
    st.code = code.value[0]
    if field:
        violation = any_pb2.Any()
        violation.Pack(
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=message)]
            )
        )
        st.details.append(violation)
    body: dict[str, Any] = json_format.MessageToDict(st)
    return body


def json_response(body: Any, http_status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False),
        status=http_status,
        reason="Client Closed Request" if http_status == 499 else None,
        content_type="application/json",
        headers=headers,
    )


def error_response(exc: AgentnetError | HttpError) -> web.Response:
    if isinstance(exc, HttpError):
        body = error_body(exc.code, exc.message, exc.reason, exc.metadata, field=exc.field)
        return json_response(body, exc.http_status, exc.headers)
    code = grpc_code(exc.status)
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    body = error_body(code, exc.message, exc.reason, exc.metadata, exc.retry_after)
    return json_response(body, HTTP_STATUS.get(code, 500), headers)


def method_not_allowed(http_method: str, path: str, allowed: list[str]) -> HttpError:
    return HttpError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"{http_method} is not allowed on {path[:200]!r}; allowed: {', '.join(allowed)}",
        "METHOD_NOT_ALLOWED",
        http_status=405,
        headers={"Allow": ", ".join(allowed)},
    )

"""The REST shim: a generic HTTP/JSON transcoder over HTTPS with device certificates.

Routes are read from the `google.api.http` rules of every method of the service descriptors
(grpc-gateway style): path templates with variables and custom verbs, `body: "*"` or a named
body field, query parameters for the remaining fields, and `additional_bindings`. Adding an
annotated RPC to the protos adds its endpoint here with no code change.

Requests are dispatched in-process to the unary servicer methods with the caller's device
identity (its TLS client certificate) in `auth.current_peer`, exactly as on gRPC. JSON follows
the proto3 JSON mapping; errors use grpc-gateway's body `{"code", "message", "details"}` and its
HTTP status table. `GET /api/events` streams the caller's server events as Server-Sent Events,
reusing the Session stream machinery, and `GET /api/openapi.json` serves the OpenAPI document
generated from the same rules (see openapi.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import math
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from google.api import annotations_pb2, http_pb2
from google.protobuf import any_pb2, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from agentnet.v1 import events_pb2, resources_pb2, service_pb2

from . import auth
from .errors import AgentnetError
from .records import inbox_conv
from .rpc import status

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("agentnet.gateway")

EVENTS_PATH = "/api/events"
OPENAPI_PATH = "/api/openapi.json"
MAX_CURSORS = 10_000
SSE_QUEUE = 64
STALL_INTERVALS = 3

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

_WRAPPER_NAMES = (
    "DoubleValue",
    "FloatValue",
    "Int64Value",
    "UInt64Value",
    "Int32Value",
    "UInt32Value",
    "BoolValue",
    "StringValue",
    "BytesValue",
)
# Wrapper types: their JSON form is the JSON form of their value.
WRAPPERS = frozenset("google.protobuf." + n for n in _WRAPPER_NAMES)
# Well-known types that a single query or path string can carry.
TEXT_MESSAGES = frozenset(("google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"))
# Well-known types whose JSON form is not an object of their fields.
SPECIAL_JSON = (
    frozenset("google.protobuf." + n for n in ("Any", "Struct", "Value", "ListValue", "Empty"))
    | WRAPPERS
    | TEXT_MESSAGES
)

INT32_TYPES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
INT64_TYPES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOAT_TYPES = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
TRUE_WORDS = frozenset(("true", "t", "1"))
FALSE_WORDS = frozenset(("false", "f", "0"))
_DIGITS = re.compile(r"-?[0-9]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARSE_PREFIX = re.compile(r"^Failed to parse (\S+) field: ")


# -- errors -------------------------------------------------------------------------------------


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
    return json_format.MessageToDict(st)


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


# -- path templates -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variable:
    """A path variable: the dotted field path it sets and the regex group that captures it."""

    field_path: tuple[str, ...]
    group: str

    @property
    def name(self) -> str:
        return ".".join(self.field_path)


@dataclasses.dataclass(frozen=True)
class PathTemplate:
    """A parsed google.api.http path template: `/v1/{name=things/*}/parts:verb`."""

    text: str
    regex: re.Pattern[str]
    variables: tuple[Variable, ...]
    verb: str
    literals: int

    @property
    def openapi_path(self) -> str:
        """The template with `{var=pattern}` reduced to `{var}` (OpenAPI path syntax)."""
        return re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", self.text)


def _split_top(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_template(text: str) -> PathTemplate:
    """Parse `Template = "/" Segments [ Verb ]` from google/api/http.proto into a regex."""
    if not text.startswith("/"):
        raise ValueError(f"path template {text!r} must start with '/'")
    if text.count("{") != text.count("}"):
        raise ValueError(f"path template {text!r} has unbalanced braces")
    body, verb = text[1:], ""
    tail = _split_top(body, "/")[-1]
    pieces = _split_top(tail, ":")
    if len(pieces) > 2:
        raise ValueError(f"path template {text!r}: more than one ':' verb")
    if len(pieces) == 2:
        verb = pieces[1]
        if not verb or not re.fullmatch(r"[A-Za-z0-9_.~-]+", verb):
            raise ValueError(f"path template {text!r}: bad verb {verb!r}")
        body = body[: len(body) - len(verb) - 1]
    variables: list[Variable] = []
    literals = 0

    def segments(spec: str, inside: bool) -> str:
        nonlocal literals
        out = []
        parts = _split_top(spec, "/")
        for i, seg in enumerate(parts):
            if seg == "*":
                out.append("[^/]+")
            elif seg == "**":
                if i != len(parts) - 1:
                    raise ValueError(f"path template {text!r}: '**' must be the last segment")
                out.append(".+")
            elif seg.startswith("{"):
                if inside:
                    raise ValueError(f"path template {text!r}: nested variables")
                if not seg.endswith("}"):
                    raise ValueError(f"path template {text!r}: bad segment {seg!r}")
                name, _, pattern = seg[1:-1].partition("=")
                path = tuple(name.split("."))
                if not all(_IDENT.fullmatch(p) for p in path):
                    raise ValueError(f"path template {text!r}: bad field path {name!r}")
                group = f"v{len(variables)}"
                variables.append(Variable(path, group))
                out.append(f"(?P<{group}>{segments(pattern or '*', True)})")
            elif seg and re.fullmatch(r"[A-Za-z0-9_.~!$&'()+,;=@-]+", seg):
                literals += 1
                out.append(re.escape(seg))
            else:
                raise ValueError(f"path template {text!r}: bad segment {seg!r}")
        return "/".join(out)

    pattern = "/" + segments(body, False) + (re.escape(":" + verb) if verb else "")
    return PathTemplate(text, re.compile(pattern), tuple(variables), verb, literals)


# -- routes -------------------------------------------------------------------------------------


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def find_field(desc: Descriptor, name: str) -> FieldDescriptor | None:
    """A field by its proto name or its JSON (lowerCamelCase) name."""
    f = desc.fields_by_name.get(name)
    if f is not None:
        return f
    for f in desc.fields:
        if f.json_name == name:
            return f
    return None


@dataclasses.dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC."""

    http_method: str
    template: PathTemplate
    method: MethodDescriptor
    body: str  # "" (no body), "*" or a top-level field name
    response_body: str
    request_class: type[Message]

    @property
    def rpc_name(self) -> str:
        return self.method.name

    @property
    def path_fields(self) -> frozenset[str]:
        """Top-level request fields taken from the path."""
        return frozenset(v.field_path[0] for v in self.template.variables)

    def query_fields(self) -> list[FieldDescriptor]:
        """Top-level request fields that come from query parameters."""
        if self.body == "*":
            return []
        taken = self.path_fields | {self.body}
        return [f for f in self.method.input_type.fields if f.name not in taken]


def http_rules(method: MethodDescriptor) -> list[http_pb2.HttpRule]:
    """The method's HttpRule and its additional_bindings (none when it has no annotation)."""
    opts = method.GetOptions()
    if not opts.HasExtension(annotations_pb2.http):
        return []
    rule = opts.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def _rule_pattern(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError("an HttpRule without a pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), getattr(rule, kind)


def _check_field_path(desc: Descriptor, path: tuple[str, ...], where: str) -> None:
    cur = desc
    for i, name in enumerate(path):
        f = cur.fields_by_name.get(name)
        if f is None:
            raise ValueError(f"{where}: {cur.full_name} has no field {name!r}")
        if f.is_repeated:
            raise ValueError(f"{where}: path variable field {'.'.join(path)!r} must not be repeated")
        if i < len(path) - 1:
            if f.message_type is None:
                raise ValueError(f"{where}: {name!r} is not a message, cannot go into it")
            cur = f.message_type
        elif f.message_type is not None and f.message_type.full_name not in TEXT_MESSAGES | WRAPPERS:
            raise ValueError(f"{where}: path variable field {'.'.join(path)!r} must be a scalar")


def build_routes(services: Iterable[ServiceDescriptor]) -> list[Route]:
    """Every HTTP binding of every unary method of the services, from their HttpRules."""
    routes: list[Route] = []
    seen: dict[tuple[str, str], str] = {}
    for svc in services:
        for m in svc.methods:
            rules = http_rules(m)
            if not rules:
                continue
            if m.client_streaming or m.server_streaming:
                raise ValueError(f"{m.full_name}: streaming methods cannot have google.api.http rules here")
            for rule in rules:
                verb, path = _rule_pattern(rule)
                where = f"{m.full_name} ({verb} {path})"
                tmpl = parse_template(path)
                for var in tmpl.variables:
                    _check_field_path(m.input_type, var.field_path, where)
                if rule.body not in ("", "*"):
                    f = m.input_type.fields_by_name.get(rule.body)
                    if f is None:
                        raise ValueError(f"{where}: body field {rule.body!r} does not exist")
                    if f.name in {v.field_path[0] for v in tmpl.variables}:
                        raise ValueError(f"{where}: body field {rule.body!r} is also a path variable")
                if rule.response_body and rule.response_body not in m.output_type.fields_by_name:
                    raise ValueError(f"{where}: response_body field {rule.response_body!r} does not exist")
                key = (verb, tmpl.regex.pattern)
                if key in seen:
                    raise ValueError(f"{where}: the same route as {seen[key]}")
                seen[key] = m.full_name
                routes.append(
                    Route(
                        verb,
                        tmpl,
                        m,
                        rule.body,
                        rule.response_body,
                        message_factory.GetMessageClass(m.input_type),
                    )
                )
    return routes


# -- values from text (path variables and query parameters) -------------------------------------


def text_value(field: FieldDescriptor, text: str, what: str) -> Any:
    """A path or query string converted to the field's JSON value (proto3 JSON mapping)."""
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return text
    if t == FieldDescriptor.TYPE_BYTES:
        try:
            base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
        except ValueError:
            raise bad_request(f"{what}: {text[:40]!r} is not base64", "BAD_VALUE", what) from None
        return text
    if t == FieldDescriptor.TYPE_BOOL:
        low = text.lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        raise bad_request(f"{what}: {text[:40]!r} is not a boolean (use true or false)", "BAD_VALUE", what)
    bounds = INT32_TYPES.get(t) or INT64_TYPES.get(t)
    if bounds is not None:
        if not _DIGITS.fullmatch(text):
            raise bad_request(f"{what}: {text[:40]!r} is not an integer", "BAD_VALUE", what)
        value = int(text)
        if not bounds[0] <= value <= bounds[1]:
            raise bad_request(f"{what}: {value} is out of range [{bounds[0]}, {bounds[1]}]", "BAD_VALUE", what)
        return value
    if t in FLOAT_TYPES:
        if text in ("NaN", "Infinity", "-Infinity"):
            return text
        try:
            return float(text)
        except ValueError:
            raise bad_request(f"{what}: {text[:40]!r} is not a number", "BAD_VALUE", what) from None
    if t == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        if text in enum.values_by_name:
            return text
        if _DIGITS.fullmatch(text) and int(text) in enum.values_by_number:
            return enum.values_by_number[int(text)].name
        raise bad_request(
            f"{what}: {text[:40]!r} is not a {enum.name} (one of {', '.join(enum.values_by_name)})", "BAD_VALUE", what
        )
    mt = field.message_type
    if mt is not None and mt.full_name in TEXT_MESSAGES:
        return text
    if mt is not None and mt.full_name in WRAPPERS:
        return text_value(mt.fields_by_name["value"], text, what)
    raise bad_request(f"{what}: a {mt.full_name if mt else t} cannot be given as text", "BAD_VALUE", what)


def _parse_key(part: str) -> tuple[str, str | None]:
    if part.endswith("]") and "[" in part:
        name, _, key = part[:-1].partition("[")
        return name, key
    return part, None


def query_dict(route: Route, query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters as a proto3 JSON object of the request (proto field names).

    `a.b=1` sets a nested field; a repeated field takes one value per occurrence (`k=1&k=2`);
    for a repeated message `c.x=1&c.y=2&c.x=3` the n-th occurrence of a key fills element n;
    a map takes `m[key]=value`.
    """
    root: dict[str, Any] = {}
    counts: dict[str, int] = {}
    desc = route.method.input_type
    allowed = {f.name for f in route.query_fields()}
    for key, value in query:
        index = counts.get(key, 0)
        counts[key] = index + 1
        if route.body == "*":
            raise bad_request(
                f"query parameter {key!r} is not accepted here: this endpoint reads every field from the JSON body",
                "UNEXPECTED_QUERY_PARAMETER",
                key,
            )
        parts = key.split(".")
        node: dict[str, Any] = root
        cur = desc
        for i, part in enumerate(parts):
            name, map_key = _parse_key(part)
            f = find_field(cur, name)
            last = i == len(parts) - 1
            if f is None:
                known = ", ".join(sorted(allowed)) if i == 0 else ", ".join(x.json_name for x in cur.fields)
                raise bad_request(
                    f"unknown query parameter {key!r}" + (f" (known: {known})" if known else ""),
                    "UNKNOWN_FIELD",
                    key,
                )
            if i == 0 and f.name not in allowed:
                src = "the path" if f.name in route.path_fields else "the JSON body"
                raise bad_request(
                    f"query parameter {key!r} is not accepted here: {f.name} comes from {src}",
                    "UNEXPECTED_QUERY_PARAMETER",
                    key,
                )
            if is_map(f):
                if map_key is None or not last:
                    raise bad_request(f"query parameter {key!r}: a map is given as {name}[key]=value", "BAD_VALUE", key)
                vf = f.message_type.fields_by_name["value"]
                node.setdefault(f.name, {})[map_key] = text_value(vf, value, f"query parameter {key!r}")
                break
            if map_key is not None:
                raise bad_request(f"query parameter {key!r}: {name} is not a map", "BAD_VALUE", key)
            mt = f.message_type
            if mt is not None and mt.full_name not in TEXT_MESSAGES | WRAPPERS:
                if last:
                    raise bad_request(
                        f"query parameter {key!r} is a message: set its fields, e.g. {key}.{mt.fields[0].json_name}"
                        if mt.fields
                        else f"query parameter {key!r} is a message without fields",
                        "BAD_VALUE",
                        key,
                    )
                if f.is_repeated:
                    items = node.setdefault(f.name, [])
                    while len(items) <= index:
                        items.append({})
                    node = items[index]
                else:
                    node = node.setdefault(f.name, {})
                cur = mt
                continue
            if not last:
                raise bad_request(f"query parameter {key!r}: {name} has no fields", "UNKNOWN_FIELD", key)
            v = text_value(f, value, f"query parameter {key!r}")
            if f.is_repeated:
                node.setdefault(f.name, []).append(v)
            elif f.name in node:
                raise bad_request(f"query parameter {key!r} is given more than once", "DUPLICATE_FIELD", key)
            else:
                node[f.name] = v
    return root


# -- JSON bodies --------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise bad_request(f"the JSON body has the key {k!r} twice", "DUPLICATE_FIELD", k)
        out[k] = v
    return out


def load_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the request body is not UTF-8 ({exc.reason} at byte {exc.start})", "BAD_JSON") from None
    if not text.strip():
        return None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "BAD_JSON"
        ) from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply", "BAD_JSON") from None


def check_json_fields(obj: Any, desc: Descriptor, path: str) -> None:
    """Refuse unknown fields and fields given in both spellings, naming them (path-qualified)."""
    if desc.full_name in SPECIAL_JSON or not isinstance(obj, dict):
        return
    seen: dict[str, str] = {}
    for key, value in obj.items():
        where = f"{path}{key}"
        f = find_field(desc, key)
        if f is None:
            known = ", ".join(x.json_name for x in desc.fields)
            raise bad_request(
                f"unknown field {where!r} in the request body ({desc.name} has: {known or 'no fields'})",
                "UNKNOWN_FIELD",
                where,
            )
        if f.name in seen:
            raise bad_request(
                f"field {where!r} is given twice in the request body (as {seen[f.name]!r} and {key!r})",
                "DUPLICATE_FIELD",
                where,
            )
        seen[f.name] = key
        mt = f.message_type
        if mt is None or value is None:
            continue
        if is_map(f):
            vt = mt.fields_by_name["value"].message_type
            if vt is not None and isinstance(value, dict):
                for k, item in value.items():
                    check_json_fields(item, vt, f"{where}[{k}].")
        elif f.is_repeated and isinstance(value, list):
            for i, item in enumerate(value):
                check_json_fields(item, mt, f"{where}[{i}].")
        else:
            check_json_fields(value, mt, f"{where}.")


def parse_error(exc: Exception, what: str) -> HttpError:
    """json_format's nested "Failed to parse x field: ..." messages as `what a.b: problem`."""
    msg = str(exc)
    path: list[str] = []
    while True:
        m = _PARSE_PREFIX.match(msg)
        if not m:
            break
        path.append(m.group(1))
        msg = msg[m.end() :]
    msg = re.sub(r" at \"[^\"]*\"\.?$| at [A-Za-z0-9_.]+\.?$", "", msg.strip()).rstrip(".")
    field = ".".join(path)
    return bad_request(f"{what}{' ' + field if field else ''}: {msg}", "BAD_VALUE", field)


def _parse_into(obj: Any, msg: Message, what: str) -> None:
    try:
        json_format.ParseDict(obj, msg)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise parse_error(exc, what) from None


# -- the transcoder -----------------------------------------------------------------------------


class Transcoder:
    """HTTP request → protobuf request and protobuf response → JSON, for the routes of services."""

    def __init__(self, services: Iterable[ServiceDescriptor]) -> None:
        self.routes_in_order = build_routes(services)
        # For matching, more specific first: a custom verb, more literal segments, fewer variables.
        self.routes = sorted(
            self.routes_in_order, key=lambda r: (not r.template.verb, -r.template.literals, len(r.template.variables))
        )

    def match(self, http_method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        """The route for a request (404 when no template matches, 405 when only other methods do)."""
        others: list[str] = []
        for r in self.routes:
            m = r.template.regex.fullmatch(raw_path)
            if m is None:
                continue
            if r.http_method == http_method:
                return r, m.groupdict()
            if r.http_method not in others:
                others.append(r.http_method)
        if others:
            raise method_not_allowed(http_method, raw_path, others)
        raise HttpError(grpc.StatusCode.NOT_FOUND, f"no endpoint {raw_path[:200]!r}; see {OPENAPI_PATH}", "NO_ROUTE")

    def build_request(
        self, route: Route, groups: Mapping[str, str], query: Iterable[tuple[str, str]], body: bytes
    ) -> Message:
        msg = route.request_class()
        q = query_dict(route, query)
        if q:
            _parse_into(q, msg, "query parameter")
        if route.body:
            obj = load_json(body)
            if route.body == "*":
                if obj is None:
                    obj = {}
                if not isinstance(obj, dict):
                    raise bad_request(f"the request body must be a JSON object, not {type(obj).__name__}", "BAD_JSON")
                check_json_fields(obj, route.method.input_type, "")
                _parse_into(obj, msg, "request body field")
            elif obj is not None:
                f = route.method.input_type.fields_by_name[route.body]
                wrapped = {f.name: obj}
                check_json_fields(wrapped, route.method.input_type, "")
                _parse_into(wrapped, msg, "request body")
        for var in route.template.variables:
            self._set_path_variable(msg, route, var, groups[var.group])
        return msg

    @staticmethod
    def _set_path_variable(msg: Message, route: Route, var: Variable, raw: str) -> None:
        what = f"path variable {{{var.name}}}"
        try:
            text = urllib.parse.unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise bad_request(f"{what}: not UTF-8 after percent-decoding", "BAD_VALUE", var.name) from None
        desc = route.method.input_type
        parent = msg
        for name in var.field_path[:-1]:
            parent = getattr(parent, name)
            desc = desc.fields_by_name[name].message_type
        leaf = desc.fields_by_name[var.field_path[-1]]
        value = text_value(leaf, text, what)
        tmp = message_factory.GetMessageClass(desc)()
        _parse_into({leaf.name: value}, tmp, what)
        if leaf.message_type is not None:
            getattr(parent, leaf.name).CopyFrom(getattr(tmp, leaf.name))
        else:
            setattr(parent, leaf.name, getattr(tmp, leaf.name))

    @staticmethod
    def render(route: Route, response: Message) -> Any:
        out = json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
        if route.response_body:
            return out.get(response.DESCRIPTOR.fields_by_name[route.response_body].json_name)
        return out


def method_not_allowed(http_method: str, path: str, allowed: list[str]) -> HttpError:
    return HttpError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"{http_method} is not allowed on {path[:200]!r}; allowed: {', '.join(allowed)}",
        "METHOD_NOT_ALLOWED",
        http_status=405,
        headers={"Allow": ", ".join(allowed)},
    )


# -- Server-Sent Events -------------------------------------------------------------------------


class _StreamContext:
    """What SessionService.handle needs from a gRPC context: abort() at the end of a failed stream."""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        raise grpc.aio.AbortError(f"{code.name}: {details}")


_END = object()


def parse_last_event_id(text: str) -> list[resources_pb2.Cursor]:
    """`Last-Event-ID: <conversation>:<seq>[, <conversation>:<seq> ...]` → resume cursors."""
    out: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        conv, sep, seq = part.rpartition(":")
        if not sep or not conv or not re.fullmatch(r"[0-9]{1,18}", seq):
            raise bad_request(
                f"Last-Event-ID: {part[:80]!r} is not <conversation>:<seq> (for example group:dev-team:42)",
                "BAD_CURSOR",
                "Last-Event-ID",
            )
        out[conv] = max(out.get(conv, 0), int(seq))
    if len(out) > MAX_CURSORS:
        raise bad_request(f"Last-Event-ID has {len(out)} cursors; the limit is {MAX_CURSORS}", "TOO_MANY_CURSORS")
    return [resources_pb2.Cursor(conversation=c, seq=s) for c, s in out.items()]


SEQUENCED_FEED = ("mention", "task_assigned", "task_updated", "direct_message")


def sse_frame(ev: events_pb2.ServerEvent, inbox: str) -> tuple[bytes, tuple[str, int] | None]:
    """One SSE event (`id`, `event`, `data`) and the cursor it delivers, if any."""
    kind = ev.WhichOneof("event") or "unknown"
    cursor: tuple[str, int] | None = None
    if kind == "message":
        cursor = (ev.message.conversation, ev.message.seq)
    elif kind in SEQUENCED_FEED:
        cursor = (inbox, getattr(ev, kind).item.seq)
    elif kind == "history_gap":  # deleted history: resuming from here must not ask for it again
        cursor = (ev.history_gap.conversation, ev.history_gap.to_seq)
    data = json.dumps(
        json_format.MessageToDict(ev, always_print_fields_with_no_presence=True),
        ensure_ascii=False,
        separators=(",", ":"),
    )
    head = f"id: {cursor[0]}:{cursor[1]}\n" if cursor else ""
    return f"{head}event: {kind}\ndata: {data}\n\n".encode(), cursor


async def _pump(gen: AsyncIterator[bytes], out: asyncio.Queue[Any]) -> None:
    """Move serialized ServerEvents from the Session generator to the SSE writer.

    Pulling the next event right after queueing one lets the Session writer record the
    delivered cursor before the SSE writer acknowledges it.
    """
    try:
        async for data in gen:
            await out.put(data)
    except grpc.aio.AbortError:
        pass  # the closing error event was already yielded
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("event stream failed")
    finally:
        aclose = getattr(gen, "aclose", None)
        if aclose is not None:
            await aclose()
    await out.put(_END)


async def _write(resp: web.StreamResponse, data: bytes, interval: float) -> None:
    """Write to an SSE client; one that has not read for 3 heartbeat intervals is gone."""
    try:
        await asyncio.wait_for(resp.write(data), STALL_INTERVALS * interval)
    except TimeoutError:
        raise ConnectionError(f"the client read nothing for {STALL_INTERVALS * interval:g} s") from None


async def _request_events(q: asyncio.Queue[events_pb2.ClientEvent | None]) -> AsyncIterator[events_pb2.ClientEvent]:
    while True:
        ev = await q.get()
        if ev is None:
            return
        yield ev


# -- the HTTPS server ---------------------------------------------------------------------------


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"REST address {addr!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def ssl_context(app: App) -> ssl.SSLContext:
    """Server TLS that requires a client certificate issued by the network CA."""
    certs = app.certs
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca_cert))
    ctx.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Gateway:
    """The aiohttp HTTPS server of the REST shim, in the gRPC server's event loop."""

    def __init__(self, app: App, services: Iterable[ServiceDescriptor] | None = None) -> None:
        self.app = app
        self.settings = app.settings
        self.transcoder = Transcoder(
            services if services is not None else service_pb2.DESCRIPTOR.services_by_name.values()
        )
        self.max_body = app.settings.max_message_bytes
        self.runner: web.AppRunner | None = None
        self._openapi: bytes | None = None
        self._openapi_lock = asyncio.Lock()
        self.extra: dict[str, tuple[str, ...]] = {EVENTS_PATH: ("GET",), OPENAPI_PATH: ("GET",)}

    async def start(self, addr: str) -> int:
        host, port = split_addr(addr)
        web_app = web.Application(client_max_size=self.max_body)
        web_app.router.add_route("*", "/{tail:.*}", self.handle, expect_handler=self._expect)
        self.runner = runner = web.AppRunner(
            web_app,
            access_log_format='%a "%r" %s %b %Tf',
            shutdown_timeout=max(0.5, self.settings.shutdown_grace),
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context(self.app), reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(f"could not listen on {addr} for REST: {exc.strerror or exc}") from None
        bound = runner.addresses[0][1]
        log.info("REST shim on https://%s:%d (%d routes)", host, bound, len(self.transcoder.routes))
        return int(bound)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- request handling ---------------------------------------------------------------------

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refuse an oversized body before the client sends it."""
        if request.content_length is not None and request.content_length > self.max_body:
            return error_response(self._too_large())
        expect = request.headers.get("Expect", "")
        if request.version == (1, 1):
            if expect.lower() != "100-continue":
                raise web.HTTPExpectationFailed(text=f"unknown Expect: {expect}")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the main body has not started yet
        return None

    def _too_large(self) -> HttpError:
        return HttpError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the request body is larger than {self.max_body} bytes",
            "BODY_TOO_LARGE",
            http_status=413,
            metadata={"limit": str(self.max_body)},
        )

    def _peer(self, request: web.Request) -> auth.Peer:
        transport = request.transport
        sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if not der:
            raise HttpError(
                grpc.StatusCode.UNAUTHENTICATED,
                "a client certificate is required (mTLS)",
                "NO_CLIENT_CERTIFICATE",
            )
        try:
            return auth.peer_from_pem(ssl.DER_cert_to_PEM_cert(der).encode())
        except ValueError as exc:
            raise HttpError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"the client certificate could not be read: {exc}",
                "BAD_CLIENT_CERTIFICATE",
            ) from None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        peer: auth.Peer | None = None
        try:
            peer = self._peer(request)
            self.app.revocations.check(peer)
            await self.app.revocations.remember(peer)
            auth.current_peer.set(peer)
            extra = self.extra.get(path)
            if extra is not None:
                if request.method not in extra:
                    raise method_not_allowed(request.method, path, list(extra))
                if path == EVENTS_PATH:
                    return await self.events(request, peer)
                return await self.openapi(request)
            route, groups = self.transcoder.match(request.method, path)
            body = await self._read_body(request) if route.body else b""
            msg = self.transcoder.build_request(route, groups, request.rel_url.query.items(), body)
            impl = getattr(self.app.servicer, route.rpc_name, None)
            if impl is None:
                raise HttpError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{route.method.full_name} is not implemented by this server",
                    "UNIMPLEMENTED",
                )
            result = await impl(msg, None)
            return json_response(self.transcoder.render(route, result))
        except (AgentnetError, HttpError) as exc:
            if peer is None or (isinstance(exc, AgentnetError) and exc.status == "UNAUTHENTICATED"):
                log.info("refused %s %s: %s", request.method, path[:200], exc.message if exc.message else exc)
            return error_response(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s %s failed for %s", request.method, path[:200], peer.short if peer else "?")
            return error_response(
                HttpError(
                    grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log", "INTERNAL"
                )
            )

    async def _read_body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise self._too_large()
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise self._too_large() from None

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        if request.rel_url.query:
            raise bad_request(f"{OPENAPI_PATH} takes no query parameters", "UNEXPECTED_QUERY_PARAMETER")
        async with self._openapi_lock:
            if self._openapi is None:
                from . import openapi

                doc = await asyncio.to_thread(openapi.build_document)
                self._openapi = json.dumps(doc, ensure_ascii=False, indent=2).encode()
        return web.Response(body=self._openapi, content_type="application/json", charset="utf-8")

    async def events(self, request: web.Request, peer: auth.Peer) -> web.StreamResponse:
        """The caller's ServerEvents as Server-Sent Events, resumable with Last-Event-ID."""
        query = request.rel_url.query
        for key in query:
            if key not in ("agent_id", "agentId", "last_event_id"):
                raise bad_request(
                    f"unknown query parameter {key!r} (known: agent_id, last_event_id)", "UNKNOWN_FIELD", key
                )
        agent = self.app.net.acting_agent(peer.device_id, query.get("agent_id") or query.get("agentId") or "")
        cursors = parse_last_event_id(request.headers.get("Last-Event-ID") or query.get("last_event_id") or "")
        inbox = inbox_conv(agent)
        requests: asyncio.Queue[events_pb2.ClientEvent | None] = asyncio.Queue()
        requests.put_nowait(
            events_pb2.ClientEvent(
                request_id="sse-register",
                register=events_pb2.Register(agent=resources_pb2.Agent(id=agent), cursors=cursors),
            )
        )
        out: asyncio.Queue[Any] = asyncio.Queue(SSE_QUEUE)
        gen = self.app.sessions.handle(_request_events(requests), _StreamContext())
        pump = asyncio.create_task(_pump(gen, out), name=f"agentnet-sse-{peer.device_id}")
        interval = self.settings.heartbeat_interval
        try:
            first = await out.get()
            if first is _END:
                raise HttpError(grpc.StatusCode.UNAVAILABLE, "the event stream ended at once; retry", "STREAM_ENDED")
            ev = events_pb2.ServerEvent.FromString(first)
            if ev.WhichOneof("event") == "error":
                e = ev.error
                raise HttpError(grpc_code(e.status), e.message, e.reason, metadata=dict(e.metadata))
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )
            await resp.prepare(request)
            try:
                frame, _ = sse_frame(ev, inbox)
                await _write(resp, f"retry: {int(interval * 1000)}\n\n".encode() + frame, interval)
                await self._stream(resp, out, requests, inbox, interval)
            except ConnectionError as exc:
                log.info("SSE client of %s went away (%s)", peer.short, exc)
                if request.transport is not None:
                    request.transport.abort()
            return resp
        finally:
            # End the request stream so the session flushes its acks and closes; then stop waiting.
            requests.put_nowait(None)
            deadline = asyncio.get_running_loop().time() + 2.0
            while not pump.done() and asyncio.get_running_loop().time() < deadline:
                while not out.empty():
                    out.get_nowait()
                await asyncio.wait({pump}, timeout=0.05)
            if not pump.done():
                pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    @staticmethod
    async def _stream(
        resp: web.StreamResponse,
        out: asyncio.Queue[Any],
        requests: asyncio.Queue[events_pb2.ClientEvent | None],
        inbox: str,
        interval: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + interval
        while True:
            try:
                item = await asyncio.wait_for(out.get(), max(0.0, next_tick - loop.time()))
            except TimeoutError:
                next_tick = loop.time() + interval
                requests.put_nowait(events_pb2.ClientEvent(heartbeat=events_pb2.Heartbeat()))
                await _write(resp, b": keepalive\n\n", interval)
                continue
            items = [item]
            while not out.empty():
                items.append(out.get_nowait())
            chunks: list[bytes] = []
            acks: dict[str, int] = {}
            ended = False
            for it in items:
                if it is _END:
                    ended = True
                    break
                ev = events_pb2.ServerEvent.FromString(it)
                if ev.WhichOneof("event") == "heartbeat_ack":
                    continue
                frame, cursor = sse_frame(ev, inbox)
                chunks.append(frame)
                if cursor is not None:
                    acks[cursor[0]] = max(acks.get(cursor[0], 0), cursor[1])
            if chunks:
                await _write(resp, b"".join(chunks), interval)
            if ended:
                return
            if acks:
                # Written to the client: acknowledge, so the server-side delivery cursors advance.
                requests.put_nowait(
                    events_pb2.ClientEvent(
                        ack=events_pb2.Ack(
                            cursors=[resources_pb2.Cursor(conversation=c, seq=s) for c, s in acks.items()]
                        )
                    )
                )

"""The OpenAPI 3.1 document of the REST shim, generated from the same google.api.http rules.

    python -m agentnet_server.rest.openapi --out docs/openapi.json     (what `make openapi` runs)
    python -m agentnet_server.rest.openapi --check docs/openapi.json   (exit 1 when it is stale)

Schemas follow the proto3 JSON mapping the shim speaks: lowerCamelCase names, 64-bit integers as
strings, enums by name, timestamps as RFC 3339 strings. Descriptions are the comments of the
.proto files when they can be read (protos/ next to the package and grpc_tools installed).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, ServiceDescriptor

from agentnet.v1 import service_pb2

from .routes import INT32_TYPES, INT64_TYPES, TEXT_MESSAGES, WRAPPERS, Route, is_map
from .sse import EVENTS_PATH
from .transcoder import OPENAPI_PATH, Transcoder

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
PROTOS = ROOT / "protos"
REF = "#/components/schemas/"
MAX_QUERY_DEPTH = 3

DESCRIPTION = """\
HTTP/JSON access to an agentnet network for scripts and curl, transcoded from the gRPC service
by its `google.api.http` rules (in the manner of grpc-gateway).

**Identity** is the TLS client certificate of the calling device (mutual TLS, issued by the
network's CA), exactly as on gRPC; identity headers are ignored. Calls that act as an agent take
`agentId` when the device acts as several agents, else the device's one agent.

**JSON** follows the proto3 JSON mapping: lowerCamelCase field names (proto names are accepted
too), 64-bit integers as strings, enums by name, timestamps in RFC 3339. Unknown fields are
refused with 400 naming the field.

**Errors** are `{"code", "message", "details"}` (google.rpc.Status: `code` is the gRPC code,
`details` holds a google.rpc.ErrorInfo with a stable `reason`), with grpc-gateway's HTTP status
table: INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE → 400; UNAUTHENTICATED → 401;
PERMISSION_DENIED → 403; NOT_FOUND → 404; ALREADY_EXISTS, ABORTED → 409; RESOURCE_EXHAUSTED → 429;
CANCELLED → 499; UNIMPLEMENTED → 501; UNAVAILABLE → 503; DEADLINE_EXCEEDED → 504; others → 500.
A wrong method on a known path is 405 with `Allow`; a body over the message limit is 413.

**Live events**: `GET /api/events` streams the caller's events as Server-Sent Events.
"""

EVENTS_DESCRIPTION = """\
The caller's live events as Server-Sent Events (`text/event-stream`), the same events as the gRPC
Session stream: each event is `event: <kind>` (the ServerEvent oneof name, e.g. `message`,
`mention`, `task_assigned`) and `data: <ServerEvent as JSON>`. Sequenced events carry
`id: <conversation>:<seq>` (messages: their conversation; mentions, direct-message and task feed
items: `inbox:<agent>`). First come `registered`, `agent_list`, the replay of what was missed,
then `caught_up`, then live events; a comment line (`: keepalive`) is sent every heartbeat
interval. Delivered events are acknowledged for the device, so a reconnect without
`Last-Event-ID` resumes after what was delivered. To resume from known positions send
`Last-Event-ID` with one or more comma-separated cursors `<conversation>:<seq>`, e.g.
`Last-Event-ID: group:dev-team:41, inbox:xiaoxing:7`: everything after each cursor is replayed.
"""


# -- comments from the .proto sources -----------------------------------------------------------


def _clean(comment: str) -> str:
    lines = [line.strip() for line in comment.strip().splitlines()]
    return "\n".join(lines).strip()


def load_comments(protos: pathlib.Path = PROTOS) -> dict[str, str]:
    """Leading comments by full symbol name (messages, fields, enums, values, services, methods).

    Empty when the .proto sources or grpc_tools are not available (an installed server)."""
    try:
        import google.api
        from grpc_tools import protoc
    except ImportError:
        return {}
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto")) if protos.is_dir() else []
    if not files:
        return {}
    googleapis = pathlib.Path(google.api.__path__[0]).parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "set.pb"
        args = [
            "protoc",
            f"-I{protos}",
            f"-I{googleapis}",
            f"-I{pathlib.Path(protoc.__file__).parent / '_proto'}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *files,
        ]
        if protoc.main(args) != 0:
            return {}
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    comments: dict[str, str] = {}
    for fdp in fds.file:
        names = _symbol_paths(fdp)
        for loc in fdp.source_code_info.location:
            name = names.get(tuple(loc.path))
            if name and loc.leading_comments.strip():
                comments[name] = _clean(loc.leading_comments)
    return comments


def _symbol_paths(fdp: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Source-location paths → full names (see descriptor.proto's SourceCodeInfo)."""
    out: dict[tuple[int, ...], str] = {}
    pkg = fdp.package

    def message(path: tuple[int, ...], prefix: str, m: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{m.name}"
        out[path] = name
        for i, f in enumerate(m.field):
            out[(*path, 2, i)] = f"{name}.{f.name}"
        for i, nested in enumerate(m.nested_type):
            message((*path, 3, i), name, nested)
        for i, e in enumerate(m.enum_type):
            enum((*path, 4, i), name, e)

    def enum(path: tuple[int, ...], prefix: str, e: descriptor_pb2.EnumDescriptorProto) -> None:
        name = f"{prefix}.{e.name}"
        out[path] = name
        for i, v in enumerate(e.value):
            out[(*path, 2, i)] = f"{name}.{v.name}"

    for i, m in enumerate(fdp.message_type):
        message((4, i), pkg, m)
    for i, e in enumerate(fdp.enum_type):
        enum((5, i), pkg, e)
    for i, s in enumerate(fdp.service):
        out[(6, i)] = f"{pkg}.{s.name}"
        for j, meth in enumerate(s.method):
            out[(6, i, 2, j)] = f"{pkg}.{s.name}.{meth.name}"
    return out


# -- schemas ------------------------------------------------------------------------------------


class Builder:
    """Collects component schemas while describing routes."""

    def __init__(self, comments: Mapping[str, str]) -> None:
        self.comments = comments
        self.schemas: dict[str, Any] = {}

    def _described(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        text = self.comments.get(name)
        if text:
            schema = {**schema, "description": text}
        return schema

    def scalar(self, field: FieldDescriptor) -> dict[str, Any]:
        """The JSON schema of one (non-repeated) value of a field."""
        t = field.type
        if t == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if t == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if t == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if t in INT32_TYPES:
            lo, hi = INT32_TYPES[t]
            return {"type": "integer", "format": "int32" if lo < 0 else "int64", "minimum": lo, "maximum": hi}
        if t in INT64_TYPES:
            lo, _ = INT64_TYPES[t]
            fmt, pattern = ("int64", "^-?[0-9]{1,19}$") if lo < 0 else ("uint64", "^[0-9]{1,20}$")
            return {"type": "string", "format": fmt, "pattern": pattern}
        if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            return {"type": "number", "format": "float" if t == FieldDescriptor.TYPE_FLOAT else "double"}
        if t == FieldDescriptor.TYPE_ENUM:
            return {"$ref": REF + self.enum(field.enum_type)}
        return self.message_ref(field.message_type)

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if is_map(field):
            value = field.message_type.fields_by_name["value"]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self.scalar(value)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.scalar(field)}
        else:
            schema = self.scalar(field)
        text = self.comments.get(field.full_name)
        if text:
            schema = {**schema, "description": text}
        return schema

    def enum(self, enum: EnumDescriptor) -> str:
        name: str = enum.full_name
        if name not in self.schemas:
            values = [v.name for v in enum.values]
            described = ((v.name, self.comments.get(f"{name}.{v.name}")) for v in enum.values)
            lines = [f"- `{v}`: {text}" for v, text in described if text]
            schema: dict[str, Any] = {"type": "string", "enum": values}
            text = "\n\n".join(filter(None, [self.comments.get(name, ""), "\n".join(lines)]))
            if text:
                schema["description"] = text
            self.schemas[name] = schema
        return name

    def message_ref(self, desc: Descriptor) -> dict[str, Any]:
        wkt = well_known(desc)
        if wkt is not None:
            return wkt
        name = desc.full_name
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder for recursive types
            self.schemas[name] = self._described(self.object(desc.fields), name)
        return {"$ref": REF + name}

    def object(self, fields: Iterable[FieldDescriptor]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {f.json_name: self.field(f) for f in fields},
            "additionalProperties": False,
        }

    def query_parameters(self, route: Route) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = []
        for f in route.query_fields():
            self._query(f, "", False, 0, params)
        return params

    def _query(self, f: FieldDescriptor, prefix: str, in_array: bool, depth: int, out: list[dict[str, Any]]) -> None:
        name = prefix + f.json_name
        if is_map(f):
            return  # maps go as name[key]=value, which OpenAPI cannot describe per key
        mt = f.message_type
        if mt is not None and mt.full_name not in TEXT_MESSAGES | WRAPPERS:
            if well_known(mt) is not None or depth >= MAX_QUERY_DEPTH:
                return
            for sub in mt.fields:
                self._query(sub, name + ".", in_array or f.is_repeated, depth + 1, out)
            return
        value = self.scalar(mt.fields_by_name["value"]) if mt is not None and mt.full_name in WRAPPERS else None
        schema = value or self.scalar(f)
        if f.is_repeated or in_array:
            schema = {"type": "array", "items": schema}
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
        if f.is_repeated or in_array:
            param |= {"style": "form", "explode": True}
        text = self.comments.get(f.full_name)
        if text:
            param["description"] = text
        out.append(param)


def well_known(desc: Descriptor) -> dict[str, Any] | None:
    """Schemas of the well-known types whose JSON form is special."""
    name = desc.full_name
    if name == "google.protobuf.Timestamp":
        return {"type": "string", "format": "date-time"}
    if name == "google.protobuf.Duration":
        return {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}
    if name == "google.protobuf.FieldMask":
        return {"type": "string"}
    if name == "google.protobuf.Struct":
        return {"type": "object", "additionalProperties": True}
    if name == "google.protobuf.Value":
        return {}
    if name == "google.protobuf.ListValue":
        return {"type": "array"}
    if name == "google.protobuf.Empty":
        return {"type": "object", "additionalProperties": False}
    if name == "google.protobuf.Any":
        return {"$ref": REF + "google.protobuf.Any"}
    if name in WRAPPERS:
        return {"type": _wrapper_type(desc.fields_by_name["value"])}
    return None


def _wrapper_type(f: FieldDescriptor) -> str:
    if f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) or f.type in INT64_TYPES:
        return "string"
    if f.type == FieldDescriptor.TYPE_BOOL:
        return "boolean"
    if f.type in INT32_TYPES:
        return "integer"
    return "number"


# -- the document -------------------------------------------------------------------------------


def _path_parameter(b: Builder, route: Route, var_path: tuple[str, ...]) -> dict[str, Any]:
    desc = route.method.input_type
    for name in var_path[:-1]:
        desc = desc.fields_by_name[name].message_type
    f = desc.fields_by_name[var_path[-1]]
    mt = f.message_type
    schema = well_known(mt) if mt is not None else b.scalar(f)
    param: dict[str, Any] = {"name": ".".join(var_path), "in": "path", "required": True, "schema": schema or {}}
    text = b.comments.get(f.full_name)
    if text:
        param["description"] = text
    return param


def _operation(b: Builder, route: Route, operation_id: str) -> dict[str, Any]:
    m = route.method
    text = b.comments.get(m.full_name, "")
    op: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [m.containing_service.name],
        "summary": text.split("\n", 1)[0] if text else m.name,
    }
    if text:
        op["description"] = text + f"\n\ngRPC: `{m.containing_service.full_name}/{m.name}`."
    else:
        op["description"] = f"gRPC: `{m.containing_service.full_name}/{m.name}`."
    params = [_path_parameter(b, route, v.field_path) for v in route.template.variables]
    params += b.query_parameters(route)
    if params:
        op["parameters"] = params
    if route.body:
        if route.body == "*":
            taken = route.path_fields
            schema = b.object(f for f in m.input_type.fields if f.name not in taken)
        else:
            schema = b.field(m.input_type.fields_by_name[route.body])
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": schema}}}
    if route.response_body:
        out_schema = b.field(m.output_type.fields_by_name[route.response_body])
    else:
        out_schema = b.message_ref(m.output_type)
    op["responses"] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": out_schema}}},
        "default": {"$ref": "#/components/responses/Error"},
    }
    return op


def _gateway_paths(b: Builder) -> dict[str, Any]:
    error = {"$ref": "#/components/responses/Error"}
    return {
        EVENTS_PATH: {
            "get": {
                "operationId": "Gateway_Events",
                "tags": ["Gateway"],
                "summary": "Live events of the calling agent as Server-Sent Events",
                "description": EVENTS_DESCRIPTION,
                "parameters": [
                    {
                        "name": "agent_id",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "The agent to stream (optional when the device acts as one agent).",
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Resume cursors: comma-separated `<conversation>:<seq>`.",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "An endless text/event-stream of ServerEvents",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "default": error,
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "Gateway_OpenApi",
                "tags": ["Gateway"],
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "default": error,
                },
            }
        },
    }


def build_document(
    services: Iterable[ServiceDescriptor] | None = None, comments: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The OpenAPI document for the annotated methods of the services (default: agentnet.v1)."""
    svcs = list(services) if services is not None else list(service_pb2.DESCRIPTOR.services_by_name.values())
    b = Builder(load_comments() if comments is None else comments)
    paths: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    # Routes in declaration order (the transcoder sorts its copy for matching).
    for route in Transcoder(svcs).routes_in_order:
        base = f"{route.method.containing_service.name}_{route.method.name}"
        counts[base] = counts.get(base, 0) + 1
        op_id = base if counts[base] == 1 else f"{base}{counts[base]}"
        paths.setdefault(route.template.openapi_path, {})[route.http_method.lower()] = _operation(b, route, op_id)
    if services is None:
        paths.update(_gateway_paths(b))
    b.schemas["google.protobuf.Any"] = {
        "type": "object",
        "description": "A message of any type, named by `@type`; the other properties are its fields.",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    }
    b.schemas["google.rpc.Status"] = {
        "type": "object",
        "description": "An error (grpc-gateway's body): the gRPC code, a message for people, and details "
        "such as google.rpc.ErrorInfo with a machine-readable `reason`.",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string", "description": "What went wrong and what to do."},
            "details": {"type": "array", "items": {"$ref": REF + "google.protobuf.Any"}},
        },
        "required": ["code", "message"],
        "additionalProperties": False,
    }
    tags = [{"name": s.name, "description": comments_of(b, s.full_name)} for s in svcs]
    if services is None:
        tags.append({"name": "Gateway", "description": "Endpoints of the HTTP gateway itself."})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "agentnet REST shim",
            "version": "v1",
            "description": DESCRIPTION,
        },
        "servers": [{"url": "https://127.0.0.1:8443", "description": "the default local address"}],
        "security": [{"deviceCertificate": []}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "deviceCertificate": {
                    "type": "mutualTLS",
                    "description": "The device's client certificate, issued by the network's CA "
                    "(`make certs DEVICE=<id>`); it is the device's identity.",
                }
            },
            "responses": {
                "Error": {
                    "description": "An error as google.rpc.Status JSON",
                    "content": {"application/json": {"schema": {"$ref": REF + "google.rpc.Status"}}},
                }
            },
            "schemas": dict(sorted(b.schemas.items())),
        },
    }


def comments_of(b: Builder, name: str) -> str:
    return b.comments.get(name, "")


def render(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agentnet_server.rest.openapi", description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", type=pathlib.Path, help="write the document here")
    g.add_argument("--check", type=pathlib.Path, help="exit 1 when this file differs from a fresh document")
    ns = ap.parse_args(argv)
    text = render(build_document())
    if ns.check:
        if not ns.check.exists() or ns.check.read_text(encoding="utf-8") != text:
            print(f"{ns.check} is stale; run `make openapi` and commit it", file=sys.stderr)
            return 1
        return 0
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(text, encoding="utf-8")
    print(f"wrote {ns.out} ({len(doc_paths(text))} paths)")
    return 0


def doc_paths(text: str) -> list[str]:
    return list(json.loads(text)["paths"])


if __name__ == "__main__":
    raise SystemExit(main())

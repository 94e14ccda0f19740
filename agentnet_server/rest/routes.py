"""Routes from `google.api.http` rules: path templates with variables and custom verbs, `body`,
`response_body` and `additional_bindings`, for any service descriptor (nothing agentnet-specific)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

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
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
        name: str = self.method.name
        return name

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

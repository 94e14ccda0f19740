"""The generic transcoder: an HTTP request (path variables, query parameters, JSON body) becomes
the protobuf request of its route, and the protobuf response becomes proto3 JSON. It knows only
descriptors and `google.api.http` rules; nothing agentnet-specific."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from .errors import HttpError, bad_request, method_not_allowed
from .routes import (
    FLOAT_TYPES,
    INT32_TYPES,
    INT64_TYPES,
    SPECIAL_JSON,
    TEXT_MESSAGES,
    WRAPPERS,
    Route,
    Variable,
    build_routes,
    find_field,
    is_map,
)

OPENAPI_PATH = "/api/openapi.json"
TRUE_WORDS = frozenset(("true", "t", "1"))
FALSE_WORDS = frozenset(("false", "f", "0"))
_DIGITS = re.compile(r"-?[0-9]+")
_PARSE_PREFIX = re.compile(r"^Failed to parse (\S+) field: ")


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


def _no_constant(name: str) -> Any:
    # Python's json reads NaN, Infinity and -Infinity; JSON has no such values.
    raise bad_request(f"the request body is not valid JSON: {name} is not a JSON value", "BAD_JSON")


def load_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the request body is not UTF-8 ({exc.reason} at byte {exc.start})", "BAD_JSON") from None
    if not text.strip():
        return None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "BAD_JSON"
        ) from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply", "BAD_JSON") from None
    except ValueError as exc:
        # int() refuses numbers of more than 4,300 digits (CVE-2020-10735): not a server error.
        raise bad_request(f"the request body has a number that is too long: {exc}", "BAD_JSON") from None


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

    def __init__(self, services: Iterable[ServiceDescriptor], docs_path: str = OPENAPI_PATH) -> None:
        self.docs_path = docs_path
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
        raise HttpError(grpc.StatusCode.NOT_FOUND, f"no endpoint {raw_path[:200]!r}; see {self.docs_path}", "NO_ROUTE")

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

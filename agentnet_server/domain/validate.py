"""Input rules shared by every entry point (stream, unary RPC, REST)."""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
import uuid
from typing import Any

from agentnet_client.wire import MAX_AUTO_HOPS

from ..errors import InvalidArgument
from ..records import ID_RE

MAX_NAME = 64
MAX_ROLE = 64
MAX_DESCRIPTION = 1024
MAX_TITLE = 128
MAX_CLIENT_ID = 64


def check_id(what: str, value: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidArgument(
            f"{what} {_show(value)} is not valid: use 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit",
            reason="BAD_ID",
            metadata={"field": what},
        )
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "...'"


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for ch in text)


def check_text(what: str, value: str, limit: int, *, required: bool = False, single_line: bool = True) -> str:
    if required and not value.strip():
        raise InvalidArgument(f"{what} must not be empty", reason="EMPTY", metadata={"field": what})
    if len(value) > limit:
        raise InvalidArgument(
            f"{what} is {len(value)} characters; the limit is {limit}", reason="TOO_LONG", metadata={"field": what}
        )
    bad = [ch for ch in value if unicodedata.category(ch) in ("Cc", "Cs") and (single_line or ch not in "\n\t")]
    if bad:
        raise InvalidArgument(
            f"{what} contains control character {bad[0]!r}", reason="CONTROL_CHARACTER", metadata={"field": what}
        )
    return value


def display_name(value: str) -> tuple[str, str]:
    """Returns (display name in NFC, uniqueness key)."""
    name = unicodedata.normalize("NFC", value or "")
    if not name:
        raise InvalidArgument("display_name must not be empty", reason="EMPTY", metadata={"field": "display_name"})
    if name != name.strip():
        raise InvalidArgument(
            f"display_name {_show(name)} has leading or trailing whitespace",
            reason="BAD_DISPLAY_NAME",
            metadata={"field": "display_name"},
        )
    if len(name) > MAX_NAME:
        raise InvalidArgument(
            f"display_name is {len(name)} characters; the limit is {MAX_NAME}",
            reason="TOO_LONG",
            metadata={"field": "display_name"},
        )
    if "@" in name or _has_control(name):
        raise InvalidArgument(
            f"display_name {_show(name)} may not contain '@' or control characters",
            reason="BAD_DISPLAY_NAME",
            metadata={"field": "display_name"},
        )
    return name, name_key(name)


def name_key(name: str) -> str:
    """Names equal under this key are the same name (case, width and composition ignored)."""
    return unicodedata.normalize("NFKC", name).casefold()


def client_id(what: str, value: str) -> str:
    if not value or len(value) > MAX_CLIENT_ID or not all("\x21" <= ch <= "\x7e" for ch in value):
        raise InvalidArgument(
            f"{what} {_show(value)} must be 1-{MAX_CLIENT_ID} printable ASCII characters without spaces",
            reason="BAD_CLIENT_ID",
            metadata={"field": what},
        )
    return value


def idempotency_key(what: str, value: str, signed: bool) -> str:
    """A request's client-chosen id (`what`: client_msg_id, client_task_id), or a fresh one made
    here when the client sent none (a retry of that request is then not idempotent). A signed
    request must carry its own: the signature covers it, so the server cannot make one up."""
    if not value:
        if signed:
            raise InvalidArgument(
                f"{what} is empty: a signed request needs one chosen by the client (the signature covers "
                "it, so the server cannot make one up); use a fresh unique id such as a UUID (docs/signing.md)",
                reason="BAD_CLIENT_ID",
                metadata={"field": what},
            )
        return f"srv-{uuid.uuid4().hex}"
    return client_id(what, value)


def content(value: str, max_bytes: int, has_payload: bool) -> str:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument(
            f"content is {size} bytes; the limit is {max_bytes} bytes",
            reason="CONTENT_TOO_LARGE",
            metadata={"limit": str(max_bytes), "size": str(size)},
        )
    if not value.strip() and not has_payload:
        raise InvalidArgument("content is empty; send text or a payload", reason="EMPTY_CONTENT")
    if "\x00" in value:
        raise InvalidArgument("content contains a NUL character", reason="CONTROL_CHARACTER")
    return value


def _depth(value: Any, limit: int, level: int = 1) -> int:
    if level > limit:
        return level
    if isinstance(value, dict):
        return max((_depth(v, limit, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, limit, level + 1) for v in value), default=level)
    return level


def payload(value: dict[str, Any] | None, max_bytes: int, max_depth: int) -> str | None:
    """Canonical JSON of a payload, checked for size and nesting."""
    if value is None:
        return None
    depth = _depth(value, max_depth)
    if depth > max_depth:
        raise InvalidArgument(
            f"payload is nested more than {max_depth} levels deep",
            reason="PAYLOAD_TOO_DEEP",
            metadata={"limit": str(max_depth)},
        )
    text = canonical_json(value)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InvalidArgument(
            f"payload is {size} bytes as JSON; the limit is {max_bytes} bytes",
            reason="PAYLOAD_TOO_LARGE",
            metadata={"limit": str(max_bytes), "size": str(size)},
        )
    return text


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def reply_ref(reply_to: int, auto_hops: int) -> None:
    """The reply fields of a send: a non-negative seq, and a bounded automatic-hop count."""
    if reply_to < 0:
        raise InvalidArgument(
            f"reply_to must be the seq of a message in the same conversation (>= 1), or 0; got {reply_to}",
            reason="BAD_REPLY_TO",
        )
    if not 0 <= auto_hops <= MAX_AUTO_HOPS:
        raise InvalidArgument(
            f"auto_hops must be between 0 (written directly) and {MAX_AUTO_HOPS}; got {auto_hops}",
            reason="BAD_AUTO_HOPS",
        )


def digest(*parts: str | None) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = (part or "").encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def page_size(value: int, default: int = 100, maximum: int = 1000) -> int:
    if value < 0:
        raise InvalidArgument(f"page_size must not be negative, got {value}", reason="BAD_PAGE_SIZE")
    return default if value == 0 else min(value, maximum)


def encode_token(kind: str, value: Any) -> str:
    raw = json.dumps({"k": kind, "v": value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str) -> Any:
    """The value inside a page token this server issued for `kind` (None for an empty token)."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if data["k"] != kind:
            raise ValueError("kind")
        return data["v"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(
            "page_token is not a token this server issued for this list; start again without it",
            reason="BAD_PAGE_TOKEN",
        ) from None

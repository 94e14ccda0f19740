"""The wire contract shared by the client and the server, and the only module the server imports
from the client package. No gRPC here: only protobuf messages, text rules and bytes.

- Ids: agents, groups and devices are named by ID_RE.
- Conversation ids: `group:<group>`, `dm:<a>+<b>` (the two agent ids sorted), `inbox:<agent>`.
- Signed bytes: the canonical encoding every device signs and every reader checks.
- Reason words: the catalogue of machine-readable `reason` values of errors (google.rpc.ErrorInfo
  on unary calls and REST, Error.reason on the Session stream); protos/agentnet/v1/events.proto
  documents them on Error.reason.

Signatures: ECDSA P-256 / SHA-256 by the sending device's key over a canonical encoding,
specified for any language in docs/signing.md with test vectors in docs/signing-vectors.json.

The signed bytes are a domain tag followed by UTF-8 fields, each preceded by its length as
4 bytes big-endian. Numbers (enums too) are decimal text; times are microseconds since the epoch.

    "agentnet.v1.message":     sender device, sender agent, target ("group:<id>" or
                               "agent:<recipient id>"), client_msg_id, content, payload
                               (RFC 8785 JSON Canonicalization Scheme, UTF-8; empty when
                               absent), sign_time; then, only when either is set (so a
                               message without them keeps the bytes it always had): reply_to,
                               auto_hops
    "agentnet.v1.task.create": device, creator, client_task_id, title, description, assignee,
                               group_id, priority, due_time (0 = none), sign_time
    "agentnet.v1.task.update": device, actor, task_id, status, assignee, note, result,
                               expected_version, sign_time

Recipients rebuild the message bytes from the Message they receive and check the signature with
the certificate whose SHA-256 fingerprint is Message.signer_fingerprint (GetDevice serves it;
it must chain to the network CA).
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from google.protobuf import json_format, struct_pb2

from agentnet.v1 import events_pb2, resources_pb2

# -- ids and conversations ----------------------------------------------------------------------

# Agent, group and device ids.
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

GROUP_PREFIX = "group:"
DM_PREFIX = "dm:"
INBOX_PREFIX = "inbox:"


def group_conv(group_id: str) -> str:
    return GROUP_PREFIX + group_id


def dm_conv(a: str, b: str) -> str:
    lo, hi = sorted((a, b))
    return f"{DM_PREFIX}{lo}+{hi}"


def inbox_conv(agent_id: str) -> str:
    return INBOX_PREFIX + agent_id


def dm_parties(conv: str) -> tuple[str, str]:
    a, _, b = conv[len(DM_PREFIX) :].partition("+")
    return a, b


# -- signed bytes -------------------------------------------------------------------------------

DOMAIN = b"agentnet.v1.message"
# The highest automatic-hop count a message may carry (see Message.auto_hops).
MAX_AUTO_HOPS = 16
TASK_CREATE = b"agentnet.v1.task.create"
TASK_UPDATE = b"agentnet.v1.task.update"


def jcs(value: Any) -> str:
    """RFC 8785 canonical JSON text of a JSON value (numbers as ECMAScript prints doubles: 1, 0.1,
    1e+21; keys sorted by UTF-16 code units; no whitespace)."""
    return rfc8785.dumps(value).decode("utf-8")


def legacy_json(value: Any) -> str:
    """Signing scheme 1 (before RFC 8785): Python's json.dumps with sorted keys. Still accepted
    when verifying, so messages signed before the switch stay verifiable (docs/signing.md)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_payload(payload: struct_pb2.Struct | None) -> str:
    """The payload as it enters the signed bytes (RFC 8785); "" when absent."""
    if payload is None:
        return ""
    return jcs(json_format.MessageToDict(payload))


def payload_texts(value: Any) -> tuple[str, ...]:
    """The payload texts a verifier accepts, the current scheme first: (RFC 8785,) or, when the
    scheme-1 text differs (numbers, astral-plane keys), (RFC 8785, scheme 1)."""
    if value is None:
        return ("",)
    current, old = jcs(value), legacy_json(value)
    return (current,) if current == old else (current, old)


def _encode(tag: bytes, *fields: str) -> bytes:
    out = bytearray(tag)
    for field in fields:
        data = field.encode("utf-8", "surrogatepass")
        out += len(data).to_bytes(4, "big")
        out += data
    return bytes(out)


def signed_bytes(
    device: str,
    sender: str,
    target: str,
    client_msg_id: str,
    content: str,
    payload_json: str,
    sign_time_us: int,
    reply_to: int = 0,
    auto_hops: int = 0,
) -> bytes:
    fields = [device, sender, target, client_msg_id, content, payload_json, str(sign_time_us)]
    if reply_to or auto_hops:
        # Appended only when set: the length prefixes keep the two shapes apart, and messages
        # signed before these fields existed verify unchanged.
        fields += [str(reply_to), str(auto_hops)]
    return _encode(DOMAIN, *fields)


def task_create_bytes(
    device: str,
    actor: str,
    client_task_id: str,
    title: str,
    description: str,
    assignee: str,
    group_id: str,
    priority: int,
    due_time_us: int,
    sign_time_us: int,
) -> bytes:
    return _encode(
        TASK_CREATE,
        device,
        actor,
        client_task_id,
        title,
        description,
        assignee,
        group_id,
        str(priority),
        str(due_time_us),
        str(sign_time_us),
    )


def task_update_bytes(
    device: str,
    actor: str,
    task_id: str,
    status: int,
    assignee: str,
    note: str,
    result: str,
    expected_version: int,
    sign_time_us: int,
) -> bytes:
    return _encode(
        TASK_UPDATE,
        device,
        actor,
        task_id,
        str(status),
        assignee,
        note,
        result,
        str(expected_version),
        str(sign_time_us),
    )


def target_of_send(sm: events_pb2.SendMessage) -> str:
    return "group:" + sm.group_id if sm.WhichOneof("target") == "group_id" else "agent:" + sm.to_agent


def target_of_message(m: resources_pb2.Message) -> str:
    return "group:" + m.group_id if m.group_id else "agent:" + m.recipient


def message_bytes(m: resources_pb2.Message) -> bytes:
    return message_bytes_all(m)[0]


def message_bytes_all(m: resources_pb2.Message) -> tuple[bytes, ...]:
    """The signed bytes of a received message under each payload text a verifier accepts."""
    texts = payload_texts(json_format.MessageToDict(m.payload)) if m.HasField("payload") else ("",)
    return tuple(
        signed_bytes(
            m.sender_device,
            m.sender,
            target_of_message(m),
            m.client_msg_id,
            m.content,
            text,
            m.sign_time.ToMicroseconds() if m.HasField("sign_time") else 0,
            m.reply_to,
            m.auto_hops,
        )
        for text in texts
    )


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def verify(cert: x509.Certificate, signature: bytes, data: bytes | tuple[bytes, ...]) -> bool:
    """Whether `signature` (DER, or raw r||s) is the certificate key's signature over `data` (or
    over any of several encodings of the same content, the current scheme first)."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    candidates = (data,) if isinstance(data, bytes) else data
    forms = [signature]
    if len(signature) == 64:  # raw r||s (IEEE P1363, as WebCrypto signs): 32 bytes each, big-endian
        forms.append(raw_to_der(signature))
    for sig in forms:
        for blob in candidates:
            try:
                key.verify(sig, blob, _ECDSA_SHA256)
                return True
            except (InvalidSignature, ValueError):
                continue
    return False


def raw_to_der(signature: bytes) -> bytes:
    """A raw 64-byte r||s signature as DER (the ASN.1 SEQUENCE of two INTEGERs)."""
    return encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))


# -- reason words -------------------------------------------------------------------------------

# Every machine-readable reason a server error can carry, by area. Clients may branch on these
# words; a new reason is added here and on Error.reason in events.proto (a test checks both).
REASONS: dict[str, tuple[str, ...]] = {
    "status": (
        # A status name used as the reason when nothing more specific applies.
        "DEADLINE_EXCEEDED",
        "INTERNAL",
        "INVALID_ARGUMENT",
        "RESOURCE_EXHAUSTED",
        "UNAUTHENTICATED",
        "UNAVAILABLE",
        "UNIMPLEMENTED",
    ),
    "identity": (
        "BAD_CLIENT_CERTIFICATE",
        "CERT_NOT_FOUND",
        "DEVICE_NOT_FOUND",
        "DEVICE_REVOKED",
        # Not from the server: the client's event in place of a message whose signature fails.
        "MESSAGE_REJECTED",
        "NO_CLIENT_CERTIFICATE",
        "SIGNATURE_INVALID",
        "SIGNATURE_MISSING",
        "SIGN_TIME_OUT_OF_WINDOW",
    ),
    "stream": (
        "ACK_AHEAD",
        "ALREADY_REGISTERED",
        "BAD_CURSOR",
        "BAD_REQUEST_ID",
        "CLIENT_CLOSED",
        "HEARTBEAT_TIMEOUT",
        "MALFORMED_EVENT",
        "NOT_REGISTERED",
        "REGISTER_TIMEOUT",
        "SHUTDOWN",
        "STREAM_ENDED",
        "TOO_MANY_CURSORS",
        "TOO_MANY_SESSIONS",
        "UNKNOWN_EVENT",
    ),
    "limits": (
        "CONTENT_TOO_LARGE",
        "EVENT_RATE_LIMITED",
        "GROUP_CREATE_RATE_LIMITED",
        "PAYLOAD_TOO_DEEP",
        "PAYLOAD_TOO_LARGE",
        "READ_RATE_LIMITED",
        "SEND_RATE_LIMITED",
        "TOO_LONG",
        "TOO_MANY",
        "TOO_MANY_AGENTS",
        "TOO_MANY_GROUPS",
        "TOO_MANY_MENTIONS",
    ),
    "values": (
        "BAD_AUTO_HOPS",
        "BAD_CLIENT_ID",
        "BAD_CONVERSATION",
        "BAD_DISPLAY_NAME",
        "BAD_DUE_TIME",
        "BAD_ID",
        "BAD_KIND",
        "BAD_PAGE_SIZE",
        "BAD_PAGE_TOKEN",
        "BAD_PAYLOAD",
        "BAD_PRIORITY",
        "BAD_REPLY_TO",
        "BAD_REQUEST",
        "BAD_SEQ",
        "BAD_STATUS",
        "BAD_TASK_ID",
        "BAD_VERSION",
        "CONTROL_CHARACTER",
        "EMPTY",
        "EMPTY_CONTENT",
        "EMPTY_MARK",
        "EMPTY_UPDATE",
        "MISSING_AGENT_ID",
        "NO_TARGET",
    ),
    "agents and groups": (
        "AGENT_AMBIGUOUS",
        "AGENT_NOT_FOUND",
        "AGENT_OWNED_BY_OTHER_DEVICE",
        "DISPLAY_NAME_TAKEN",
        "GROUP_EXISTS",
        "GROUP_NOT_FOUND",
        "NO_AGENT",
        "NOT_AGENT_OWNER",
        "NOT_A_MEMBER",
        "NOT_INVITED",
        "NOT_YOUR_AGENT",
    ),
    "messages and inbox": (
        "CLIENT_MSG_ID_REUSED",
        "CONVERSATION_NOT_FOUND",
        "DM_TO_SELF",
        "MESSAGE_NOT_FOUND",
        "NOT_READING",
        "NOT_SENDER",
        "NOT_VISIBLE",
        "NOT_YOUR_FEED",
        "NO_SUCH_ITEM",
        "REPLY_TO_NOT_FOUND",
    ),
    "tasks": (
        "ASSIGNEE_NOT_A_MEMBER",
        "CLIENT_TASK_ID_REUSED",
        "CONFLICT",
        "INVALID_TRANSITION",
        "NOT_ASSIGNEE",
        "NOT_CREATOR",
        "NOT_INVOLVED",
        "TASK_NOT_FOUND",
        "TASK_TERMINAL",
        "VERSION_MISMATCH",
    ),
    "store": (
        # Retryable (UNAVAILABLE): nothing was committed, or a send's retry is answered as a duplicate.
        "STORE_TIMEOUT",
        "STORE_UNAVAILABLE",
    ),
    "REST": (
        "BAD_JSON",
        "BAD_VALUE",
        "BODY_TOO_LARGE",
        "DUPLICATE_FIELD",
        "METHOD_NOT_ALLOWED",
        "NO_ROUTE",
        "UNEXPECTED_QUERY_PARAMETER",
        "UNKNOWN_FIELD",
    ),
}
REASON_WORDS = frozenset(w for words in REASONS.values() for w in words)

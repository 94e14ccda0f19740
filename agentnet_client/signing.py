"""Signatures: ECDSA P-256 / SHA-256 by the sending device's key over a canonical encoding.

The signed bytes are a domain tag followed by UTF-8 fields, each preceded by its length as
4 bytes big-endian. Numbers are decimal text; times are microseconds since the epoch.

    "agentnet.v1.message":     sender device, sender agent, target ("group:<id>" or
                               "agent:<recipient id>"), client_msg_id, content, payload
                               (canonical JSON: keys sorted, no spaces, UTF-8; empty when
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

import enum
import json
import time
from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format, struct_pb2

from agentnet.v1 import events_pb2, resources_pb2

from .device import Device

DOMAIN = b"agentnet.v1.message"
# The highest automatic-hop count a message may carry (see Message.auto_hops).
MAX_AUTO_HOPS = 16
TASK_CREATE = b"agentnet.v1.task.create"
TASK_UPDATE = b"agentnet.v1.task.update"


def canonical_payload(payload: struct_pb2.Struct | None) -> str:
    if payload is None:
        return ""
    return json.dumps(
        json_format.MessageToDict(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


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
    payload = canonical_payload(m.payload) if m.HasField("payload") else ""
    return signed_bytes(
        m.sender_device,
        m.sender,
        target_of_message(m),
        m.client_msg_id,
        m.content,
        payload,
        m.sign_time.ToMicroseconds() if m.HasField("sign_time") else 0,
        m.reply_to,
        m.auto_hops,
    )


class Signer:
    """Signs outgoing messages with the device key."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def sign(self, data: bytes) -> bytes:
        return self.device.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def sign_send(self, sm: events_pb2.SendMessage, sender: str) -> None:
        now = time.time_ns() // 1000
        sm.sign_time.FromMicroseconds(now)
        payload = canonical_payload(sm.payload) if sm.HasField("payload") else ""
        data = signed_bytes(
            self.device.id,
            sender,
            target_of_send(sm),
            sm.client_msg_id,
            sm.content,
            payload,
            now,
            sm.reply_to,
            sm.auto_hops,
        )
        sm.signature = self.sign(data)

    def sign_task_create(self, actor: str, client_task_id: str, task: resources_pb2.Task) -> tuple[bytes, int]:
        now = time.time_ns() // 1000
        due = task.due_time.ToMicroseconds() if task.HasField("due_time") else 0
        data = task_create_bytes(
            self.device.id,
            actor,
            client_task_id,
            task.title,
            task.description,
            task.assignee,
            task.group_id,
            int(task.priority),
            due,
            now,
        )
        return self.sign(data), now

    def sign_task_update(
        self, actor: str, task_id: str, status: int, assignee: str, note: str, result: str, expected_version: int
    ) -> tuple[bytes, int]:
        now = time.time_ns() // 1000
        data = task_update_bytes(self.device.id, actor, task_id, status, assignee, note, result, expected_version, now)
        return self.sign(data), now


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def verify(cert: x509.Certificate, signature: bytes, data: bytes) -> bool:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, data, _ECDSA_SHA256)
        return True
    except InvalidSignature:
        return False


class Verification(enum.Enum):
    """What a recipient knows about a message's signature."""

    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    INVALID = "invalid"
    UNKNOWN_SIGNER = "unknown_signer"


Fetch = Callable[[str, str], Awaitable[resources_pb2.Device]]


class Verifier:
    """Checks received messages against their signer's certificate, fetched once per fingerprint
    and accepted only if it chains to the network CA and names the sending device."""

    def __init__(self, ca_pem: bytes, fetch: Fetch) -> None:
        self.ca = x509.load_pem_x509_certificate(ca_pem)
        self.fetch = fetch
        self._certs: dict[str, x509.Certificate | None] = {}

    async def certificate(self, device: str, fingerprint: str) -> x509.Certificate | None:
        if fingerprint in self._certs:
            return self._certs[fingerprint]
        cert: x509.Certificate | None = None
        try:
            d = await self.fetch(device, fingerprint)
            candidate = x509.load_pem_x509_certificate(d.certificate_pem.encode())
            if candidate.fingerprint(hashes.SHA256()).hex() == fingerprint:
                candidate.verify_directly_issued_by(self.ca)
                cert = candidate
        except Exception:  # noqa: BLE001 - any failure means "cannot vouch for this signer"
            cert = None
        self._certs[fingerprint] = cert
        return cert

    async def check(self, m: resources_pb2.Message) -> Verification:
        if not m.signature:
            return Verification.UNSIGNED
        cert = await self.certificate(m.sender_device, m.signer_fingerprint)
        if cert is None:
            return Verification.UNKNOWN_SIGNER
        names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        if not names or names[0].value != m.sender_device:
            return Verification.INVALID
        return Verification.VERIFIED if verify(cert, m.signature, message_bytes(m)) else Verification.INVALID

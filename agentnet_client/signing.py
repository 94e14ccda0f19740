"""Signatures: ECDSA P-256 / SHA-256 by the sending device's key over the canonical encoding that
agentnet_client.wire defines (the same bytes the server checks); this module signs and verifies.

Recipients rebuild the message bytes from the Message they receive and check the signature with
the certificate whose SHA-256 fingerprint is Message.signer_fingerprint (GetDevice serves it;
it must chain to the network CA).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agentnet.v1 import events_pb2, resources_pb2

from .device import Device
from .errors import AgentnetError
from .wire import (
    DOMAIN,
    MAX_AUTO_HOPS,
    TASK_CREATE,
    TASK_UPDATE,
    canonical_payload,
    message_bytes,
    message_bytes_all,
    signed_bytes,
    target_of_message,
    target_of_send,
    task_create_bytes,
    task_update_bytes,
    verify,
)

_TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "ABORTED"})

__all__ = [
    "DOMAIN",
    "MAX_AUTO_HOPS",
    "TASK_CREATE",
    "TASK_UPDATE",
    "Fetch",
    "Signer",
    "Verification",
    "Verifier",
    "canonical_payload",
    "message_bytes",
    "message_bytes_all",
    "signed_bytes",
    "target_of_message",
    "target_of_send",
    "task_create_bytes",
    "task_update_bytes",
    "verify",
]


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


class Verification(enum.Enum):
    """What a recipient knows about a message's signature."""

    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    INVALID = "invalid"
    UNKNOWN_SIGNER = "unknown_signer"


def acceptable(status: Verification, accept_unsigned: bool = False) -> bool:
    """Whether a recipient hands a message to its application: only verified ones, plus unsigned
    ones when the application opted in for a legacy network that does not sign."""
    return status is Verification.VERIFIED or (accept_unsigned and status is Verification.UNSIGNED)


REJECTED_REASON = "MESSAGE_REJECTED"


def rejection_event(m: resources_pb2.Message, status: Verification, feed: str) -> events_pb2.ServerEvent:
    """The event an application receives in place of a message whose signature does not verify."""
    why = {
        Verification.UNSIGNED: "it carries no signature",
        Verification.INVALID: "its signature does not match its content and signer",
        Verification.UNKNOWN_SIGNER: "its signer's certificate is unknown or does not chain to the network CA",
    }.get(status, status.value)
    return events_pb2.ServerEvent(
        error=events_pb2.Error(
            code=16,
            status="UNAUTHENTICATED",
            reason=REJECTED_REASON,
            message=f"message {m.conversation} #{m.seq} from {m.sender} ({m.sender_device}) was rejected: {why}; "
            "it was altered after it was sent or did not come from that device",
            metadata={
                "conversation": m.conversation,
                "seq": str(m.seq),
                "feed": feed,
                "sender": m.sender,
                "sender_device": m.sender_device,
                "verification": status.value,
            },
        )
    )


Fetch = Callable[[str, str], Awaitable[resources_pb2.Device]]


class Verifier:
    """Checks received messages against their signer's certificate, fetched once per fingerprint
    and accepted only if it chains to the network CA and names the sending device."""

    def __init__(self, ca_pem: bytes, fetch: Fetch) -> None:
        self.ca = x509.load_pem_x509_certificate(ca_pem)
        self.fetch = fetch
        self._certs: dict[str, x509.Certificate | None] = {}

    async def certificate(self, device: str, fingerprint: str) -> x509.Certificate | None:
        """The signer's certificate if it chains to the CA and matches the fingerprint, else None.
        Raises AgentnetError when the server could not answer now (UNAVAILABLE, rate limited)."""
        if fingerprint in self._certs:
            return self._certs[fingerprint]
        if not fingerprint:
            return None
        cert: x509.Certificate | None = None
        try:
            d = await self.fetch(device, fingerprint)
            candidate = x509.load_pem_x509_certificate(d.certificate_pem.encode())
            if candidate.fingerprint(hashes.SHA256()).hex() == fingerprint:
                candidate.verify_directly_issued_by(self.ca)
                cert = candidate
        except AgentnetError as exc:
            if exc.status in _TRANSIENT:
                # Not a verdict on the signer: the caller retries (a live session reconnects and
                # gets the message again; history() raises), nothing is rejected or remembered.
                raise
            cert = None
        except Exception:  # noqa: BLE001 - any other failure means "cannot vouch for this signer"
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
        return Verification.VERIFIED if verify(cert, m.signature, message_bytes_all(m)) else Verification.INVALID

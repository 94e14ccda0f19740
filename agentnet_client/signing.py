"""Message signatures: ECDSA P-256 / SHA-256 by the sending device's key over a canonical encoding.

The signed bytes are the UTF-8 fields below, each preceded by its length as 4 bytes big-endian,
after the domain tag "agentnet.v1.message":

    sender device, sender agent, target ("group:<id>" or "agent:<recipient id>"), client_msg_id,
    content, payload (canonical JSON: keys sorted, no spaces, UTF-8; empty when absent),
    sign_time (microseconds since the epoch, decimal)

Recipients rebuild the same bytes from the Message they receive and check the signature with
the certificate whose SHA-256 fingerprint is Message.signer_fingerprint (GetDevice serves it).
"""

from __future__ import annotations

import json
import time

from agentnet.v1 import events_pb2, resources_pb2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format, struct_pb2

from .device import Device

DOMAIN = b"agentnet.v1.message"


def canonical_payload(payload: struct_pb2.Struct | None) -> str:
    if payload is None:
        return ""
    return json.dumps(
        json_format.MessageToDict(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def signed_bytes(
    device: str, sender: str, target: str, client_msg_id: str, content: str, payload_json: str, sign_time_us: int
) -> bytes:
    out = bytearray(DOMAIN)
    for field in (device, sender, target, client_msg_id, content, payload_json, str(sign_time_us)):
        data = field.encode("utf-8", "surrogatepass")
        out += len(data).to_bytes(4, "big")
        out += data
    return bytes(out)


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
        data = signed_bytes(self.device.id, sender, target_of_send(sm), sm.client_msg_id, sm.content, payload, now)
        sm.signature = self.sign(data)


def verify(cert: x509.Certificate, signature: bytes, data: bytes) -> bool:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False

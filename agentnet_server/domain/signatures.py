"""Checks the device signature on every message and task change (see SECURITY.md).

The canonical encodings are defined once, in the wire contract (agentnet_client.wire), and shared by the client
that signs, the server that checks, and every recipient that checks again."""

from __future__ import annotations

from cryptography import x509

from agentnet_client import wire

from ..errors import InvalidArgument


def _check(cert: x509.Certificate | None, signature: bytes, data: bytes, what: str, required: bool) -> None:
    if not signature:
        if required:
            raise InvalidArgument(
                f"{what} is not signed: sign it with the device key (the agentnet client does; for curl use "
                "`agentnet sign`)",
                reason="SIGNATURE_MISSING",
            )
        return
    if cert is None or not wire.verify(cert, signature, data):
        raise InvalidArgument(
            f"the signature of this {what} does not match its content and this device's certificate; "
            "nothing was stored",
            reason="SIGNATURE_INVALID",
        )


def check_message(
    cert: x509.Certificate | None,
    device: str,
    sender: str,
    target: str,
    client_msg_id: str,
    content: str,
    payload_json: str | None,
    signature: bytes,
    sign_time: int,
    required: bool,
    reply_to: int = 0,
    auto_hops: int = 0,
) -> None:
    if signature and not sign_time:
        raise InvalidArgument("a signed message needs sign_time", reason="SIGNATURE_INVALID")
    data = wire.signed_bytes(
        device, sender, target, client_msg_id, content, payload_json or "", sign_time, reply_to, auto_hops
    )
    _check(cert, signature, data, "message", required)


def check_task_create(
    cert: x509.Certificate | None,
    device: str,
    actor: str,
    client_task_id: str,
    title: str,
    description: str,
    assignee: str,
    group_id: str,
    priority: int,
    due_time: int,
    signature: bytes,
    sign_time: int,
    required: bool,
) -> None:
    data = wire.task_create_bytes(
        device, actor, client_task_id, title, description, assignee, group_id, priority, due_time, sign_time
    )
    _check(cert, signature, data, "task", required)


def check_task_update(
    cert: x509.Certificate | None,
    device: str,
    actor: str,
    task_id: str,
    status: int,
    assignee: str,
    note: str,
    result: str,
    expected_version: int,
    signature: bytes,
    sign_time: int,
    required: bool,
) -> None:
    data = wire.task_update_bytes(device, actor, task_id, status, assignee, note, result, expected_version, sign_time)
    _check(cert, signature, data, "task change", required)

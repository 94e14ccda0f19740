"""Checks the device signature on every message and task change (see SECURITY.md).

The canonical encodings are defined once, in the wire contract (agentnet_client.wire), and shared by the client
that signs, the server that checks, and every recipient that checks again."""

from __future__ import annotations

import json

from cryptography import x509

from agentnet_client import wire

from ..errors import InvalidArgument
from ..records import now_us


def check_time(sign_time: int, max_age: float, max_skew: float, now: int | None = None) -> None:
    """Refuse a signing time outside [now - max_age, now + max_skew] (seconds; 0 turns a side off):
    a signature made long ago or far in the future is a replayed or forged one, or a broken clock."""
    if not sign_time:
        return
    now = now_us() if now is None else now
    early = max_age and sign_time < now - int(max_age * 1e6)
    late = max_skew and sign_time > now + int(max_skew * 1e6)
    if early or late:
        ago = (now - sign_time) / 1e6
        when = f"{ago:,.0f} s ago" if ago >= 0 else f"{-ago:,.0f} s in the future"
        raise InvalidArgument(
            f"the signing time is {when}; this server accepts signatures made at most {max_age:g} s ago and "
            f"{max_skew:g} s ahead of its clock: check the device clock and sign again",
            reason="SIGN_TIME_OUT_OF_WINDOW",
            metadata={"server_time_us": str(now), "max_age_s": f"{max_age:g}", "max_skew_s": f"{max_skew:g}"},
        )


Window = tuple[float, float]  # (max_age, max_skew) in seconds; 0 turns a side off


def _check(
    cert: x509.Certificate | None,
    signature: bytes,
    data: bytes | tuple[bytes, ...],
    what: str,
    required: bool,
    sign_time: int = 0,
    window: Window = (0.0, 0.0),
) -> None:
    if not signature:
        if required:
            raise InvalidArgument(
                f"{what} is not signed: sign it with the device key (the agentnet client does; for curl and "
                "grpcurl use `agentnet sign`, `agentnet sign-task` or `agentnet sign-task-update`; "
                "docs/signing.md)",
                reason="SIGNATURE_MISSING",
            )
        return
    if cert is None or not wire.verify(cert, signature, data):
        raise InvalidArgument(
            f"the signature of this {what} does not match its content and this device's certificate "
            "(ECDSA P-256 over SHA-256 of the bytes docs/signing.md defines; DER or raw 64-byte r||s); "
            "nothing was stored",
            reason="SIGNATURE_INVALID",
        )
    check_time(sign_time, *window)


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
    window: Window = (0.0, 0.0),
) -> None:
    if signature and not sign_time:
        raise InvalidArgument("a signed message needs sign_time", reason="SIGNATURE_INVALID")
    texts = wire.payload_texts(json.loads(payload_json)) if payload_json else ("",)
    data = tuple(
        wire.signed_bytes(device, sender, target, client_msg_id, content, text, sign_time, reply_to, auto_hops)
        for text in texts
    )
    _check(cert, signature, data, "message", required, sign_time, window)


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
    window: Window = (0.0, 0.0),
) -> None:
    data = wire.task_create_bytes(
        device, actor, client_task_id, title, description, assignee, group_id, priority, due_time, sign_time
    )
    _check(cert, signature, data, "task", required, sign_time, window)


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
    window: Window = (0.0, 0.0),
) -> None:
    data = wire.task_update_bytes(device, actor, task_id, status, assignee, note, result, expected_version, sign_time)
    _check(cert, signature, data, "task change", required, sign_time, window)

"""Checks the device signature on every message and task change (see SECURITY.md).

The canonical encodings are defined once, in the wire contract (agentnet_client.wire), and shared by the client
that signs, the server that checks, and every recipient that checks again."""

from __future__ import annotations

import dataclasses
import json

from agentnet_client import wire

from ..config import Settings
from ..errors import InvalidArgument
from ..records import now_us
from .commands import CreateTask, PreparedSend, SignedFields, UpdateTask


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


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """Whether signatures are required, and the window a signing time must fall in."""

    required: bool = False
    window: Window = (0.0, 0.0)

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.require_signatures, (settings.sign_time_max_age, settings.sign_time_max_skew))


def _check(signed: SignedFields, data: bytes | tuple[bytes, ...], what: str, policy: Policy) -> None:
    if not signed.signature:
        if policy.required:
            raise InvalidArgument(
                f"{what} is not signed: sign it with the device key (the agentnet client does; for curl and "
                "grpcurl use `agentnet sign`, `agentnet sign-task` or `agentnet sign-task-update`; "
                "docs/signing.md)",
                reason="SIGNATURE_MISSING",
            )
        return
    if signed.cert is None or not wire.verify(signed.cert, signed.signature, data):
        raise InvalidArgument(
            f"the signature of this {what} does not match its content and this device's certificate "
            "(ECDSA P-256 over SHA-256 of the bytes docs/signing.md defines; DER or raw 64-byte r||s); "
            "nothing was stored",
            reason="SIGNATURE_INVALID",
        )
    check_time(signed.sign_time, *policy.window)


def check_message(p: PreparedSend, policy: Policy) -> None:
    """Check a send's signature over its fields as the client sent them (the payload as the
    validated JSON)."""
    s = p.signed
    if s.signature and not s.sign_time:
        raise InvalidArgument("a signed message needs sign_time", reason="SIGNATURE_INVALID")
    target = f"group:{p.target.group_id}" if p.target.group_id else f"agent:{p.target.to_agent}"
    texts = wire.payload_texts(json.loads(p.payload_json)) if p.payload_json else ("",)
    data = tuple(
        wire.signed_bytes(
            p.device, p.agent_id, target, p.client_msg_id, p.content, text, s.sign_time, p.reply_to, p.auto_hops
        )
        for text in texts
    )
    _check(s, data, "message", policy)


def check_task_create(c: CreateTask, policy: Policy) -> None:
    """Check a task creation's signature over its fields as the client sent them."""
    s = c.signed
    data = wire.task_create_bytes(
        c.device,
        c.creator,
        c.client_task_id,
        c.title,
        c.description,
        c.assignee,
        c.group_id,
        c.priority,
        c.due_time,
        s.sign_time,
    )
    _check(s, data, "task", policy)


def check_task_update(c: UpdateTask, policy: Policy) -> None:
    """Check a task change's signature over its fields as the client sent them."""
    s = c.signed
    data = wire.task_update_bytes(
        c.device, c.actor, c.task_id, c.status, c.assignee, c.note, c.result, c.expected_version, s.sign_time
    )
    _check(s, data, "task change", policy)

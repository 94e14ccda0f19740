"""The commands adapters hand the domain (built once per request from a protobuf message), and
the checked forms the domain derives from them. The signature checks take these records, since a
signature covers the fields exactly as the client sent them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from cryptography import x509


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a send goes: a group or an agent (direct message)."""

    group_id: str = ""
    to_agent: str = ""


@dataclasses.dataclass(frozen=True)
class SignedFields:
    """A request's signature, and the TLS certificate of the device that sent it."""

    signature: bytes = b""
    signer_fp: str = ""
    sign_time: int = 0
    cert: x509.Certificate | None = None


@dataclasses.dataclass(frozen=True)
class SendCommand:
    """One send as an adapter hands it to the domain (from a Session event or a unary call)."""

    agent_id: str
    device: str
    target: Target
    client_msg_id: str
    content: str
    payload: dict[str, Any] | None = None
    mentions: Sequence[str] = ()
    signed: SignedFields = SignedFields()
    reply_to: int = 0
    auto_hops: int = 0


@dataclasses.dataclass(frozen=True)
class PreparedSend:
    """A send whose fields passed validation."""

    agent_id: str
    device: str
    target: Target
    conv: str
    client_msg_id: str
    content: str
    payload_json: str | None
    explicit: tuple[str, ...]
    signed: SignedFields
    reply_to: int = 0
    auto_hops: int = 0


@dataclasses.dataclass(frozen=True)
class CreateTask:
    """A task creation as an adapter hands it to the domain. due_time 0 means none."""

    creator: str
    device: str
    title: str
    description: str
    assignee: str
    group_id: str
    priority: int
    due_time: int
    client_task_id: str = ""
    signed: SignedFields = dataclasses.field(default_factory=SignedFields)


@dataclasses.dataclass(frozen=True)
class UpdateTask:
    """A task change as an adapter hands it to the domain. An empty result leaves it as it is."""

    actor: str
    device: str
    task_id: str
    status: int
    assignee: str
    note: str
    result: str
    expected_version: int
    signed: SignedFields = dataclasses.field(default_factory=SignedFields)

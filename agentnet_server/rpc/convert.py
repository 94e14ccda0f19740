"""Protobuf requests -> domain arguments (the other direction is live/encode.py)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from ..auth import Peer
from ..domain.commands import CreateTask, SendCommand, SignedFields, Target, UpdateTask
from ..errors import InvalidArgument


def us_of(t: timestamp_pb2.Timestamp) -> int:
    return t.ToMicroseconds() if t.seconds or t.nanos else 0


def signed(req: Any, peer: Peer) -> SignedFields:
    """The signature fields of a send or task request (`signature`, `sign_time`) with the TLS
    certificate of the device that sent it."""
    return SignedFields(req.signature, peer.fingerprint if req.signature else "", us_of(req.sign_time), peer.cert)


def payload_dict(p: struct_pb2.Struct, present: bool) -> dict[str, Any] | None:
    if not present:
        return None
    try:
        out: dict[str, Any] = json_format.MessageToDict(p)
    except ValueError:
        # A Struct can hold NaN and ±Infinity; JSON (and so a payload) cannot.
        raise InvalidArgument(
            "payload holds a number JSON cannot represent (NaN or Infinity); send it as a string or leave it out",
            reason="BAD_PAYLOAD",
        ) from None
    return out


def check_seq(what: str, value: int) -> int:
    if value < 0:
        raise InvalidArgument(f"{what} must not be negative, got {value}", reason="BAD_SEQ")
    return value


def send_command(req: Any, agent_id: str, target: Target, peer: Peer, mentions: list[str]) -> SendCommand:
    """A SendCommand from a Session `SendMessage` or a unary send request (same field names)."""
    return SendCommand(
        agent_id,
        peer.device_id,
        target,
        req.client_msg_id,
        req.content,
        payload_dict(req.payload, req.HasField("payload")),
        mentions,
        signed(req, peer),
        req.reply_to,
        req.auto_hops,
    )


def create_task(req: Any, creator: str, peer: Peer) -> CreateTask:
    """A CreateTask from a Session `CreateTaskEvent` or a unary CreateTaskRequest (same field names)."""
    t = req.task
    return CreateTask(
        creator,
        peer.device_id,
        t.title,
        t.description,
        t.assignee,
        t.group_id,
        t.priority,
        us_of(t.due_time),
        req.client_task_id,
        signed(req, peer),
    )


def update_task(req: Any, actor: str, peer: Peer) -> UpdateTask:
    """An UpdateTask from a Session `UpdateTaskEvent` or a unary UpdateTaskRequest (same field names)."""
    return UpdateTask(
        actor,
        peer.device_id,
        req.task_id,
        req.status,
        req.assignee,
        req.note,
        req.result,
        req.expected_version,
        signed(req, peer),
    )

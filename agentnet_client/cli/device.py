"""This device's keys and signatures: `agentnet sign`, `agentnet enroll-request`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..argtypes import iso_time, json_object, positive_int
from ..errors import AgentnetError
from ..session import make_send
from ..wire import ID_RE
from .common import Add, acting, make_client
from .output import emit, to_dict


async def cmd_sign(ns: argparse.Namespace) -> int:
    """Offline when --agent (or AGENTNET_AGENT) is given; otherwise asks the server which agent this device has."""
    from ..signing import Signer

    text = ns.text if ns.text != "-" else sys.stdin.read()
    sm = make_send(
        text,
        group_id=ns.group or "",
        to_agent=ns.to or "",
        payload=ns.payload,
        client_msg_id=ns.id or "",
        reply_to=ns.reply_to or 0,
    )
    agent = acting(ns)
    client = make_client(ns)
    if not agent:
        async with client:
            agent = await client.acting_agent()
    Signer(client.device).sign_send(sm, agent)
    if ns.stream:
        body: dict[str, Any] = {"message": to_dict(sm)}
    else:
        body = to_dict(sm)
        if "to_agent" in body:
            body["peer_id"] = body.pop("to_agent")
        if agent:
            body["agent_id"] = agent
    print(json.dumps(body, ensure_ascii=False))
    return 0


async def _signing_agent(ns: argparse.Namespace) -> tuple[Any, str]:
    client = make_client(ns)
    agent = acting(ns)
    if not agent:
        async with client:
            agent = await client.acting_agent()
    return client, agent


async def cmd_sign_task(ns: argparse.Namespace) -> int:
    """A signed CreateTaskRequest (offline with --agent)."""
    import uuid

    from agentnet.v1 import resources_pb2, service_pb2

    from ..signing import Signer

    task = resources_pb2.Task(
        title=ns.title,
        assignee=ns.assignee,
        description=ns.description or "",
        group_id=ns.group or "",
        priority=resources_pb2.TaskPriority.Value("TASK_PRIORITY_" + ns.priority.upper()),
    )
    if ns.due is not None:
        task.due_time.FromDatetime(ns.due)
    client, agent = await _signing_agent(ns)
    cid = ns.id or uuid.uuid4().hex
    req = service_pb2.CreateTaskRequest(task=task, agent_id=agent, client_task_id=cid)
    req.signature, sign_time = Signer(client.device).sign_task_create(agent, cid, task)
    req.sign_time.FromMicroseconds(sign_time)
    print(json.dumps(to_dict(req), ensure_ascii=False))
    return 0


async def cmd_sign_task_update(ns: argparse.Namespace) -> int:
    """A signed UpdateTaskRequest (offline with --agent)."""
    from agentnet.v1 import service_pb2

    from ..signing import Signer
    from .tasks import _status_value

    status = _status_value(ns.status) if ns.status else 0
    client, agent = await _signing_agent(ns)
    req = service_pb2.UpdateTaskRequest(
        task_id=ns.task_id,
        status=status,  # type: ignore[arg-type]
        assignee=ns.assignee or "",
        note=ns.note or "",
        result=ns.result or "",
        expected_version=ns.expected_version or 0,
        agent_id=agent,
    )
    req.signature, sign_time = Signer(client.device).sign_task_update(
        agent, ns.task_id, status, req.assignee, req.note, req.result, req.expected_version
    )
    req.sign_time.FromMicroseconds(sign_time)
    print(json.dumps(to_dict(req), ensure_ascii=False))
    return 0


async def cmd_enroll_request(ns: argparse.Namespace) -> int:
    """The device side of CSR enrollment: the operator signs request.csr with `agentnet-server enroll`."""
    import os
    import pathlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not ID_RE.match(ns.device_id):
        raise AgentnetError(
            "INVALID_ARGUMENT",
            f"device id {ns.device_id!r} is not valid: use 1-64 characters of "
            "a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            "BAD_ID",
        )
    folder = pathlib.Path(ns.out)
    if (folder / "key.pem").exists():
        raise AgentnetError("ALREADY_EXISTS", f"{folder}/key.pem exists; choose another --out", "KEY_EXISTS")
    key = ec.generate_private_key(ec.SECP256R1())  # P-256: TLS refuses Ed25519 keys
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agentnet device"),
                    x509.NameAttribute(NameOID.COMMON_NAME, ns.device_id),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    fd = os.open(folder / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    (folder / "request.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    emit(
        ns,
        {"device_id": ns.device_id, "key": str(folder / "key.pem"), "csr": str(folder / "request.csr")},
        lambda: print(
            f"wrote {folder}/key.pem (0600, stays here) and {folder}/request.csr\n"
            f"send request.csr to the operator, who runs:\n"
            f"  agentnet-server enroll --csr request.csr --device {ns.device_id} --out <dir>\n"
            f"then put the returned cert.pem and ca.pem into {folder}/"
        ),
    )
    return 0


def register(add: Add) -> None:
    p = add("sign", cmd_sign, "print a signed send request as JSON, for grpcurl -d or curl -d")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--group", help="a group message")
    g.add_argument("--to", help="a direct message to this agent")
    p.add_argument("text", help="the message ('-' reads stdin)")
    p.add_argument("--payload", type=json_object, help="JSON object with machine-readable data")
    p.add_argument("--id", help="client_msg_id (default: a new random id)")
    p.add_argument("--reply-to", type=positive_int, metavar="SEQ", help="the seq of the message this answers")
    p.add_argument("--stream", action="store_true", help="print a Session stream event instead of a unary request")

    p = add("sign-task", cmd_sign_task, "print a signed CreateTask request as JSON, for grpcurl -d or curl -d")
    p.add_argument("--title", required=True)
    p.add_argument("--assignee", required=True, help="the agent that should do it")
    p.add_argument("--description")
    p.add_argument("--group", help="the group the task belongs to")
    p.add_argument("--priority", choices=["low", "normal", "high", "urgent"], default="normal")
    p.add_argument("--due", type=iso_time, help="due time, ISO 8601 with a zone (e.g. 2026-12-01T18:00:00+08:00)")
    p.add_argument("--id", help="client_task_id (default: a new random id)")

    from .tasks import STATUSES

    p = add("sign-task-update", cmd_sign_task_update, "print a signed UpdateTask request as JSON, for grpcurl or curl")
    p.add_argument("task_id")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--assignee", help="reassign to this agent")
    p.add_argument("--note")
    p.add_argument("--result")
    p.add_argument("--expected-version", type=positive_int, help="refuse the change unless the task is at it")

    p = add(
        "enroll-request",
        cmd_enroll_request,
        "make a device key and certificate request here; the key never leaves this machine",
    )
    p.add_argument("device_id")
    p.add_argument("--out", required=True, help="device folder to create (key.pem 0600 and request.csr)")

"""This device's keys and signatures: `agentnet sign`, `agentnet enroll-request`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..argtypes import positive_int
from ..errors import AgentnetError
from ..session import make_send
from ..wire import ID_RE
from .common import Add, acting, make_client, payload
from .output import emit, to_dict


async def cmd_sign(ns: argparse.Namespace) -> int:
    """Offline when --agent (or AGENTNET_AGENT) is given; otherwise asks the server which agent this device has."""
    from ..signing import Signer

    text = ns.text if ns.text != "-" else sys.stdin.read()
    sm = make_send(
        text,
        group_id=ns.group or "",
        to_agent=ns.to or "",
        payload=payload(ns.payload),
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
    p.add_argument("--payload", help="JSON object with machine-readable data")
    p.add_argument("--id", help="client_msg_id (default: a new random id)")
    p.add_argument("--reply-to", type=positive_int, metavar="SEQ", help="the seq of the message this answers")
    p.add_argument("--stream", action="store_true", help="print a Session stream event instead of a unary request")

    p = add(
        "enroll-request",
        cmd_enroll_request,
        "make a device key and certificate request here; the key never leaves this machine",
    )
    p.add_argument("device_id")
    p.add_argument("--out", required=True, help="device folder to create (key.pem 0600 and request.csr)")

"""Issue 12 finding 8: signatures any language can make (docs/signing.md, docs/signing-vectors.json),
checked against the wire module and against the real server."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from google.protobuf import struct_pb2

from agentnet.v1 import resources_pb2, service_pb2, service_pb2_grpc
from agentnet_client import wire
from agentnet_client.device import load_device, secure_channel
from agentnet_client.signing import Verification
from tests.conftest import ROOT, Clients, collect, uid
from tests.test_rest import Rest
from tests.test_tools import run_cli

VECTORS = json.loads((ROOT / "docs" / "signing-vectors.json").read_text(encoding="utf-8"))
PUBLIC = serialization.load_pem_public_key(VECTORS["public_key_pem"].encode())
assert isinstance(PUBLIC, ec.EllipticCurvePublicKey)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


@pytest.mark.parametrize("case", VECTORS["payloads"], ids=lambda c: c["name"])
def test_payload_vectors(case: dict[str, Any]) -> None:
    assert wire.jcs(case["payload"]) == case["canonical"]
    # The same text after the payload travelled as a protobuf Struct (numbers become doubles).
    assert wire.canonical_payload(_struct(case["payload"])) == case["canonical"]


@pytest.mark.parametrize("case", VECTORS["messages"] + VECTORS["tasks"], ids=lambda c: c["name"])
def test_signed_bytes_vectors(case: dict[str, Any]) -> None:
    f = case["fields"]
    if "kind" not in case:
        text = wire.jcs(f["payload"]) if f["payload"] is not None else ""
        assert text == case["payload_text"]
        data = wire.signed_bytes(
            f["device"],
            f["sender"],
            f["target"],
            f["client_msg_id"],
            f["content"],
            text,
            f["sign_time_us"],
            f["reply_to"],
            f["auto_hops"],
        )
    elif case["kind"] == "create":
        data = wire.task_create_bytes(**f)
    else:
        data = wire.task_update_bytes(**f)
    assert data.hex() == case["signed_bytes_hex"]
    der = base64.b64decode(case["signature_der_base64"])
    raw = base64.b64decode(case["signature_raw_base64"])
    PUBLIC.verify(der, data, ec.ECDSA(hashes.SHA256()))
    PUBLIC.verify(wire.raw_to_der(raw), data, ec.ECDSA(hashes.SHA256()))
    assert decode_dss_signature(der) == (int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes, raw: bool) -> bytes:
    der = key.sign(data, ec.ECDSA(hashes.SHA256()))
    if not raw:
        return der
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


async def test_the_server_and_recipients_accept_signatures_made_by_the_documented_rule(clients: Clients) -> None:
    """Sign as a client in another language would: the bytes from docs/signing.md, the payload
    text from RFC 8785, DER or raw r||s; the server stores it and a Python recipient verifies it."""
    device = "xiaojin-mini"
    key = load_device(clients.device_dir(device)).key
    reader = await clients.live("d6", "vec-reader")
    writer = await clients.make(device, connect=False)
    await writer.register_agent(__import__("agentnet_client").AgentProfile("vec-writer"))
    await writer.join_group("vectors", "vec-writer", create=True)
    await reader.join("vectors")
    stub = service_pb2_grpc.AgentNetStub(secure_channel(clients.server.addr, load_device(clients.device_dir(device))))
    cases = VECTORS["payloads"] + [{"name": "no payload", "payload": None, "canonical": ""}]
    for i, case in enumerate(cases):
        now = time.time_ns() // 1000
        cmid = uid("v")
        text = f"vector {case['name']}"
        data = wire.signed_bytes(device, "vec-writer", "group:vectors", cmid, text, case["canonical"], now)
        req = service_pb2.SendGroupMessageRequest(
            group_id="vectors",
            agent_id="vec-writer",
            client_msg_id=cmid,
            content=text,
            signature=_sign(key, data, raw=i % 2 == 1),
        )
        req.sign_time.FromMicroseconds(now)
        if case["payload"] is not None:
            req.payload.update(case["payload"])
        await stub.SendGroupMessage(req, timeout=10)
    got = await collect(reader, "message", len(cases), conv="group:vectors")
    assert [reader.verification(m) for m in got] == [Verification.VERIFIED] * len(cases)
    assert [wire.canonical_payload(m.payload) if m.HasField("payload") else "" for m in got] == [
        c["canonical"] for c in cases
    ]
    # A signature over the scheme-1 payload text (Python's float formatting) stays valid.
    legacy_value = VECTORS["payloads"][0]["payload"]
    old_text = wire.legacy_json({k: float(v) for k, v in legacy_value.items()})
    assert old_text != wire.jcs(legacy_value)
    now = time.time_ns() // 1000
    data = wire.signed_bytes(device, "vec-writer", "group:vectors", "legacy-1", "old", old_text, now)
    req = service_pb2.SendGroupMessageRequest(
        group_id="vectors",
        agent_id="vec-writer",
        client_msg_id="legacy-1",
        content="old",
        signature=_sign(key, data, False),
    )
    req.sign_time.FromMicroseconds(now)
    req.payload.update(legacy_value)
    await stub.SendGroupMessage(req, timeout=10)
    [old] = await collect(reader, "message", 1, conv="group:vectors")
    assert reader.verification(old) == Verification.VERIFIED
    # Anything else is refused, and the reason says which encodings are accepted.
    req.client_msg_id = "garbage-1"
    req.signature = b"\x01" * 64
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SendGroupMessage(req, timeout=10)
    assert "DER or raw 64-byte r||s" in (err.value.details() or "")
    assert "docs/signing.md" in (err.value.details() or "")
    # An empty client_msg_id cannot be signed for: a clear error, as the proto documents.
    req.client_msg_id = ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SendGroupMessage(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "client_msg_id is empty" in (err.value.details() or "")
    task = service_pb2.CreateTaskRequest(
        task=resources_pb2.Task(title="x", assignee="vec-writer"), agent_id="vec-writer", signature=b"\x01" * 64
    )
    task.sign_time.FromMicroseconds(now)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateTask(task, timeout=10)
    assert "client_task_id is empty" in (err.value.details() or "")


def test_agentnet_sign_covers_task_creation_and_changes(make_server, certs) -> None:  # type: ignore[no-untyped-def]
    server = make_server(http_addr="127.0.0.1:0")
    rest = Rest(server, certs)
    rest.register("laoxing-vps", "signing-boss")
    rest.register("xiaoxing-mac", "signing-worker")
    r = run_cli(
        server, "laoxing-vps", "sign-task", "--title", "deploy ✓", "--assignee", "signing-worker", agent="signing-boss"
    )
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["signature"] and body["client_task_id"]
    created = rest.call("laoxing-vps", "POST", "/api/tasks", r.stdout.encode())
    assert created.status == 200, created.body[:400]
    task = created.json()
    r = run_cli(
        server,
        "xiaoxing-mac",
        "sign-task-update",
        task["id"],
        "--status",
        "accepted",
        "--expected-version",
        str(task["version"]),
        agent="signing-worker",
    )
    assert r.returncode == 0, r.stderr
    moved = rest.call("xiaoxing-mac", "POST", f"/api/tasks/{task['id']}:transition", r.stdout.encode())
    assert moved.status == 200, moved.body[:400]
    assert moved.json()["status"] == "TASK_STATUS_ACCEPTED"

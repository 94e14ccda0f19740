"""Replies and automatic messages: `reply_to` (the seq answered, in the same conversation) and
`auto_hops` (0 = written directly, n = the n-th automatic hop) on the stream, the unary RPC and
REST; stored, returned on live delivery, replay and history, and covered by the signature."""

from __future__ import annotations

import base64
import json
import pathlib
import shutil
import subprocess
import time
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import timestamp_pb2

from agentnet_client import AgentnetError, signing
from agentnet_client.signing import MAX_AUTO_HOPS, Verification
from agentnet_server import pki
from tests.conftest import Clients, ServerProc, collect, uid


def test_zero_reply_fields_keep_the_signed_bytes_of_existing_messages() -> None:
    """A message without reply fields signs exactly the bytes it always did (old signatures stay
    valid); either field set makes different bytes, so it cannot be added or changed unnoticed."""
    old = b"agentnet.v1.message"
    for f in ("dev", "a", "group:g", "c1", "hi", "", "123"):
        old += len(f.encode()).to_bytes(4, "big") + f.encode()
    assert signing.signed_bytes("dev", "a", "group:g", "c1", "hi", "", 123) == old
    assert signing.signed_bytes("dev", "a", "group:g", "c1", "hi", "", 123, 0, 0) == old
    variants = {
        signing.signed_bytes("dev", "a", "group:g", "c1", "hi", "", 123, r, h) for r, h in ((1, 0), (0, 1), (1, 1))
    }
    assert len(variants) == 3 and old not in variants


async def test_reply_round_trip_live_replay_history_and_signature(clients: Clients) -> None:
    g, lao_id, xiao_id = uid("g"), uid("lao"), uid("xiao")
    lao = await clients.live("laoxing-vps", lao_id)
    xiao = await clients.live("xiaoxing-mac", xiao_id)
    await lao.join(g, create=True)
    await xiao.join(g)
    ask = await lao.send(f"@{xiao_id} can you check the disk?", group_id=g)
    answer = await xiao.send("disk is 40% full", group_id=g, reply_to=ask.seq, auto_hops=1)
    assert answer.seq == ask.seq + 1

    # Live delivery carries both fields, and the signature (which covers them) verifies.
    got = [m for m in await collect(lao, "message", 2, conv=f"group:{g}")]
    assert [(m.seq, m.reply_to, m.auto_hops) for m in got] == [(1, 0, 0), (2, 1, 1)]
    assert await lao.verify(got[1]) is Verification.VERIFIED
    # A tampered copy (another reply_to or hop count) no longer verifies.
    for field, value in (("reply_to", 2), ("auto_hops", 0)):
        bad = type(got[1])()
        bad.CopyFrom(got[1])
        setattr(bad, field, value)
        assert await lao.verify(bad) is Verification.INVALID

    # History (unary) and a fresh client's replay from seq 0 return them too.
    hist = await xiao.history(group_id=g)
    assert [(m.reply_to, m.auto_hops) for m in hist] == [(0, 0), (1, 1)]
    # A second client of xiao with no cursor: the group is replayed from xiao's join point.
    replay = await clients.live("xiaoxing-mac", xiao_id)
    got2 = await collect(replay, "message", 2, conv=f"group:{g}")
    assert [(m.seq, m.reply_to, m.auto_hops) for m in got2] == [(1, 0, 0), (2, 1, 1)]

    # Unary send in a DM, replying to the DM's first message.
    first = await lao.post("ping", to_agent=xiao_id)
    r = await xiao.post("pong", to_agent=lao_id, reply_to=first.message.seq, auto_hops=2)
    assert (r.message.reply_to, r.message.auto_hops, r.message.seq) == (1, 2, 2)
    [dm] = [m for m in await collect(lao, "message", 2, conv=r.message.conversation)][1:]
    assert (dm.content, dm.reply_to, dm.auto_hops) == ("pong", 1, 2)
    assert await lao.verify(dm) is Verification.VERIFIED


async def test_bad_reply_fields_are_refused_and_store_nothing(clients: Clients) -> None:
    g, other, b_id = uid("g"), uid("g"), uid("b")
    a = await clients.live("laoxing-vps", uid("a"))
    await clients.live("xiaoxing-mac", b_id)
    await a.join(g, create=True)
    await a.join(other, create=True)
    for i in range(3):
        await a.send(f"busy {i}", group_id=other)
    await a.send("only message", group_id=g)

    async def refused(reason: str, **kw: Any) -> str:
        with pytest.raises(AgentnetError) as err:
            await a.send("reply", group_id=g, **kw)
        assert (err.value.status, err.value.reason) == ("INVALID_ARGUMENT", reason), err.value
        with pytest.raises(AgentnetError) as err2:
            await a.post("reply", group_id=g, **kw)
        assert (err2.value.status, err2.value.reason) == ("INVALID_ARGUMENT", reason), err2.value
        return err.value.message

    # seq 3 exists in the other group, not in this one: a reference never crosses conversations.
    msg = await refused("REPLY_TO_NOT_FOUND", reply_to=3)
    assert "reply_to 3 is not a message of group:" in msg and "newest message is seq 1" in msg
    assert "auto_hops must be between 0" in await refused("BAD_AUTO_HOPS", auto_hops=MAX_AUTO_HOPS + 1)
    assert "reply_to must be" in await refused("BAD_REPLY_TO", reply_to=-1)
    # A DM that does not exist yet has nothing to reply to.
    with pytest.raises(AgentnetError) as err:
        await a.post("hi", to_agent=b_id, reply_to=1)
    assert err.value.reason == "REPLY_TO_NOT_FOUND"

    # Nothing was stored and no seq was used up: the next message is seq 2, gap-free.
    ok = await a.send("fine", group_id=g, reply_to=1, auto_hops=MAX_AUTO_HOPS)
    assert ok.seq == 2
    assert [m.seq for m in await a.history(group_id=g)] == [1, 2]

    # Same client_msg_id: a retry with the same reply is a duplicate; another reply_to is a reuse.
    again = await a.send("fine", group_id=g, reply_to=1, auto_hops=MAX_AUTO_HOPS, client_msg_id=ok.client_msg_id)
    assert again.duplicate and again.seq == 2
    with pytest.raises(AgentnetError) as err:
        await a.send("fine", group_id=g, reply_to=2, auto_hops=MAX_AUTO_HOPS, client_msg_id=ok.client_msg_id)
    assert err.value.reason == "CLIENT_MSG_ID_REUSED"


async def test_signature_over_other_reply_fields_is_refused(clients: Clients, certs: pki.CertsDir) -> None:
    """The server checks reply_to and auto_hops as part of the signed bytes."""
    from agentnet.v1 import service_pb2

    g, a_id = uid("g"), uid("a")
    a = await clients.live("laoxing-vps", a_id)
    await a.join(g, create=True)
    await a.send("first", group_id=g)
    req = _signed_request(certs.device_dir("laoxing-vps"), "laoxing-vps", a_id, g, "answer", reply_to=1)
    pb = service_pb2.SendGroupMessageRequest(
        group_id=g,
        agent_id=a_id,
        client_msg_id=req["clientMsgId"],
        content="answer",
        signature=base64.b64decode(req["signature"]),
        reply_to=1,
        auto_hops=1,  # not what was signed
    )
    pb.sign_time.FromJsonString(req["signTime"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await a._stub().SendGroupMessage(pb)
    e = AgentnetError.from_rpc(err.value)
    assert (e.status, e.reason) == ("INVALID_ARGUMENT", "SIGNATURE_INVALID"), e
    assert [m.seq for m in await a.history(group_id=g)] == [1]


def _signed_request(
    device_dir: pathlib.Path, device: str, sender: str, group: str, content: str, reply_to: int = 0, hops: int = 0
) -> dict[str, Any]:
    key = serialization.load_pem_private_key((device_dir / "key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = time.time_ns() // 1000
    cmid = uid("m")
    data = signing.signed_bytes(device, sender, f"group:{group}", cmid, content, "", now, reply_to, hops)
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(now)
    return {
        "clientMsgId": cmid,
        "content": content,
        "signature": base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode(),
        "signTime": ts.ToJsonString(),
    }


CURL = shutil.which("curl")


@pytest.mark.skipif(CURL is None, reason="needs the curl binary")
def test_rest_send_and_history_carry_reply_fields(make_server: Any, certs: pki.CertsDir) -> None:
    srv: ServerProc = make_server(http_addr="127.0.0.1:0")
    d = certs.device_dir("laoxing-vps")
    agent, g = uid("a"), uid("g")

    def curl(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        args = [CURL or "curl", "-sS", "-w", "\n%{http_code}", "-X", method, "--cert", str(d / "cert.pem")]
        args += ["--key", str(d / "key.pem"), "--cacert", str(certs.ca_cert)]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        p = subprocess.run([*args, f"https://127.0.0.1:{srv.http_port}{path}"], capture_output=True, timeout=30)
        text, _, code = p.stdout.decode().rpartition("\n")
        return int(code), json.loads(text) if text else None

    assert curl("POST", "/api/agents/register", {"agent": {"id": agent, "displayName": agent}})[0] == 200
    assert curl("POST", "/api/groups", {"groupId": g, "agentId": agent})[0] == 200
    assert curl("POST", f"/api/groups/{g}/messages", _signed_request(d, "laoxing-vps", agent, g, "q"))[0] == 200
    body = _signed_request(d, "laoxing-vps", agent, g, "a", reply_to=1, hops=3) | {"replyTo": "1", "autoHops": 3}
    status, sent = curl("POST", f"/api/groups/{g}/messages", body)
    assert status == 200, sent
    assert (sent["message"]["replyTo"], sent["message"]["autoHops"]) == ("1", 3)
    status, hist = curl("GET", f"/api/groups/{g}/messages")
    assert status == 200
    assert [(m.get("replyTo", "0"), m.get("autoHops", 0)) for m in hist["messages"]] == [("0", 0), ("1", 3)]
    bad = _signed_request(d, "laoxing-vps", agent, g, "x", reply_to=9) | {"replyTo": "9"}
    status, err = curl("POST", f"/api/groups/{g}/messages", bad)
    assert status == 400 and "REPLY_TO_NOT_FOUND" in json.dumps(err), err
    assert len(curl("GET", f"/api/groups/{g}/messages")[1]["messages"]) == 2

"""The REST shim, driven by the real curl binary with device certificates against a real server.

Also: the transcoder is generic (a test-only proto gets its routes from its annotations alone),
the committed OpenAPI document is current and valid, a bounded schemathesis run against it finds
no 5xx and no schema mismatch, and the README's "REST with curl" commands work as written.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from agentnet.v1 import service_pb2
from agentnet_client import signing
from agentnet_server import pki
from agentnet_server.rest import errors as rest_errors
from agentnet_server.rest import openapi, routes, transcoder
from agentnet_server.rest.sse import EVENTS_PATH
from agentnet_server.rpc.servicer import AgentNetServicer
from tests.conftest import ROOT, ServerProc, uid

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="needs the curl binary")


# -- curl ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    rc: int
    stderr: str

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> tuple[int, str, str]:
        """(gRPC code, ErrorInfo reason, message) of a grpc-gateway error body."""
        body = self.json()
        info = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
        return body["code"], info[0]["reason"], body["message"]


def tls_args(device_dir: pathlib.Path | None, ca: pathlib.Path) -> list[str]:
    args = ["--cacert", str(ca)]
    if device_dir is not None:
        args = ["--cert", str(device_dir / "cert.pem"), "--key", str(device_dir / "key.pem"), *args]
    return args


class Rest:
    """curl against one server's REST port, as one of the test devices."""

    def __init__(self, srv: ServerProc, certs: pki.CertsDir) -> None:
        assert srv.http_port, "the server was started without --http-addr"
        self.srv = srv
        self.certs = certs
        self.base = f"https://127.0.0.1:{srv.http_port}"

    def dir(self, device: str) -> pathlib.Path:
        return self.certs.device_dir(device)

    def call(
        self,
        device: str | None,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        device_dir: pathlib.Path | None = None,
        extra: list[str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        tmp = self.srv.workdir / f"curl-{uuid.uuid4().hex[:8]}"
        args = [CURL or "curl", "-sS", "-o", f"{tmp}.body", "-D", f"{tmp}.head", "-w", "%{http_code}", "-X", method]
        args += tls_args(device_dir or (self.dir(device) if device else None), self.certs.ca_cert)
        for k, v in (headers or {}).items():
            args += ["-H", f"{k}: {v}"]
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        args += [*(extra or []), self.base + path]
        p = subprocess.run(args, input=data or b"", capture_output=True, timeout=timeout)
        head = pathlib.Path(f"{tmp}.head")
        out = pathlib.Path(f"{tmp}.body")
        hdrs: dict[str, str] = {}
        if head.exists():
            for line in head.read_text(errors="replace").splitlines()[1:]:
                k, sep, v = line.partition(":")
                if sep:
                    hdrs[k.strip().lower()] = v.strip()
        reply = Reply(
            int(p.stdout or b"0"), hdrs, out.read_bytes() if out.exists() else b"", p.returncode, p.stderr.decode()
        )
        for f in (head, out):
            f.unlink(missing_ok=True)
        return reply

    def ok(self, device: str, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        r = self.call(device, method, path, body, **kw)
        assert r.status == 200, (r.status, r.body[:500], r.stderr)
        assert r.headers["content-type"].startswith("application/json")
        return r.json()

    def register(self, device: str, agent: str, name: str = "") -> Any:
        body = {"agent": {"id": agent, "displayName": name or agent}}
        return self.ok(device, "POST", "/api/agents/register", body)["agent"]

    def send(self, device: str, agent: str, content: str, *, group: str = "", peer: str = "", **kw: Any) -> Any:
        """A signed send (the device key signs, as the agentnet client does)."""
        target = f"group:{group}" if group else f"agent:{peer}"
        body = signed_body(self.dir(device), device, agent, target, content, kw.pop("client_msg_id", uid("m")))
        path = f"/api/groups/{group}/messages" if group else f"/api/dms/{peer}/messages"
        return self.ok(device, "POST", path, body | {"agentId": agent} | kw)


def signed_body(device_dir: pathlib.Path, device: str, sender: str, target: str, content: str, cmid: str) -> Any:
    key = serialization.load_pem_private_key((device_dir / "key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = time.time_ns() // 1000
    data = signing.signed_bytes(device, sender, target, cmid, content, "", now)
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(now)
    return {
        "clientMsgId": cmid,
        "content": content,
        "signature": base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode(),
        "signTime": ts.ToJsonString(),
    }


@pytest.fixture(scope="module")
def rest_server(certs: pki.CertsDir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    workdir = tmp_path_factory.mktemp("rest")
    srv = ServerProc(certs, f"sqlite:///{workdir / 'agentnet.db'}", workdir, http_addr="127.0.0.1:0")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def rest(rest_server: ServerProc, certs: pki.CertsDir) -> Rest:
    return Rest(rest_server, certs)


# -- the API through curl -----------------------------------------------------------------------


def test_register_agents_groups_and_messages(rest: Rest) -> None:
    a, b, g = uid("ra"), uid("rb"), uid("rg")
    me = rest.register("laoxing-vps", a, "老邢" + a[-4:])
    assert me["id"] == a and me["ownerDevice"] == "laoxing-vps" and me["devices"] == ["laoxing-vps"]
    # Both spellings are accepted on input (proto names and lowerCamelCase).
    r = rest.ok("xiaoxing-mac", "POST", "/api/agents/register", {"agent": {"id": b, "display_name": "B " + b[-4:]}})
    assert r["created"] is True and r["agent"]["displayName"] == "B " + b[-4:]

    agents = rest.ok("xiaojin-mini", "GET", "/api/agents?pageSize=1000")["agents"]
    assert {a, b} <= {x["id"] for x in agents}
    assert rest.ok("xiaojin-mini", "GET", f"/api/agents/{b}")["ownerDevice"] == "xiaoxing-mac"

    group = rest.ok("laoxing-vps", "POST", "/api/groups", {"groupId": g, "title": "REST team", "agentId": a})
    assert (group["id"], group["creator"], group["memberCount"], group["lastSeq"]) == (g, a, 1, "0")
    joined = rest.ok("xiaoxing-mac", "POST", f"/api/groups/{g}/members", {"agentId": b})
    assert joined["newlyJoined"] is True and joined["joinedSeq"] == "0"
    assert {x["id"] for x in rest.ok("xiaojin-mini", "GET", "/api/groups?pageSize=1000")["groups"]} >= {g}
    members = rest.ok("xiaojin-mini", "GET", f"/api/groups/{g}/members")["members"]
    assert [m["agentId"] for m in members] == sorted([a, b])

    sent = rest.send("laoxing-vps", a, f"hello @{b}", group=g, client_msg_id="first")
    msg = sent["message"]
    assert (msg["conversation"], msg["seq"], msg["sender"], msg["senderDevice"]) == (
        f"group:{g}",
        "1",
        a,
        "laoxing-vps",
    )
    assert msg["mentions"] == [b] and sent["duplicate"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", msg["createTime"])  # RFC 3339
    rest.send("xiaoxing-mac", b, "second", group=g)

    history = rest.ok("xiaoxing-mac", "GET", f"/api/groups/{g}/messages?after_seq=0&pageSize=10&agentId={b}")
    assert [(m["seq"], m["content"]) for m in history["messages"]] == [("1", f"hello @{b}"), ("2", "second")]
    assert history["lastSeq"] == "2"
    newest = rest.ok("xiaoxing-mac", "GET", f"/api/groups/{g}/messages?newestFirst=true&afterSeq=1&agent_id={b}")
    assert [m["seq"] for m in newest["messages"]] == ["2"]

    # The mention is in b's inbox; MarkRead is a custom verb (inbox:markRead).
    inbox = rest.ok("xiaoxing-mac", "GET", f"/api/agents/{b}/inbox?unreadOnly=true")
    assert [(i["kind"], i["messageSeq"], i["actor"]) for i in inbox["items"]] == [("INBOX_ITEM_KIND_MENTION", "1", a)]
    kind = rest.ok("xiaoxing-mac", "GET", f"/api/agents/{b}/inbox?kind=INBOX_ITEM_KIND_DIRECT_MESSAGE")
    assert kind["items"] == []
    marked = rest.ok(
        "xiaoxing-mac", "POST", f"/api/agents/{b}/inbox:markRead", {"upTo": [{"conversation": f"group:{g}", "seq": 2}]}
    )
    assert marked["unreadTotal"] == "0"
    receipts = rest.ok("laoxing-vps", "GET", f"/api/groups/{g}/messages/1/receipts?agentId={a}")
    assert [(x["agentId"], x["read"]) for x in receipts["receipts"]] == [(b, True)]

    # Tasks: the list works, and the :transition verb routes to UpdateTask.
    assert "tasks" in rest.ok("laoxing-vps", "GET", f"/api/tasks?assignee={b}&agentId={a}")
    r = rest.call(
        "laoxing-vps", "POST", "/api/tasks/t-0000000000000000:transition", {"status": "TASK_STATUS_DONE", "agentId": a}
    )
    assert r.status in (400, 404) and r.error()[0] in (3, 5)

    r = rest.call("laoxing-vps", "DELETE", f"/api/groups/{g}/members/{a}")
    assert r.status == 200 and r.json() == {"left": True}


def test_direct_messages(rest: Rest) -> None:
    a, b = uid("da"), uid("db")
    rest.register("laoxing-vps", a)
    rest.register("xiaojin-mini", b)
    sent = rest.send("laoxing-vps", a, "just for you", peer=b)["message"]
    assert (sent["conversation"], sent["seq"], sent["recipient"]) == (f"dm:{min(a, b)}+{max(a, b)}", "1", b)
    rest.send("xiaojin-mini", b, "thanks", peer=a)
    for device, peer in (("laoxing-vps", b), ("xiaojin-mini", a)):
        me = a if peer == b else b
        got = rest.ok(device, "GET", f"/api/dms/{peer}/messages?agentId={me}")["messages"]
        assert [(m["sender"], m["content"]) for m in got] == [(a, "just for you"), (b, "thanks")]
    receipts = rest.ok("laoxing-vps", "GET", f"/api/dms/{b}/messages/1/receipts?agentId={a}")  # additional binding
    assert [x["agentId"] for x in receipts["receipts"]] == [b]
    # A retry with the same client_msg_id returns the original message.
    key = uid("k")
    first = rest.send("laoxing-vps", a, "once", peer=b, client_msg_id=key)
    again = rest.send("laoxing-vps", a, "once", peer=b, client_msg_id=key)
    assert again["duplicate"] is True and again["message"]["seq"] == first["message"]["seq"]


def test_a_body_with_nan_or_infinity_is_refused_as_not_json(rest: Rest) -> None:
    """Python's JSON reader takes NaN and Infinity; JSON has no such values and a payload holding
    one cannot be stored or signed: a clear 400, not an internal error."""
    a = uid("nan")
    rest.register("d4", a)
    g = uid("g")
    rest.ok("d4", "POST", "/api/groups", {"groupId": g, "agentId": a})
    for value in (b"NaN", b"-Infinity"):
        raw = b'{"agentId": "%s", "content": "t", "payload": {"t": %s}}' % (a.encode(), value)
        r = rest.call("d4", "POST", f"/api/groups/{g}/messages", raw)
        code, reason, message = r.error()
        assert (r.status, code, reason) == (400, 3, "BAD_JSON"), (r.status, message)
        assert "is not a JSON value" in message
    assert rest.ok("d4", "GET", f"/api/groups/{g}/messages?agentId={a}").get("messages", []) == []


def test_errors_have_the_grpc_gateway_shape(rest: Rest) -> None:
    a = uid("ea")
    rest.register("d4", a)

    r = rest.call("d4", "GET", "/api/groups/no-such-group")
    assert r.status == 404 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == 5 and "no-such-group" in body["message"]
    [info] = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert info["reason"] == "GROUP_NOT_FOUND" and info["domain"] == "agentnet.v1"

    r = rest.call("d4", "POST", "/api/groups", b'{"groupId": "x",')
    code, reason, message = r.error()
    assert (r.status, code, reason) == (400, 3, "BAD_JSON")
    assert "not valid JSON" in message and "line 1 column" in message

    r = rest.call("d4", "POST", "/api/agents/register", {"agent": {"id": a, "colour": "red"}})
    code, reason, message = r.error()
    assert (r.status, code, reason) == (400, 3, "UNKNOWN_FIELD") and "agent.colour" in message
    assert "displayName" in message  # says which fields exist

    r = rest.call("d4", "GET", "/api/agents?colour=red")
    assert r.status == 400 and r.error()[1] == "UNKNOWN_FIELD" and "colour" in r.error()[2]

    r = rest.call("d4", "PUT", "/api/groups")
    assert r.status == 405 and r.error()[0] == 12
    assert sorted(r.headers["allow"].split(", ")) == ["GET", "POST"]

    r = rest.call("d4", "GET", "/api/nothing/here")
    assert r.status == 404 and r.error()[1] == "NO_ROUTE"

    r = rest.call("d4", "GET", "/api/groups/g/messages/not-a-number/receipts")
    assert r.status == 400 and "{seq}" in r.error()[2] and "not an integer" in r.error()[2]

    r = rest.call("d4", "GET", "/api/agents?pageSize=-1")
    assert r.status == 400 and r.error()[0] == 3

    big = {"content": "x" * (1024 * 1024 + 10)}
    r = rest.call("d4", "POST", "/api/groups/g/messages", big)
    assert r.status == 413 and r.error()[1] == "BODY_TOO_LARGE"
    # The same without Content-Length (chunked): still 413, not a broken connection.
    r = rest.call("d4", "POST", "/api/groups/g/messages", big, headers={"Transfer-Encoding": "chunked"})
    assert r.status == 413 and r.error()[1] == "BODY_TOO_LARGE"

    r = rest.call("d4", "POST", "/api/agents/register", {"agent": {"id": "Not Valid!"}})
    assert r.status == 400 and r.error()[0] == 3

    r = rest.call("d4", "POST", f"/api/groups/{uid('g')}/members", {"agentId": "someone-else"})
    assert r.status == 404 and r.error()[1] == "AGENT_NOT_FOUND"


def test_status_table_is_grpc_gateways() -> None:
    """Domain errors map to grpc-gateway's HTTP statuses, with the gRPC code and ErrorInfo in the body."""
    from agentnet_server import errors

    table = {
        errors.InvalidArgument: (400, 3),
        errors.FailedPrecondition: (400, 9),
        errors.Unauthenticated: (401, 16),
        errors.PermissionDenied: (403, 7),
        errors.NotFound: (404, 5),
        errors.AlreadyExists: (409, 6),
        errors.Aborted: (409, 10),
        errors.ResourceExhausted: (429, 8),
        errors.Unavailable: (503, 14),
        errors.Internal: (500, 13),
    }
    for cls, (http, code) in table.items():
        resp = rest_errors.error_response(cls("why", reason="WHY", metadata={"k": "v"}, retry_after=1.5))
        assert resp.status == http, cls
        assert resp.text is not None
        body = json.loads(resp.text)
        assert body["code"] == code and body["message"] == "why"
        assert body["details"][0] == {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "WHY",
            "domain": "agentnet.v1",
            "metadata": {"k": "v"},
        }
        assert resp.headers["Retry-After"] == "2"
    for name, http in (("OUT_OF_RANGE", 400), ("CANCELLED", 499), ("UNIMPLEMENTED", 501), ("DEADLINE_EXCEEDED", 504)):
        exc = errors.AgentnetError("x")
        exc.status = name
        assert rest_errors.error_response(exc).status == http, name


def test_no_client_certificate_is_refused_at_the_handshake(rest: Rest) -> None:
    for tls in ([], ["--tls-max", "1.2"]):
        r = rest.call(None, "GET", "/api/agents", extra=tls)
        assert r.status == 0 and r.rc != 0 and r.body == b"", (r.status, r.rc, r.stderr)


def test_foreign_ca_certificate_is_refused(rest: Rest, tmp_path: pathlib.Path) -> None:
    foreign = pki.CertsDir(tmp_path / "foreign")
    pki.ensure_server(foreign, [])
    bundle = pki.issue_device(foreign, "d4")  # the same device name, another CA
    for tls in ([], ["--tls-max", "1.2"]):
        r = rest.call(None, "GET", "/api/agents", device_dir=bundle.folder, extra=tls)
        assert r.status == 0 and r.rc != 0 and r.body == b"", (r.status, r.rc, r.stderr)


def test_revoked_device_is_refused(make_server: Any, certs: pki.CertsDir) -> None:
    srv = make_server(http_addr="127.0.0.1:0")
    rest = Rest(srv, certs)
    agent = uid("rv")
    rest.register("d6", agent)
    stream = Sse(rest, "d6", f"?agent_id={agent}")
    stream.next("caught_up")
    p = subprocess.run(
        [sys.executable, "-m", "agentnet_server", "revoke", "d6", "--db", srv.db, "--certs", str(certs.root)],
        capture_output=True,
        text=True,
        cwd=srv.workdir,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    deadline = time.monotonic() + 10
    while True:
        r = rest.call("d6", "GET", "/api/agents")
        if r.status == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status == 401 and r.error()[:2] == (16, "DEVICE_REVOKED")
    assert rest.call("d5", "GET", "/api/agents").status == 200
    # Its open event stream ends with the reason.
    try:
        end = stream.next("error")["json"]["error"]
        assert (end["status"], end["reason"], end["fatal"]) == ("UNAUTHENTICATED", "DEVICE_REVOKED", True)
        assert stream.proc.wait(10) == 0
    finally:
        stream.close()


def test_identity_headers_are_ignored(rest: Rest) -> None:
    mine, theirs = uid("ia"), uid("ib")
    rest.register("xiaojin-mini", theirs)
    spoof = {
        "X-Device-Id": "xiaojin-mini",
        "X-Agentnet-Device": "xiaojin-mini",
        "X-Client-Cert-CN": "xiaojin-mini",
        "X-Forwarded-Client-Cert": "Subject=CN=xiaojin-mini",
        "X-SSL-Client-S-DN": "CN=xiaojin-mini",
        "Authorization": "Bearer xiaojin-mini",
    }
    r = rest.call("d5", "POST", "/api/agents/register", {"agent": {"id": mine}}, headers=spoof)
    assert r.status == 200 and r.json()["agent"]["ownerDevice"] == "d5"
    # Acting as another device's agent is refused whatever the headers claim.
    r = rest.call("d5", "POST", "/api/groups", {"groupId": uid("g"), "agentId": theirs}, headers=spoof)
    assert r.status == 403 and r.error()[1] == "NOT_YOUR_AGENT"
    r = rest.call("d5", "GET", f"/api/agents/{theirs}/inbox", headers=spoof)
    assert r.status == 403


# -- Server-Sent Events -------------------------------------------------------------------------


class Sse:
    """`curl -N .../api/events` as a child process; its events parsed as they arrive."""

    def __init__(self, rest: Rest, device: str, query: str = "", headers: dict[str, str] | None = None) -> None:
        args = [CURL or "curl", "-sS", "-N", *tls_args(rest.dir(device), rest.certs.ca_cert)]
        for k, v in (headers or {}).items():
            args += ["-H", f"{k}: {v}"]
        self.proc = subprocess.Popen([*args, f"{rest.base}/api/events{query}"], stdout=subprocess.PIPE)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.comments = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        ev: dict[str, Any] = {}
        for raw in self.proc.stdout:
            line = raw.decode().rstrip("\n")
            if not line:
                if ev:
                    self.events.put(ev)
                ev = {}
            elif line.startswith(":"):
                self.comments += 1
            else:
                k, _, v = line.partition(":")
                ev[k] = v[1:] if v.startswith(" ") else v
        self.events.put({"eof": True})

    def next(self, kind: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {kind!r} event within {timeout} s") from None
            if ev.get("eof"):
                raise AssertionError(f"the stream ended before a {kind!r} event")
            if ev.get("event") == kind:
                ev["json"] = json.loads(ev["data"])
                return ev

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@contextlib.contextmanager
def sse(rest: Rest, device: str, query: str = "", headers: dict[str, str] | None = None) -> Iterator[Sse]:
    s = Sse(rest, device, query, headers)
    try:
        yield s
    finally:
        s.close()


def test_sse_receives_messages_posted_by_another_device(rest: Rest) -> None:
    a, b, g = uid("sa"), uid("sb"), uid("sg")
    rest.register("laoxing-vps", a)
    rest.register("xiaoxing-mac", b)
    rest.ok("laoxing-vps", "POST", f"/api/groups/{g}/members", {"createIfMissing": True, "agentId": a})
    rest.ok("xiaoxing-mac", "POST", f"/api/groups/{g}/members", {"agentId": b})
    with sse(rest, "xiaoxing-mac", f"?agent_id={b}") as stream:
        reg = stream.next("registered")["json"]["registered"]
        assert reg["agent"]["id"] == b and reg["deviceId"] == "xiaoxing-mac"
        stream.next("caught_up")
        rest.send("laoxing-vps", a, f"live @{b}", group=g)
        ev = stream.next("message")
        assert ev["id"] == f"group:{g}:1"
        assert ev["json"]["message"]["content"] == f"live @{b}" and ev["json"]["message"]["seq"] == "1"
        mention = stream.next("mention")
        assert mention["id"] == f"inbox:{b}:{mention['json']['mention']['item']['seq']}"
        rest.send("laoxing-vps", a, "a direct one", peer=b)
        dm = stream.next("message")
        assert dm["id"] == f"dm:{min(a, b)}+{max(a, b)}:1"
        assert stream.next("direct_message")["id"].startswith(f"inbox:{b}:")
        # The stream heartbeats for the agent: it is online while the stream is open...
        time.sleep(1.5)
        assert rest.ok("laoxing-vps", "GET", f"/api/agents/{b}")["online"] is True
        assert stream.comments >= 1  # the keepalive comment line
    # ...and offline after it ends.
    deadline = time.monotonic() + 10
    while rest.ok("laoxing-vps", "GET", f"/api/agents/{b}")["online"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rest.ok("laoxing-vps", "GET", f"/api/agents/{b}")["online"] is False


def test_sse_resumes_from_last_event_id(rest: Rest) -> None:
    a, b, g = uid("qa"), uid("qb"), uid("qg")
    rest.register("laoxing-vps", a)
    rest.register("xiaojin-mini", b)
    rest.ok("laoxing-vps", "POST", f"/api/groups/{g}/members", {"createIfMissing": True, "agentId": a})
    rest.ok("xiaojin-mini", "POST", f"/api/groups/{g}/members", {"agentId": b})
    with sse(rest, "xiaojin-mini", f"?agent_id={b}") as stream:
        stream.next("caught_up")
        rest.send("laoxing-vps", a, "one", group=g)
        assert stream.next("message")["id"] == f"group:{g}:1"
        time.sleep(0.3)  # let the delivery ack be stored
    for text in ("two", "three"):
        rest.send("laoxing-vps", a, text, group=g)

    # Resume after seq 1: exactly 2 and 3, in order, then caught_up.
    with sse(rest, "xiaojin-mini", f"?agent_id={b}", headers={"Last-Event-ID": f"group:{g}:1"}) as stream:
        got = [stream.next("message") for _ in range(2)]
        assert [(e["id"], e["json"]["message"]["content"]) for e in got] == [
            (f"group:{g}:2", "two"),
            (f"group:{g}:3", "three"),
        ]
        assert stream.next("caught_up")["json"]["caughtUp"]["replayed"] == "2"
        time.sleep(0.3)
    # Several cursors (comma-separated) and an earlier position replay from there.
    with sse(rest, "xiaojin-mini", f"?agent_id={b}", headers={"Last-Event-ID": f"group:{g}:0, inbox:{b}:0"}) as stream:
        assert [stream.next("message")["id"] for _ in range(3)] == [f"group:{g}:{i}" for i in (1, 2, 3)]
    # Without Last-Event-ID the stream resumes after what it acknowledged: nothing is replayed.
    rest.send("laoxing-vps", a, "four", group=g)
    with sse(rest, "xiaojin-mini", f"?agent_id={b}") as stream:
        ev = stream.next("message")
        assert ev["id"] == f"group:{g}:4"

    bad = rest.call("xiaojin-mini", "GET", f"/api/events?agent_id={b}", headers={"Last-Event-ID": "garbage"})
    assert bad.status == 400 and bad.error()[1] == "BAD_CURSOR"
    # A cursor for a conversation the agent is not in is ignored, as on the gRPC stream.
    with sse(rest, "xiaojin-mini", f"?agent_id={b}", headers={"Last-Event-ID": "group:nope:3"}) as stream:
        assert stream.next("caught_up")["json"]["caughtUp"]["replayed"] == "0"
    assert rest.call("xiaojin-mini", "POST", "/api/events").status == 405


def test_sse_frames_are_made_from_messages_as_from_the_serialized_events() -> None:
    """The event stream renders each ServerEvent from its message (never parsing what the server
    serialized), byte for byte as from the serialized event, once per shared envelope or event."""
    from agentnet.v1 import events_pb2
    from agentnet_server.errors import ResourceExhausted
    from agentnet_server.live import encode
    from agentnet_server.live.format import PROTOBUF
    from agentnet_server.live.hub import Event, PresenceChange
    from agentnet_server.records import (
        FEED,
        MESSAGE,
        AgentRec,
        Envelope,
        FeedKind,
        FeedRec,
        MessageRec,
        TaskChangeRec,
        TaskRec,
        TaskStatus,
    )
    from agentnet_server.rest.sse import SseFormat, sse_frame

    inbox = "inbox:xiaoxing"
    t0 = 1_700_000_000_000_000
    msg = MessageRec(
        "group:dev-team", 7, "laoxing", "laoxing-vps", "c-1", "你好 @xiaoxing", '{"k": [1, "二"]}', t0, ("xiaoxing",)
    )
    item = FeedRec("xiaoxing", 3, FeedKind.MENTION, "group:dev-team", 7, "", 0, "laoxing", "你好", True, False, t0)
    task = TaskRec("t1", "title", "", "laoxing", "xiaoxing", "dev-team", 2, None, TaskStatus.PENDING, 1, "", t0, t0)
    change = TaskChangeRec("t1", 1, "laoxing", 0, 1, "", "xiaoxing", "note", t0)
    assigned = dataclasses.replace(item, seq=4, kind=FeedKind.TASK_ASSIGNED, task_id="t1", task_version=1)
    envelopes = [
        Envelope(MESSAGE, msg.conversation, msg.seq, msg),
        Envelope(FEED, inbox, item.seq, (item, msg)),
        Envelope(FEED, inbox, assigned.seq, (assigned, (task, change))),
    ]
    for env in envelopes:
        got = SseFormat(inbox).envelope(env)
        want = sse_frame(events_pb2.ServerEvent.FromString(encode.encode(env)), inbox)
        assert (got.data, got.cursor) == want and got.error is None
        assert SseFormat("inbox:other").envelope(env) is got  # made once for every recipient

    agent = AgentRec("xiaoxing", "小星", "dev", "", "xiaoxing-mac", ("xiaoxing-mac",), t0, None)
    events = [
        Event(events_pb2.ServerEvent(caught_up=events_pb2.CaughtUp(replayed=2))),
        Event(events_pb2.ServerEvent(history_gap=events_pb2.HistoryGap(conversation=inbox, from_seq=1, to_seq=5))),
        encode.presence([PresenceChange("xiaoxing", True, t0)], {"xiaoxing": "小星"}, snapshot=True),
        encode.AgentListEvent([(agent, True, encode.agent_entry(agent, True))]),
        Event(encode.error_event(ResourceExhausted("too many", reason="TOO_MANY_SESSIONS"), fatal=True)),
    ]
    for ev in events:
        data = PROTOBUF.event(ev)
        assert PROTOBUF.event(ev) is data  # serialized once for every session it goes to
        parsed = events_pb2.ServerEvent.FromString(data)
        assert ev.message() == parsed
        got = SseFormat(inbox).event(ev)
        assert (got.data, got.cursor) == sse_frame(parsed, inbox)
        assert got.error == (parsed.error if parsed.HasField("error") else None)
        assert SseFormat(inbox).event(ev) is got
    assert got.error is not None and got.error.reason == "TOO_MANY_SESSIONS"
    ack = SseFormat(inbox).event(Event(events_pb2.ServerEvent(heartbeat_ack=events_pb2.HeartbeatAck())))
    assert ack.data == b"" and ack.cursor is None  # the stream answers its own heartbeats


# -- the transcoder is generic ------------------------------------------------------------------

DEMO_PROTO = """
syntax = "proto3";
package {package};
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";

service Widgets {
  rpc PolishWidget(PolishRequest) returns (Widget) {
    option (google.api.http) = {
      post: "/demo/shelves/{shelf.id}/widgets/{widget_id}:polish"
      body: "options"
    };
  }
  rpc ListWidgets(ListRequest) returns (ListResponse) {
    option (google.api.http) = {
      get: "/demo/widgets"
      additional_bindings { get: "/demo/shelves/{shelf_id}/widgets" }
    };
  }
  rpc NotOnRest(ListRequest) returns (ListResponse);
}

message Shelf { string id = 1; }
message Options { int32 strength = 1; repeated string tags = 2; }
message PolishRequest { Shelf shelf = 1; int64 widget_id = 2; Options options = 3; bool dry_run = 4; }
message Widget { int64 id = 1; string shelf = 2; google.protobuf.Timestamp polish_time = 3; }
message Cursor { string conversation = 1; int64 seq = 2; }
message Filter { string color = 1; int32 min_size = 2; }
enum Kind { KIND_UNSPECIFIED = 0; KIND_ROUND = 1; }
message ListRequest {
  string shelf_id = 1;
  repeated Cursor cursors = 2;
  map<string, int64> limits = 3;
  repeated string tags = 4;
  Kind kind = 5;
  google.protobuf.Timestamp since = 6;
  Filter filter = 7;
}
message ListResponse { repeated Widget widgets = 1; }
"""


def compile_demo(tmp: pathlib.Path) -> Any:
    """Compile a test-only .proto with protoc and load it: a service the gateway has never seen."""
    import google.api
    from grpc_tools import protoc

    tag = uuid.uuid4().hex[:8]
    name = f"demo_{tag}.proto"
    (tmp / name).write_text(DEMO_PROTO.replace("{package}", f"demo{tag}.v1"))
    out = tmp / "demo.pb"
    googleapis = pathlib.Path(google.api.__path__[0]).parent.parent
    args = ["protoc", f"-I{tmp}", f"-I{googleapis}", f"-I{pathlib.Path(protoc.__file__).parent / '_proto'}"]
    assert protoc.main([*args, f"--descriptor_set_out={out}", name]) == 0
    [fdp] = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    pool = descriptor_pool.Default()
    pool.Add(fdp)
    return pool.FindFileByName(name).services_by_name["Widgets"]


def test_routes_come_from_annotations_only(tmp_path: pathlib.Path) -> None:
    svc = compile_demo(tmp_path)
    t = transcoder.Transcoder([svc])
    assert sorted((r.http_method, r.template.text, r.rpc_name) for r in t.routes) == [
        ("GET", "/demo/shelves/{shelf_id}/widgets", "ListWidgets"),
        ("GET", "/demo/widgets", "ListWidgets"),
        ("POST", "/demo/shelves/{shelf.id}/widgets/{widget_id}:polish", "PolishWidget"),
    ]
    # Path variables (nested field, int64), a custom verb, a named body field, query for the rest.
    route, groups = t.match("POST", "/demo/shelves/s%201/widgets/42:polish")
    req = t.build_request(route, groups, [("dry_run", "true")], b'{"strength": 3, "tags": ["a", "b"]}')
    assert (req.shelf.id, req.widget_id, req.options.strength, list(req.options.tags), req.dry_run) == (
        "s 1",
        42,
        3,
        ["a", "b"],
        True,
    )
    with pytest.raises(rest_errors.HttpError) as bad:
        t.build_request(route, t.match("POST", "/demo/shelves/s/widgets/x:polish")[1], [], b"{}")
    assert bad.value.http_status == 400 and "{widget_id}" in bad.value.message
    with pytest.raises(rest_errors.HttpError) as wrong:
        t.match("GET", "/demo/shelves/s/widgets/1:polish")
    assert wrong.value.http_status == 405 and wrong.value.headers["Allow"] == "POST"
    with pytest.raises(rest_errors.HttpError) as missing:
        t.match("GET", "/demo/nothing")
    assert missing.value.http_status == 404

    # Repeated, nested, repeated-message, map, enum and timestamp query parameters.
    route, groups = t.match("GET", "/demo/shelves/top/widgets")
    query = [
        ("cursors.conversation", "a"),
        ("cursors.seq", "5"),
        ("cursors.conversation", "b"),
        ("cursors.seq", "7"),
        ("limits[big]", "9000000000"),
        ("tags", "x"),
        ("tags", "y"),
        ("kind", "KIND_ROUND"),
        ("since", "2024-05-01T12:00:00Z"),
        ("filter.color", "red"),
        ("filter.minSize", "2"),
    ]
    req = t.build_request(route, groups, query, b"")
    assert req.shelf_id == "top"
    assert [(c.conversation, c.seq) for c in req.cursors] == [("a", 5), ("b", 7)]
    assert dict(req.limits) == {"big": 9000000000} and list(req.tags) == ["x", "y"] and req.kind == 1
    assert req.since.ToJsonString() == "2024-05-01T12:00:00Z"
    assert (req.filter.color, req.filter.min_size) == ("red", 2)
    for bad_query, word in (
        ([("shelf_id", "x")], "path"),
        ([("nope", "1")], "unknown"),
        ([("kind", "KIND_SQUARE")], "KIND_ROUND"),
        ([("filter", "x")], "filter.color"),
        ([("filter.minSize", "1.5")], "not an integer"),
    ):
        with pytest.raises(rest_errors.HttpError) as err:
            t.build_request(route, groups, bad_query, b"")
        assert err.value.http_status == 400 and word in err.value.message, err.value.message

    # Responses: the proto3 JSON mapping (int64 as string, timestamps RFC 3339).
    widget = message_factory.GetMessageClass(svc.methods_by_name["PolishWidget"].output_type)(id=7, shelf="s")
    widget.polish_time.FromSeconds(0)
    assert t.render(route, widget) == {"id": "7", "shelf": "s", "polishTime": "1970-01-01T00:00:00Z"}

    # The OpenAPI document comes from the same rules.
    doc = openapi.build_document([svc], comments={})
    assert set(doc["paths"]) == {
        "/demo/widgets",
        "/demo/shelves/{shelf_id}/widgets",
        "/demo/shelves/{shelf.id}/widgets/{widget_id}:polish",
    }
    polish = doc["paths"]["/demo/shelves/{shelf.id}/widgets/{widget_id}:polish"]["post"]
    assert [p["name"] for p in polish["parameters"]] == ["shelf.id", "widget_id", "dryRun"]
    params = {p["name"] for p in doc["paths"]["/demo/widgets"]["get"]["parameters"]}
    assert {"cursors.conversation", "cursors.seq", "filter.color", "tags", "since"} <= params


def test_every_annotated_rpc_is_routed() -> None:
    svc = service_pb2.DESCRIPTOR.services_by_name["AgentNet"]
    routed = {r.rpc_name for r in transcoder.Transcoder([svc]).routes}
    annotated = {m.name for m in svc.methods if routes.http_rules(m)}
    assert routed == annotated and {"ListAgents", "GetInbox", "MarkRead", "UpdateTask"} <= routed
    assert annotated == {m.name for m in svc.methods} - {"Session"}
    unimplemented = sorted(n for n in routed if not hasattr(AgentNetServicer, n))
    assert unimplemented == [], f"annotated but not implemented (answer 501): {unimplemented}"


# -- OpenAPI ------------------------------------------------------------------------------------


def test_committed_openapi_is_current_and_valid(rest: Rest) -> None:
    from openapi_spec_validator import validate

    committed = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    fresh = openapi.render(openapi.build_document())
    assert committed == fresh, "docs/openapi.json is stale: run `make openapi` and commit it"
    doc = json.loads(committed)
    validate(doc)
    assert doc["openapi"].startswith("3.")
    served = rest.ok("d4", "GET", "/api/openapi.json")
    assert served == doc


@pytest.mark.filterwarnings("ignore")
def test_schemathesis_finds_no_server_errors_and_no_schema_mismatch(make_server: Any, certs: pki.CertsDir) -> None:
    """A bounded property-based run over every operation of the document (not /api/events)."""
    rest = Rest(make_server(http_addr="127.0.0.1:0"), certs)
    schemathesis = pytest.importorskip("schemathesis")
    import requests
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    rest.register("xiaojin-mini", uid("fz"))  # a device with one agent, so calls get past "who are you"
    schema = schemathesis.openapi.from_path(str(ROOT / "docs" / "openapi.json"))
    session = requests.Session()
    device = rest.dir("xiaojin-mini")
    cert = (str(device / "cert.pem"), str(device / "key.pem"))
    ca = str(rest.certs.ca_cert)
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    calls: dict[str, int] = {}
    statuses: dict[int, int] = {}
    started = time.monotonic()

    def fuzz(op: Any) -> None:
        @settings(
            max_examples=10,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            response = case.call(base_url=rest.base, session=session, timeout=30, verify=ca, cert=cert)
            calls[op.label] = calls.get(op.label, 0) + 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=checks)

        run()

    for result in schema.get_all_operations():
        op = result.ok()
        if op.path != EVENTS_PATH:
            fuzz(op)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {sum(calls.values())} calls over {len(calls)} operations in {elapsed:.1f} s: {statuses}")
    assert len(calls) >= 20
    assert not any(s >= 500 for s in statuses)


# -- README -------------------------------------------------------------------------------------


def readme_commands() -> list[str]:
    """The shell commands of the README's "REST with curl" section (continuation lines joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## REST with curl", 1)[1]
    section = section.split("\n## ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.strip()
            if cmd.startswith(("curl ", "agentnet ")):
                commands.append(cmd)
    return commands


def test_readme_curl_commands_work(make_server: Any, certs: pki.CertsDir) -> None:
    """Run the README's commands as written, only pointed at a test server and its certificates."""
    srv = make_server(http_addr="127.0.0.1:0")
    commands = readme_commands()
    text = " ".join(commands) + " "
    for needed in ("/api/agents/register", "/api/agents ", "/api/groups ", "/messages", "/inbox", "/api/events"):
        assert needed in text, f"the README section has no command for {needed.strip()}"
    assert all("curl " in c for c in commands)
    device = certs.device_dir("ci-runner")  # the README's REST device
    if not (device / "cert.pem").exists():
        device = pki.issue_device(certs, "ci-runner").folder
    env = dict(os.environ, PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for cmd in commands:
        run = cmd.replace("https://127.0.0.1:8443", f"https://127.0.0.1:{srv.http_port}")
        run = run.replace("certs/devices/ci-runner", str(device)).replace("certs/ca.pem", str(certs.ca_cert))
        events = "/api/events" in cmd
        # Show the HTTP status after the body; stop the endless event stream as Ctrl-C would.
        run = run.replace("curl ", "curl -sS --max-time 3 " if events else "curl -sS ", 1)
        run += " -w '\n%{http_code}'"
        p = subprocess.run(
            ["bash", "-o", "pipefail", "-c", run], capture_output=True, timeout=60, cwd=srv.workdir, env=env
        )
        body, _, status = p.stdout.decode().rpartition("\n")
        if events:
            assert p.returncode == 28, (cmd, p.returncode, p.stderr)  # ended by --max-time
            assert "event: registered" in body and "event: caught_up" in body, (cmd, body[:500])
            assert "event: message" in body and "deploy 42 is green" in body, (cmd, body[:2000])
            continue
        assert p.returncode == 0, (cmd, p.stderr)
        assert status == "200", (cmd, status, body[:500])
        json.loads(body)

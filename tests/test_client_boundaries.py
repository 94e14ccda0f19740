"""Client resume and failure paths, and inputs at the REST and gRPC boundaries, against real servers.

Each test states what a user must see; they fail on the behaviour described in their docstring."""

from __future__ import annotations

import asyncio
import os
import pathlib
import sqlite3
import subprocess
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from agentnet.v1 import events_pb2, resources_pb2, service_pb2, service_pb2_grpc
from agentnet_client import AgentnetError
from agentnet_client.device import load_device, secure_channel
from agentnet_client.session import State
from agentnet_client.signing import Signer
from agentnet_server import pki
from agentnet_server.rest.sse import EVENTS_PATH
from tests.conftest import Clients, ServerProc, collect, uid
from tests.test_cli import cli, free_port, one_line
from tests.test_rest import Rest

SKIP = ["--skip", "agent_list", "--skip", "presence", "--skip", "caught_up", "--skip", "registered"]


def _cli_env(server: ServerProc, certs: pki.CertsDir, device: str, tmp: pathlib.Path, agent: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTNET_")}
    return dict(
        base,
        AGENTNET_SERVER=server.addr,
        AGENTNET_DEVICE_DIR=str(certs.device_dir(device)),
        AGENTNET_CACHE_DIR=str(tmp / f"caches-{device}"),
        AGENTNET_CONFIG_DIR=str(tmp / "config"),
        AGENTNET_AGENT=agent,
    )


# -- REST and gRPC inputs -------------------------------------------------------------------------


def test_rest_payload_with_nan_or_infinity_is_a_400(make_server: Any, certs: pki.CertsDir) -> None:
    """A payload number NaN/Infinity/-Infinity (valid proto3 JSON for a Struct value) is accepted by
    the transcoder and then fails in rpc/convert.py payload_dict (json_format.MessageToDict raises
    ValueError): the caller gets 500 INTERNAL and the server logs a traceback."""
    rest = Rest(make_server(http_addr="127.0.0.1:0"), certs)
    assert rest.call("laoxing-vps", "POST", "/api/agents/register", {"agent": {"id": "nan-a"}}).status == 200
    assert rest.call("laoxing-vps", "POST", "/api/groups", {"groupId": "nan-g", "agentId": "nan-a"}).status == 200
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = (
            '{"agentId":"nan-a","clientMsgId":"' + uid("m") + '","content":"x","payload":{"a":' + number + "}}"
        ).encode()
        r = rest.call("laoxing-vps", "POST", "/api/groups/nan-g/messages", body)
        assert r.status == 400, (number, r.status, r.body[:300])
        code, _, message = r.error()
        assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0], (number, message)


def test_rest_sse_last_event_id_that_is_not_utf8_is_a_400(make_server: Any, certs: pki.CertsDir) -> None:
    """`Last-Event-ID: group:\\xff:1` reaches resources_pb2.Cursor(conversation=...) as a surrogate
    (rest/sse.py parse_last_event_id) and raises UnicodeEncodeError: 500 INTERNAL."""
    rest = Rest(make_server(http_addr="127.0.0.1:0"), certs)
    assert rest.call("laoxing-vps", "POST", "/api/agents/register", {"agent": {"id": "sse-a"}}).status == 200
    from tests.test_rest import CURL, tls_args

    args = [CURL or "curl", "-sS", "-m", "5", "-o", "-", "-w", "\n%{http_code}"]
    args += tls_args(rest.dir("laoxing-vps"), certs.ca_cert)
    args += ["-H", b"Last-Event-ID: group:\xff:1".decode("latin-1"), rest.base + "/api/events?agent_id=sse-a"]
    env = dict(os.environ, LC_ALL="C")
    p = subprocess.run([a.encode("latin-1") for a in args], capture_output=True, timeout=30, env=env)
    status = int(p.stdout.rsplit(b"\n", 1)[-1] or b"0")
    assert status == 400, p.stdout[:400]
    assert b"BAD_CURSOR" in p.stdout


def test_rest_unknown_expect_header_gets_a_json_error(make_server: Any, certs: pki.CertsDir) -> None:
    """rest/server.py _expect raises web.HTTPExpectationFailed with a text/plain body
    ("unknown Expect: foo"): the one error of the shim's own code that is not grpc-gateway JSON."""
    rest = Rest(make_server(http_addr="127.0.0.1:0"), certs)
    r = rest.call("laoxing-vps", "POST", "/api/groups", {"groupId": "x"}, headers={"Expect": "foo"})
    assert r.status == 417
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert r.json()["message"]


def test_rest_sse_repeated_query_parameters_are_refused(make_server: Any, certs: pki.CertsDir) -> None:
    """Every transcoded route refuses a repeated scalar parameter (400 DUPLICATE_FIELD); `GET
    /api/events` takes the first of `agent_id=a&agent_id=b` (or of agent_id and agentId, or of
    last_event_id) silently (rest/sse.py handle uses query.get)."""
    rest = Rest(make_server(http_addr="127.0.0.1:0"), certs)
    for agent in ("rp-a", "rp-b"):
        assert rest.call("laoxing-vps", "POST", "/api/agents/register", {"agent": {"id": agent}}).status == 200
    for query in ("agent_id=rp-a&agent_id=rp-b", "agent_id=rp-a&agentId=rp-b", "last_event_id=x:1&last_event_id=y:2"):
        r = rest.call("laoxing-vps", "GET", f"{EVENTS_PATH}?{query}", extra=["-m", "3"], timeout=10)
        assert r.status == 400, (query, r.status, r.body[:200])
        assert r.error()[1] == "DUPLICATE_FIELD", (query, r.body[:200])


async def test_session_stream_survives_a_send_with_a_nan_payload(server: ServerProc, certs: pki.CertsDir) -> None:
    """Over the Session stream the same NaN payload ends the whole stream with a fatal INTERNAL error
    ("internal error (ValueError); reconnect") instead of refusing that one message; the unary
    SendGroupMessage answers INTERNAL too."""
    device = load_device(certs.device_dir("laoxing-vps"))
    channel = secure_channel(server.addr, device)
    try:
        stub = service_pb2_grpc.AgentNetStub(channel)
        await stub.RegisterAgent(service_pb2.RegisterAgentRequest(agent=resources_pb2.Agent(id="nan-s")))
        await stub.CreateGroup(service_pb2.CreateGroupRequest(group_id="nan-sg", agent_id="nan-s"))
        call = stub.Session()
        reg = events_pb2.Register(agent=resources_pb2.Agent(id="nan-s"))
        await call.write(events_pb2.ClientEvent(request_id="register", register=reg))
        bad = events_pb2.SendMessage(client_msg_id="s1", content="x", group_id="nan-sg")
        bad.payload.update({"a": float("inf")})
        await call.write(events_pb2.ClientEvent(request_id="s1", message=bad))
        good = events_pb2.SendMessage(client_msg_id="s2", content="after", group_id="nan-sg")
        Signer(device).sign_send(good, "nan-s")
        await call.write(events_pb2.ClientEvent(request_id="s2", message=good))
        replies: dict[str, events_pb2.ServerEvent] = {}
        while "s2" not in replies:
            ev = await asyncio.wait_for(call.read(), 10)
            assert ev is not grpc.aio.EOF, replies
            if ev.request_id in ("s1", "s2"):
                replies[ev.request_id] = ev
            assert not (ev.WhichOneof("event") == "error" and ev.error.fatal), ev.error
        assert replies["s1"].WhichOneof("event") == "error"
        assert replies["s1"].error.status == "INVALID_ARGUMENT"
        assert replies["s2"].WhichOneof("event") == "message_ack"
        call.cancel()
        req = service_pb2.SendGroupMessageRequest(group_id="nan-sg", agent_id="nan-s", client_msg_id="u1", content="x")
        req.payload.update({"a": float("nan")})
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.SendGroupMessage(req, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    finally:
        await channel.close(grace=None)


async def test_unsigned_send_with_a_nan_payload_is_not_retried_for_ever(
    clients: Clients, tmp_path: pathlib.Path
) -> None:
    """Consequence on the client: the fatal INTERNAL is retryable, so a Client(sign=False) whose
    outbox holds such a message reconnects, resends it and is cut off again, about 25 times a
    second, for ever (the outbox is in the cache, so restarting does not help) and the send never
    returns."""
    owner = await clients.live("laoxing-vps", "nan-o")
    await owner.join("nan-og", create=True)
    c = await clients.live("laoxing-vps", "nan-o", cache=str(tmp_path / "c.sqlite"), sign=False)
    with pytest.raises(AgentnetError) as info:
        await asyncio.wait_for(c.send("x", group_id="nan-og", payload={"a": float("nan")}), 10)
    assert info.value.status == "INVALID_ARGUMENT"
    assert c.session is not None and c.session.connects <= 2 and c.session.outbox_size == 0


# -- the client library ---------------------------------------------------------------------------


async def test_send_after_the_session_failed_raises_instead_of_hanging(clients: Clients) -> None:
    """session.py send(): in state FAILED (or CLOSED) the message goes into the outbox and the call
    awaits a future nobody resolves, for ever; join/request raise NotConnected at once."""
    await clients.live("laoxing-vps", "hang-owner")
    c = await clients.make("xiaoxing-mac", "hang-owner")  # another device's agent: PERMISSION_DENIED
    with pytest.raises(AgentnetError):
        await c.wait_live(timeout=20)
    assert c.state == State.FAILED
    with pytest.raises(AgentnetError):
        await asyncio.wait_for(c.send("x", group_id="anything"), 5)

    ok = await clients.live("laoxing-vps", "hang-owner")
    await ok.close()
    with pytest.raises(AgentnetError):
        await asyncio.wait_for(ok.send("x", group_id="anything"), 5)


async def test_a_failed_cache_write_does_not_skip_the_message(clients: Clients, tmp_path: pathlib.Path) -> None:
    """session.py _on_event moves the in-memory cursor before cache.record: when the write fails
    (disk full, a locked or damaged file) the error reconnects the stream with the cursor already
    past the message, so it is neither in the cache nor handed to the application, ever."""
    a = await clients.live("laoxing-vps", "cw-a", cache=str(tmp_path / "a.sqlite"))
    b = await clients.live("xiaoxing-mac", "cw-b")
    await a.join("cw-g", create=True)
    await b.join("cw-g")
    assert a.cache is not None
    original = a.cache.record
    failures = [sqlite3.OperationalError("database or disk is full")]

    def record(conv: str, seq: int, ev: events_pb2.ServerEvent) -> None:
        if failures and ev.WhichOneof("event") == "message":
            raise failures.pop()
        original(conv, seq, ev)

    a.cache.record = record  # type: ignore[method-assign,assignment]
    ack = await b.send("while the disk was full", group_id="cw-g")
    got = await collect(a, "message", 1, timeout=15, conv="group:cw-g")
    assert got[0].seq == ack.seq
    assert [m.seq for m in a.cache.messages("group:cw-g")] == [ack.seq]


# -- the command line -----------------------------------------------------------------------------


def test_tail_count_does_not_lose_the_messages_it_did_not_print(
    server: ServerProc, certs: pki.CertsDir, tmp_path: pathlib.Path
) -> None:
    """`tail --count 1` receives every missed message during catch-up and records them (cursor
    included) in the cache, prints one and exits: the next `tail` resumes after all of them, so the
    rest are never printed (README: "start tail again: it prints exactly the messages it missed")."""
    me = _cli_env(server, certs, "laoxing-vps", tmp_path, "tc-a")
    other = _cli_env(server, certs, "xiaoxing-mac", tmp_path, "tc-b")
    assert cli(me, "register", "tc-a").returncode == 0
    assert cli(other, "register", "tc-b").returncode == 0
    assert cli(me, "join", "tc-g", "--create").returncode == 0
    assert cli(other, "join", "tc-g").returncode == 0
    assert cli(me, "tail", "--timeout", "2", *SKIP).returncode == 0  # the cache knows the group now
    for i in range(1, 4):
        assert cli(other, "send", "tc-g", f"missed {i}").returncode == 0
    r = cli(me, "tail", "--count", "1", *SKIP)
    assert r.returncode == 0 and "missed 1" in r.stdout, r.stdout + r.stderr
    r = cli(me, "tail", "--timeout", "3", *SKIP)
    assert "missed 2" in r.stdout and "missed 3" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cache_is_one_line_that_names_the_file(
    server: ServerProc, certs: pki.CertsDir, tmp_path: pathlib.Path, damage: str
) -> None:
    """A damaged cache file gives `unexpected DatabaseError: file is not a database (run again with
    --debug for details)`, exit 1 ("refused"): neither the file nor what to do is named. A clear
    line (exit 2, naming the file) or recovering both pass."""
    env = _cli_env(server, certs, "laoxing-vps", tmp_path, "dc-a")
    assert cli(env, "register", "dc-a").returncode == 0
    assert cli(env, "join", "dc-g", "--create").returncode == 0
    assert cli(env, "send", "dc-g", "hello").returncode == 0
    assert cli(env, "tail", "--count", "1", *SKIP).returncode == 0
    path = pathlib.Path(env["AGENTNET_CACHE_DIR"]) / "cache-laoxing-vps-dc-a.sqlite"
    data = path.read_bytes()
    for suffix in ("-wal", "-shm"):
        pathlib.Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(os.urandom(8192) if damage == "garbage" else data[:3000])
    for args in (["history", "dc-g", "--offline"], ["tail", "--timeout", "2"]):
        r = cli(env, *args)
        assert "Traceback" not in r.stderr and "unexpected" not in r.stderr, (args, r.stderr)
        if r.returncode == 0:
            continue  # recovered (the damaged file moved aside and a new cache started): fine too
        one_line(r, str(path))
        assert r.returncode == 2, (args, r.returncode, r.stderr)


def test_an_encrypted_device_key_is_a_local_problem(
    server: ServerProc, certs: pki.CertsDir, tmp_path: pathlib.Path
) -> None:
    """device.py load_device catches ValueError only; an encrypted key.pem raises TypeError: the
    CLI prints `unexpected TypeError: Password was not given but private key is encrypted`, exit 1."""
    src = certs.device_dir("laoxing-vps")
    folder = tmp_path / "enc"
    folder.mkdir(mode=0o700)
    for name in ("cert.pem", "ca.pem"):
        (folder / name).write_bytes((src / name).read_bytes())
    key = serialization.load_pem_private_key((src / "key.pem").read_bytes(), password=None)
    enc = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    fd = os.open(folder / "key.pem", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, enc)
    os.close(fd)
    env = dict(_cli_env(server, certs, "laoxing-vps", tmp_path, "enc-a"), AGENTNET_DEVICE_DIR=str(folder))
    r = cli(env, "agents")
    line = one_line(r, "key.pem", "encrypted")
    assert r.returncode == 2 and "unexpected" not in line, (r.returncode, line)


def test_tail_that_never_reached_the_server_does_not_exit_0(certs: pki.CertsDir, tmp_path: pathlib.Path) -> None:
    """`tail --timeout S` with nothing listening (or a server whose certificate this device refuses)
    says "waiting for the server" and then exits 0, as if it had run: a script cannot tell."""
    fake = ServerProc.__new__(ServerProc)
    fake.port = free_port()
    env = _cli_env(fake, certs, "laoxing-vps", tmp_path, "down-a")
    r = cli(env, "tail", "--timeout", "3", "--no-cache")
    assert "waiting for the server" in r.stderr, r.stderr
    assert r.returncode == 3, (r.returncode, r.stderr)


async def test_the_cache_follows_a_restored_server_for_reused_seqs(
    make_server: Any, certs: pki.CertsDir, tmp_path: pathlib.Path
) -> None:
    """session.py caught_up follows a server whose history is behind the cache (a restore from
    backup, a reset) by moving the cursor back, and the new messages are handed to the application;
    but cache.record stores them with INSERT OR IGNORE on (conv, seq), so the cache keeps the old
    server's message under each reused seq: `history --offline` shows text that was never sent
    on the server the client now talks to."""
    cache = str(tmp_path / "cache.sqlite")
    for n, text in enumerate(("before the restore", "after the restore")):
        srv: ServerProc = make_server()
        cs = Clients(certs, srv, tmp_path / f"c{n}")
        try:
            a = await cs.live("laoxing-vps", "rs-a", cache=cache)
            await a.join("rs-g", create=True)
            ack = await a.send(text, group_id="rs-g")
            assert ack.seq == 1
            got = await collect(a, "message", 1, conv="group:rs-g")
            assert got[0].content == text
            assert a.cache is not None
            assert [m.content for m in a.cache.messages("group:rs-g")] == [text]
        finally:
            await cs.close_all()


@pytest.mark.parametrize(
    "args",
    [
        ["send", "lv-g", "x", "--payload", '{"a":' * 90 + "1" + "}" * 90],
        ["send", "lv-g", "x", "--payload", '{"a":' * 2000 + "1" + "}" * 2000],
        ["task", "create", "x", "--assignee", "lv-a", "--due", "9999-12-31T23:59:59-14:00"],
        ["receipts", "99999999999999999999999", "--group", "lv-g"],
    ],
    ids=["payload-90-deep", "payload-2000-deep", "due-out-of-range", "seq-out-of-range"],
)
def test_cli_values_out_of_range_are_a_local_problem(
    server: ServerProc, certs: pki.CertsDir, tmp_path: pathlib.Path, args: list[str]
) -> None:
    """Values the CLI takes without checking fail deep inside: `unexpected DecodeError: ...
    Exceeded upb_DecodeOptions_MaxDepth` (client.py post builds the request from a Struct deeper
    than protobuf decodes), `unexpected RecursionError` (common.py payload), `unexpected
    OverflowError: date value out of range` (--due), `Value out of range: 9999...` (seq, exit 2
    but protobuf's words)."""
    env = _cli_env(server, certs, "laoxing-vps", tmp_path, "lv-a")
    assert cli(env, "register", "lv-a").returncode == 0
    assert cli(env, "join", "lv-g", "--create").returncode == 0
    r = cli(env, *args)
    line = one_line(r)
    assert r.returncode == 2 and "unexpected" not in line and "Value out of range" not in line, (r.returncode, line)


@pytest.mark.parametrize(
    "content",
    [b"[]", b'{"profiles": [1, 2], "current": 5}', b'{"profiles": {"x": "str"}, "current": "x"}', b"\xff\xfe"],
    ids=["list", "profiles-list", "profile-str", "not-utf8"],
)
def test_a_malformed_profiles_file_is_one_line_that_names_it(tmp_path: pathlib.Path, content: bytes) -> None:
    """profile.py load() catches only OSError and JSONDecodeError: valid JSON of the wrong shape
    makes every command (`agentnet agents`) print `unexpected AttributeError: 'list' object has no
    attribute ...`, and bytes that are not UTF-8 give a codec message without the file's name."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "profiles.json").write_bytes(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTNET_")}
    env["AGENTNET_CONFIG_DIR"] = str(cfg)
    for args in (["agents"], ["profile", "list"]):
        r = cli(env, *args)
        line = one_line(r, "profiles.json")
        assert "unexpected" not in line, (args, line)

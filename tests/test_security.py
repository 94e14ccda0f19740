"""docs/architecture.md guarantee 12 and issue 5: identity, revocation, certificates, signatures, limits."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import sqlite3
import subprocess
import sys
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from agentnet.v1 import events_pb2, resources_pb2, service_pb2, service_pb2_grpc
from agentnet_client import AgentnetError, AgentProfile, Client, DeviceError, State
from agentnet_client.device import load_device, secure_channel
from agentnet_client.signing import Signer, Verification
from agentnet_server import pki
from tests.conftest import Clients, ServerProc, collect, until

BIN = pathlib.Path(sys.executable).parent


async def test_device_cannot_use_another_devices_agent_anywhere(clients: Clients) -> None:
    owner = await clients.live("laoxing-vps", "boss", "Boss")
    await owner.join("hq", create=True)
    task = await owner.create_task("sign the contract", "boss")
    thief = await clients.make("xiaoxing-mac", connect=False)
    await thief.register_agent(AgentProfile("thief"))

    async def refused(coro) -> AgentnetError:  # type: ignore[no-untyped-def]
        with pytest.raises(AgentnetError) as err:
            await coro
        assert err.value.status == "PERMISSION_DENIED", err.value
        return err.value

    await refused(thief.register_agent(AgentProfile("boss", "Boss")))
    await refused(thief.post("I quit", group_id="hq", agent_id="boss"))
    await refused(thief.post("psst", to_agent="thief", agent_id="boss"))
    await refused(thief.inbox(agent_id="boss"))
    await refused(thief.mark_read({"group:hq": 1}, agent_id="boss"))
    await refused(thief.update_task(task.id, status=resources_pb2.TASK_STATUS_CANCELLED, agent_id="boss"))
    await refused(thief.list_tasks(agent_id="boss"))
    assert thief.stub is not None
    with pytest.raises(grpc.aio.AioRpcError) as rpc_err:
        await thief.stub.AuthorizeDevice(service_pb2.AuthorizeDeviceRequest(agent_id="boss", device_id="xiaoxing-mac"))
    assert rpc_err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Nothing happened on the owner's side.
    assert [m.sender for m in await owner.history(group_id="hq")] == []
    assert (await owner.get_task(task.id)).status == resources_pb2.TASK_STATUS_PENDING


async def test_revocation_ends_live_sessions_within_5s_and_refuses_reconnects(clients: Clients) -> None:
    victim = await clients.live("d6", "doomed")
    bystander = await clients.live("laoxing-vps", "bystander")
    t0 = time.monotonic()
    r = subprocess.run(
        [str(BIN / "agentnet-server"), "revoke", "d6", "--db", clients.server.db],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    await until(lambda: victim.state == State.FAILED, timeout=5.0)
    assert time.monotonic() - t0 <= 5.0
    assert victim.session is not None and victim.session.error is not None
    assert (victim.session.error.status, victim.session.error.reason) == ("UNAUTHENTICATED", "DEVICE_REVOKED")
    # New connections and unary calls from the revoked device are refused.
    again = await clients.make("d6", "doomed")
    await again.session.wait_for(State.LIVE, timeout=10)  # type: ignore[union-attr]
    assert again.state == State.FAILED and again.session.error.reason == "DEVICE_REVOKED"  # type: ignore[union-attr]
    unary = await clients.make("d6", connect=False)
    with pytest.raises(AgentnetError) as err:
        await unary.list_agents()
    assert err.value.status == "UNAUTHENTICATED" and "revoked" in err.value.message
    # Everyone else is unaffected.
    assert bystander.state == State.LIVE
    r = subprocess.run(
        [str(BIN / "agentnet-server"), "devices", "--db", clients.server.db, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    import json

    devices = {d["id"]: d for d in json.loads(r.stdout)}
    assert devices["d6"]["revoked"] is True and devices["d6"]["agents"] == ["doomed"]
    assert devices["laoxing-vps"]["revoked"] is False


def _cert_with(
    certs: pki.CertsDir,
    device: str,
    folder: pathlib.Path,
    not_before: dt.datetime,
    not_after: dt.datetime,
    ca: tuple[x509.Certificate, object] | None = None,
) -> pathlib.Path:
    """A device folder whose certificate has the given validity (or is signed by another CA)."""
    ca_cert, ca_key, _ = pki.ensure_ca(certs) if ca is None else (*ca, False)
    key = pki.new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, device)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pki.write_device_folder(folder, cert, pki.load_cert(certs.ca_cert), key)
    return folder


async def test_expired_and_foreign_certificates_are_refused(clients: Clients, tmp_path: pathlib.Path) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = _cert_with(
        clients.certs, "old-laptop", tmp_path / "expired", now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    )
    with pytest.raises(DeviceError, match="expired"):
        Client(clients.server.addr, expired, cache=False)
    # Bypassing the client's own check: the server refuses it at the handshake.
    dev = load_device(expired)
    channel = secure_channel(clients.server.addr, dev)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service_pb2_grpc.AgentNetStub(channel).ListAgents(service_pb2.ListAgentsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    await channel.close()

    foreign = pki.CertsDir(tmp_path / "foreign-ca")
    f_cert, f_key, _ = pki.ensure_ca(foreign)
    stranger = _cert_with(
        clients.certs,
        "laoxing-vps",
        tmp_path / "stranger",
        now - dt.timedelta(minutes=5),
        now + dt.timedelta(days=1),
        ca=(f_cert, f_key),
    )
    # It even claims an enrolled device's name; the server's CA does not vouch for it.
    (stranger / "ca.pem").write_bytes(clients.certs.ca_cert.read_bytes())
    dev = load_device(stranger)
    channel = secure_channel(clients.server.addr, dev)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service_pb2_grpc.AgentNetStub(channel).ListAgents(service_pb2.ListAgentsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    await channel.close()


async def test_server_rejects_forged_foreign_and_tampered_signatures(clients: Clients) -> None:
    a = await clients.live("laoxing-vps", "signer")
    await a.join("sig", create=True)
    mine = Signer(load_device(clients.device_dir("laoxing-vps")))
    other = Signer(load_device(clients.device_dir("xiaoxing-mac")))
    assert a.session is not None

    async def send(sm: events_pb2.SendMessage) -> AgentnetError:
        with pytest.raises(AgentnetError) as err:
            await a.session.request(events_pb2.ClientEvent(message=sm))  # type: ignore[union-attr]
        return err.value

    base = events_pb2.SendMessage(group_id="sig", client_msg_id="s1", content="transfer 10 coins")
    forged = events_pb2.SendMessage()
    forged.CopyFrom(base)
    forged.signature = b"\x30\x06\x02\x01\x01\x02\x01\x01"
    forged.sign_time.FromMicroseconds(1)
    assert (await send(forged)).reason == "SIGNATURE_INVALID"

    by_other = events_pb2.SendMessage()
    by_other.CopyFrom(base)
    other.sign_send(by_other, "signer")  # the right fields, the wrong device key
    assert (await send(by_other)).reason == "SIGNATURE_INVALID"

    tampered = events_pb2.SendMessage()
    tampered.CopyFrom(base)
    mine.sign_send(tampered, "signer")
    tampered.content = "transfer 99 coins"  # one byte changed after signing
    assert (await send(tampered)).reason == "SIGNATURE_INVALID"

    good = events_pb2.SendMessage()
    good.CopyFrom(base)
    mine.sign_send(good, "signer")
    reply = await a.session.request(events_pb2.ClientEvent(message=good))
    assert reply.message_ack.seq == 1
    assert [m.content for m in await a.history(group_id="sig")] == ["transfer 10 coins"]


async def test_recipient_flags_a_message_altered_in_the_database(clients: Clients) -> None:
    a = await clients.live("laoxing-vps", "writer")
    b = await clients.live("xiaoxing-mac", "reader")
    late = await clients.live("d4", "late-reader")
    legacy = await clients.live("d5", "legacy-reader")
    await a.join("log", create=True)
    for c in (b, late, legacy):
        await c.join("log")
    await late.close()  # offline: they will get the message by replay from the store
    await legacy.close()
    ack = await a.send("pay alice 10", group_id="log")
    [live] = await collect(b, "message", 1)
    assert b.verification(live) == Verification.VERIFIED
    assert await b.verify(live) == Verification.VERIFIED

    db = clients.server.db.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE message SET content = 'pay mallory 10' WHERE conv = 'group:log' AND seq = ?", (ack.seq,))
    [history] = await b.raw_history(group_id="log")
    assert history.content == "pay mallory 10"
    assert await b.verify(history) == Verification.INVALID
    assert await b.history(group_id="log") == [] and b.rejected == 1
    # By default a recipient never hands the altered message over: it gets MESSAGE_REJECTED instead.
    late2 = await clients.live("d4", "late-reader")
    rejected = await collect(late2, "error", 1)
    assert rejected[0].reason == "MESSAGE_REJECTED" and rejected[0].metadata["verification"] == "invalid"
    await a.send("signed and intact", group_id="log")
    [only] = await collect(late2, "message", 1)
    assert only.content == "signed and intact" and only.seq == ack.seq + 1
    assert late2.rejected == 1
    # Even the legacy opt-out (accept unsigned messages) refuses a signature that does not match.
    legacy2 = await clients.live("d5", "legacy-reader", accept_unsigned=True)
    [only] = await collect(legacy2, "message", 1)
    assert only.content == "signed and intact" and legacy2.rejected == 1


async def test_recipients_reject_unsigned_and_unknown_signers_and_report_them(clients: Clients) -> None:
    """Issue 12 finding 1: null the signature or change the signer after the server accepted the
    message; every recipient refuses it by default and tells the application."""
    a = await clients.live("laoxing-vps", "teller")
    seen: list[tuple[str, Verification]] = []
    b = await clients.live("xiaoxing-mac", "auditor", on_rejected=lambda m, v: seen.append((m.content, v)))
    legacy = await clients.live("d4", "old-script-reader", accept_unsigned=True)
    await a.join("ledger", create=True)
    await b.join("ledger")
    await legacy.join("ledger")
    await b.close()
    await legacy.close()
    acks = [await a.send(text, group_id="ledger") for text in ("unsigned later", "stranger later", "intact")]
    db = clients.server.db.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE message SET signature = NULL WHERE conv = 'group:ledger' AND seq = ?", (acks[0].seq,))
        conn.execute(
            "UPDATE message SET signer_fp = ? WHERE conv = 'group:ledger' AND seq = ?", ("ab" * 32, acks[1].seq)
        )
    b2 = await clients.live("xiaoxing-mac", "auditor", on_rejected=lambda m, v: seen.append((m.content, v)))
    errors = await collect(b2, "error", 2)
    [intact] = await collect(b2, "message", 1)
    assert intact.content == "intact" and b2.verification(intact) == Verification.VERIFIED
    assert [e.metadata["verification"] for e in errors] == ["unsigned", "unknown_signer"]
    assert all(e.reason == "MESSAGE_REJECTED" and "teller" in e.message for e in errors)
    assert seen == [("unsigned later", Verification.UNSIGNED), ("stranger later", Verification.UNKNOWN_SIGNER)]
    assert b2.rejected == 2
    assert b2.session is not None and [v for _, v in b2.session.rejected_messages] == [
        Verification.UNSIGNED,
        Verification.UNKNOWN_SIGNER,
    ]
    # History is checked the same way.
    assert [m.content for m in await b2.history(group_id="ledger")] == ["intact"]
    assert b2.rejected == 4
    # The explicit legacy opt-out lets the unsigned one through, flagged, and still refuses the stranger.
    legacy2 = await clients.live("d4", "old-script-reader", accept_unsigned=True)
    got = await collect(legacy2, "message", 2)
    assert [(m.content, legacy2.verification(m)) for m in got] == [
        ("unsigned later", Verification.UNSIGNED),
        ("intact", Verification.VERIFIED),
    ]
    assert legacy2.rejected == 1


async def test_send_rate_limit_triggers_and_recovers(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(sends_per_second=5, send_burst=5)
    cs = Clients(server.certs, server, server.workdir)
    try:
        c = await cs.make("laoxing-vps", connect=False)
        await c.register_agent(AgentProfile("chatty"))
        await c.join_group("noise", create=True)
        for i in range(5):
            await c.post(f"ok {i}", group_id="noise")
        with pytest.raises(AgentnetError) as err:
            await c.post("one too many", group_id="noise")
        assert (err.value.status, err.value.reason) == ("RESOURCE_EXHAUSTED", "SEND_RATE_LIMITED")
        assert "5 messages/s" in err.value.message and err.value.retry_after and err.value.retry_after <= 0.25
        await asyncio.sleep(err.value.retry_after + 0.05)
        await c.post("recovered", group_id="noise")
        # The live client backs off and retries by itself: all of these arrive, exactly once.
        live = await cs.live("laoxing-vps", "chatty")
        acks = await asyncio.gather(*(live.send(f"burst {i}", group_id="noise") for i in range(12)))
        assert sorted(a.seq for a in acks) == list(range(7, 19))
        history = await live.history(group_id="noise", limit=100)
        assert len({m.client_msg_id for m in history}) == len(history) == 18
    finally:
        await cs.close_all()


async def test_event_flood_is_bounded(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(events_per_second=50, event_burst=50)
    cs = Clients(server.certs, server, server.workdir)
    try:
        dev = load_device(cs.device_dir("laoxing-vps"))
        channel = secure_channel(server.addr, dev)
        call = service_pb2_grpc.AgentNetStub(channel).Session()
        for _ in range(400):
            await call.write(events_pb2.ClientEvent(heartbeat=events_pb2.Heartbeat()))
        limited = acks = 0
        while limited + acks < 400:
            ev = await asyncio.wait_for(call.read(), 10)
            kind = ev.WhichOneof("event")
            if kind == "error":
                assert ev.error.reason == "EVENT_RATE_LIMITED" and ev.error.retry_after.ToNanoseconds() > 0
                limited += 1
            elif kind == "heartbeat_ack":
                acks += 1
        assert limited > 0 and acks >= 50
        call.cancel()
        await channel.close()
        # The server is fine and other devices are unaffected.
        other = await cs.live("xiaoxing-mac", "calm")
        await other.join("ok", create=True)
        assert (await other.send("hello", group_id="ok")).seq == 1
    finally:
        await cs.close_all()


def test_csr_enrollment_keeps_the_key_on_the_device(server: ServerProc, tmp_path: pathlib.Path) -> None:
    device = tmp_path / "mac-mini"
    r = subprocess.run(
        [str(BIN / "agentnet"), "enroll-request", "mac-mini", "--out", str(device)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    key_before = (device / "key.pem").read_bytes()
    assert oct((device / "key.pem").stat().st_mode & 0o777) == "0o600"
    signed = tmp_path / "signed"
    r = subprocess.run(
        [
            str(BIN / "agentnet-server"),
            "enroll",
            "--certs",
            str(server.certs.root),
            "--db",
            server.db,
            "--csr",
            str(device / "request.csr"),
            "--device",
            "mac-mini",
            "--out",
            str(signed),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert not (signed / "key.pem").exists()  # the operator never had the key
    for name in ("cert.pem", "ca.pem"):
        (device / name).write_bytes((signed / name).read_bytes())
    assert (device / "key.pem").read_bytes() == key_before
    r = subprocess.run(
        [
            str(BIN / "agentnet"),
            "--server",
            server.addr,
            "--device-dir",
            str(device),
            "register",
            "mini-agent",
            "--name",
            "小金",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "owned by device mac-mini" in r.stdout
    r = subprocess.run(
        [
            str(BIN / "agentnet-server"),
            "enroll",
            "--certs",
            str(server.certs.root),
            "--db",
            server.db,
            "--csr",
            str(device / "request.csr"),
            "--device",
            "someone-else",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "not 'someone-else'" in r.stderr
    bad = tmp_path / "bad.csr"
    bad.write_text("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    r = subprocess.run(
        [
            str(BIN / "agentnet-server"),
            "enroll",
            "--certs",
            str(server.certs.root),
            "--db",
            server.db,
            "--csr",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "not a PEM certificate request" in r.stderr


def test_logs_name_devices_by_id_and_fingerprint_prefix_only(server: ServerProc) -> None:
    from tests.test_tools import run_cli

    assert run_cli(server, "laoxing-vps", "register", "logged").returncode == 0
    assert (
        run_cli(server, "laoxing-vps", "--agent", "logged", "tail", "--count", "1", "--timeout", "10").returncode == 0
    )
    logs = server.logs()
    fp = load_device(server.certs.device_dir("laoxing-vps")).fingerprint
    assert f"laoxing-vps/{fp[:12]}" in logs
    assert fp not in logs  # never the whole fingerprint, never key material
    assert "PRIVATE KEY" not in logs and "BEGIN CERTIFICATE" not in logs


async def test_a_signer_lookup_that_fails_for_now_loses_nothing(make_server) -> None:  # type: ignore[no-untyped-def]
    """The recipient's certificate lookup hits the read rate limit: the message is neither
    rejected nor lost; the session reconnects and verifies it when the server answers again."""
    server: ServerProc = make_server(reads_per_second=0.5, read_burst=1)
    cs = Clients(server.certs, server, server.workdir)
    try:
        a = await cs.live("laoxing-vps", "lookup-a")
        b = await cs.live("xiaoxing-mac", "lookup-b")
        reader = await cs.live("d4", "lookup-reader")
        for c in (a, b, reader):
            await c.join("lookups", create=c is a)
        await a.send("from a", group_id="lookups")
        await b.send("from b", group_id="lookups")  # a second signer: a second lookup, over the limit
        got = await collect(reader, "message", 2, timeout=30)
        assert [m.content for m in got] == ["from a", "from b"]
        assert [reader.verification(m) for m in got] == [Verification.VERIFIED] * 2
        assert reader.rejected == 0
    finally:
        await cs.close_all()

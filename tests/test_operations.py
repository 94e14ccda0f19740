"""Running the server as an operator: config file + environment + flags, one data folder, JSON
and audit logs without message text, certificate expiry warnings, certificate reload on SIGHUP."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from cryptography import x509

from agentnet_server import pki
from agentnet_server.process import ServerProcess, serve_args
from tests.conftest import Clients

BIN = pathlib.Path(sys.executable).parent


def server_cli(
    *args: str, env: dict[str, str] | None = None, cwd: pathlib.Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "agentnet-server"), *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "agentnet"), *args], capture_output=True, text=True, env=env, timeout=60)


def test_config_file_environment_and_flags(tmp_path: pathlib.Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTNET_")}
    (tmp_path / "agentnet.toml").write_text(
        'data_dir = "data"\ngrpc_addr = "0.0.0.0:6000"\nheartbeat_interval = 7.5\nsends_per_second = 20\n'
    )
    env = dict(clean, AGENTNET_CONFIG=str(tmp_path / "agentnet.toml"), AGENTNET_SENDS_PER_SECOND="30")
    r = server_cli("config", "--json", "--grpc-addr", "127.0.0.1:7000", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    settings, sources = out["settings"], out["sources"]
    # Relative paths in the file are relative to the file; the data folder holds db and certs.
    assert settings["data_dir"] == str(tmp_path / "data")
    assert settings["db"] == f"sqlite:///{tmp_path / 'data' / 'agentnet.db'}"
    assert settings["certs"] == str(tmp_path / "data" / "certs")
    assert settings["heartbeat_interval"] == 7.5 and sources["heartbeat_interval"].startswith("config ")
    assert settings["sends_per_second"] == 30.0 and sources["sends_per_second"] == "env AGENTNET_SENDS_PER_SECOND"
    assert settings["grpc_addr"] == "127.0.0.1:7000" and sources["grpc_addr"] == "flag"
    # The TOML the command prints is itself a valid config file that gives the same settings.
    r = server_cli("config", "--grpc-addr", "127.0.0.1:7000", env=env, cwd=tmp_path)
    (tmp_path / "effective.toml").write_text(r.stdout)
    r2 = server_cli("config", "--json", "--config", str(tmp_path / "effective.toml"), env=clean, cwd=tmp_path)
    assert json.loads(r2.stdout)["settings"] == settings, r2.stderr
    # Mistakes are one line naming the key or variable.
    (tmp_path / "bad.toml").write_text("heartbeat = 3\n")
    r = server_cli("config", "--config", str(tmp_path / "bad.toml"), env=clean)
    assert r.returncode == 2 and "unknown setting(s) heartbeat" in r.stderr and len(r.stderr.splitlines()) == 1
    r = server_cli("config", env=dict(clean, AGENTNET_REQUIRE_SIGNATURES="maybe"))
    assert r.returncode == 2 and "AGENTNET_REQUIRE_SIGNATURES='maybe' is not true or false" in r.stderr
    # An admin command run elsewhere does not make an empty database there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = server_cli("devices", env=clean, cwd=elsewhere)
    assert r.returncode == 2 and "no database at" in r.stderr and "--data-dir" in r.stderr
    assert list(elsewhere.iterdir()) == []


def _names_on(port: int, ca: pathlib.Path, alpn: str) -> list[str]:
    """The DNS names in the certificate the server shows on `port` now."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    ctx.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(n) for n in san.value.get_values_for_type(x509.DNSName)]


def test_logs_audit_expiry_warnings_and_sighup_reload(tmp_path: pathlib.Path) -> None:
    certs = pki.CertsDir(tmp_path / "certs")
    pki.ensure_server(certs, [])
    db = f"sqlite:///{tmp_path / 'data' / 'agentnet.db'}"
    for device, days in (("ops-laptop", "365"), ("short-lived", "5")):
        r = server_cli("certs", "--certs", str(certs.root), "--db", db, "--device", device, "--days", days)
        assert r.returncode == 0, r.stderr
    workdir = tmp_path / "srv"
    workdir.mkdir()
    srv = ServerProcess(workdir / "server.log", workdir)
    args = serve_args(
        certs.root, db, http_addr="127.0.0.1:0", log_level="DEBUG", log_format="json", heartbeat=1.0, grace=1.0
    )
    info = srv.start(args, workdir / "ready.json")
    grpc_port, http_port = int(info["grpc"].rsplit(":", 1)[1]), int(info["http"].rsplit(":", 1)[1])
    try:
        env = dict(
            os.environ,
            AGENTNET_SERVER=f"127.0.0.1:{grpc_port}",
            AGENTNET_DEVICE_DIR=str(certs.device_dir("ops-laptop")),
            AGENTNET_CACHE_DIR=str(tmp_path / "caches"),
        )
        env.pop("AGENTNET_AGENT", None)
        secret = "the launch code is 0451"
        for args in (
            ["register", "ops"],
            ["join", "ops-room", "--create"],
            ["send", "ops-room", secret],
            ["task", "create", secret, "--assignee", "ops", "--group", "ops-room"],
            ["leave", "ops-room"],
        ):
            assert cli(env, *args).returncode == 0, args
        assert _names_on(grpc_port, certs.ca_cert, "h2") == ["localhost"]
        pki.ensure_server(certs, ["reloaded.example.test"])  # re-issued with one more name
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "reloaded the server certificate" not in srv.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reloaded.example.test" in _names_on(grpc_port, certs.ca_cert, "h2")
        assert "reloaded.example.test" in _names_on(http_port, certs.ca_cert, "http/1.1")
        assert cli(env, "agents").returncode == 0  # the server still serves, with the new certificate
    finally:
        srv.stop()
    logs = srv.log.read_text()
    # Not even at DEBUG, nor a part of it ("0451" alone also turns up inside random hex ids).
    assert secret not in logs and "launch code" not in logs and "code is 0451" not in logs
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    messages = [r["message"] for r in records]
    assert any(m.startswith("message group:ops-room #1 from ops (device ops-laptop") for m in messages), messages
    assert any(m.startswith("task t-") and "created by ops" in m for m in messages), messages
    assert any("device short-lived: its certificate expires in" in m for m in messages), messages
    assert not any("device ops-laptop: its certificate" in m for m in messages)
    audit_file = tmp_path / "data" / "audit.log"
    assert stat.S_IMODE(audit_file.stat().st_mode) == 0o600
    actions = [json.loads(line)["audit"]["action"] for line in audit_file.read_text().splitlines()]
    assert actions == ["device.enroll", "device.enroll", "agent.register", "group.join", "group.leave"]


async def test_backup_under_load_restores_every_acknowledged_message(
    clients: Clients, make_server, tmp_path: pathlib.Path
) -> None:  # type: ignore[no-untyped-def]
    server = clients.server
    sender = await clients.live("laoxing-vps", "laoxing")
    await sender.join("load", create=True)
    acked: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def load() -> None:
        i = 0
        while not stop.is_set():
            text = f"load {i}"
            ack = await sender.send(text, group_id="load")
            acked.append((ack.seq, text))
            i += 1

    task = asyncio.create_task(load())
    while len(acked) < 50:
        await asyncio.sleep(0.02)
    out = tmp_path / "agentnet-backup.db"
    before = list(acked)  # acknowledged before the backup started
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "agentnet-server"),
        "backup",
        str(out),
        "--db",
        server.db,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert "backed up" in stdout.decode()
    while len(acked) < len(before) + 20:  # the load went on during and after the backup
        await asyncio.sleep(0.02)
    stop.set()
    await task
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # Restoring under the running server is refused; a backup is never overwritten.
    r = server_cli("restore", str(out), "--db", server.db, "--force")
    assert r.returncode == 2 and "in use by a running agentnet-server" in r.stderr
    assert server_cli("backup", str(out), "--db", server.db).returncode == 2
    # Restore into a new place and serve it: every message acknowledged before the backup is there.
    restored_db = f"sqlite:///{tmp_path / 'restored' / 'agentnet.db'}"
    r = server_cli("restore", str(out), "--db", restored_db)
    assert r.returncode == 0, r.stderr
    restored = make_server(db=restored_db)
    reader = await clients.make("laoxing-vps", connect=False, addr=restored.addr)
    history = await reader.history(group_id="load", agent_id="laoxing", limit=100_000)
    got = [(m.seq, m.content) for m in history]
    assert got[: len(before)] == before
    assert [seq for seq, _ in got] == list(range(1, len(got) + 1))  # gap-free
    assert set(got) <= set(acked)


async def test_health_port_answers_liveness_readiness_and_metrics(
    make_server: Any, certs: pki.CertsDir, tmp_path: pathlib.Path
) -> None:
    """The plain-HTTP health port (on by default): /healthz, /readyz and Prometheus /metrics that
    count a live session, no client certificate needed, and 404 for anything else."""
    srv = make_server()
    assert srv.health_port

    def get(path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.health_port}{path}", timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, "", exc.read().decode()

    assert get("/healthz")[::2] == (200, "ok\n")
    assert get("/readyz")[::2] == (200, "ready\n")
    live = Clients(certs, srv, tmp_path)
    try:
        await live.live("laoxing-vps", "laoxing")
        status, ctype, text = await asyncio.to_thread(get, "/metrics")
        assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
        assert "\nagentnet_sessions 1" in "\n" + text, text[:2000]
    finally:
        await live.close_all()
    assert get("/messages")[0] == 404

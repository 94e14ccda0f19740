"""Issue 12 findings 2 and 4: enrollment never takes over an existing device; revocation works for
devices the server never saw; the server learns of certificates issued on another CA host."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys

import pytest

from agentnet_client import AgentnetError, Client
from agentnet_server import pki
from tests.conftest import ServerProc, uid

BIN = pathlib.Path(sys.executable).parent


def server_cli(server: ServerProc, *args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "agentnet-server"), args[0], "--certs", str(server.certs.root), "--db", db or server.db]
    return subprocess.run([*cmd, *args[1:]], capture_output=True, text=True, timeout=60)


def request(tmp: pathlib.Path, device: str) -> pathlib.Path:
    """`agentnet enroll-request` on a (new) device: key.pem stays there, request.csr goes to the CA."""
    folder = tmp / f"dev-{device}-{uid('k')}"
    r = subprocess.run(
        [str(BIN / "agentnet"), "enroll-request", device, "--out", str(folder)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return folder


def take_back(folder: pathlib.Path, signed: pathlib.Path) -> pathlib.Path:
    for name in ("cert.pem", "ca.pem"):
        (folder / name).write_bytes((signed / name).read_bytes())
    return folder


async def calls(server: ServerProc, folder: pathlib.Path) -> str:
    """ "ok" when the device in `folder` may call the server, else the refusal's reason."""
    c = Client(server.addr, folder, None, cache=False)
    await c.open(connect=False)
    try:
        await c.list_agents()
        return "ok"
    except AgentnetError as exc:
        return exc.reason or exc.status
    finally:
        await c.close()


async def eventually(server: ServerProc, folder: pathlib.Path, want: str, timeout: float = 5.0) -> None:
    """The server re-reads revocations every second: wait for the answer to become `want`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (got := await calls(server, folder)) != want:
        assert asyncio.get_running_loop().time() < deadline, f"still {got!r}, wanted {want!r}"
        await asyncio.sleep(0.2)


async def test_a_request_naming_an_enrolled_device_is_refused_without_rotate(
    server: ServerProc, tmp_path: pathlib.Path
) -> None:
    name = uid("mac")
    real = request(tmp_path, name)
    r = server_cli(server, "enroll", "--csr", str(real / "request.csr"), "--out", str(tmp_path / "s1"))
    assert r.returncode == 0, r.stderr
    take_back(real, tmp_path / "s1")
    assert await calls(server, real) == "ok"

    # Someone else asks for a certificate with the same name: refused, nothing written.
    thief = request(tmp_path, name)
    r = server_cli(server, "enroll", "--csr", str(thief / "request.csr"), "--out", str(tmp_path / "s2"))
    assert r.returncode != 0 and "already enrolled" in r.stderr and "--rotate" in r.stderr, r.stderr
    assert not (tmp_path / "s2" / "cert.pem").exists()
    # The default folder of an existing device is never overwritten either.
    d6_cert = (server.certs.device_dir("d6") / "cert.pem").read_bytes()
    other = request(tmp_path, "d6")
    r = server_cli(server, "enroll", "--csr", str(other / "request.csr"))
    assert r.returncode != 0 and "cert.pem exists" in r.stderr, r.stderr
    assert (server.certs.device_dir("d6") / "cert.pem").read_bytes() == d6_cert
    # Even with --rotate, never next to a key.pem the new certificate does not belong to.
    r = server_cli(server, "enroll", "--csr", str(other / "request.csr"), "--rotate")
    assert r.returncode != 0 and "another device key" in r.stderr, r.stderr
    assert (server.certs.device_dir("d6") / "cert.pem").read_bytes() == d6_cert
    # An explicit rotate replaces the key: the earlier certificate is revoked.
    r = server_cli(server, "enroll", "--csr", str(thief / "request.csr"), "--out", str(tmp_path / "s3"), "--rotate")
    assert r.returncode == 0 and "revoked its 1 earlier certificate" in r.stdout, r.stderr + r.stdout
    take_back(thief, tmp_path / "s3")
    await eventually(server, real, "DEVICE_REVOKED")
    assert await calls(server, thief) == "ok"


async def test_a_revoked_device_is_not_brought_back_by_a_request(server: ServerProc, tmp_path: pathlib.Path) -> None:
    name = uid("lost")
    dev = request(tmp_path, name)
    assert server_cli(server, "enroll", "--csr", str(dev / "request.csr"), "--out", str(tmp_path / "a")).returncode == 0
    take_back(dev, tmp_path / "a")
    assert server_cli(server, "revoke", name).returncode == 0
    await eventually(server, dev, "DEVICE_REVOKED")
    again = request(tmp_path, name)
    r = server_cli(server, "enroll", "--csr", str(again / "request.csr"), "--out", str(tmp_path / "b"))
    assert r.returncode != 0 and "was revoked" in r.stderr and "--rotate" in r.stderr, r.stderr
    r = server_cli(server, "enroll", "--csr", str(again / "request.csr"), "--out", str(tmp_path / "b"), "--rotate")
    assert r.returncode == 0, r.stderr
    take_back(again, tmp_path / "b")
    await eventually(server, again, "ok")
    assert await calls(server, dev) == "DEVICE_REVOKED"  # the old certificate stays revoked


def test_certs_device_refuses_an_enrolled_id_and_rotate_revokes(server: ServerProc) -> None:
    name = uid("box")
    assert server_cli(server, "certs", "--device", name).returncode == 0
    first = pki.load_cert(server.certs.device_dir(name) / "cert.pem")
    r = server_cli(server, "certs", "--device", name)
    assert r.returncode != 0 and "already enrolled" in r.stderr
    assert pki.load_cert(server.certs.device_dir(name) / "cert.pem") == first
    r = server_cli(server, "certs", "--device", name, "--rotate")
    assert r.returncode == 0 and "revoked its 1 earlier certificate" in r.stdout, r.stdout + r.stderr
    r = server_cli(server, "devices", "--json")
    [entry] = [d for d in json.loads(r.stdout) if d["id"] == name]
    assert [c["revoked"] for c in entry["certificates"]] == [True, False]
    assert entry["certificates"][0]["fingerprint"] == pki.fingerprint(first)


def _issue_elsewhere(server: ServerProc, tmp: pathlib.Path, name: str) -> pathlib.Path:
    """A certificate made on the CA host, whose store the server never shares."""
    ca_db = f"sqlite:///{tmp / 'ca-host.db'}"
    dev = request(tmp, name)
    r = server_cli(server, "enroll", "--csr", str(dev / "request.csr"), "--out", str(tmp / f"o-{name}"), db=ca_db)
    assert r.returncode == 0, r.stderr
    return take_back(dev, tmp / f"o-{name}")


async def test_revoke_by_name_fingerprint_or_file_for_devices_never_seen(
    server: ServerProc, tmp_path: pathlib.Path
) -> None:
    frank = _issue_elsewhere(server, tmp_path, uid("frank"))
    gina = _issue_elsewhere(server, tmp_path, uid("gina"))
    hank = _issue_elsewhere(server, tmp_path, uid("hank"))
    frank_id = pki.device_id_of(pki.load_cert(frank / "cert.pem"))
    r = server_cli(server, "revoke", frank_id)
    assert r.returncode == 0 and "not enrolled" not in r.stderr, r.stderr
    gina_fp = pki.fingerprint(pki.load_cert(gina / "cert.pem"))
    assert server_cli(server, "revoke", gina_fp.upper()).returncode == 0
    assert server_cli(server, "revoke", str(hank / "cert.pem")).returncode == 0
    await asyncio.sleep(1.5)  # one revocation poll
    for folder in (frank, gina, hank):
        assert await calls(server, folder) == "DEVICE_REVOKED"
    # The revocations hold across a restart.
    server.restart()
    for folder in (frank, gina, hank):
        assert await calls(server, folder) == "DEVICE_REVOKED"
    r = server_cli(server, "revoke", "not a device!")
    assert r.returncode != 0 and "not valid" in r.stderr and "Traceback" not in r.stderr


async def test_the_server_learns_certificates_issued_elsewhere(server: ServerProc, tmp_path: pathlib.Path) -> None:
    name = uid("ivy")
    ivy = _issue_elsewhere(server, tmp_path, name)
    registry = server.certs.root / "issued.pem"
    assert pki.fingerprint(pki.load_cert(ivy / "cert.pem")) in {
        pki.fingerprint(c)
        for c in __import__("cryptography.x509", fromlist=["x"]).load_pem_x509_certificates(registry.read_bytes())
    }
    r = server_cli(server, "import-certs", str(registry))
    assert r.returncode == 0 and name in r.stdout, r.stderr
    devices = json.loads(server_cli(server, "devices", "--json").stdout)
    [entry] = [d for d in devices if d["id"] == name]
    assert len(entry["certificates"]) == 1 and not entry["revoked"]
    # A certificate of another CA is refused and nothing is imported.
    foreign = pki.CertsDir(tmp_path / "foreign")
    pki.ensure_server(foreign, [])
    bundle = pki.issue_device(foreign, "mallory")
    r = server_cli(server, "import-certs", str(bundle.folder / "cert.pem"))
    assert r.returncode != 0 and "not issued by this network's CA" in r.stderr
    assert "mallory" not in server_cli(server, "devices").stdout
    # And a device is recorded on its first authenticated connection anyway.
    seen = _issue_elsewhere(server, tmp_path, uid("jay"))
    assert await calls(server, seen) == "ok"
    assert pki.device_id_of(pki.load_cert(seen / "cert.pem")) in server_cli(server, "devices").stdout


@pytest.mark.parametrize("bad", ["../etc", "UPPER"])
def test_enroll_refuses_bad_device_ids_cleanly(server: ServerProc, bad: str) -> None:
    r = server_cli(server, "certs", "--device", bad)
    assert r.returncode != 0 and "Traceback" not in r.stderr

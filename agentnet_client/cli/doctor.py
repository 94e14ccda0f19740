"""`agentnet doctor`: check this device's set-up step by step and say how to fix each problem."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import socket
import ssl
import tempfile
import time
from typing import Any

from cryptography import x509

from ..client import settings_from_env
from ..device import Device, DeviceError, load_device
from ..errors import AgentnetError
from .common import EXPIRY_WARNING_DAYS, Add, acting, make_client
from .output import emit, paint

MAX_SKEW_SECONDS = 5.0


@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


def _days_left(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    ]


def check_device(folder: Any) -> tuple[list[Check], Device | None]:
    try:
        device = load_device(folder)
    except DeviceError as exc:
        return [Check("device folder", False, str(exc), "enroll the device (see README, Walk-through step 1)")], None
    checks = [Check("device folder", True, f"{device.folder} (device {device.id})")]
    cert, left = device.cert, _days_left(device.cert)
    if left <= 0:
        checks.append(
            Check(
                "certificate",
                False,
                f"expired {cert.not_valid_after_utc:%Y-%m-%d}",
                f"on the server: agentnet-server certs --device {device.id} --force, then copy the folder here",
            )
        )
    elif dt.datetime.now(dt.UTC) < cert.not_valid_before_utc:
        checks.append(
            Check(
                "certificate",
                False,
                f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z",
                "this machine's clock is behind: turn on time sync (timedatectl set-ntp true)",
            )
        )
    else:
        soon = left < EXPIRY_WARNING_DAYS
        checks.append(
            Check(
                "certificate",
                True,
                f"valid until {cert.not_valid_after_utc:%Y-%m-%d} ({left:.0f} days)",
                f"renew soon: agentnet-server certs --device {device.id} --force on the server" if soon else "",
                warning=soon,
            )
        )
    try:
        cert.verify_directly_issued_by(device.ca)
        checks.append(Check("CA", True, "the certificate is signed by the CA in ca.pem"))
    except Exception as exc:  # noqa: BLE001 - any failure means the pair does not match
        checks.append(
            Check(
                "CA",
                False,
                f"cert.pem is not signed by the CA in ca.pem ({type(exc).__name__})",
                "copy cert.pem and ca.pem from the same enrollment (certs/devices/<id>/ on the server)",
            )
        )
    return checks, device


def check_network(server: str, device: Device, server_name: str | None, timeout: float) -> list[Check]:
    host, _, port_text = server.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit():
        return [Check("server address", False, f"{server!r} is not HOST:PORT", "set --server or AGENTNET_SERVER")]
    port = int(port_text)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        return [Check("server reachable", False, f"cannot resolve {host!r}", "check --server / AGENTNET_SERVER")]
    except ConnectionRefusedError:
        return [
            Check(
                "server reachable",
                False,
                f"nothing listens on {server}",
                "start agentnet-server there, or fix the port in --server / AGENTNET_SERVER (default 50051)",
            )
        ]
    except OSError as exc:
        return [Check("server reachable", False, f"{server}: {exc.strerror or exc}", "check the address and firewalls")]
    checks = [Check("server reachable", True, f"{server} accepts connections")]
    name = server_name or host
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(device.key_pem)
        with open(cert_file, "wb") as f:
            f.write(device.cert_pem)
        ctx = ssl.create_default_context(cadata=device.ca_pem.decode())
        ctx.load_cert_chain(cert_file, key_file)
        ctx.check_hostname = False  # checked below, with the names shown
        ctx.set_alpn_protocols(["h2"])
        try:
            sock.settimeout(timeout)
            with ctx.wrap_socket(sock, server_hostname=name) as tls:
                der = tls.getpeercert(binary_form=True)
        except ssl.SSLCertVerificationError as exc:
            return [
                *checks,
                Check(
                    "server certificate",
                    False,
                    f"not signed by this device's CA ({exc.verify_message})",
                    "copy ca.pem from the server's certs/ folder into the device folder",
                ),
            ]
        except (ssl.SSLError, OSError) as exc:
            return [
                *checks,
                Check(
                    "TLS handshake",
                    False,
                    f"failed: {exc}",
                    "is this the agentnet gRPC port (default 50051), not the REST port or another service?",
                ),
            ]
        finally:
            sock.close()
    assert der is not None
    server_cert = x509.load_der_x509_certificate(der)
    names = _names(server_cert)
    if name in names:
        checks.append(Check("server name", True, f"{name!r} is in the server certificate"))
    else:
        checks.append(
            Check(
                "server name",
                False,
                f"{name!r} is not in the server certificate (it names {', '.join(names)})",
                f"connect by one of those names, pass --server-name, or on the server run "
                f"`make certs HOST={name}` and restart it",
            )
        )
    left = _days_left(server_cert)
    soon = left < EXPIRY_WARNING_DAYS
    checks.append(
        Check(
            "server certificate",
            left > 0,
            f"valid until {server_cert.not_valid_after_utc:%Y-%m-%d} ({left:.0f} days)",
            "on the server: make certs (it renews a server certificate that expires within 30 days), "
            "then restart it or send it SIGHUP"
            if soon
            else "",
            warning=soon,
        )
    )
    return checks


async def check_service(ns: argparse.Namespace) -> list[Check]:
    """The server answers this device, and its clock agrees with ours."""
    checks: list[Check] = []
    try:
        async with make_client(ns) as c:
            agents = await c.list_agents()
            mine = [a.id for a in agents if c.device.id in a.devices]
            checks.append(
                Check(
                    "server answers",
                    True,
                    f"{len(agents)} agents; this device acts as {', '.join(mine) or 'none yet'}",
                    "" if mine else "register one: agentnet register ID --name NAME",
                )
            )
            agent = acting(ns) or (mine[0] if len(mine) == 1 else "")
    except AgentnetError as exc:
        return [Check("server answers", False, f"{exc.status}: {exc.message}", "see the message")]
    if not agent:
        checks.append(Check("clock", True, "not checked: give --agent to compare clocks with the server"))
        return checks
    async with make_client(ns, agent=agent) as c:
        before = time.time()
        try:
            await c.wait_live(timeout=ns.connect_timeout or 10.0)
        except (AgentnetError, TimeoutError) as exc:
            checks.append(Check("clock", False, f"could not open a session: {exc}", "see the message"))
            return checks
        after = time.time()
        reg = c.session.registered if c.session is not None else None
    if reg is None:
        return checks
    skew = reg.server_time.ToMicroseconds() / 1e6 - (before + after) / 2
    ok = abs(skew) <= MAX_SKEW_SECONDS
    checks.append(
        Check(
            "clock",
            ok,
            f"{abs(skew):.1f} s {'ahead of' if skew < 0 else 'behind'} the server",
            ""
            if ok
            else "turn on time sync on this machine and on the server (timedatectl set-ntp true); "
            "signatures with a far-off time are refused",
        )
    )
    return checks


async def cmd_doctor(ns: argparse.Namespace) -> int:
    checks: list[Check] = []
    try:
        server, folder = settings_from_env(ns.server, ns.device_dir)
    except AgentnetError as exc:
        checks.append(Check("device folder", False, exc.message, "set AGENTNET_DEVICE_DIR or --device-dir"))
        server, folder = "", None
    device = None
    if folder is not None:
        found, device = check_device(folder)
        checks += found
    if device is not None:
        timeout = ns.connect_timeout or 10.0
        net = await asyncio.to_thread(check_network, server, device, ns.server_name, timeout)
        checks += net
        if all(c.ok for c in checks):
            checks += await check_service(ns)

    def human() -> None:
        for c in checks:
            mark = paint("!", "yellow") if c.ok and c.warning else paint("✓", "green") if c.ok else paint("✗", "red")
            print(f"{mark} {c.name:<19} {c.detail}")
            if c.fix:
                print(f"  {'':<19} fix: {c.fix}")

    emit(ns, [dataclasses.asdict(c) for c in checks], human)
    return 0 if all(c.ok for c in checks) else 1


def register(add: Add) -> None:
    add("doctor", cmd_doctor, "check the device folder, certificates, server, its name and the clock; say how to fix")

"""A device folder (cert.pem, key.pem, ca.pem) and the mTLS channel built from it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import stat
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_SERVER = "127.0.0.1:50051"


class DeviceError(Exception):
    """The device folder is missing, unreadable, expired or insecure; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Device:
    """The credentials of one enrolled device."""

    folder: pathlib.Path
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def id(self) -> str:
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem)

    def check_valid(self, now: dt.datetime | None = None) -> None:
        now = now or dt.datetime.now(dt.UTC)
        if now > self.cert.not_valid_after_utc:
            raise DeviceError(
                f"the certificate of device {self.id!r} in {self.folder} expired at "
                f"{self.cert.not_valid_after_utc.isoformat()}; ask the operator to enroll the device again"
            )
        if now < self.cert.not_valid_before_utc:
            raise DeviceError(
                f"the certificate of device {self.id!r} is not valid before "
                f"{self.cert.not_valid_before_utc.isoformat()}; check this machine's clock"
            )


def load_device(folder: str | os.PathLike[str]) -> Device:
    path = pathlib.Path(folder)
    if not path.is_dir():
        raise DeviceError(
            f"device folder {path} does not exist; enroll with `make certs DEVICE=<id>` on the server and copy "
            "certs/devices/<id>/ here (or set AGENTNET_DEVICE_DIR)"
        )
    files = {name: path / name for name in ("cert.pem", "key.pem", "ca.pem")}
    missing = [n for n, p in files.items() if not p.exists()]
    if missing:
        raise DeviceError(f"device folder {path} lacks {', '.join(missing)}")
    mode = stat.S_IMODE(files["key.pem"].stat().st_mode)
    if mode & 0o077:
        raise DeviceError(
            f"{files['key.pem']} has mode {mode:04o}: the device key must not be readable by others. "
            f"Fix it with: chmod 600 {files['key.pem']}"
        )
    cert_pem, key_pem, ca_pem = (files[n].read_bytes() for n in ("cert.pem", "key.pem", "ca.pem"))
    key_path = files["key.pem"]
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        x509.load_pem_x509_certificate(ca_pem)
    except TypeError:
        # cryptography's answer to a key protected by a passphrase (no password given).
        raise DeviceError(
            f"{key_path} is encrypted with a passphrase, which the gRPC channel cannot use; write it unencrypted "
            f"with: (umask 077; openssl pkey -in {key_path} -out {key_path}.plain) && mv {key_path}.plain {key_path}"
        ) from None
    except UnsupportedAlgorithm as exc:
        raise DeviceError(f"device folder {path} holds a key or certificate of an unsupported kind: {exc}") from None
    except ValueError as exc:
        raise DeviceError(f"device folder {path} holds an unreadable certificate or key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise DeviceError(f"{key_path} is not an EC key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise DeviceError(f"{key_path} does not belong to {files['cert.pem']}")
    return Device(path, cert_pem, key_pem, ca_pem, cert, key)


def channel_options(keepalive: float = 10.0) -> list[tuple[str, Any]]:
    """Client transport settings consistent with the server's ping policy (docs/architecture.md, Transport notes)."""
    return [
        ("grpc.keepalive_time_ms", int(keepalive * 1000)),
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.http2.ping_timeout_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        # Despite its name, gRPC core uses this as the deadline of one connection attempt (TCP
        # connect + TLS handshake + HTTP/2 settings), not as a backoff. A small value cuts every
        # handshake that takes longer: over a long link (two round trips of 150 ms) or in a
        # reconnect storm the channel then never connects ("Handshake read failed"). A session's
        # own watchdog (connect_timeout, 10 s) gives up on a dial that hangs sooner.
        ("grpc.min_reconnect_backoff_ms", 20_000),
        ("grpc.max_reconnect_backoff_ms", 5000),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.enable_retries", 0),
    ]


def secure_channel(
    server: str, device: Device, server_name: str | None = None, keepalive: float = 10.0
) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=device.ca_pem, private_key=device.key_pem, certificate_chain=device.cert_pem
    )
    options = channel_options(keepalive)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(server, creds, options=options)

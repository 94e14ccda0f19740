"""The network's certificate authority: CA, server certificate, device enrollment (P-256)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import pathlib
import re
import stat

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .records import ID_RE

CA_DAYS = 3650
SERVER_DAYS = 825
DEVICE_DAYS = 365
# Certificates are valid from a little before "now" so a device with a slow clock accepts them.
BACKDATE = dt.timedelta(minutes=5)


class PkiError(Exception):
    """A certificate or key problem, with a message that says how to fix it."""


@dataclasses.dataclass(frozen=True)
class DeviceBundle:
    """A device folder: cert.pem, key.pem (absent for CSR-signed devices), ca.pem."""

    device_id: str
    folder: pathlib.Path
    cert: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


def check_id(kind: str, value: str) -> str:
    if not ID_RE.match(value or ""):
        raise PkiError(
            f"{kind} {value!r} is not valid: use 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: Ed25519 keys fail the TLS handshake in grpc (docs/architecture.md, Transport notes).
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private(path: pathlib.Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the first byte (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def check_private_permissions(path: pathlib.Path) -> None:
    """Refuse a key that group or others can read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PkiError(
            f"{path} has mode {mode:04o}: a private key must not be readable by group or "
            f"others. Fix it with: chmod 600 {path}"
        )


def load_cert(path: pathlib.Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise PkiError(f"{path} does not exist; run `make certs` first") from None
    except ValueError as exc:
        raise PkiError(f"{path} is not a PEM certificate: {exc}") from None


def load_key(path: pathlib.Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise PkiError(f"{path} does not exist; run `make certs` first") from None
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PkiError(f"{path} must be an EC P-256 key")
    return key


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    start = now() - BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


@dataclasses.dataclass(frozen=True)
class CertsDir:
    """The layout of a certificates folder (docs/architecture.md, Conventions)."""

    root: pathlib.Path

    @property
    def ca_cert(self) -> pathlib.Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> pathlib.Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> pathlib.Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> pathlib.Path:
        return self.root / "server.key"

    def device_dir(self, device_id: str) -> pathlib.Path:
        return self.root / "devices" / check_id("device id", device_id)


def ensure_ca(certs: CertsDir) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    """Load the CA, or create it when absent. Returns (cert, key, created)."""
    if certs.ca_cert.exists() and certs.ca_key.exists():
        check_private_permissions(certs.ca_key)
        return load_cert(certs.ca_cert), load_key(certs.ca_key), False
    if certs.ca_cert.exists() != certs.ca_key.exists():
        raise PkiError(
            f"found only one of {certs.ca_cert} and {certs.ca_key}; restore the other or move "
            "both away to create a new CA (every device must then be enrolled again)"
        )
    certs.root.mkdir(parents=True, exist_ok=True)
    key = new_key()
    name = _name(f"agentnet CA {os.urandom(4).hex()}", "agentnet")
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    write_private(certs.ca_key, key_pem(key))
    write_public(certs.ca_cert, cert_pem(cert))
    return cert, key, True


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_agreement=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not re.match(r"^[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})$", host):
                raise PkiError(f"server host {host!r} is neither an IP address nor a DNS name") from None
            out.append(x509.DNSName(host))
    return out


def server_hosts(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    ]


def ensure_server(certs: CertsDir, hosts: list[str] | None = None) -> tuple[x509.Certificate, bool]:
    """Load the server certificate, or issue one (SANs: localhost, 127.0.0.1, ::1 + hosts).

    An existing certificate is re-issued when it lacks a requested host or expires within 30 days.
    """
    hosts = hosts or []
    ca_cert, ca_key, _ = ensure_ca(certs)
    if certs.server_cert.exists() and certs.server_key.exists():
        check_private_permissions(certs.server_key)
        cert = load_cert(certs.server_cert)
        have = set(server_hosts(cert))
        fresh = cert.not_valid_after_utc - now() > dt.timedelta(days=30)
        signed_by_ca = cert.issuer == ca_cert.subject
        if fresh and signed_by_ca and all(_norm_host(h) in have for h in hosts):
            return cert, False
        hosts = sorted(set(hosts) | {h for h in have if h not in ("localhost", "127.0.0.1", "::1")})
    key = new_key()
    cert = (
        _builder(_name("agentnet server", "agentnet"), ca_cert.subject, key.public_key(), SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private(certs.server_key, key_pem(key))
    write_public(certs.server_cert, cert_pem(cert))
    return cert, True


def _norm_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate request: {exc}") from None
    if not csr.is_signature_valid:
        raise PkiError("the certificate request's signature does not match its key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise PkiError("the certificate request must be for an EC P-256 key (TLS refuses others)")
    return csr


def csr_device_id(csr: x509.CertificateSigningRequest) -> str:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise PkiError("the certificate request has no common name (the device id)")
    return check_id("device id", str(names[0].value))


def sign_device(
    certs: CertsDir,
    device_id: str,
    public_key: ec.EllipticCurvePublicKey,
    days: int = DEVICE_DAYS,
) -> x509.Certificate:
    """Issue a client certificate for a device: CN = device id, clientAuth only."""
    check_id("device id", device_id)
    if days < 1 or days > CA_DAYS:
        raise PkiError(f"device certificate lifetime must be 1-{CA_DAYS} days, got {days}")
    ca_cert, ca_key, _ = ensure_ca(certs)
    return (
        _builder(_name(device_id, "agentnet device"), ca_cert.subject, public_key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def write_device_folder(
    folder: pathlib.Path,
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    if key is not None:
        write_private(folder / "key.pem", key_pem(key))
    write_public(folder / "cert.pem", cert_pem(cert))
    write_public(folder / "ca.pem", cert_pem(ca_cert))


def issue_device(certs: CertsDir, device_id: str, days: int = DEVICE_DAYS) -> DeviceBundle:
    """Enroll a device on the CA host: new key + certificate in certs/devices/<id>/."""
    folder = certs.device_dir(device_id)
    key = new_key()
    cert = sign_device(certs, device_id, key.public_key(), days)
    write_device_folder(folder, cert, load_cert(certs.ca_cert), key)
    return DeviceBundle(device_id, folder, cert)


def device_id_of(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise PkiError("certificate has no common name")
    return str(names[0].value)


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate, at: dt.datetime | None = None) -> None:
    """Check that cert was signed by ca_cert and is valid at `at` (default now)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PkiError(
            f"certificate for {device_id_of(cert)!r} was not issued by this network's CA: {exc or type(exc).__name__}"
        ) from None
    at = at or now()
    if at < cert.not_valid_before_utc:
        raise PkiError(
            f"certificate for {device_id_of(cert)!r} is not valid before {cert.not_valid_before_utc.isoformat()}"
        )
    if at > cert.not_valid_after_utc:
        raise PkiError(f"certificate for {device_id_of(cert)!r} expired at {cert.not_valid_after_utc.isoformat()}")

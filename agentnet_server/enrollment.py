"""Issuing, rotating, revoking and importing device certificates against the store.

The rules (SECURITY.md "Enrolling a device", "Rotating", "Revoking"):
- a device id that is already enrolled (or was revoked) is never issued a certificate again
  without an explicit rotate, and a rotate revokes every earlier certificate of that device;
- an existing cert.pem is never overwritten without that rotate, and never next to a key.pem it
  does not match;
- revocation works by device id or certificate fingerprint for devices the store never saw;
- certificates issued on another CA host are recorded by importing the CA host's registry
  (certs/issued.pem) or, at the latest, on the device's first authenticated connection.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from . import pki
from .store import enrollment as q
from .store import ops
from .store.db import Database

FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")


class EnrollmentRefused(pki.PkiError):
    """Issuing this certificate would take over an existing device; the message says what to do."""


def registry(certs: pki.CertsDir) -> pathlib.Path:
    """Every certificate this CA host issued, as a PEM bundle (public data)."""
    return certs.root / "issued.pem"


def _record(db: Database, cert: x509.Certificate, enrolled: bool) -> None:
    db.write_sync(
        ops.record_device_cert,
        pki.device_id_of(cert),
        pki.fingerprint(cert),
        format(cert.serial_number, "x"),
        int(cert.not_valid_after_utc.timestamp() * 1e6),
        pki.cert_pem(cert).decode(),
        enrolled,
    )


def _check_takeover(db: Database, folder: pathlib.Path, device_id: str, rotate: bool) -> None:
    state = db.read_sync(q.enrolled, device_id)
    on_disk = (folder / "cert.pem").exists()
    if rotate:
        return
    if state.revoked:
        raise EnrollmentRefused(
            f"device {device_id!r} was revoked; issuing it a certificate again needs --rotate "
            "(every earlier certificate of it stays revoked)"
        )
    if state.active or on_disk:
        where = f" ({folder}/cert.pem exists)" if on_disk else ""
        fps = ", ".join(fp[:12] + "…" for fp in state.active) or "in the certificates folder"
        raise EnrollmentRefused(
            f"device {device_id!r} is already enrolled (certificate {fps}){where}; a new certificate for it "
            "would let its holder act as that device. If this really replaces the device's key, add --rotate "
            "(`certs` also takes --force): its current certificates are revoked"
        )


def _check_folder(folder: pathlib.Path, public_key: ec.EllipticCurvePublicKey) -> None:
    """Never leave a device folder whose key.pem does not belong to its cert.pem."""
    key_file = folder / "key.pem"
    if key_file.exists():
        mine = pki.load_key(key_file).public_key().public_numbers()
        if mine != public_key.public_numbers():
            raise EnrollmentRefused(
                f"{folder} holds another device key (key.pem); write this certificate elsewhere with --out"
            )


def _append_registry(certs: pki.CertsDir, cert: x509.Certificate) -> None:
    path = registry(certs)
    with open(path, "ab") as f:
        f.write(pki.cert_pem(cert))
    path.chmod(0o644)


@dataclasses.dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    folder: pathlib.Path
    revoked: int  # earlier certificates of the device revoked by the rotate


def issue_new(db: Database, certs: pki.CertsDir, device_id: str, days: int, rotate: bool) -> Issued:
    """`agentnet-server certs --device`: new key and certificate in certs/devices/<id>/."""
    folder = certs.device_dir(device_id)
    _check_takeover(db, folder, device_id, rotate)
    bundle = pki.issue_device(certs, device_id, days)
    revoked = db.write_sync(q.rotate, device_id)
    _record(db, bundle.cert, True)
    _append_registry(certs, bundle.cert)
    return Issued(bundle.cert, folder, revoked)


def sign_request(
    db: Database,
    certs: pki.CertsDir,
    csr: x509.CertificateSigningRequest,
    out: pathlib.Path | None,
    days: int,
    rotate: bool,
) -> Issued:
    """`agentnet-server enroll --csr`: sign a request; the private key stays on the device."""
    device_id = pki.csr_device_id(csr)
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)  # load_csr checked it
    folder = out or certs.device_dir(device_id)
    _check_takeover(db, folder, device_id, rotate)
    if out is not None and (out / "cert.pem").exists() and not rotate:
        raise EnrollmentRefused(f"{out}/cert.pem exists; choose another --out (or --rotate to replace it)")
    _check_folder(folder, public_key)
    cert = pki.sign_device(certs, device_id, public_key, days)
    pki.write_device_folder(folder, cert, pki.load_cert(certs.ca_cert), None)
    revoked = db.write_sync(q.rotate, device_id)
    _record(db, cert, True)
    _append_registry(certs, cert)
    return Issued(cert, folder, revoked)


def revoke(db: Database, target: str) -> str:
    """Revoke by device id, certificate fingerprint (64 hex digits) or certificate file; works for
    devices this store never saw. Returns a sentence saying what was revoked."""
    path = pathlib.Path(target)
    if target.endswith(".pem") and path.exists():
        cert = pki.load_cert(path)
        fp = pki.fingerprint(cert)
        db.write_sync(q.revoke_fingerprint, fp, pki.device_id_of(cert))
        return f"certificate {fp[:16]}… of device {pki.device_id_of(cert)!r}"
    fp = target.lower().replace(":", "")
    if FINGERPRINT_RE.match(fp):
        device = db.write_sync(q.revoke_fingerprint, fp)
        return f"certificate {fp[:16]}…" + (f" of device {device!r}" if device else " (not seen yet)")
    pki.check_id("device id", target)
    n = db.write_sync(q.revoke_name, target)
    return f"device {target!r} ({n} known certificate(s); any other certificate naming it too)"


def import_registry(db: Database, certs: pki.CertsDir, paths: list[pathlib.Path]) -> list[x509.Certificate]:
    """Record certificates issued on another CA host (its issued.pem, or device cert.pem files).
    Each must chain to this network's CA; nothing is recorded when one does not."""
    ca = pki.load_cert(certs.ca_cert)
    found: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise pki.PkiError(f"cannot read {path}: {exc.strerror}") from None
        try:
            batch = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise pki.PkiError(f"{path} holds no PEM certificates") from None
        for cert in batch:
            pki.check_id("device id", pki.device_id_of(cert))
            try:
                cert.verify_directly_issued_by(ca)
            except Exception:  # noqa: BLE001 - any failure: not ours
                raise pki.PkiError(
                    f"{path}: the certificate for {pki.device_id_of(cert)!r} was not issued by this network's CA; "
                    "nothing was imported"
                ) from None
            found.append(cert)
    for cert in found:
        _record(db, cert, False)
    return found

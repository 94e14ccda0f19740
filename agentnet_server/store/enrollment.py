"""Queries behind enrollment, rotation and revocation (see SECURITY.md "Enrolling", "Revoking")."""

from __future__ import annotations

import dataclasses

from ..errors import NotFound
from ..records import now_us
from .db import Tx


@dataclasses.dataclass(frozen=True, slots=True)
class Enrolled:
    """What the store knows about a device id before a new certificate is issued for it."""

    known: bool
    revoked: bool
    active: tuple[str, ...]  # fingerprints of its certificates that are not revoked


def enrolled(tx: Tx, device_id: str) -> Enrolled:
    row = tx.one("SELECT revoked_at FROM device WHERE id = ?", (device_id,))
    active = tuple(
        fp
        for (fp,) in tx.all(
            "SELECT fingerprint FROM device_cert WHERE device = ? AND revoked_at IS NULL ORDER BY enrolled_at",
            (device_id,),
        )
    )
    return Enrolled(row is not None, row is not None and row[0] is not None, active)


def rotate(tx: Tx, device_id: str) -> int:
    """Revoke every current certificate of a device (its next one, recorded next, stays valid)."""
    return tx.exec(
        "UPDATE device_cert SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL", (now_us(), device_id)
    )


def revoke_name(tx: Tx, device_id: str) -> int:
    """Revoke a device by id, known or not: a device never seen is refused when it first connects.
    Returns how many known certificates were revoked with it."""
    t = now_us()
    tx.exec(
        "INSERT INTO device (id, create_time, revoked_at, last_seen) VALUES (?, ?, ?, NULL) "
        "ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at",
        (device_id, t, t),
    )
    return tx.exec("UPDATE device_cert SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL", (t, device_id))


def revoke_fingerprint(tx: Tx, fingerprint: str, device_id: str = "") -> str:
    """Revoke one certificate by its SHA-256 fingerprint, known or not. Returns its device id
    ("" when the certificate was never seen: it is refused when it first connects)."""
    t = now_us()
    row = tx.one("SELECT device FROM device_cert WHERE fingerprint = ?", (fingerprint,))
    if row is not None:
        tx.exec("UPDATE device_cert SET revoked_at = ? WHERE fingerprint = ? AND revoked_at IS NULL", (t, fingerprint))
        return str(row[0])
    tx.exec(
        "INSERT INTO device_cert (fingerprint, device, serial, not_after, enrolled_at, revoked_at, pem) "
        "VALUES (?, ?, '', 0, ?, ?, '')",
        (fingerprint, device_id, t, t),
    )
    return device_id


def require_known(tx: Tx, device_id: str) -> None:
    if tx.one("SELECT 1 FROM device WHERE id = ?", (device_id,)) is None:
        raise NotFound(f"device {device_id!r} is not known", reason="DEVICE_NOT_FOUND")

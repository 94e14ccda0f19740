"""Device certificates and revocations."""

from __future__ import annotations

from ...errors import NotFound
from ...records import (
    DeviceCertRec,
    DeviceRec,
    now_us,
)
from ..db import Tx


def record_device_cert(
    tx: Tx, device_id: str, fingerprint: str, serial: str, not_after: int, pem: str, enrolled: bool
) -> None:
    """Remember a device certificate (at enrollment, or when first seen on a connection)."""
    t = now_us()
    tx.exec(
        "INSERT INTO device (id, create_time, revoked_at, last_seen) VALUES (?, ?, NULL, NULL) "
        "ON CONFLICT (id) DO NOTHING",
        (device_id, t),
    )
    if enrolled:
        # Enrolling again is how a revoked device comes back with a new certificate.
        tx.exec("UPDATE device SET revoked_at = NULL WHERE id = ?", (device_id,))
    tx.exec(
        "INSERT INTO device_cert (fingerprint, device, serial, not_after, enrolled_at, revoked_at, pem) "
        "VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (fingerprint) DO NOTHING",
        (fingerprint, device_id, serial, not_after, t, pem),
    )


def revoke_device(tx: Tx, device_id: str) -> int:
    """Revoke every certificate of a device; returns how many were revoked."""
    if tx.one("SELECT 1 FROM device WHERE id = ?", (device_id,)) is None:
        raise NotFound(f"device {device_id!r} is not enrolled", reason="DEVICE_NOT_FOUND")
    t = now_us()
    tx.exec("UPDATE device SET revoked_at = ? WHERE id = ?", (t, device_id))
    return tx.exec("UPDATE device_cert SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL", (t, device_id))


def revocations(tx: Tx) -> tuple[frozenset[str], frozenset[str]]:
    """(revoked certificate fingerprints, revoked device ids)."""
    fps = frozenset(fp for (fp,) in tx.all("SELECT fingerprint FROM device_cert WHERE revoked_at IS NOT NULL"))
    devices = frozenset(d for (d,) in tx.all("SELECT id FROM device WHERE revoked_at IS NOT NULL"))
    return fps, devices


_CERT_COLS = "fingerprint, device, serial, not_after, enrolled_at, revoked_at, pem"


def device_certs(tx: Tx, device_id: str) -> list[DeviceCertRec]:
    return [
        DeviceCertRec(*r)
        for r in tx.all(f"SELECT {_CERT_COLS} FROM device_cert WHERE device = ? ORDER BY enrolled_at", (device_id,))
    ]


def device_cert(tx: Tx, fingerprint: str) -> DeviceCertRec | None:
    r = tx.one(f"SELECT {_CERT_COLS} FROM device_cert WHERE fingerprint = ?", (fingerprint,))
    return None if r is None else DeviceCertRec(*r)


def devices_all(tx: Tx) -> list[DeviceRec]:
    agents: dict[str, list[str]] = {}
    for agent, device in tx.all("SELECT agent, device FROM agent_device ORDER BY agent"):
        agents.setdefault(device, []).append(agent)
    certs: dict[str, list[DeviceCertRec]] = {}
    for r in tx.all(f"SELECT {_CERT_COLS} FROM device_cert ORDER BY enrolled_at"):
        certs.setdefault(r[1], []).append(DeviceCertRec(*r))
    return [
        DeviceRec(r[0], r[1], r[2], r[3], tuple(certs.get(r[0], ())), tuple(agents.get(r[0], ())))
        for r in tx.all("SELECT id, revoked_at, create_time, last_seen FROM device ORDER BY id")
    ]

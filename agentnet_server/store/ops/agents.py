"""Agents: registry rows, device authorization, last-seen, and NOTIFY for other replicas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import AlreadyExists, NotFound, PermissionDenied, ResourceExhausted
from ...records import (
    AgentRec,
    AgentWrite,
    now_us,
)
from ..db import Tx

_AGENT_COLS = "id, display_name, role, description, owner_device, create_time, last_seen"


def _agent(row: Sequence[Any], devices: tuple[str, ...]) -> AgentRec:
    return AgentRec(row[0], row[1], row[2], row[3], row[4], devices, row[5], row[6])


def agents_all(tx: Tx) -> list[AgentRec]:
    devices: dict[str, list[str]] = {}
    for agent, device in tx.all("SELECT agent, device FROM agent_device ORDER BY agent, grant_time"):
        devices.setdefault(agent, []).append(device)
    return [_agent(r, tuple(devices.get(r[0], ()))) for r in tx.all(f"SELECT {_AGENT_COLS} FROM agent ORDER BY id")]


def agent_get(tx: Tx, agent_id: str) -> AgentRec | None:
    row = tx.one(f"SELECT {_AGENT_COLS} FROM agent WHERE id = ?", (agent_id,))
    if row is None:
        return None
    devices = tuple(
        d for (d,) in tx.all("SELECT device FROM agent_device WHERE agent = ? ORDER BY grant_time", (agent_id,))
    )
    return _agent(row, devices)


def register_agent(tx: Tx, w: AgentWrite, max_agents_per_device: int) -> tuple[AgentRec, bool]:
    """Create the agent owned by `w.device`, or update it if that device may act as it."""
    device, agent_id, display_name, name_key = w.device, w.agent_id, w.display_name, w.name_key
    role, description = w.role, w.description
    tx.changes.agents.add(agent_id)  # (a refused request only makes other replicas re-read it)
    existing = agent_get(tx, agent_id)
    if existing is not None and w.keep:
        if "display_name" in w.keep:
            display_name = existing.display_name
            name_key = tx.scalar("SELECT name_key FROM agent WHERE id = ?", (agent_id,))
        if "role" in w.keep:
            role = existing.role
        if "description" in w.keep:
            description = existing.description
    holder = tx.one("SELECT id FROM agent WHERE name_key = ? AND id <> ?", (name_key, agent_id))
    if existing is not None:
        if device not in existing.devices:
            raise PermissionDenied(
                f"agent {agent_id!r} belongs to device {existing.owner_device!r}; device {device!r} "
                "may not act as it (the owner can authorize more devices)",
                reason="AGENT_OWNED_BY_OTHER_DEVICE",
            )
        if holder is not None:
            raise AlreadyExists(
                f"display name {display_name!r} is already used by agent {holder[0]!r}",
                reason="DISPLAY_NAME_TAKEN",
            )
        if (existing.display_name, existing.role, existing.description) == (display_name, role, description):
            return existing, False
        tx.exec(
            "UPDATE agent SET display_name = ?, name_key = ?, role = ?, description = ? WHERE id = ?",
            (display_name, name_key, role, description, agent_id),
        )
        return AgentRec(
            agent_id,
            display_name,
            role,
            description,
            existing.owner_device,
            existing.devices,
            existing.create_time,
            existing.last_seen,
        ), False
    if holder is not None:
        raise AlreadyExists(
            f"display name {display_name!r} is already used by agent {holder[0]!r}",
            reason="DISPLAY_NAME_TAKEN",
        )
    if max_agents_per_device:
        owned = tx.scalar("SELECT COUNT(*) FROM agent_device WHERE device = ?", (device,))
        if owned >= max_agents_per_device:
            raise ResourceExhausted(
                f"device {device!r} already acts as {owned} agents (limit {max_agents_per_device})",
                reason="TOO_MANY_AGENTS",
            )
    t = now_us()
    tx.exec(
        "INSERT INTO agent (id, display_name, name_key, role, description, owner_device, create_time, "
        "last_seen, feed_seq) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0)",
        (agent_id, display_name, name_key, role, description, device, t),
    )
    tx.exec("INSERT INTO agent_device (agent, device, grant_time) VALUES (?, ?, ?)", (agent_id, device, t))
    return AgentRec(agent_id, display_name, role, description, device, (device,), t, None), True


def authorize_device(tx: Tx, owner_device: str, agent_id: str, device: str) -> AgentRec:
    tx.changes.agents.add(agent_id)
    existing = agent_get(tx, agent_id)
    if existing is None:
        raise NotFound(f"agent {agent_id!r} does not exist", reason="AGENT_NOT_FOUND")
    if existing.owner_device != owner_device:
        raise PermissionDenied(
            f"only the owner device {existing.owner_device!r} may authorize devices for {agent_id!r}",
            reason="NOT_AGENT_OWNER",
        )
    if device in existing.devices:
        return existing
    tx.exec("INSERT INTO agent_device (agent, device, grant_time) VALUES (?, ?, ?)", (agent_id, device, now_us()))
    return AgentRec(
        existing.id,
        existing.display_name,
        existing.role,
        existing.description,
        existing.owner_device,
        (*existing.devices, device),
        existing.create_time,
        existing.last_seen,
    )


def notify(tx: Tx, payload: str) -> None:
    """A change notification for other replicas of a PostgreSQL store (sent when this commits)."""
    tx.exec("SELECT pg_notify('agentnet', ?)", (payload,))


def touch_seen(tx: Tx, agent_id: str, device: str, t: int) -> None:
    tx.exec("UPDATE agent SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)", (t, agent_id, t))
    tx.exec("UPDATE device SET last_seen = ? WHERE id = ?", (t, device))

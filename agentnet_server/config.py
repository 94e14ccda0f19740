"""Server settings: one frozen object built from defaults, environment and flags."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import Any

DEFAULT_GRPC_ADDR = "127.0.0.1:50051"
DEFAULT_HTTP_ADDR = "127.0.0.1:8443"
DEFAULT_HEALTH_ADDR = "127.0.0.1:9464"
DEFAULT_DB = "sqlite:///var/agentnet.db"
DEFAULT_CERTS = "certs"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the server needs to run. Times are in seconds, sizes in bytes."""

    grpc_addr: str = DEFAULT_GRPC_ADDR
    http_addr: str = DEFAULT_HTTP_ADDR  # "" or "off" disables the REST shim
    # Plain HTTP /healthz, /readyz and /metrics (no client certificate, no data); "off" disables.
    health_addr: str = DEFAULT_HEALTH_ADDR
    db: str = DEFAULT_DB
    certs: pathlib.Path = pathlib.Path(DEFAULT_CERTS)
    # Presence: clients heartbeat this often; 3 missed intervals mean offline.
    heartbeat_interval: float = 10.0
    # Outbound queue per session before it falls back to catching up from the store.
    session_queue: int = 1024
    # Sends a session may have in flight to the store before its reader waits.
    session_inflight: int = 256
    max_content_bytes: int = 64 * 1024
    max_payload_bytes: int = 64 * 1024
    max_payload_depth: int = 16
    max_mentions: int = 64
    # Abuse limits per device (0 disables a limit).
    sends_per_second: float = 500.0
    send_burst: int = 1000
    events_per_second: float = 2000.0
    event_burst: int = 4000
    max_sessions_per_device: int = 32
    max_groups_per_agent: int = 1000
    max_agents_per_device: int = 16
    # Messages and task changes must carry a valid device signature (SECURITY.md).
    require_signatures: bool = True
    # Store.
    sqlite_synchronous: str = "FULL"
    writer_batch: int = 512
    reader_threads: int = 4
    # Deadline of every store operation; a send not committed in time gets UNAVAILABLE.
    store_timeout: float = 5.0
    # PostgreSQL: how long one statement waits for a row or table lock another transaction holds.
    store_lock_timeout: float = 1.0
    # A replica whose store stays unreachable this long closes its sessions with UNAVAILABLE.
    store_outage_grace: float = 2.0
    # How often the revocation list is re-read from the store.
    revocation_poll: float = 1.0
    # Presence changes are batched over this window before they are broadcast.
    presence_batch: float = 0.1
    # History retention: messages and inbox entries older than this many days are deleted (0
    # keeps everything). A session resuming across deleted history gets a history_gap event.
    retention_days: float = 0.0
    # How often the retention job looks for history to delete.
    prune_interval: float = 3600.0
    # Graceful shutdown: open streams get this long after being told.
    shutdown_grace: float = 5.0
    # gRPC transport keepalive (see FIELD_NOTES: set ping timeout explicitly).
    keepalive_time: float = 10.0
    keepalive_timeout: float = 5.0
    max_message_bytes: int = 1024 * 1024
    log_level: str = "INFO"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Refuse nonsense early, with a message that says which setting is wrong."""
        positive = {
            "heartbeat_interval": self.heartbeat_interval,
            "session_queue": self.session_queue,
            "session_inflight": self.session_inflight,
            "max_content_bytes": self.max_content_bytes,
            "max_payload_bytes": self.max_payload_bytes,
            "max_payload_depth": self.max_payload_depth,
            "writer_batch": self.writer_batch,
            "reader_threads": self.reader_threads,
            "revocation_poll": self.revocation_poll,
            "keepalive_time": self.keepalive_time,
            "keepalive_timeout": self.keepalive_timeout,
            "prune_interval": self.prune_interval,
            "store_timeout": self.store_timeout,
            "store_lock_timeout": self.store_lock_timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"setting {name} must be > 0, got {value!r}")
        for name in (
            "sends_per_second",
            "send_burst",
            "events_per_second",
            "event_burst",
            "max_sessions_per_device",
            "max_groups_per_agent",
            "max_agents_per_device",
            "shutdown_grace",
            "presence_batch",
            "retention_days",
            "store_outage_grace",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"setting {name} must be >= 0, got {getattr(self, name)!r}")
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA, got {self.sqlite_synchronous!r}")
        from .startup import split_addr

        split_addr(self.grpc_addr)
        if self.http_addr.strip() and self.http_addr.strip().lower() != "off":
            split_addr(self.http_addr)
        if not (self.db.startswith("sqlite:") or self.db.startswith(("postgresql:", "postgres:"))):
            raise ValueError(f"db must be sqlite:///path or postgresql://..., got {self.db!r}")


_ENV: Mapping[str, tuple[str, type]] = {
    "AGENTNET_GRPC_ADDR": ("grpc_addr", str),
    "AGENTNET_HTTP_ADDR": ("http_addr", str),
    "AGENTNET_HEALTH_ADDR": ("health_addr", str),
    "AGENTNET_STORE_TIMEOUT": ("store_timeout", float),
    "AGENTNET_DB": ("db", str),
    "AGENTNET_CERTS": ("certs", pathlib.Path),
    "AGENTNET_HEARTBEAT_INTERVAL": ("heartbeat_interval", float),
    "AGENTNET_LOG_LEVEL": ("log_level", str),
    "AGENTNET_RETENTION_DAYS": ("retention_days", float),
}


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then AGENTNET_* variables, then explicit overrides (flags); validated."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var, (field, kind) in _ENV.items():
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[field] = kind(raw)
        except ValueError as exc:
            raise ValueError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    settings.validate()
    return settings

"""Server settings: one frozen object built from defaults, environment and flags."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tomllib
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
    # Streams per device, registered or not: checked and counted when the stream opens.
    max_sessions_per_device: int = 32
    # Connections that have not finished their TLS handshake (no certificate seen yet): caps in
    # total and per source address (HTTPS port), handshakes in progress at once, and deadlines
    # for the handshake and for the first HTTP request. gRPC: the handshake deadline and a cap on
    # all connections (grpc core cannot tell them apart by source).
    max_unauthenticated: int = 1024
    max_unauthenticated_per_source: int = 64
    max_handshakes: int = 64
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    max_grpc_connections: int = 20_000
    # A stream must send `register` within this many seconds or it is closed.
    register_timeout: float = 10.0
    # Read calls (unary Get*/List*, REST GETs) per device.
    reads_per_second: float = 200.0
    read_burst: int = 400
    # Groups one agent may create per hour (burst of the same size; 0 = no limit).
    group_creates_per_hour: float = 60.0
    # A group without members is deleted, with its history, after this many seconds (0 = never).
    empty_group_ttl: float = 86_400.0
    max_groups_per_agent: int = 1000
    max_agents_per_device: int = 16
    # Messages and task changes must carry a valid device signature (SECURITY.md).
    require_signatures: bool = True
    # A signature's signing time must lie within [now - max_age, now + max_skew] (seconds; 0 turns
    # a side off). Clients re-sign what waited in their outbox, so max_age bounds replays, not
    # how long a device may stay offline.
    sign_time_max_age: float = 86_400.0
    sign_time_max_skew: float = 300.0
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
    # gRPC transport keepalive (docs/architecture.md, Transport notes: set the ping timeout explicitly).
    keepalive_time: float = 10.0
    keepalive_timeout: float = 5.0
    max_message_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    # "text" (one line per record) or "json" (one JSON object per line, for log collectors).
    log_format: str = "text"
    # One folder for the database, certificates and caches; db and certs default to
    # <data_dir>/agentnet.db and <data_dir>/certs when it is set.
    data_dir: pathlib.Path | None = None
    # Warn this many days before the server's or a device's certificate expires.
    cert_warning_days: float = 30.0
    # Audit records (admin and membership actions) as JSON lines; default <data_dir>/audit.log or
    # next to the SQLite database; none on PostgreSQL unless set (they are in the log stream too).
    audit_log: pathlib.Path | None = None

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
            "register_timeout": self.register_timeout,
            "max_unauthenticated": self.max_unauthenticated,
            "max_unauthenticated_per_source": self.max_unauthenticated_per_source,
            "max_handshakes": self.max_handshakes,
            "handshake_timeout": self.handshake_timeout,
            "header_timeout": self.header_timeout,
            "max_grpc_connections": self.max_grpc_connections,
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
            "sign_time_max_age",
            "sign_time_max_skew",
            "reads_per_second",
            "read_burst",
            "group_creates_per_hour",
            "empty_group_ttl",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"setting {name} must be >= 0, got {getattr(self, name)!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be text or json, got {self.log_format!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA, got {self.sqlite_synchronous!r}")
        from .startup import split_addr

        for name, addr in (
            ("grpc_addr", self.grpc_addr),
            ("http_addr", self.http_addr),
            ("health_addr", self.health_addr),
        ):
            if name != "grpc_addr" and (not addr.strip() or addr.strip().lower() == "off"):
                continue
            try:
                split_addr(addr)
            except ValueError as exc:
                raise ValueError(f"{name} (--{name.replace('_', '-')}): {exc}") from None
        if not (self.db.startswith("sqlite:") or self.db.startswith(("postgresql:", "postgres:"))):
            raise ValueError(f"db must be sqlite:///path or postgresql://..., got {self.db!r}")


DEFAULTS = Settings()
FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
PATHS = ("certs", "data_dir", "audit_log")


def env_var(field: str) -> str:
    """Every setting has an environment variable: AGENTNET_ and its name in capitals."""
    return "AGENTNET_" + field.upper()


def _convert(field: str, raw: Any, where: str) -> Any:
    """A value from TOML or the environment as the setting's type; ValueError naming `where`."""
    if field in PATHS:
        return pathlib.Path(str(raw)).expanduser()
    kind = type(getattr(DEFAULTS, field))
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where}={raw!r} is not true or false")
    if kind in (int, float) and isinstance(raw, bool):
        raise ValueError(f"{where}={raw!r} is not a number")
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{where}={raw!r} is not a valid {kind.__name__}") from None


def _sqlite_file(url: str) -> str | None:
    if not url.startswith("sqlite:"):
        return None
    path = url.removeprefix("sqlite://").removeprefix("/")
    return "/" + path.lstrip("/") if url.startswith("sqlite:////") else path


def sqlite_path(url: str) -> pathlib.Path | None:
    """The file of a sqlite:/// URL (None for PostgreSQL)."""
    path = _sqlite_file(url)
    return pathlib.Path(path) if path else None


def _absolute_db(url: str, base: pathlib.Path) -> str:
    path = _sqlite_file(url)
    if not path or path == ":memory:":
        return url
    return "sqlite:///" + str((base / path).resolve())


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The effective settings and where each one came from (default, config file, env, flag)."""

    settings: Settings
    sources: dict[str, str]


def read_file(path: pathlib.Path) -> dict[str, Any]:
    """A TOML config file: top-level keys are setting names (see `agentnet-server config`)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; `agentnet-server config` lists them all"
        )
    base = path.resolve().parent
    values = {k: _convert(k, v, f"{path}: {k}") for k, v in data.items()}
    for key in PATHS:
        if key in values and not values[key].is_absolute():
            values[key] = base / values[key]
    if "db" in values:
        values["db"] = _absolute_db(values["db"], base)
    return values


def load(
    config_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Loaded:
    """Defaults, then the TOML config file (--config / AGENTNET_CONFIG), then AGENTNET_* variables,
    then flags; relative paths made absolute; validated."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_file = config_file or environ.get("AGENTNET_CONFIG") or None
    if config_file:
        path = pathlib.Path(config_file)
        for key, value in read_file(path).items():
            values[key], sources[key] = value, f"config {path}"
    for field in FIELDS:
        var = env_var(field)
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        values[field], sources[field] = _convert(field, raw, var), f"env {var}"
    for key, value in overrides.items():
        if value is not None:
            values[key], sources[key] = value, "flag"
    cwd = pathlib.Path.cwd()
    data_dir = values.get("data_dir")
    if data_dir is not None:
        data_dir = values["data_dir"] = (cwd / pathlib.Path(data_dir).expanduser()).resolve()
        if "db" not in values:
            values["db"], sources["db"] = f"sqlite:///{data_dir / 'agentnet.db'}", "data_dir"
        if "certs" not in values:
            values["certs"], sources["certs"] = data_dir / "certs", "data_dir"
    values["certs"] = (cwd / pathlib.Path(values.get("certs", DEFAULT_CERTS)).expanduser()).resolve()
    values["db"] = _absolute_db(values.get("db", DEFAULT_DB), cwd)
    if values.get("audit_log") is not None:
        values["audit_log"] = (cwd / values["audit_log"]).resolve()
    elif data_dir is not None:
        values["audit_log"], sources["audit_log"] = data_dir / "audit.log", "data_dir"
    elif sqlite_path(values["db"]) is not None:
        db_file = sqlite_path(values["db"])
        assert db_file is not None
        values["audit_log"], sources["audit_log"] = db_file.parent / "audit.log", "next to the database"
    settings = Settings(**values)
    settings.validate()
    return Loaded(settings, {f: sources.get(f, "default") for f in FIELDS})


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then AGENTNET_* variables, then explicit overrides (flags); validated."""
    return load(None, environ, **overrides).settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def describe(loaded: Loaded) -> str:
    """The effective settings as a TOML file, each line saying where its value came from."""
    lines = ["# agentnet-server: effective settings (a valid config file; see docs/operations.md)"]
    for field in FIELDS:
        value = getattr(loaded.settings, field)
        source = loaded.sources[field]
        if field == "db":
            from .startup import redact

            value = redact(value)
        if value is None:
            lines.append(f"# {field} = (not set)  # {env_var(field)}")
            continue
        lines.append(f"{field} = {_toml_value(value)}  # {source}; env {env_var(field)}")
    return "\n".join(lines) + "\n"

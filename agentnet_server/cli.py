"""`agentnet-server`: serve, certs (CA + server + device enrollment), enroll a CSR, devices, revoke."""

from __future__ import annotations

import os
import sys

# gRPC's C core logs bind and handshake failures itself; the operator gets our one line instead
# (--debug, or GRPC_VERBOSITY set explicitly, shows them). Must happen before grpc is imported.
if "--debug" not in sys.argv[1:]:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import asyncio
import datetime as dt
import json
import logging
import pathlib
import signal
from typing import Any

from . import config, enrollment, pki
from .argtypes import nonneg_float, nonneg_int, positive_float, positive_int
from .errors import AgentnetError
from .startup import redact


def _log_setup(level: str, fmt: str = "text") -> None:
    from .logs import setup

    setup(level, fmt)


def _loaded(ns: argparse.Namespace, **extra: Any) -> config.Loaded:
    """Defaults < config file < AGENTNET_* < flags (config.load)."""
    return config.load(
        getattr(ns, "config", None),
        grpc_addr=getattr(ns, "grpc_addr", None),
        http_addr=getattr(ns, "http_addr", None),
        health_addr=getattr(ns, "health_addr", None),
        db=getattr(ns, "db", None),
        certs=pathlib.Path(ns.certs) if getattr(ns, "certs", None) else None,
        data_dir=pathlib.Path(ns.data_dir) if getattr(ns, "data_dir", None) else None,
        heartbeat_interval=getattr(ns, "heartbeat", None),
        log_level=getattr(ns, "log_level", None),
        log_format=getattr(ns, "log_format", None),
        **extra,
    )


def _audit(settings: config.Settings, action: str, **fields: Any) -> None:
    """An admin action into the audit log (not on the terminal)."""
    from .logs import audit, audit_to

    audit_to(settings.audit_log, echo=False)
    audit(action, os.environ.get("SUDO_USER") or os.environ.get("USER") or "operator", **fields)


def _settings(ns: argparse.Namespace, **extra: Any) -> config.Settings:
    return _loaded(ns, **extra).settings


def _existing_db(settings: config.Settings) -> Any:
    """The store of a server that has run here: a missing SQLite file is an error, not a new empty database."""
    from .store.db import Database

    path = config.sqlite_path(settings.db)
    if path is not None and not path.exists():
        raise ValueError(
            f"no database at {path}; run this where the server runs, or pass --data-dir, --db or --config "
            "(`agentnet-server config` shows what this command would use)"
        )
    return Database(settings.db, settings.sqlite_synchronous, readers=1)


# -- serve --------------------------------------------------------------------------------------


def _write_ready(path: str, line: dict[str, Any]) -> None:
    tmp = pathlib.Path(path + ".tmp")
    tmp.write_text(json.dumps(line))
    os.replace(tmp, path)


def _reload_tls(app: Any) -> None:
    """SIGHUP: new connections get the certificate now in the certs folder; open ones keep theirs."""
    log = logging.getLogger("agentnet.server")
    try:
        cert = app.tls.reload()
    except (pki.PkiError, OSError) as exc:
        log.error("SIGHUP: kept the current server certificate: %s", exc)
        return
    log.info(
        "SIGHUP: reloaded the server certificate (names %s; valid until %s)",
        ", ".join(pki.server_hosts(cert)),
        cert.not_valid_after_utc.strftime("%Y-%m-%d"),
    )


EXPIRY_CHECK_INTERVAL = 86400.0


async def _watch_expiry(app: Any, settings: config.Settings) -> None:
    """At start and once a day: warn about server and device certificates that expire soon."""
    from .store import ops

    log = logging.getLogger("agentnet.server")
    horizon = settings.cert_warning_days
    while horizon > 0:
        left = app.tls.days_left()
        if left < horizon:
            log.warning(
                "the server certificate expires in %.0f days (%s): run `agentnet-server certs` (it renews a "
                "certificate that expires within 30 days) and send the server SIGHUP",
                left,
                app.tls.cert.not_valid_after_utc.strftime("%Y-%m-%d"),
            )
        try:
            devices = await app.db.read(ops.devices_all)
        except Exception as exc:  # noqa: BLE001 - the store may be briefly down; try again tomorrow
            log.warning("could not check device certificate expiry: %s", exc)
            devices = []
        now_us = dt.datetime.now(dt.UTC).timestamp() * 1e6
        for d in devices:
            current = d.certs[-1] if d.certs else None
            if d.revoked_at or current is None or current.revoked_at or not current.not_after:
                continue
            days = (current.not_after - now_us) / 86_400e6
            if days < horizon:
                state = "expired" if days <= 0 else f"expires in {days:.0f} days"
                log.warning(
                    "device %s: its certificate %s (%s); re-enroll it: agentnet-server certs --device %s --force",
                    d.id,
                    state,
                    _fmt_time(current.not_after),
                    d.id,
                )
        await asyncio.sleep(EXPIRY_CHECK_INTERVAL)


async def _serve(settings: config.Settings, ready_file: str | None) -> int:
    from .app import App

    app = App(settings)
    db_file = config.sqlite_path(settings.db)
    new_db = db_file is not None and not db_file.exists()
    bound = await app.start()
    log = logging.getLogger("agentnet.server")
    if new_db:
        log.warning("there was no database at %s: started a new, empty one", db_file)
    log.info("database %s; certificates %s; audit log %s", redact(settings.db), settings.certs, settings.audit_log)
    host = settings.grpc_addr.rsplit(":", 1)[0]
    line = {"grpc": f"{host}:{bound.grpc_port}", "http": None, "pid": os.getpid()}
    if bound.http_port:
        line["http"] = f"{settings.http_addr.rsplit(':', 1)[0]}:{bound.http_port}"
    if bound.health_port:
        line["health"] = f"{settings.health_addr.rsplit(':', 1)[0]}:{bound.health_port}"
    if ready_file:
        _write_ready(ready_file, line)
    print(
        f"agentnet-server ready: gRPC {line['grpc']}" + (f", REST https://{line['http']}" if line["http"] else ""),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_tls, app)
    watch = asyncio.create_task(_watch_expiry(app, settings))
    await stop.wait()
    watch.cancel()
    logging.getLogger("agentnet.server").info("shutting down (grace %.1f s)", settings.shutdown_grace)
    await app.stop()
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    # What the server creates (database, logs, backups) is for its user alone (SECURITY.md).
    os.umask(0o077)
    overrides: dict[str, Any] = {}
    if ns.grace is not None:
        overrides["shutdown_grace"] = ns.grace
    if ns.session_queue is not None:
        overrides["session_queue"] = ns.session_queue
    if ns.sends_per_second is not None:
        overrides["sends_per_second"] = ns.sends_per_second
    if ns.send_burst is not None:
        overrides["send_burst"] = ns.send_burst
    if ns.sqlite_synchronous is not None:
        overrides["sqlite_synchronous"] = ns.sqlite_synchronous
    if ns.allow_unsigned:
        overrides["require_signatures"] = False
    for name in (
        "events_per_second",
        "event_burst",
        "max_agents_per_device",
        "max_sessions_per_device",
        "retention_days",
        "prune_interval",
        "store_timeout",
        "store_lock_timeout",
        "store_outage_grace",
        "sign_time_max_age",
        "sign_time_max_skew",
        "register_timeout",
        "reads_per_second",
        "read_burst",
        "group_creates_per_hour",
        "empty_group_ttl",
        "max_unauthenticated",
        "max_unauthenticated_per_source",
        "max_handshakes",
        "handshake_timeout",
        "header_timeout",
        "max_grpc_connections",
    ):
        if getattr(ns, name, None) is not None:
            overrides[name] = getattr(ns, name)
    settings = _settings(ns, **overrides)
    _log_setup(settings.log_level, settings.log_format)
    from .backup import exclusive
    from .logs import audit_to

    audit_to(settings.audit_log)
    db_file = config.sqlite_path(settings.db)
    if db_file is None:
        return asyncio.run(_serve(settings, ns.ready_file))
    # One server per SQLite file (a second one would split the live sessions between two hubs).
    with exclusive(db_file, "stop it first or give this one another --data-dir / --db"):
        return asyncio.run(_serve(settings, ns.ready_file))


# -- certificates -------------------------------------------------------------------------------


def _open_store(settings: config.Settings) -> Any:
    """The store, created if missing (enrollment may run before the first serve)."""
    from .store.db import Database

    db = Database(settings.db, settings.sqlite_synchronous, readers=1)
    db.migrate()
    return db


def cmd_certs(ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    certs = pki.CertsDir(settings.certs)
    _, _, ca_new = pki.ensure_ca(certs)
    server_cert, server_new = pki.ensure_server(certs, ns.host or [])
    if not ns.quiet or ca_new or server_new:
        print(f"CA      {certs.ca_cert}" + (" (new)" if ca_new else ""))
        print(
            f"server  {certs.server_cert}"
            + (" (new)" if server_new else "")
            + "  hosts: "
            + ", ".join(pki.server_hosts(server_cert))
        )
    if ns.device:
        db = _open_store(settings)
        try:
            issued = enrollment.issue_new(db, certs, ns.device, ns.days, rotate=ns.rotate or ns.force)
        except enrollment.EnrollmentRefused as exc:
            print(f"agentnet-server certs: {exc}", file=sys.stderr)
            return 1
        finally:
            db.close()
        fp = pki.fingerprint(issued.cert)
        _audit(settings, "device.enroll", device=ns.device, fingerprint=fp[:16], rotated=issued.revoked)
        print(f"device  {issued.folder}/ (cert.pem, key.pem 0600, ca.pem)  fingerprint {fp[:16]}…")
        if issued.revoked:
            print(f"        revoked its {issued.revoked} earlier certificate(s)")
        print("        copy that folder to the device and set AGENTNET_DEVICE_DIR to it")
    return 0


def cmd_enroll(ns: argparse.Namespace) -> int:
    """Sign a device's certificate request; the private key never leaves the device."""
    settings = _settings(ns)
    certs = pki.CertsDir(settings.certs)
    csr = pki.load_csr(pathlib.Path(ns.csr).read_bytes())
    device_id = pki.csr_device_id(csr)
    if ns.device and ns.device != device_id:
        print(f"the request is for device {device_id!r}, not {ns.device!r}", file=sys.stderr)
        return 1
    db = _open_store(settings)
    try:
        issued = enrollment.sign_request(
            db, certs, csr, pathlib.Path(ns.out) if ns.out else None, ns.days, rotate=ns.rotate
        )
    except enrollment.EnrollmentRefused as exc:
        print(f"agentnet-server enroll: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    fp = pki.fingerprint(issued.cert)
    _audit(settings, "device.enroll", device=device_id, fingerprint=fp[:16], csr=True, rotated=issued.revoked)
    print(
        f"signed {device_id!r}: {issued.folder}/cert.pem and ca.pem (fingerprint {fp[:16]}…); "
        "send both back to the device"
        + (f"; revoked its {issued.revoked} earlier certificate(s)" if issued.revoked else "")
    )
    return 0


def _fmt_time(us: int | None) -> str:
    if not us:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_devices(ns: argparse.Namespace) -> int:
    from .store import ops

    settings = _settings(ns)
    db = _existing_db(settings)
    try:
        db.migrate()
        devices = db.read_sync(ops.devices_all)
    finally:
        db.close()
    if ns.json:
        print(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "revoked": d.revoked_at is not None,
                        "last_seen": _fmt_time(d.last_seen),
                        "agents": list(d.agents),
                        "certificates": [
                            {
                                "fingerprint": c.fingerprint,
                                "serial": c.serial,
                                "not_after": _fmt_time(c.not_after),
                                "enrolled_at": _fmt_time(c.enrolled_at),
                                "revoked": c.revoked_at is not None,
                            }
                            for c in d.certs
                        ],
                    }
                    for d in devices
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    print(f"{'DEVICE':<20} {'STATE':<8} {'LAST SEEN':<21} {'CERT EXPIRES':<21} {'FINGERPRINT':<14} AGENTS")
    for d in devices:
        current = d.certs[-1] if d.certs else None
        print(
            f"{d.id:<20} {'revoked' if d.revoked_at else 'ok':<8} {_fmt_time(d.last_seen):<21} "
            f"{_fmt_time(current.not_after) if current else '-':<21} "
            f"{(current.fingerprint[:12] + '…') if current else '-':<14} {', '.join(d.agents) or '-'}"
        )
    return 0


def cmd_revoke(ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    db = _existing_db(settings)
    try:
        db.migrate()
        what = enrollment.revoke(db, ns.device)
        _audit(settings, "device.revoke", target=ns.device, revoked=what)
    except AgentnetError as exc:
        print(f"agentnet-server revoke: {exc.message}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(
        f"revoked {what}; a running server refuses it and ends its sessions within "
        f"{settings.revocation_poll + 1:g} s. To issue that device a new certificate (revoking the old ones): "
        "`make certs DEVICE=<id> FORCE=1` (agentnet-server certs --device <id> --rotate) or "
        "`agentnet-server enroll --csr ... --rotate`."
    )
    return 0


def cmd_import_certs(ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    certs = pki.CertsDir(settings.certs)
    db = _open_store(settings)
    try:
        found = enrollment.import_registry(db, certs, [pathlib.Path(p) for p in ns.files])
    finally:
        db.close()
    devices = sorted({pki.device_id_of(c) for c in found})
    _audit(settings, "device.import", devices=",".join(devices))
    print(f"recorded {len(found)} certificate(s) of {len(devices)} device(s): {', '.join(devices) or '-'}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentnet")
    except PackageNotFoundError:
        return "unknown"


def _sqlite_only(settings: config.Settings, what: str) -> pathlib.Path:
    path = config.sqlite_path(settings.db)
    if path is None:
        raise ValueError(
            f"{what} handles the SQLite store; for PostgreSQL use its tools: pg_dump --format=custom "
            f"--file agentnet.dump '{redact(settings.db)}' and pg_restore --clean --dbname ... (docs/operations.md)"
        )
    return path


def cmd_backup(ns: argparse.Namespace) -> int:
    """A consistent copy of the live database (SQLite online backup), while the server runs."""
    from . import backup

    settings = _settings(ns)
    db_file = _sqlite_only(settings, "backup")
    if not db_file.exists():
        raise ValueError(f"no database at {db_file}; pass --data-dir, --db or --config")
    out = pathlib.Path(ns.out)
    version = backup.backup(db_file, out)
    _audit(settings, "store.backup", file=str(out.resolve()))
    print(f"backed up {db_file} (schema v{version}) to {out} ({out.stat().st_size:,} bytes)")
    return 0


def cmd_restore(ns: argparse.Namespace) -> int:
    """Put a backup in place of the database of a stopped server."""
    from . import backup

    settings = _settings(ns)
    db_file = _sqlite_only(settings, "restore")
    version, kept = backup.restore(pathlib.Path(ns.backup), db_file, ns.force)
    _audit(settings, "store.restore", file=str(pathlib.Path(ns.backup).resolve()))
    print(
        f"restored {ns.backup} (schema v{version}) to {db_file}"
        + (f"; the previous database is kept as {kept}" if kept else "")
        + ". Start the server; it upgrades an older schema on start."
    )
    return 0


def cmd_config(ns: argparse.Namespace) -> int:
    """Print the effective settings as TOML, with where each value came from."""
    loaded = _loaded(ns)
    if ns.json:
        values = {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(loaded.settings).items()}
        from .startup import redact

        values["db"] = redact(values["db"])
        print(json.dumps({"settings": values, "sources": loaded.sources}, indent=2, ensure_ascii=False))
    else:
        print(config.describe(loaded), end="")
    return 0


# -- parser -------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, db: bool = True) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--config", help="TOML config file (env AGENTNET_CONFIG; `agentnet-server config` prints one)")
    p.add_argument(
        "--data-dir",
        help="one folder for the database (agentnet.db) and certificates (certs/) (env AGENTNET_DATA_DIR; "
        "default: var/agentnet.db and certs/ in the current folder)",
    )
    p.add_argument("--certs", help=f"certificates folder (default {config.DEFAULT_CERTS}, env AGENTNET_CERTS)")
    if db:
        p.add_argument("--db", help=f"store URL (default {config.DEFAULT_DB}, env AGENTNET_DB)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="agentnet-server", description="agentnet server and certificate authority")
    ap.add_argument("--version", action="version", version=f"agentnet-server {_version()}")
    ap.add_argument("--debug", action="store_true", help="show the full error (traceback) when something fails")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("serve", help="run the server")
    _common(p)
    p.add_argument("--grpc-addr", help=f"gRPC listen address (default {config.DEFAULT_GRPC_ADDR})")
    p.add_argument("--http-addr", help=f"REST shim address (default {config.DEFAULT_HTTP_ADDR}; 'off' disables)")
    p.add_argument(
        "--health-addr",
        help=f"plain-HTTP /healthz, /readyz, /metrics address (default {config.DEFAULT_HEALTH_ADDR}; 'off' disables)",
    )
    p.add_argument("--heartbeat", type=positive_float, help="heartbeat interval in seconds (default 10)")
    p.add_argument("--grace", type=nonneg_float, help="shutdown grace in seconds (default 5)")
    p.add_argument("--session-queue", type=positive_int, help="outbound queue per session (default 1024)")
    p.add_argument("--sends-per-second", type=nonneg_float, help="send rate limit per device (0 = off)")
    p.add_argument("--send-burst", type=positive_int, help="send burst per device")
    p.add_argument("--sqlite-synchronous", choices=["OFF", "NORMAL", "FULL", "EXTRA"], help="SQLite durability")
    p.add_argument("--events-per-second", type=nonneg_float, help="stream event rate limit per device (0 = off)")
    p.add_argument("--event-burst", type=positive_int, help="stream event burst per device")
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept messages and task changes without a device signature (recipients refuse them "
        "unless they opt in with accept_unsigned); weakens end-to-end authenticity, see SECURITY.md",
    )
    p.add_argument(
        "--sign-time-max-age",
        type=nonneg_float,
        help="refuse signatures made more than this many seconds ago (default 86400; 0 = no limit)",
    )
    p.add_argument(
        "--sign-time-max-skew",
        type=nonneg_float,
        help="refuse signatures dated more than this many seconds ahead (default 300; 0 = no limit)",
    )
    p.add_argument("--register-timeout", type=positive_float, help="seconds a new stream has to register (default 10)")
    p.add_argument("--reads-per-second", type=nonneg_float, help="read calls per device per second (0 = off)")
    p.add_argument("--read-burst", type=positive_int, help="read call burst per device")
    p.add_argument(
        "--group-creates-per-hour", type=nonneg_float, help="groups one agent may create per hour (0 = no limit)"
    )
    p.add_argument(
        "--max-unauthenticated",
        type=positive_int,
        help="HTTPS connections without a finished TLS handshake, in total (default 1024)",
    )
    p.add_argument(
        "--max-unauthenticated-per-source",
        type=positive_int,
        help="HTTPS connections without a finished TLS handshake, per source address (default 64)",
    )
    p.add_argument("--max-handshakes", type=positive_int, help="HTTPS TLS handshakes in progress at once (default 64)")
    p.add_argument(
        "--handshake-timeout", type=positive_float, help="seconds to finish the TLS handshake, both ports (default 10)"
    )
    p.add_argument(
        "--header-timeout", type=positive_float, help="seconds for the first HTTPS request to arrive (default 10)"
    )
    p.add_argument(
        "--max-grpc-connections", type=positive_int, help="open connections on the gRPC port (default 20000)"
    )
    p.add_argument(
        "--empty-group-ttl",
        type=nonneg_float,
        help="seconds after which a group without members is deleted with its history (0 = never)",
    )
    p.add_argument("--max-agents-per-device", type=nonneg_int, help="agents one device may act as (0 = no limit)")
    p.add_argument("--max-sessions-per-device", type=nonneg_int, help="live sessions per device (0 = no limit)")
    p.add_argument(
        "--retention-days",
        type=nonneg_float,
        help="delete messages and inbox entries older than this many days (default 0: keep everything; "
        "env AGENTNET_RETENTION_DAYS)",
    )
    p.add_argument("--store-timeout", type=positive_float, help="deadline of every store operation (default 5 s)")
    p.add_argument(
        "--store-lock-timeout", type=positive_float, help="PostgreSQL: wait for a locked row at most this long (1 s)"
    )
    p.add_argument(
        "--store-outage-grace",
        type=nonneg_float,
        help="close sessions with UNAVAILABLE when the store is unreachable this long (default 2 s)",
    )
    p.add_argument("--prune-interval", type=positive_float, help="seconds between retention runs (default 3600)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["text", "json"], help="text (default) or one JSON object per line")
    p.add_argument("--ready-file", help="write the bound addresses as JSON here once serving")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("certs", help="create the CA and server certificate if missing; --device enrolls a device")
    _common(p)
    p.add_argument("--host", action="append", help="extra host name or IP for the server certificate (repeatable)")
    p.add_argument("--device", help="enroll this device id into certs/devices/<id>/")
    p.add_argument("--days", type=positive_int, default=pki.DEVICE_DAYS, help="device certificate lifetime")
    p.add_argument("--force", action="store_true", help="same as --rotate")
    p.add_argument(
        "--rotate",
        action="store_true",
        help="issue a new certificate for an enrolled (or revoked) device and revoke its earlier ones",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing when nothing was created")
    p.set_defaults(fn=cmd_certs)

    p = sub.add_parser("enroll", help="sign a device certificate request (agentnet enroll-request)")
    _common(p)
    p.add_argument("--csr", required=True, help="the device's request (PEM)")
    p.add_argument("--device", help="expected device id (refuse a request for another id)")
    p.add_argument("--out", help="folder for cert.pem and ca.pem (default certs/devices/<id>/)")
    p.add_argument("--days", type=positive_int, default=pki.DEVICE_DAYS)
    p.add_argument(
        "--rotate",
        action="store_true",
        help="the device is already enrolled: replace its certificate and revoke the earlier ones",
    )
    p.set_defaults(fn=cmd_enroll)

    p = sub.add_parser("devices", help="list enrolled devices, their agents and last-seen times")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_devices)

    p = sub.add_parser("config", help="print the effective settings (defaults < config file < env < flags) as TOML")
    _common(p)
    p.add_argument("--grpc-addr")
    p.add_argument("--http-addr")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_config)

    p = sub.add_parser("backup", help="write a consistent copy of the SQLite database while the server runs")
    _common(p)
    p.add_argument("out", help="the backup file to write (never overwritten)")
    p.set_defaults(fn=cmd_backup)

    p = sub.add_parser("restore", help="replace a stopped server's SQLite database with a backup")
    _common(p)
    p.add_argument("backup", help="a file written by `agentnet-server backup`")
    p.add_argument("--force", action="store_true", help="replace an existing database (it is kept beside it)")
    p.set_defaults(fn=cmd_restore)

    p = sub.add_parser("revoke", help="revoke a device: refused from now on, live sessions end within seconds")
    _common(p)
    p.add_argument(
        "device",
        metavar="DEVICE|FINGERPRINT|CERT.pem",
        help="a device id, a certificate's SHA-256 fingerprint (hex) or a certificate file; "
        "devices this server never saw are refused when they first connect",
    )
    p.set_defaults(fn=cmd_revoke)

    p = sub.add_parser(
        "import-certs", help="record certificates issued on another CA host (its certs/issued.pem or cert.pem files)"
    )
    _common(p)
    p.add_argument("files", nargs="+", help="PEM files with one or more device certificates")
    p.set_defaults(fn=cmd_import_certs)
    return ap


def main(argv: list[str] | None = None) -> int:
    import argcomplete

    # Databases, keys, audit logs and backups are for the server's user only.
    os.umask(0o077)

    ap = parser()
    argcomplete.autocomplete(ap)
    ns = ap.parse_args(argv)
    try:
        return int(ns.fn(ns))
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - every failure is one line for the operator (--debug: all)
        return _report(ns, exc)


def _report(ns: argparse.Namespace, exc: BaseException) -> int:
    """One line that says what failed and what to do; the traceback only with --debug."""
    from .startup import StartupError

    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, BrokenPipeError):
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    if ns.debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, StartupError | pki.PkiError | ValueError):
        message = str(exc)
    elif isinstance(exc, AgentnetError):
        message = exc.message
    elif isinstance(exc, OSError):
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        first = (str(exc).strip().splitlines() or [""])[0]
        message = f"unexpected {type(exc).__name__}: {first}" + (
            "" if ns.debug else " (run again with --debug for details)"
        )
    print(f"agentnet-server {ns.cmd}: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

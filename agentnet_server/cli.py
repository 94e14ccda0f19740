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

from . import config, pki
from .argtypes import nonneg_float, nonneg_int, positive_float, positive_int
from .errors import AgentnetError


def _log_setup(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _settings(ns: argparse.Namespace, **extra: Any) -> config.Settings:
    return config.from_env(
        grpc_addr=getattr(ns, "grpc_addr", None),
        http_addr=getattr(ns, "http_addr", None),
        health_addr=getattr(ns, "health_addr", None),
        db=getattr(ns, "db", None),
        certs=pathlib.Path(ns.certs) if getattr(ns, "certs", None) else None,
        heartbeat_interval=getattr(ns, "heartbeat", None),
        log_level=getattr(ns, "log_level", None),
        **extra,
    )


# -- serve --------------------------------------------------------------------------------------


def _write_ready(path: str, line: dict[str, Any]) -> None:
    tmp = pathlib.Path(path + ".tmp")
    tmp.write_text(json.dumps(line))
    os.replace(tmp, path)


async def _serve(settings: config.Settings, ready_file: str | None) -> int:
    from .app import App

    app = App(settings)
    bound = await app.start()
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
    await stop.wait()
    logging.getLogger("agentnet.server").info("shutting down (grace %.1f s)", settings.shutdown_grace)
    await app.stop()
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
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
    ):
        if getattr(ns, name, None) is not None:
            overrides[name] = getattr(ns, name)
    settings = _settings(ns, **overrides)
    _log_setup(settings.log_level)
    return asyncio.run(_serve(settings, ns.ready_file))


# -- certificates -------------------------------------------------------------------------------


def _record_enrollment(settings: config.Settings, cert: Any) -> None:
    """Record the device certificate in the store, so `devices` lists it and revoke finds it."""
    from .store import ops
    from .store.db import Database

    db = Database(settings.db, settings.sqlite_synchronous, readers=1)
    try:
        db.migrate()
        db.write_sync(
            ops.record_device_cert,
            pki.device_id_of(cert),
            pki.fingerprint(cert),
            format(cert.serial_number, "x"),
            int(cert.not_valid_after_utc.timestamp() * 1e6),
            pki.cert_pem(cert).decode(),
            True,
        )
    finally:
        db.close()


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
        folder = certs.device_dir(ns.device)
        if (folder / "cert.pem").exists() and not ns.force:
            print(
                f"device {ns.device!r} is already enrolled in {folder}; use --force to issue a new certificate",
                file=sys.stderr,
            )
            return 1
        bundle = pki.issue_device(certs, ns.device, ns.days)
        _record_enrollment(settings, bundle.cert)
        print(f"device  {bundle.folder}/ (cert.pem, key.pem 0600, ca.pem)  fingerprint {bundle.fingerprint[:16]}…")
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
    cert = pki.sign_device(certs, device_id, csr.public_key(), ns.days)  # type: ignore[arg-type]
    out = pathlib.Path(ns.out) if ns.out else certs.device_dir(device_id)
    pki.write_device_folder(out, cert, pki.load_cert(certs.ca_cert), None)
    _record_enrollment(settings, cert)
    print(
        f"signed {device_id!r}: {out}/cert.pem and ca.pem (fingerprint {pki.fingerprint(cert)[:16]}…); "
        "send both back to the device"
    )
    return 0


def _fmt_time(us: int | None) -> str:
    if not us:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_devices(ns: argparse.Namespace) -> int:
    from .store import ops
    from .store.db import Database

    settings = _settings(ns)
    db = Database(settings.db, settings.sqlite_synchronous, readers=1)
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
    from .store import ops
    from .store.db import Database

    settings = _settings(ns)
    db = Database(settings.db, settings.sqlite_synchronous, readers=1)
    try:
        db.migrate()
        n = db.write_sync(ops.revoke_device, ns.device)
    except AgentnetError as exc:
        print(f"agentnet-server revoke: {exc.message}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(
        f"revoked device {ns.device!r} ({n} certificate(s)); a running server ends its sessions within "
        f"{settings.revocation_poll + 1:g} s. Re-enroll with `make certs DEVICE={ns.device} --force`."
    )
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentnet")
    except PackageNotFoundError:
        return "unknown"


# -- parser -------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, db: bool = True) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
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
        help="accept messages and task changes without a device signature (recipients see them "
        "as unsigned); weakens end-to-end authenticity, see SECURITY.md",
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
    p.add_argument("--ready-file", help="write the bound addresses as JSON here once serving")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("certs", help="create the CA and server certificate if missing; --device enrolls a device")
    _common(p)
    p.add_argument("--host", action="append", help="extra host name or IP for the server certificate (repeatable)")
    p.add_argument("--device", help="enroll this device id into certs/devices/<id>/")
    p.add_argument("--days", type=positive_int, default=pki.DEVICE_DAYS, help="device certificate lifetime")
    p.add_argument("--force", action="store_true", help="issue a new certificate for an enrolled device")
    p.add_argument("--quiet", action="store_true", help="print nothing when nothing was created")
    p.set_defaults(fn=cmd_certs)

    p = sub.add_parser("enroll", help="sign a device certificate request (agentnet enroll-request)")
    _common(p)
    p.add_argument("--csr", required=True, help="the device's request (PEM)")
    p.add_argument("--device", help="expected device id (refuse a request for another id)")
    p.add_argument("--out", help="folder for cert.pem and ca.pem (default certs/devices/<id>/)")
    p.add_argument("--days", type=positive_int, default=pki.DEVICE_DAYS)
    p.set_defaults(fn=cmd_enroll)

    p = sub.add_parser("devices", help="list enrolled devices, their agents and last-seen times")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_devices)

    p = sub.add_parser("revoke", help="revoke a device: refused from now on, live sessions end within seconds")
    _common(p)
    p.add_argument("device")
    p.set_defaults(fn=cmd_revoke)
    return ap


def main(argv: list[str] | None = None) -> int:
    import argcomplete

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

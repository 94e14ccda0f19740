"""Start-up failures in words: what went wrong and what to do, as one line for the operator."""

from __future__ import annotations

import errno
import socket
import urllib.parse


class StartupError(Exception):
    """The server cannot start; the message says why and how to fix it (the cause is chained)."""


def split_addr(addr: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [::1]:PORT) into host and port; ValueError with an example otherwise."""
    host, sep, port = addr.strip().rpartition(":")
    example = f"e.g. 127.0.0.1:{port if port.isdigit() else 50051} (this machine only) or 0.0.0.0:... (all interfaces)"
    if not sep or not host:
        raise ValueError(f"listen address {addr!r} has no host: write HOST:PORT, {example}")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {addr!r} has no valid port (0-65535): write HOST:PORT, {example}")
    return host.strip("[]"), int(port)


def listen_problem(addr: str, flag: str, cause: BaseException | None = None) -> str:
    """Why binding `addr` fails, found by trying it once more with a plain socket."""
    try:
        host, port = split_addr(addr)
    except ValueError as exc:
        return str(exc)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    err: int | None = getattr(cause, "errno", None)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except socket.gaierror:
        return f"cannot listen on {addr}: {host!r} is not a known host name; use an address of this machine ({flag})"
    except OSError as exc:
        err = exc.errno
    if err == errno.EADDRINUSE:
        return (
            f"cannot listen on {addr}: the port is in use (another agentnet-server?); "
            f"stop that or choose another port with {flag}"
        )
    if err == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {addr}: {host} is not an address of this machine; "
            f"use 127.0.0.1, 0.0.0.0 or one of its addresses ({flag})"
        )
    if err == errno.EACCES:
        return f"cannot listen on {addr}: ports below 1024 need privileges; choose a port above 1023 with {flag}"
    detail = f" ({cause})" if cause is not None else ""
    return f"cannot listen on {addr}{detail}; check {flag}"


def redact(url: str) -> str:
    """A database URL without its password, fit for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def database_problem(url: str, cause: BaseException) -> str:
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if url.startswith(("postgresql:", "postgres:")):
        return (
            f"cannot use the database {redact(url)}: {first}; is PostgreSQL running and reachable, "
            "and are the user, password and database name in --db / AGENTNET_DB right?"
        )
    return f"cannot use the database {redact(url)}: {first}; check --db / AGENTNET_DB and the folder's permissions"

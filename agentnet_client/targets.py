"""Several server addresses for one client (docs/deploy.md): failover and drifting back.

`AGENTNET_SERVER` (or `Client(server=...)`) may be a comma-separated list of host:port, and a
name may have several DNS records; each record becomes an address of its own, verified against
the name in the server certificate. Each client starts at the address its identity picks (so
clients spread over the replicas), then goes down the list in order. An address that refused
or dropped the client is avoided for a cooldown that grows while it keeps failing; a client
that lives elsewhere checks now and then whether its own address serves again and moves back,
so the load returns to balance after a replica comes back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import time
import zlib
from collections.abc import Callable
from typing import Any

DEFAULT_PORT = 50051
RESOLVE_EVERY = 30.0  # seconds: DNS answers are asked again at a connect after this long


@dataclasses.dataclass(frozen=True)
class Target:
    """What gRPC dials, and the name the server certificate must carry (None: the host itself)."""

    addr: str
    name: str | None = None


def split_hostport(entry: str) -> tuple[str, int]:
    entry = entry.strip()
    if not entry:
        raise ValueError("an empty server address in the list")
    if entry.startswith("["):  # [::1]:50051
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    elif ":" in entry:  # a bare IPv6 address
        host, port = entry, ""
    else:
        host, port = entry, ""
    if port and not port.isdigit():
        raise ValueError(f"server address {entry!r}: the port must be a number")
    return host, int(port) if port else DEFAULT_PORT


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Resolver = Callable[..., list[Any]]


class Targets:
    """The addresses of one client, in its order, with what it learnt about each."""

    def __init__(
        self,
        spec: str,
        server_name: str | None = None,
        seed: str = "",
        *,
        cooldown: float = 1.0,
        max_cooldown: float = 30.0,
        resolve: Resolver = socket.getaddrinfo,
    ) -> None:
        self.entries = [split_hostport(e) for e in spec.split(",") if e.strip()]
        if not self.entries:
            raise ValueError("no server address given")
        self.spec = spec
        self.server_name = server_name
        self.seed = seed
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.resolve = resolve
        self._bad_until: dict[Target, float] = {}
        self._fails: dict[Target, int] = {}
        self._order: list[Target] = []
        self._resolved_at = 0.0
        self._names = any(not _is_ip(host) for host, _ in self.entries)

    @property
    def several(self) -> bool:
        return len(self.order()) > 1

    def order(self) -> list[Target]:
        """Every address (DNS names expanded), starting at this client's own."""
        if not self._order:
            self.refresh()
        return self._order

    async def refresh_if_old(self) -> None:
        """Before a connect: ask DNS again (off the event loop) when the answers are old."""
        if self._names and time.monotonic() - self._resolved_at > RESOLVE_EVERY:
            await asyncio.to_thread(self.refresh)

    def refresh(self) -> None:
        """Resolve the names again (a DNS change takes effect at the next connect)."""
        self._resolved_at = time.monotonic()
        out: list[Target] = []
        for host, port in self.entries:
            for target in self._expand(host, port):
                if target not in out:
                    out.append(target)
        home = zlib.crc32(self.seed.encode()) % len(out) if len(out) > 1 else 0
        self._order = out[home:] + out[:home]

    def _expand(self, host: str, port: int) -> list[Target]:
        plain = Target(_join(host, port), self.server_name)
        if _is_ip(host):
            return [plain]
        try:
            infos = self.resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return [plain]  # gRPC resolves it again and reports what is wrong
        ips: list[str] = []
        for info in infos:
            ip = str(info[4][0])
            if ip not in ips:
                ips.append(ip)
        if len(ips) <= 1 or all(ipaddress.ip_address(ip).is_loopback for ip in ips):
            return [plain]  # one record (or this machine under several names): let gRPC dial the name
        return [Target(_join(ip, port), self.server_name or host) for ip in ips]

    @property
    def home(self) -> Target:
        return self.order()[0]

    def pick(self) -> Target:
        """The first address in order that is not cooling down (else the one that recovers first)."""
        order = self.order()
        now = time.monotonic()
        for t in order:
            if self._bad_until.get(t, 0.0) <= now:
                return t
        return min(order, key=lambda t: self._bad_until.get(t, 0.0))

    def all_cooling(self) -> bool:
        now = time.monotonic()
        return all(self._bad_until.get(t, 0.0) > now for t in self.order())

    def failed(self, target: Target) -> None:
        n = self._fails.get(target, 0)
        self._fails[target] = n + 1
        self._bad_until[target] = time.monotonic() + min(self.max_cooldown, self.cooldown * 2**n)

    def succeeded(self, target: Target) -> None:
        self._fails.pop(target, None)
        self._bad_until.pop(target, None)

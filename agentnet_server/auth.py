"""Who is calling: the device behind the TLS client certificate, and whether it is revoked."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from cryptography import x509
from grpc_interceptor import AsyncServerInterceptor

from . import pki
from .errors import AgentnetError, Internal, InvalidArgument, Unauthenticated
from .rpc import status
from .store import ops
from .store.db import Database

log = logging.getLogger("agentnet.auth")


@dataclasses.dataclass(frozen=True)
class Peer:
    """An authenticated device."""

    device_id: str
    fingerprint: str
    cert: x509.Certificate

    @property
    def short(self) -> str:
        """How logs name a device: id and fingerprint prefix (never key material)."""
        return f"{self.device_id}/{self.fingerprint[:12]}"


current_peer: contextvars.ContextVar[Peer] = contextvars.ContextVar("agentnet_peer")


class BadRequest:
    """A unary request that could not be parsed; the interceptor answers INVALID_ARGUMENT."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def server_credentials(certs: pki.CertsDir) -> grpc.ServerCredentials:
    """mTLS: the client must present a certificate issued by the network CA."""
    for key in (certs.server_key, certs.ca_key):
        if key.exists():
            pki.check_private_permissions(key)
    return grpc.ssl_server_credentials(
        [(certs.server_key.read_bytes(), certs.server_cert.read_bytes())],
        root_certificates=certs.ca_cert.read_bytes(),
        require_client_auth=True,
    )


class Revocations:
    """The revoked set, re-read from the store so `agentnet-server revoke` acts within seconds."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.fingerprints: frozenset[str] = frozenset()
        self.devices: frozenset[str] = frozenset()
        self._known: set[str] = set()
        self.on_revoked: Callable[[frozenset[str], frozenset[str]], None] | None = None
        self.refreshed_at: float | None = None  # monotonic time of the last successful re-read

    async def refresh(self) -> None:
        fps, devices = await self.db.read(ops.revocations)
        self.refreshed_at = time.monotonic()
        changed = fps != self.fingerprints or devices != self.devices
        self.fingerprints, self.devices = fps, devices
        if changed and self.on_revoked is not None:
            self.on_revoked(fps, devices)

    async def poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except AgentnetError as exc:
                log.warning("could not re-read revocations: %s", exc.message)

    def is_revoked(self, peer: Peer) -> bool:
        # A revoked device is refused with every certificate until it is enrolled again.
        return peer.fingerprint in self.fingerprints or peer.device_id in self.devices

    def check(self, peer: Peer) -> None:
        if self.is_revoked(peer):
            raise Unauthenticated(
                f"device {peer.device_id!r} (certificate {peer.fingerprint[:12]}…) has been revoked; "
                "ask the operator to enroll it again",
                reason="DEVICE_REVOKED",
            )

    async def remember(self, peer: Peer) -> None:
        """Record a certificate the first time it is seen, so `devices` can list it."""
        if peer.fingerprint in self._known:
            return
        cert = peer.cert
        await self.db.write(
            ops.record_device_cert,
            peer.device_id,
            peer.fingerprint,
            format(cert.serial_number, "x"),
            int(cert.not_valid_after_utc.timestamp() * 1e6),
            pki.cert_pem(cert).decode(),
            False,
        )
        self._known.add(peer.fingerprint)


_cert_cache: dict[bytes, Peer] = {}


def peer_from_pem(pem: bytes) -> Peer:
    peer = _cert_cache.get(pem)
    if peer is None:
        cert = x509.load_pem_x509_certificate(pem)
        peer = Peer(pki.device_id_of(cert), pki.fingerprint(cert), cert)
        if len(_cert_cache) > 10_000:
            _cert_cache.clear()
        _cert_cache[pem] = peer
    return peer


def peer_of(context: grpc.aio.ServicerContext) -> Peer:
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert")
    if not pems:
        raise Unauthenticated("a client certificate is required (mTLS)", reason="NO_CLIENT_CERTIFICATE")
    try:
        return peer_from_pem(pems[0])
    except (ValueError, pki.PkiError) as exc:
        raise Unauthenticated(
            f"the client certificate could not be read: {exc}", reason="BAD_CLIENT_CERTIFICATE"
        ) from None


class AuthInterceptor(AsyncServerInterceptor):
    """Identify the device, refuse revoked ones, and map domain errors of unary calls to status."""

    PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

    def __init__(self, revocations: Revocations) -> None:
        self.revocations = revocations

    async def intercept(
        self, method: Callable[..., Any], request_or_iterator: Any, context: grpc.aio.ServicerContext, method_name: str
    ) -> Any:
        try:
            peer = peer_of(context)
            # Health and reflection too: a revoked device learns nothing, not even that we serve.
            self.revocations.check(peer)
            if method_name.startswith(self.PUBLIC_PREFIXES):
                return await _call(method, request_or_iterator, context)
            await self.revocations.remember(peer)
            if isinstance(request_or_iterator, BadRequest):
                raise InvalidArgument(
                    f"the request could not be parsed as {method_name.rsplit('/', 1)[-1]}Request: "
                    f"{request_or_iterator.error}",
                    reason="BAD_REQUEST",
                )
        except AgentnetError as exc:
            log.info("refused %s: %s", method_name, exc.message)
            await status.abort(context, exc)
        current_peer.set(peer)
        try:
            return await _call(method, request_or_iterator, context)
        except AgentnetError as exc:
            await status.abort(context, exc)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("%s failed for %s", method_name, peer.short)
            await status.abort(context, Internal(f"internal error ({type(exc).__name__}); see the server log"))


async def _call(method: Callable[..., Any], request: Any, context: grpc.aio.ServicerContext) -> Any:
    result = method(request, context)
    if hasattr(result, "__aiter__"):
        return result
    return await result

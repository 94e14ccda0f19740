"""The HTTPS server of the REST shim (aiohttp, device certificates required).

Requests are dispatched in-process to the unary implementations with the caller's device
identity (its TLS client certificate) in `auth.current_peer`, exactly as on gRPC. Routes come from
the generic transcoder; `GET /api/events` is the SSE adapter and `GET /api/openapi.json` serves
the document generated from the same rules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.descriptor import ServiceDescriptor

from .. import auth, pki
from ..errors import AgentnetError
from ..guard import Guard, GuardedListener, Limits, listen
from ..startup import split_addr
from .errors import HttpError, bad_request, error_response, json_response, method_not_allowed
from .sse import EVENTS_PATH, EventStream
from .transcoder import OPENAPI_PATH, Transcoder

log = logging.getLogger("agentnet.gateway")


def ssl_context(certs: pki.CertsDir) -> ssl.SSLContext:
    """Server TLS that requires a client certificate issued by the network CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca_cert))
    ctx.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Gateway:
    """The aiohttp HTTPS server of the REST shim, in the gRPC server's event loop.

    Its dependencies are narrow: the unary implementations (an object with one coroutine per RPC
    name, called as on gRPC), `admit` (refuses a revoked device, remembers a new one), the TLS
    context, the SSE event stream and the OpenAPI document builder.
    """

    def __init__(
        self,
        *,
        unary: object,
        admit: Callable[[auth.Peer], Awaitable[None]],
        tls: ssl.SSLContext,
        max_body: int,
        shutdown_grace: float,
        events: EventStream | None = None,
        document: Callable[[], dict[str, Any]] | None = None,
        services: Iterable[ServiceDescriptor] = (),
        guard: Guard | None = None,
    ) -> None:
        self.unary = unary
        self.admit = admit
        self.tls = tls
        self.shutdown_grace = shutdown_grace
        self.events = events
        self.document = document
        self.transcoder = Transcoder(services, docs_path=OPENAPI_PATH)
        self.max_body = max_body
        self.runner: web.AppRunner | None = None
        self.guard = guard or Guard(Limits())
        self.listener: GuardedListener | None = None
        self._openapi: bytes | None = None
        self._openapi_lock = asyncio.Lock()
        self.extra: dict[str, tuple[str, ...]] = {}
        if events is not None:
            self.extra[EVENTS_PATH] = ("GET",)
        if document is not None:
            self.extra[OPENAPI_PATH] = ("GET",)

    async def start(self, addr: str) -> int:
        host, port = split_addr(addr)
        web_app = web.Application(client_max_size=self.max_body)
        web_app.router.add_route("*", "/{tail:.*}", self.handle, expect_handler=self._expect)
        self.runner = runner = web.AppRunner(
            web_app,
            access_log_format='%a "%r" %s %b %Tf',
            shutdown_timeout=max(0.5, self.shutdown_grace),
        )
        await runner.setup()
        site = _GuardedSite(runner, self.tls, self.guard, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(f"could not listen on {addr} for REST: {exc.strerror or exc}") from None
        self.listener = site.listener
        bound = runner.addresses[0][1]
        log.info("REST shim on https://%s:%d (%d routes)", host, bound, len(self.transcoder.routes))
        return int(bound)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- request handling ---------------------------------------------------------------------

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refuse an oversized body before the client sends it."""
        if request.content_length is not None and request.content_length > self.max_body:
            return error_response(self._too_large())
        expect = request.headers.get("Expect", "")
        if request.version == (1, 1):
            if expect.lower() != "100-continue":
                return error_response(
                    HttpError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Expect: {expect[:80]!r} is not supported (only 100-continue is)",
                        "BAD_REQUEST",
                        http_status=417,
                    )
                )
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the main body has not started yet
        return None

    def _too_large(self) -> HttpError:
        return HttpError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the request body is larger than {self.max_body} bytes",
            "BODY_TOO_LARGE",
            http_status=413,
            metadata={"limit": str(self.max_body)},
        )

    def _peer(self, request: web.Request) -> auth.Peer:
        transport = request.transport
        sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if not der:
            raise HttpError(
                grpc.StatusCode.UNAUTHENTICATED,
                "a client certificate is required (mTLS)",
                "NO_CLIENT_CERTIFICATE",
            )
        try:
            return auth.peer_from_pem(ssl.DER_cert_to_PEM_cert(der).encode())
        except ValueError as exc:
            raise HttpError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"the client certificate could not be read: {exc}",
                "BAD_CLIENT_CERTIFICATE",
            ) from None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        peer: auth.Peer | None = None
        if self.listener is not None:
            self.listener.seen(request.transport)
        try:
            peer = self._peer(request)
            await self.admit(peer)
            auth.current_peer.set(peer)
            extra = self.extra.get(path)
            if extra is not None:
                if request.method not in extra:
                    raise method_not_allowed(request.method, path, list(extra))
                if path == EVENTS_PATH and self.events is not None:
                    return await self.events.handle(request, peer)
                return await self.openapi(request)
            route, groups = self.transcoder.match(request.method, path)
            body = await self._read_body(request) if route.body else b""
            msg = self.transcoder.build_request(route, groups, request.rel_url.query.items(), body)
            impl = getattr(self.unary, route.rpc_name, None)
            if impl is None:
                raise HttpError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{route.method.full_name} is not implemented by this server",
                    "UNIMPLEMENTED",
                )
            result = await impl(msg, None)
            return json_response(self.transcoder.render(route, result))
        except (AgentnetError, HttpError) as exc:
            if peer is None or (isinstance(exc, AgentnetError) and exc.status == "UNAUTHENTICATED"):
                log.info("refused %s %s: %s", request.method, path[:200], exc.message if exc.message else exc)
            return error_response(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s %s failed for %s", request.method, path[:200], peer.short if peer else "?")
            return error_response(
                HttpError(
                    grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log", "INTERNAL"
                )
            )

    async def _read_body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise self._too_large()
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise self._too_large() from None

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        if request.rel_url.query:
            raise bad_request(f"{OPENAPI_PATH} takes no query parameters", "UNEXPECTED_QUERY_PARAMETER")
        assert self.document is not None
        async with self._openapi_lock:
            if self._openapi is None:
                doc = await asyncio.to_thread(self.document)
                self._openapi = json.dumps(doc, ensure_ascii=False, indent=2).encode()
        return web.Response(body=self._openapi, content_type="application/json", charset="utf-8")


class _GuardedSite(web.BaseSite):
    """aiohttp's TCPSite with the connection guard in front of TLS (agentnet_server.guard)."""

    __slots__ = ("_guard", "_host", "_port", "_tls", "listener")

    def __init__(self, runner: web.AppRunner, tls: ssl.SSLContext, guard: Guard, host: str, port: int) -> None:
        super().__init__(runner)
        self._tls, self._guard, self._host, self._port = tls, guard, host, port
        self.listener: GuardedListener | None = None

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.listener = GuardedListener(listen(self._host, self._port), server, self._tls, self._guard)
        self._server = self.listener  # type: ignore[assignment]

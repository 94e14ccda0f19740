"""Composition root: builds store, hub, domain and rpc (the domain gets the hub as its `Live`);
runs and stops the server gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agentnet.v1 import events_pb2, service_pb2

from . import auth, files, guard, memory, pki
from .config import Settings
from .domain.inbox import Inbox, ReadResult
from .domain.limits import Limiter
from .domain.network import Network
from .domain.tasks import Tasks
from .health import Readiness
from .live.hub import Event, Hub, PresenceChange
from .metrics import Metrics
from .records import now_us
from .rpc import status
from .rpc.servicer import AgentNetServicer
from .rpc.session import SessionService, parse_client_event, passthrough, read_markers_event
from .startup import StartupError, database_problem, listen_problem
from .store import ops
from .store.db import Database
from .tlsreload import ServerTls

if TYPE_CHECKING:
    from .rest.health import HealthServer

log = logging.getLogger("agentnet.server")

PRUNE_BATCH = 500  # rows per retention transaction
REFUSED_RETRY_AFTER = 1.0  # seconds a stream refused while the replica cannot serve is told to wait

SERVICE = service_pb2.DESCRIPTOR.services_by_name["AgentNet"]


BadRequest = auth.BadRequest


def _safe_parser(cls: Any) -> Any:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, RecursionError) as exc:
            return BadRequest(str(exc) or type(exc).__name__)

    return parse


def _serialize(msg: Any) -> bytes:
    data: bytes = msg.SerializeToString()
    return data


def build_handler(
    servicer: Any, sessions: SessionService, readiness: Readiness | None = None
) -> grpc.GenericRpcHandler:
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    session_handler: Any = sessions.handle
    if readiness is not None:
        session_handler = _gated(sessions.handle, readiness)
    for m in SERVICE.methods:
        if m.client_streaming and m.server_streaming:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(
                session_handler, request_deserializer=parse_client_event, response_serializer=passthrough
            )
            continue
        impl = getattr(servicer, m.name, None)
        if impl is None:
            continue  # answered UNIMPLEMENTED by gRPC
        handlers[m.name] = grpc.unary_unary_rpc_method_handler(
            impl,
            request_deserializer=_safe_parser(message_factory.GetMessageClass(m.input_type)),
            response_serializer=_serialize,
        )
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)


def _gated(handle: Any, readiness: Readiness) -> Any:
    """New sessions are refused with UNAVAILABLE while the replica cannot serve (store lost)."""

    async def gated(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        refused = readiness.refusal()
        if refused is not None:
            message, reason = refused
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                message,
                trailing_metadata=status.trailing("UNAVAILABLE", message, reason, {}, REFUSED_RETRY_AFTER),
            )
        async for data in handle(requests, context):
            yield data

    return gated


def server_options(s: Settings) -> list[tuple[str, Any]]:
    """Transport settings (docs/architecture.md, Transport notes): notice dead links in seconds, never share the port,
    do not refuse reconnect storms."""
    return [
        ("grpc.keepalive_time_ms", int(s.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout * 1000)),
        ("grpc.http2.ping_timeout_ms", int(s.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 4000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", s.max_message_bytes),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        # Unauthenticated connections: the handshake must finish in time; all connections capped.
        ("grpc.server_handshake_timeout_ms", int(s.handshake_timeout * 1000)),
        ("grpc.max_allowed_incoming_connections", s.max_grpc_connections),
        ("grpc.server.max_pending_requests", 20000),
        ("grpc.server.max_pending_requests_hard_limit", 40000),
    ]


@dataclasses.dataclass
class Bound:
    grpc_port: int
    http_port: int | None
    health_port: int | None = None


class App:
    def __init__(self, settings: Settings) -> None:
        settings.validate()
        self.settings = settings
        self.certs = pki.CertsDir(settings.certs)
        self.db: Database | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else None
        self.tasks: list[asyncio.Task[Any]] = []
        self.bound: Bound | None = None
        self.http: Any = None
        self.health_server: HealthServer | None = None
        self.metrics = Metrics()
        self._stopped = asyncio.Event()

    async def start(self) -> Bound:
        """Start everything or nothing: a failure undoes what was started and raises (StartupError
        for the operator's mistakes: a port in use, an unreachable database, ...)."""
        try:
            return await self._start()
        except BaseException:
            await self._abort()
            raise

    async def _abort(self) -> None:
        for step in (
            lambda: self.http.stop() if self.http is not None else None,
            lambda: self.health_server.stop() if self.health_server is not None else None,
            lambda: self.server.stop(0) if self.server is not None else None,
            lambda: self.hub.stop() if getattr(self, "hub", None) is not None else None,
        ):
            with contextlib.suppress(Exception):
                pending = step()
                if pending is not None:
                    await pending
        if getattr(self, "listener", None) is not None:
            with contextlib.suppress(Exception):
                self.listener.stop()
        for t in self.tasks:
            t.cancel()
        if self.db is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.db.close)
        self.server = self.http = self.db = None

    async def _start(self) -> Bound:
        s = self.settings
        # Reloadable on SIGHUP (tlsreload); checks key permissions and the chain like auth.server_credentials.
        self.tls = ServerTls(self.certs)
        creds = self.tls.grpc_credentials()
        # Every message is in there: owner-only from the first byte, -wal and -shm too.
        files.secure_sqlite(s.db)
        try:
            self.db = db = Database(
                s.db,
                s.sqlite_synchronous,
                s.reader_threads,
                s.writer_batch,
                timeout=s.store_timeout,
                lock_timeout=s.store_lock_timeout,
            )
            db.on_commit_time = self.metrics.commit_seconds.observe
            version = await asyncio.to_thread(db.migrate)
        except Exception as exc:
            raise StartupError(database_problem(s.db, exc)) from exc
        db.start(asyncio.get_running_loop())
        self.hub = hub = Hub(s.heartbeat_interval, s.session_queue, presence_batch=s.presence_batch)
        self.net = net = Network(s, db, hub)
        await net.load()
        hub.on_presence = self._broadcast_presence
        hub.start()

        if s.retention_days > 0:
            self.tasks.append(asyncio.create_task(self._retention(), name="agentnet-retention"))
        if s.empty_group_ttl > 0:
            self.tasks.append(asyncio.create_task(self._expire_groups(), name="agentnet-empty-groups"))

        self.revocations = rev = auth.Revocations(db)
        rev.on_revoked = self._on_revoked
        await rev.refresh()
        self.tasks.append(asyncio.create_task(rev.poll(s.revocation_poll), name="agentnet-revocations"))
        # Memory freed by closed connections goes back to the OS (HTTPS closes, or RSS growth).
        self.trimmer = memory.Trimmer()
        self.tasks.append(asyncio.create_task(self.trimmer.poll(), name="agentnet-trim"))

        self.inbox = Inbox(net)
        self.tasks_domain = Tasks(net)
        self.sessions = SessionService(s, net, hub)
        self.sessions.inbox, self.sessions.tasks = self.inbox, self.tasks_domain
        self.inbox.on_read = self._on_read
        self.servicer = AgentNetServicer(net, hub, self.inbox, self.tasks_domain)
        self.limiter = Limiter(
            s.sends_per_second,
            s.send_burst,
            s.events_per_second,
            s.event_burst,
            s.reads_per_second,
            s.read_burst,
            s.group_creates_per_hour,
        )
        self.sessions.limiter = self.servicer.limiter = self.net.limiter = self.limiter
        self.sessions.revocations = rev
        self.readiness = Readiness(
            db.ping,
            self._resync,
            self._set_serving,
            self._close_for_outage,
            self._listening,
            grace=s.store_outage_grace,
        )
        db.on_lost = self.readiness.lost
        self.metrics.watch(self)
        self._extend()

        self.server = server = grpc.aio.server(interceptors=[auth.AuthInterceptor(rev)], options=server_options(s))
        server.add_generic_rpc_handlers((build_handler(self.servicer, self.sessions, self.readiness),))
        health_servicer = health.aio.HealthServicer()
        self.health = health_servicer
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            port = server.add_secure_port(s.grpc_addr, creds)
        except RuntimeError as exc:
            raise StartupError(listen_problem(s.grpc_addr, "--grpc-addr")) from exc
        if not port:
            raise StartupError(listen_problem(s.grpc_addr, "--grpc-addr"))
        await server.start()
        if db.is_postgres:
            await self._start_replication()
        await self.readiness.serving()
        http_port = await self._start_http()
        health_port = await self._start_health()
        host = s.grpc_addr.rsplit(":", 1)[0]
        self.bound = Bound(port, http_port, health_port)
        log.info(
            "agentnet serving gRPC on %s:%d (schema v%d, store %s)%s",
            host,
            port,
            version,
            "postgresql" if db.is_postgres else "sqlite",
            f", REST on port {http_port}" if http_port else "",
        )
        return self.bound

    def _extend(self) -> None:
        """Hook for features that add event kinds or RPCs (inbox, tasks, security)."""

    async def _start_http(self) -> int | None:
        """The REST shim (HTTPS + device certificates) on settings.http_addr; "" or "off" disables it."""
        addr = self.settings.http_addr.strip()
        if not addr or addr.lower() == "off":
            return None
        from .rest import openapi
        from .rest.server import Gateway, ssl_context
        from .rest.sse import EventStream

        rev = self.revocations

        async def admit(peer: auth.Peer) -> None:
            rev.check(peer)
            await rev.remember(peer)

        gateway = Gateway(
            unary=self.servicer,
            admit=admit,
            tls=self.tls.rest(ssl_context(self.certs)),
            max_body=self.settings.max_message_bytes,
            shutdown_grace=self.settings.shutdown_grace,
            events=EventStream(
                self.net.acting_agent,
                self.sessions,
                self.settings.heartbeat_interval,
                refusal=self.readiness.refusal,
                retry_after=REFUSED_RETRY_AFTER,
            ),
            document=openapi.build_document,
            services=service_pb2.DESCRIPTOR.services_by_name.values(),
            guard=guard.Guard(
                guard.Limits(
                    max_unauthenticated=self.settings.max_unauthenticated,
                    max_unauthenticated_per_source=self.settings.max_unauthenticated_per_source,
                    max_handshakes=self.settings.max_handshakes,
                    handshake_timeout=self.settings.handshake_timeout,
                    header_timeout=self.settings.header_timeout,
                ),
                self.trimmer,
            ),
        )
        try:
            port = await gateway.start(addr)
        except OSError as exc:
            raise StartupError(listen_problem(addr, "--http-addr", exc)) from exc
        self.http = gateway
        return port

    async def _start_health(self) -> int | None:
        """/healthz, /readyz and /metrics on settings.health_addr (plain HTTP); "off" disables it."""
        addr = self.settings.health_addr.strip()
        if not addr or addr.lower() == "off":
            return None
        from .rest.health import HealthServer  # aiohttp is loaded only when an HTTP port is on

        server = HealthServer(self.readiness, self.metrics.render)
        try:
            port = await server.start(addr)
        except (OSError, ValueError) as exc:
            raise StartupError(listen_problem(addr, "--health-addr", exc)) from exc
        self.health_server = server
        return port

    async def _set_serving(self, serving: bool) -> None:
        if self.health is None:
            return
        state = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", state)
        await self.health.set(SERVICE.full_name, state)

    def _listener_lost(self, kind: str, exc: BaseException) -> None:
        assert self.db is not None
        self.db.suspect_connections()
        self.db.stats.error("connection_lost")
        self.db.stats.reconnect(kind)
        self.readiness.lost(kind, exc)

    def _listening(self) -> bool:
        listener = getattr(self, "listener", None)
        return listener is None or listener.ready.is_set()

    async def _resync(self) -> None:
        """After a store outage: re-read caches and revocations; every live session catches up
        from the store (what it may have missed while the store or the listener was away)."""
        await self.net._resync()
        await self.revocations.refresh()

    def _close_for_outage(self) -> int:
        return self.hub.close_where(
            lambda _s: True,
            "UNAVAILABLE",
            "this replica lost its store; reconnect (to another replica if you have one) and resume",
            "STORE_UNAVAILABLE",
        )

    async def _start_replication(self) -> None:
        """On PostgreSQL several replicas may share the store: announce our changes, hear theirs."""
        from .store.pubsub import Listener

        assert self.db is not None
        replica = uuid.uuid4().hex[:12]
        self.db.replica = replica
        remote: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10_000)

        def deliver(data: dict[str, Any]) -> None:
            try:
                remote.put_nowait(data)
            except asyncio.QueueFull:
                # Far behind the other replicas: drop the backlog and catch up from the store.
                while not remote.empty():
                    remote.get_nowait()
                remote.put_nowait({"resync": True})

        self.listener = Listener(
            self.settings.db,
            replica,
            asyncio.get_running_loop(),
            deliver,
            on_lost=self._listener_lost,
            on_lag=self.metrics.notify_lag_seconds.observe,
            connect_timeout=self.settings.store_timeout,
        )
        self.listener.start()
        if not await asyncio.to_thread(self.listener.ready.wait, 10):
            log.warning("the change listener is not connected yet; other replicas' changes may arrive late")

        async def apply() -> None:
            while True:
                data = await remote.get()
                try:
                    await self.net.apply_remote(data)
                except Exception as exc:  # noqa: BLE001 - resynchronise rather than leave a hole
                    log.warning("could not apply a change from another replica (%s); resynchronising", exc)
                    self.readiness.lost("apply", exc)

        self.tasks.append(asyncio.create_task(apply(), name="agentnet-replication"))

        async def snapshots() -> None:
            # Other replicas forget our agents 3 intervals after our last word (a crashed replica).
            while True:
                await asyncio.sleep(self.settings.heartbeat_interval)
                self._announce_presence(sorted(self.hub.by_agent), [])

        self.tasks.append(asyncio.create_task(snapshots(), name="agentnet-presence-snapshots"))
        log.info("replica %s: sharing changes with other replicas of this PostgreSQL store", replica)

    async def _retention(self) -> None:
        """Delete history older than the retention, in bounded batches through the writer, so
        sends wait for one batch at most. Runs now and then every prune_interval."""
        s = self.settings
        assert self.db is not None
        while True:
            cutoff = now_us() - int(s.retention_days * 86_400_000_000)
            messages = feed = 0
            try:
                while True:
                    m, f = await self.db.write(ops.prune_history, cutoff, PRUNE_BATCH)
                    messages, feed = messages + m, feed + f
                    if m < PRUNE_BATCH and f < PRUNE_BATCH:
                        break
            except Exception as exc:  # noqa: BLE001 - the store may be down; try again next round
                log.warning("retention: could not delete old history (%s); trying again in %g s", exc, s.prune_interval)
            if messages or feed:
                log.info(
                    "retention: deleted %d messages and %d inbox entries older than %g days",
                    messages,
                    feed,
                    s.retention_days,
                )
            await asyncio.sleep(s.prune_interval)

    async def _expire_groups(self) -> None:
        """Delete groups left without members for empty_group_ttl (checked every ttl/4, at most 60 s)."""
        interval = min(60.0, max(0.05, self.settings.empty_group_ttl / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                gone = await self.net.expire_empty_groups()
            except Exception as exc:  # noqa: BLE001 - the store may be down; try again next round
                log.warning("could not delete empty groups (%s); trying again in %g s", exc, interval)
                continue
            if gone:
                log.info("deleted %d group(s) without members: %s", len(gone), ", ".join(gone[:20]))

    def _on_read(self, agent_id: str, result: ReadResult) -> None:
        """Read markers apply to the agent: tell all its sessions (its other devices too)."""
        self.hub.send_control((agent_id,), Event(events_pb2.ServerEvent(read_markers=read_markers_event(result))))

    def _broadcast_presence(self, changes: list[PresenceChange], local: list[PresenceChange]) -> None:
        if changes:
            self.sessions.roster.broadcast_presence(changes)
        if local and self.db is not None and self.db.replica is not None:
            self._announce_presence(
                [c.agent_id for c in local if c.online], [c.agent_id for c in local if not c.online]
            )

    def _announce_presence(self, online: list[str], offline: list[str]) -> None:
        """Tell other replicas which agents are connected here (ids only, cut by size)."""
        assert self.db is not None
        fut = self.db.announce_presence(online, offline)
        fut.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    def _on_revoked(self, fps: frozenset[str], devices: frozenset[str]) -> None:
        n = self.hub.close_where(
            lambda sess: sess.fingerprint in fps or sess.device_id in devices,
            "UNAUTHENTICATED",
            "this device has been revoked; ask the operator to enroll it again",
            "DEVICE_REVOKED",
        )
        if n:
            log.warning("closed %d session(s) of revoked devices", n)

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.shutdown_grace if grace is None else grace
        if getattr(self, "readiness", None) is not None:
            await self.readiness.stop()
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        if self.server is not None:
            self.hub.close_where(
                lambda _s: True, "UNAVAILABLE", "the server is shutting down; reconnect and resume", "SHUTDOWN"
            )
            if self.http is not None:
                await self.http.stop()
            await self.server.stop(grace)
        if getattr(self, "listener", None) is not None:
            self.listener.stop()
        if self.health_server is not None:
            await self.health_server.stop()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        if self.server is not None:
            await self.hub.stop()
        if self.db is not None:
            await asyncio.to_thread(self.db.close)
        self._stopped.set()

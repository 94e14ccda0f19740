"""`GET /api/events`: the caller's server events as Server-Sent Events, resumable with
Last-Event-ID: the second adapter over the live session (the gRPC Session stream is the first).

The session's delivery engine renders each event with `SseFormat` (a live.format.Format): the
SSE frame (`id`, `event`, `data` as JSON) and the cursor that writing it delivers, made from the
ServerEvent message, never by parsing serialized bytes. A sequenced envelope's frame is made once
and shared by every SSE stream that receives it, as is a shared event's (presence, the agent
list). This module writes the frames and acknowledges their cursors once written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple, Protocol

import grpc
from aiohttp import web
from google.protobuf import json_format

from agentnet.v1 import events_pb2, resources_pb2

from ..auth import Peer
from ..live import encode
from ..live.hub import Event
from ..records import Envelope, inbox_conv
from .errors import HttpError, bad_request, grpc_code

log = logging.getLogger("agentnet.gateway")

EVENTS_PATH = "/api/events"
MAX_CURSORS = 10_000
SSE_QUEUE = 64
STALL_INTERVALS = 3

# -- Server-Sent Events -------------------------------------------------------------------------


def _utf8(text: str) -> bool:
    """Header bytes that are not UTF-8 reach us as surrogates (and no conversation has them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_last_event_id(text: str) -> list[resources_pb2.Cursor]:
    """`Last-Event-ID: <conversation>:<seq>[, <conversation>:<seq> ...]` → resume cursors."""
    out: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        conv, sep, seq = part.rpartition(":")
        if not sep or not conv or not re.fullmatch(r"[0-9]{1,18}", seq) or not _utf8(conv):
            raise bad_request(
                f"Last-Event-ID: {part[:80]!r} is not <conversation>:<seq> (for example group:dev-team:42)",
                "BAD_CURSOR",
                "Last-Event-ID",
            )
        out[conv] = max(out.get(conv, 0), int(seq))
    if len(out) > MAX_CURSORS:
        raise bad_request(f"Last-Event-ID has {len(out)} cursors; the limit is {MAX_CURSORS}", "TOO_MANY_CURSORS")
    return [resources_pb2.Cursor(conversation=c, seq=s) for c, s in out.items()]


SEQUENCED_FEED = ("mention", "task_assigned", "task_updated", "direct_message")


def sse_frame(ev: events_pb2.ServerEvent, inbox: str) -> tuple[bytes, tuple[str, int] | None]:
    """One SSE event (`id`, `event`, `data`) and the cursor it delivers, if any."""
    kind = ev.WhichOneof("event") or "unknown"
    cursor: tuple[str, int] | None = None
    if kind == "message":
        cursor = (ev.message.conversation, ev.message.seq)
    elif kind in SEQUENCED_FEED:
        cursor = (inbox, getattr(ev, kind).item.seq)
    elif kind == "history_gap":  # deleted history: resuming from here must not ask for it again
        cursor = (ev.history_gap.conversation, ev.history_gap.to_seq)
    data = json.dumps(
        json_format.MessageToDict(ev, always_print_fields_with_no_presence=True),
        ensure_ascii=False,
        separators=(",", ":"),
    )
    head = f"id: {cursor[0]}:{cursor[1]}\n" if cursor else ""
    return f"{head}event: {kind}\ndata: {data}\n\n".encode(), cursor


class SseFrame(NamedTuple):
    """What the event stream writes for one ServerEvent."""

    data: bytes  # the SSE event; empty for one the stream leaves out (heartbeat acks)
    cursor: tuple[str, int] | None  # what writing it delivers (acknowledged once written)
    error: events_pb2.Error | None = None  # an Error event's error (first in the stream: an HTTP error)


_SKIP = SseFrame(b"", None)


class SseFormat:
    """The event stream's output format (a live.format.Format[SseFrame]) for one agent's stream."""

    def __init__(self, inbox: str) -> None:
        self.inbox = inbox

    @staticmethod
    def envelope(env: Envelope) -> SseFrame:
        frame: SseFrame | None = env.text
        if frame is None:
            # Made once for every recipient: nothing in it depends on the stream. (An inbox item's
            # cursor is the recipient's inbox, which is the envelope's conversation.)
            data, cursor = sse_frame(encode.envelope_event(env), env.conv)
            frame = env.text = SseFrame(data, cursor)
        return frame

    def event(self, ev: Event) -> SseFrame:
        frame: SseFrame | None = ev.text
        if frame is None:
            # Shared events (presence, read markers, the agent list) are made once: unsequenced
            # events carry no inbox cursor, so nothing in the frame depends on the stream.
            frame = ev.text = self._frame(ev.message())
        return frame

    def _frame(self, ev: events_pb2.ServerEvent) -> SseFrame:
        kind = ev.WhichOneof("event")
        if kind == "heartbeat_ack":
            return _SKIP  # the stream answers the heartbeats it sends itself
        data, cursor = sse_frame(ev, self.inbox)
        return SseFrame(data, cursor, ev.error if kind == "error" else None)


async def _pump(gen: AsyncIterator[SseFrame], out: asyncio.Queue[SseFrame | None]) -> None:
    """Move SSE frames from the session's delivery engine to the SSE writer, then None for the
    end (a session that ends with an error has already sent its fatal Error event as the last
    frame).

    Pulling the next event right after queueing one lets the Session writer record the
    delivered cursor before the SSE writer acknowledges it.
    """
    try:
        async for frame in gen:
            await out.put(frame)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("event stream failed")
    finally:
        aclose = getattr(gen, "aclose", None)
        if aclose is not None:
            await aclose()
    await out.put(None)


async def _write(resp: web.StreamResponse, data: bytes, interval: float) -> None:
    """Write to an SSE client; one that has not read for 3 heartbeat intervals is gone."""
    try:
        await asyncio.wait_for(resp.write(data), STALL_INTERVALS * interval)
    except TimeoutError:
        raise ConnectionError(f"the client read nothing for {STALL_INTERVALS * interval:g} s") from None


async def _request_events(q: asyncio.Queue[events_pb2.ClientEvent | None]) -> AsyncIterator[events_pb2.ClientEvent]:
    while True:
        ev = await q.get()
        if ev is None:
            return
        yield ev


class LiveSession(Protocol):
    def stream(self) -> AsyncIterator[SseFrame]: ...


class SessionOpener(Protocol):
    """Opens a live session for a stream of client events, its frames made by `fmt`
    (rpc.session.SessionService)."""

    def open(self, peer: Peer, requests: AsyncIterator[events_pb2.ClientEvent], fmt: SseFormat) -> LiveSession: ...


class EventStream:
    """`GET /api/events` for one caller: its Session, written as SSE frames and acknowledged as they go out."""

    def __init__(
        self,
        acting_agent: Callable[[str, str], str],
        sessions: SessionOpener,
        heartbeat_interval: float,
        *,
        refusal: Callable[[], tuple[str, str] | None] | None = None,
        retry_after: float = 1.0,
    ) -> None:
        self.acting_agent = acting_agent
        self.sessions = sessions
        self.heartbeat_interval = heartbeat_interval
        # Why the replica cannot take a stream now (message, reason), or None: the gRPC Session's
        # UNAVAILABLE refusal, as HTTP 503 with Retry-After, before any store work.
        self.refusal = refusal
        self.retry_after = retry_after

    async def handle(self, request: web.Request, peer: Peer) -> web.StreamResponse:
        """The caller's ServerEvents as Server-Sent Events, resumable with Last-Event-ID."""
        query = request.rel_url.query
        for key in query:
            if key not in ("agent_id", "agentId", "last_event_id"):
                raise bad_request(
                    f"unknown query parameter {key!r} (known: agent_id, last_event_id)", "UNKNOWN_FIELD", key
                )
            if len(query.getall(key)) > 1 or (key == "agentId" and "agent_id" in query):
                raise bad_request(f"query parameter {key!r} is given more than once", "DUPLICATE_FIELD", key)
        refused = self.refusal() if self.refusal is not None else None
        if refused is not None:
            message, reason = refused
            raise HttpError(
                grpc.StatusCode.UNAVAILABLE,
                message,
                reason,
                headers={"Retry-After": str(max(1, math.ceil(self.retry_after)))},
            )
        agent = self.acting_agent(peer.device_id, query.get("agent_id") or query.get("agentId") or "")
        cursors = parse_last_event_id(request.headers.get("Last-Event-ID") or query.get("last_event_id") or "")
        inbox = inbox_conv(agent)
        requests: asyncio.Queue[events_pb2.ClientEvent | None] = asyncio.Queue()
        requests.put_nowait(
            events_pb2.ClientEvent(
                request_id="sse-register",
                register=events_pb2.Register(agent=resources_pb2.Agent(id=agent), cursors=cursors),
            )
        )
        out: asyncio.Queue[SseFrame | None] = asyncio.Queue(SSE_QUEUE)
        gen = self.sessions.open(peer, _request_events(requests), SseFormat(inbox)).stream()
        pump = asyncio.create_task(_pump(gen, out), name=f"agentnet-sse-{peer.device_id}")
        interval = self.heartbeat_interval
        try:
            first = await out.get()
            if first is None:
                raise HttpError(grpc.StatusCode.UNAVAILABLE, "the event stream ended at once; retry", "STREAM_ENDED")
            if first.error is not None:
                e = first.error
                raise HttpError(grpc_code(e.status), e.message, e.reason, metadata=dict(e.metadata))
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )
            await resp.prepare(request)
            try:
                await _write(resp, f"retry: {int(interval * 1000)}\n\n".encode() + first.data, interval)
                await self._stream(resp, out, requests, interval)
            except ConnectionError as exc:
                log.info("SSE client of %s went away (%s)", peer.short, exc)
                if request.transport is not None:
                    request.transport.abort()
            return resp
        finally:
            # End the request stream so the session flushes its acks and closes; then stop waiting.
            requests.put_nowait(None)
            deadline = asyncio.get_running_loop().time() + 2.0
            while not pump.done() and asyncio.get_running_loop().time() < deadline:
                while not out.empty():
                    out.get_nowait()
                await asyncio.wait({pump}, timeout=0.05)
            if not pump.done():
                pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    @staticmethod
    async def _stream(
        resp: web.StreamResponse,
        out: asyncio.Queue[SseFrame | None],
        requests: asyncio.Queue[events_pb2.ClientEvent | None],
        interval: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + interval
        while True:
            try:
                item = await asyncio.wait_for(out.get(), max(0.0, next_tick - loop.time()))
            except TimeoutError:
                next_tick = loop.time() + interval
                requests.put_nowait(events_pb2.ClientEvent(heartbeat=events_pb2.Heartbeat()))
                await _write(resp, b": keepalive\n\n", interval)
                continue
            items = [item]
            while not out.empty():
                items.append(out.get_nowait())
            chunks: list[bytes] = []
            acks: dict[str, int] = {}
            ended = False
            for it in items:
                if it is None:
                    ended = True
                    break
                if not it.data:
                    continue  # left out (a heartbeat ack)
                chunks.append(it.data)
                cursor = it.cursor
                if cursor is not None:
                    acks[cursor[0]] = max(acks.get(cursor[0], 0), cursor[1])
            if chunks:
                await _write(resp, b"".join(chunks), interval)
            if ended:
                return
            if acks:
                # Written to the client: acknowledge, so the server-side delivery cursors advance.
                requests.put_nowait(
                    events_pb2.ClientEvent(
                        ack=events_pb2.Ack(
                            cursors=[resources_pb2.Cursor(conversation=c, seq=s) for c, s in acks.items()]
                        )
                    )
                )

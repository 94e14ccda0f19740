"""The raw transport ceiling for `agentnet bench`: a minimal grpc.aio servicer that only forwards.

It speaks the same Session protocol (same protobuf events, same TLS with a client certificate
required at the handshake, same transport options as the real server) but has no store, no
authorization, no validation and no limits: `register` is answered at once, `join_group` adds
the stream to an in-memory group, a `message` gets the next seq of its group and is serialized
once and queued to every member (one reader task and one writer per stream, like the server).
Whatever agentnet does beyond this is what its figures pay for.

Run as `python -m agentnet_bench.raw --certs DIR --grpc-addr 127.0.0.1:0 --ready-file F`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from agentnet.v1 import events_pb2, resources_pb2

METHOD = "/agentnet.v1.AgentNet/Session"


def _ts_now() -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(time.time_ns() // 1000)
    return t


class _Stream:
    __slots__ = ("agent", "queue", "wake")

    def __init__(self) -> None:
        self.agent = ""
        self.queue: collections.deque[bytes] = collections.deque()
        self.wake = asyncio.Event()

    def push(self, data: bytes) -> None:
        self.queue.append(data)
        self.wake.set()


class RawForwarder:
    def __init__(self, heartbeat: float = 10.0) -> None:
        self.groups: dict[str, set[_Stream]] = {}
        self.seqs: dict[str, int] = {}
        self.heartbeat = heartbeat

    async def session(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        st = _Stream()
        reader = asyncio.create_task(self._read(st, requests))
        try:
            while True:
                while st.queue:
                    yield st.queue.popleft()
                if reader.done():
                    return
                st.wake.clear()
                await st.wake.wait()
        finally:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                if not reader.cancelled():
                    raise
            except Exception:  # noqa: BLE001 - the stream is over either way
                pass
            for members in self.groups.values():
                members.discard(st)

    async def _read(self, st: _Stream, requests: AsyncIterator[Any]) -> None:
        try:
            async for ev in requests:
                self._handle(st, ev)
        finally:
            st.wake.set()

    def _handle(self, st: _Stream, ev: events_pb2.ClientEvent) -> None:
        kind = ev.WhichOneof("event")
        rid = ev.request_id
        if kind == "message":
            m = ev.message
            gid = m.group_id
            conv = "group:" + gid
            seq = self.seqs.get(conv, 0) + 1
            self.seqs[conv] = seq
            now = _ts_now()
            data = events_pb2.ServerEvent(
                message=resources_pb2.Message(
                    conversation=conv,
                    seq=seq,
                    sender=st.agent,
                    client_msg_id=m.client_msg_id,
                    content=m.content,
                    create_time=now,
                    group_id=gid,
                    signature=m.signature,
                    sign_time=m.sign_time,
                )
            ).SerializeToString()
            for member in self.groups.get(gid, ()):
                member.push(data)
            st.push(
                events_pb2.ServerEvent(
                    request_id=rid,
                    message_ack=events_pb2.MessageAck(
                        conversation=conv, seq=seq, client_msg_id=m.client_msg_id, create_time=now
                    ),
                ).SerializeToString()
            )
        elif kind == "heartbeat":
            st.push(
                events_pb2.ServerEvent(
                    request_id=rid, heartbeat_ack=events_pb2.HeartbeatAck(server_time=_ts_now())
                ).SerializeToString()
            )
        elif kind == "register":
            st.agent = ev.register.agent.id
            hb = duration_pb2.Duration()
            hb.FromNanoseconds(int(self.heartbeat * 1e9))
            st.push(
                events_pb2.ServerEvent(
                    request_id=rid,
                    registered=events_pb2.Registered(
                        agent=resources_pb2.Agent(id=st.agent, online=True), heartbeat_interval=hb
                    ),
                ).SerializeToString()
            )
            st.push(events_pb2.ServerEvent(caught_up=events_pb2.CaughtUp()).SerializeToString())
        elif kind == "join_group":
            gid = ev.join_group.group_id
            self.groups.setdefault(gid, set()).add(st)
            conv = "group:" + gid
            last = self.seqs.setdefault(conv, 0)
            st.push(
                events_pb2.ServerEvent(
                    request_id=rid,
                    group_joined=events_pb2.GroupJoined(
                        group=resources_pb2.Group(id=gid, conversation=conv, last_seq=last), joined_seq=last
                    ),
                ).SerializeToString()
            )
        # ack, leave_group and the rest: ignored (nothing to store).


def _passthrough(data: bytes) -> bytes:
    return data


async def serve(certs_dir: pathlib.Path, addr: str, ready_file: str | None, heartbeat: float) -> None:
    # Same transport options as the real server, so only the application differs.
    from agentnet_server.app import server_options
    from agentnet_server.config import Settings

    certs = certs_dir
    creds = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.pem").read_bytes())],
        root_certificates=(certs / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    fwd = RawForwarder(heartbeat)
    handler = grpc.method_handlers_generic_handler(
        "agentnet.v1.AgentNet",
        {
            "Session": grpc.stream_stream_rpc_method_handler(
                fwd.session,
                request_deserializer=events_pb2.ClientEvent.FromString,
                response_serializer=_passthrough,
            )
        },
    )
    server = grpc.aio.server(options=server_options(Settings(heartbeat_interval=heartbeat)))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port(addr, creds)
    await server.start()
    host = addr.rsplit(":", 1)[0]
    if ready_file:
        tmp = pathlib.Path(ready_file + ".tmp")
        tmp.write_text(json.dumps({"grpc": f"{host}:{port}", "pid": os.getpid()}))  # noqa: ASYNC240 - tiny
        os.replace(tmp, ready_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="agentnet-bench-raw", description=__doc__.splitlines()[0])
    ap.add_argument("--certs", required=True, help="folder with ca.pem, server.pem, server.key")
    ap.add_argument("--grpc-addr", default="127.0.0.1:0")
    ap.add_argument("--ready-file")
    ap.add_argument("--heartbeat", type=float, default=10.0)
    ns = ap.parse_args(argv)
    asyncio.run(serve(pathlib.Path(ns.certs), ns.grpc_addr, ns.ready_file, ns.heartbeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

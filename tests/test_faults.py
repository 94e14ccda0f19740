"""Fault injection against the real server (docs/architecture.md, Guarantees): kill -9 under load from several
clients, a link that freezes, slow readers among fast ones, a store that refuses writes.

Each test is bounded; none asserts on speed. The single-client versions live in
test_delivery.py; these are the multi-client and failure versions."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pathlib
import subprocess
from typing import Any

import grpc
import pytest

from agentnet.v1 import events_pb2, resources_pb2, service_pb2_grpc
from agentnet_client import AgentnetError, Client, State
from agentnet_client.device import channel_options, load_device
from tests.conftest import Clients, ServerProc, collect, until
from tests.proxy import FreezableProxy

pytestmark = pytest.mark.fault

CONV = "group:{}"


async def _history(c: Client, group: str) -> list[Any]:
    return list(await c.history(group_id=group, limit=100_000))


async def _drain(c: Client, group: str, n: int, timeout: float = 30.0) -> list[tuple[int, str, str]]:
    """Every message of `group` the client's stream delivered until it holds n of them."""
    got = await collect(c, "message", n, timeout=timeout, conv=CONV.format(group))
    return [(m.seq, m.sender, m.client_msg_id) for m in got]


async def _drain_many(c: Client, want: dict[str, int], timeout: float = 30.0) -> dict[str, list[Any]]:
    """Messages per conversation, in arrival order, until each holds its count."""
    out: dict[str, list[Any]] = {conv: [] for conv in want}
    deadline = asyncio.get_running_loop().time() + timeout
    while any(len(out[conv]) < n for conv, n in want.items()):
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError(f"got {[len(v) for v in out.values()]} of {list(want.values())} within {timeout} s")
        try:
            ev = await c.next_event(timeout=remaining)
        except TimeoutError:
            continue
        if ev.WhichOneof("event") == "message" and ev.message.conversation in out:
            out[ev.message.conversation].append(ev.message)
    return out


# -- kill -9 under load from several clients ----------------------------------------------------


async def test_sigkill_during_sends_from_several_clients(clients: Clients, server: ServerProc) -> None:
    names = [("laoxing-vps", "k1"), ("xiaoxing-mac", "k2"), ("xiaojin-mini", "k3")]
    members = [await clients.live(d, a) for d, a in names]
    group = "kill9"
    await members[0].join(group, create=True)
    for m in members[1:]:
        await m.join(group)

    acked: dict[str, int] = {}  # client_msg_id -> seq, only from returned acks
    attempted: set[str] = set()
    failed: dict[str, str] = {}  # sends that raised: they must not be reported as sent
    stop = asyncio.Event()

    async def pump(c: Client, tag: str) -> None:
        i = 0
        while not stop.is_set():
            cid = f"{tag}-{i}"
            i += 1
            attempted.add(cid)
            try:
                ack = await c.send(f"{tag} says {i}", group_id=group, client_msg_id=cid)
            except AgentnetError as exc:
                failed[cid] = exc.status
                continue
            assert ack.client_msg_id == cid
            acked[cid] = ack.seq

    # Two concurrent pumps per client keep several sends in flight when the server dies.
    pumps = [asyncio.create_task(pump(m, f"{a}.{p}")) for m, (_, a) in zip(members, names, strict=True) for p in (0, 1)]
    try:
        await until(lambda: len(acked) >= 120, timeout=30)
        server.kill()
        at_kill = len(acked)
        await asyncio.sleep(0.3)
        server.start()
        await until(lambda: len(acked) >= at_kill + 120, timeout=45)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*pumps, return_exceptions=True), 45)
    for m in members:
        await until(lambda m=m: m.session is not None and m.session.outbox_size == 0, timeout=30)

    history = await _history(members[0], group)
    cids = [h.client_msg_id for h in history]
    assert len(cids) == len(set(cids)), "a client_msg_id was stored twice"
    assert [h.seq for h in history] == list(range(1, len(history) + 1)), "seq is not gap-free"
    by_cid = {h.client_msg_id: h.seq for h in history}
    for cid, seq in acked.items():
        assert by_cid.get(cid) == seq, f"acknowledged {cid} (seq {seq}) is not stored with that seq after kill -9"
    assert set(cids) <= attempted, "the store holds a message nobody sent"
    assert not failed, f"sends failed instead of being retried from the outbox: {failed}"
    # The outbox delivered every attempt exactly once: nothing pending is lost either.
    assert set(cids) == attempted

    # Every client converges to the same history, each message exactly once, in seq order.
    want = [(h.seq, h.sender, h.client_msg_id) for h in history]
    for m in members:
        assert await _drain(m, group, len(history)) == want


# -- a link that freezes ------------------------------------------------------------------------


async def test_frozen_link_sends_during_freeze_arrive_exactly_once(make_server: Any, tmp_path: pathlib.Path) -> None:
    interval = 1.0
    server: ServerProc = make_server(heartbeat=interval)
    cs = Clients(server.certs, server, tmp_path)
    proxy = await FreezableProxy("127.0.0.1", server.port).start()
    group = "icy"
    try:
        watcher = await cs.live("laoxing-vps", "watcher")
        peer = await cs.live("xiaojin-mini", "peer")
        frozen = await cs.live("xiaoxing-mac", "frozen", addr=proxy.addr, cache=str(tmp_path / "frozen.sqlite"))
        await watcher.join(group, create=True)
        await peer.join(group)
        await frozen.join(group)
        first = await watcher.send("before the freeze", group_id=group)
        await until(lambda: watcher.session is not None and watcher.session.presence.get("frozen") is True)
        assert await _drain(frozen, group, 1) == [(first.seq, "watcher", first.client_msg_id)]

        proxy.freeze()
        # While frozen: others talk to the group and to the frozen agent; it talks too.
        others = [await watcher.send(f"during {i}", group_id=group) for i in range(5)]
        dm = await peer.send("a direct message during the freeze", to_agent="frozen")
        mine = [asyncio.create_task(frozen.send(f"frozen says {i}", group_id=group)) for i in range(3)]

        # The server declares it offline within 3 intervals (+ sweep and presence batch), and
        # the frozen client notices the silence and leaves LIVE.
        await until(
            lambda: watcher.session is not None and watcher.session.presence.get("frozen") is False,
            timeout=3 * interval + 3,
        )
        await until(lambda: frozen.state != State.LIVE, timeout=3 * interval + 5)
        assert not any(t.done() for t in mine), "a send was acknowledged over a frozen link"

        proxy.thaw()
        await frozen.wait_live(timeout=30)
        acks = await asyncio.wait_for(asyncio.gather(*mine), 30)
        assert sorted(a.client_msg_id for a in acks) == sorted({a.client_msg_id for a in acks})

        history = await _history(watcher, group)
        contents = [h.content for h in history]
        for i in range(3):
            assert contents.count(f"frozen says {i}") == 1, contents
        assert [h.seq for h in history] == list(range(1, len(history) + 1))
        want = [(h.seq, h.sender, h.client_msg_id) for h in history]
        # Everyone (the frozen one included) has the whole group history exactly once, in order.
        for c in (watcher, peer):
            assert await _drain(c, group, len(history)) == want
        conv = CONV.format(group)
        seen = await _drain_many(frozen, {conv: len(history) - 1, dm.conversation: 1})
        frozen_view = [(m.seq, m.sender, m.client_msg_id) for m in seen[conv]]
        assert frozen_view == want[1:]
        assert {o.seq for o in others} <= {s for s, _, _ in frozen_view}
        [direct] = seen[dm.conversation]
        assert (direct.seq, direct.content) == (dm.seq, "a direct message during the freeze")
        await asyncio.sleep(0.3)
        while (ev := frozen.session.get_event_nowait() if frozen.session else None) is not None:
            assert ev.WhichOneof("event") != "message", f"delivered twice: {ev}"
    finally:
        await cs.close_all()
        await proxy.close()


# -- a long link --------------------------------------------------------------------------------


async def test_long_link_connects_and_chats(server: ServerProc, tmp_path: pathlib.Path) -> None:
    """A device far away (150 ms each way): the TLS handshake takes longer than any short dial
    deadline; the client still connects, and chats both ways."""
    cs = Clients(server.certs, server, tmp_path)
    proxy = await FreezableProxy("127.0.0.1", server.port, latency=0.15).start()
    group = "far"
    try:
        near = await cs.live("laoxing-vps", "near")
        far = await cs.make("xiaoxing-mac", "far", addr=proxy.addr, cache=str(tmp_path / "far.sqlite"))
        await far.wait_live(timeout=30)
        await near.join(group, create=True)
        await far.join(group)
        sent = await far.send("hello from far away", group_id=group)
        reply = await near.send("hello back", group_id=group)
        assert [(m.seq, m.content) for m in await collect(near, "message", 2, conv=CONV.format(group))] == [
            (sent.seq, "hello from far away"),
            (reply.seq, "hello back"),
        ]
        got = await collect(far, "message", 2, conv=CONV.format(group))
        assert [(m.seq, m.sender) for m in got] == [(sent.seq, "far"), (reply.seq, "near")]
    finally:
        await cs.close_all()
        await proxy.close()


async def test_a_dial_that_hangs_is_given_up_and_retried(server: ServerProc, tmp_path: pathlib.Path) -> None:
    """The TCP connect succeeds but no byte ever comes back (a frozen middlebox): the client gives
    up after connect_timeout and dials again, and connects once the path works."""
    cs = Clients(server.certs, server, tmp_path)
    proxy = await FreezableProxy("127.0.0.1", server.port).start()
    proxy.freeze()
    try:
        c = await cs.make("xiaoxing-mac", "patient", addr=proxy.addr, connect_timeout=1.0)
        assert c.session is not None
        await until(lambda: c.session is not None and c.session.connects >= 3, timeout=10)
        assert c.state != State.LIVE
        proxy.thaw()
        await c.wait_live(timeout=10)
        await c.join("patience", create=True)
        sent = await c.send("through at last", group_id="patience")
        [got] = await collect(c, "message", 1, conv=sent.conversation)
        assert got.content == "through at last"
    finally:
        await cs.close_all()
        await proxy.close()


# -- slow readers among fast ones ---------------------------------------------------------------


async def _stalled_reader(certs_dir: pathlib.Path, addr: str, agent: str, group: str) -> Any:
    """A raw stream that registers, joins, and then stops reading (it keeps sending heartbeats,
    so it is slow, not dead)."""
    dev = load_device(certs_dir)
    creds = grpc.ssl_channel_credentials(
        root_certificates=dev.ca_pem, private_key=dev.key_pem, certificate_chain=dev.cert_pem
    )
    # No BDP probing: the receive window stays small, so the server's queue for this stream
    # overflows for certain instead of the transport buffering megabytes.
    options = [*channel_options(), ("grpc.http2.bdp_probe", 0)]
    channel = grpc.aio.secure_channel(addr, creds, options=options)
    call = service_pb2_grpc.AgentNetStub(channel).Session()
    await call.write(
        events_pb2.ClientEvent(request_id="reg", register=events_pb2.Register(agent=resources_pb2.Agent(id=agent)))
    )
    while (await call.read()).WhichOneof("event") != "caught_up":
        pass
    await call.write(events_pb2.ClientEvent(request_id="j", join_group=events_pb2.JoinGroup(group_id=group)))
    while (await call.read()).WhichOneof("event") != "group_joined":
        pass

    async def heartbeats() -> None:
        while True:
            await asyncio.sleep(0.3)
            await call.write(events_pb2.ClientEvent(heartbeat=events_pb2.Heartbeat()))

    return channel, call, asyncio.create_task(heartbeats())


async def test_slow_readers_among_fast_ones(make_server: Any, tmp_path: pathlib.Path) -> None:
    server: ServerProc = make_server(session_queue=32)
    cs = Clients(server.certs, server, tmp_path)
    group = "mixed"
    slow: list[Any] = []
    try:
        senders = [await cs.live("laoxing-vps", "tx1"), await cs.live("d4", "tx2")]
        fast = [
            await cs.live("xiaoxing-mac", "fast1"),
            await cs.live("d5", "fast2"),
            await cs.live("d6", "fast3"),
        ]
        await senders[0].join(group, create=True)
        for c in [*senders[1:], *fast]:
            await c.join(group)
        for i in range(2):
            slow.append(await _stalled_reader(cs.device_dir("xiaojin-mini"), server.addr, f"slow{i}", group))

        # Two senders at once; 12 KiB each overflows the stalled readers' transport buffers and
        # their 32-event queues many times over.
        big = "y" * 12_000
        n = 200

        async def blast(c: Client, tag: str) -> list[int]:
            acks = [await c.send(f"{tag}:{i}:{big}", group_id=group) for i in range(n)]
            return [a.seq for a in acks]

        seqs = await asyncio.wait_for(asyncio.gather(*(blast(c, f"tx{k}") for k, c in enumerate(senders))), 60)
        total = 2 * n
        assert sorted(s for part in seqs for s in part) == list(range(1, total + 1))
        # The fast ones have everything while the slow ones have not read a single message.
        views = [await _drain(c, group, total, timeout=60) for c in fast]
        assert [s for s, _, _ in views[0]] == list(range(1, total + 1))
        assert views[0] == views[1] == views[2]

        # Now the slow ones read: everything, in order, exactly once.
        for _channel, call, _hb in slow:
            got: list[int] = []
            while len(got) < total:
                ev = await asyncio.wait_for(call.read(), 30)
                if ev.WhichOneof("event") == "message":
                    got.append(ev.message.seq)
            assert got == list(range(1, total + 1))
        assert "fell behind; catching up from the store" in server.logs()
    finally:
        for channel, call, hb in slow:
            hb.cancel()
            call.cancel()
            await channel.close()
        await cs.close_all()


# -- a store that refuses writes ----------------------------------------------------------------


@contextlib.contextmanager
def _tiny_tmpfs(path: pathlib.Path, size: str) -> Any:
    path.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {exc} {detail.decode(errors='replace')}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=10)


def _fill(path: pathlib.Path) -> pathlib.Path:
    """Fill the file system to the last byte."""
    filler = path / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        for size in (4096, 512, 1):
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError:
                    break
    return filler


async def test_full_disk_refuses_with_unavailable_and_recovers(
    certs: Any, make_server: Any, tmp_path: pathlib.Path
) -> None:
    with _tiny_tmpfs(tmp_path / "tiny", "6m") as mnt:
        server: ServerProc = make_server(db=f"sqlite:///{mnt / 'agentnet.db'}")
        cs = Clients(server.certs, server, tmp_path)
        group = "full"
        try:
            a = await cs.live("laoxing-vps", "writer")
            b = await cs.live("xiaoxing-mac", "reader")
            await a.join(group, create=True)
            await b.join(group)
            acked: dict[str, int] = {}
            for i in range(5):
                r = await a.post(f"before {i}", group_id=group, client_msg_id=f"pre-{i}")
                acked[f"pre-{i}"] = r.message.seq

            filler = _fill(mnt)
            # Large messages need new pages in the WAL, which cannot grow any more.
            big = "z" * 60_000
            refused: list[tuple[str, str]] = []
            for i in range(200):
                cid = f"full-{i}"
                try:
                    r = await a.post(f"{i} {big}", group_id=group, client_msg_id=cid)
                except AgentnetError as exc:
                    assert exc.status == "UNAVAILABLE", exc
                    assert "store" in exc.message, exc.message
                    refused.append((cid, f"{i} {big}"))
                    if len(refused) >= 3:
                        break
                    continue
                acked[cid] = r.message.seq
            assert refused, "the store accepted 200 x 60 KB on a full 6 MB file system"

            # The live stream reports the same refusal as an error event, never as an ack.
            stream_send = asyncio.create_task(a.send(f"stream {big}", group_id=group, client_msg_id="stream-1"))
            await asyncio.sleep(1.0)
            assert not stream_send.done(), "a send was acknowledged while the store was full"
            assert server.proc is not None and server.proc.poll() is None, "the server died on a full disk"

            # Free the space: the same server takes writes again; the stream send goes through.
            os.unlink(filler)
            ack = await asyncio.wait_for(stream_send, 30)
            acked["stream-1"] = ack.seq
            for i in range(3):
                r = await a.post(f"after {i}", group_id=group, client_msg_id=f"post-{i}")
                acked[f"post-{i}"] = r.message.seq
            # A refused id can be retried and is stored exactly once.
            cid, text = refused[0]
            retry = await a.post(text, group_id=group, client_msg_id=cid)
            acked[cid] = retry.message.seq

            history = await _history(a, group)
            by_cid = {h.client_msg_id: h.seq for h in history}
            assert len(by_cid) == len(history)
            assert by_cid == acked, "the store holds exactly the acknowledged messages"
            assert [h.seq for h in history] == list(range(1, len(history) + 1))
            view = await _drain(b, group, len(history))
            assert [s for s, _, _ in view] == [h.seq for h in history]
        finally:
            await cs.close_all()
            server.stop()

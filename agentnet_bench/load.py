"""Load worker for `agentnet bench`: many lean sessions in one process, driven over stdin/stdout.

A lean session is a raw Session stream (one TLS connection each): it registers, joins groups,
reads and parses every ServerEvent, tracks the last seq per conversation (duplicates and gaps
are counted, never hidden), sends delivery acks like the real client, and measures
send→receive latency from a monotonic timestamp the sender puts in the message text (the
clock is system-wide, so sender and receiver may be different processes). The same sessions
talk to the agentnet server and to the raw forwarder (raw.py), so the comparison is fair.

The controller (bench.py) writes one JSON command per line to stdin; the worker answers each
with one JSON line on stdout. Commands: open, run, drop, reopen, close, exit.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import random
import resource
import sys
import time
from collections.abc import Iterable
from typing import Any

import grpc

from agentnet.v1 import events_pb2, resources_pb2
from agentnet_client.device import Device, channel_options, load_device

METHOD = "/agentnet.v1.AgentNet/Session"
HIST_BUCKETS = 2400  # 1 % steps from 1 µs: up to ~26 s


def bucket(ns: int) -> int:
    if ns <= 1000:
        return 0
    return min(HIST_BUCKETS - 1, int(math.log(ns / 1000.0) * 100.0))


def bucket_ns(i: int) -> float:
    """Representative value of a bucket (its geometric middle)."""
    return 1000.0 * math.exp((i + 0.5) / 100.0)


class Hist:
    __slots__ = ("counts", "max", "n")

    def __init__(self) -> None:
        self.counts = [0] * HIST_BUCKETS
        self.n = 0
        self.max = 0

    def add(self, ns: int) -> None:
        self.counts[bucket(ns)] += 1
        self.n += 1
        if ns > self.max:
            self.max = ns

    def to_json(self) -> dict[str, Any]:
        return {"b": {str(i): c for i, c in enumerate(self.counts) if c}, "max": self.max, "n": self.n}


def merge_hists(hists: Iterable[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, int] = {}
    mx = 0
    n = 0
    for h in hists:
        for k, c in h["b"].items():
            out[k] = out.get(k, 0) + c
        mx = max(mx, h["max"])
        n += h["n"]
    return {"b": out, "max": mx, "n": n}


def percentiles(h: dict[str, Any], ps: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """Milliseconds for each percentile, plus max."""
    items = sorted((int(k), c) for k, c in h["b"].items())
    total = h["n"]
    out: dict[str, float] = {}
    for p in ps:
        if not total:
            out[f"p{p:g}"] = float("nan")
            continue
        rank = math.ceil(total * p / 100.0)
        acc = 0
        for i, c in items:
            acc += c
            if acc >= rank:
                out[f"p{p:g}"] = min(bucket_ns(i), h["max"]) / 1e6
                break
    out["max"] = h["max"] / 1e6 if total else float("nan")
    return out


class Refused(Exception):
    """The server did not let the session in (a status, or an error event)."""


class Lean:
    def __init__(self, w: Worker, addr: str, agent: str, device: str, groups: list[str]) -> None:
        self.w = w
        self.addr = addr
        self.agent = agent
        self.device = device
        self.groups = groups
        self.cursors: dict[str, int] = {}
        self.base: dict[str, int] = {}
        self.remaining = 0
        self.dups = 0
        self.gaps = 0
        self.errors = 0
        self.last_error = ""
        self.channel: grpc.aio.Channel | None = None
        self.shared_channel: grpc.aio.Channel | None = None
        self.call: Any = None
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.waiters: dict[str, asyncio.Future[events_pb2.ServerEvent]] = {}
        self.pending: dict[str, int] = {}
        # client_msg_id -> (window to release, released on the echo rather than the ack)
        self.windows: dict[str, tuple[asyncio.Semaphore, bool]] = {}
        self.acked: dict[str, int] = {}
        self.caught_up_at = 0.0
        self.live = False

    # -- connection ---------------------------------------------------------------------------

    async def connect(self, join: bool = True, timeout: float = 30.0) -> None:
        dev = self.w.device(self.device)
        creds = self.w.creds(self.device, dev)
        if self.w.shared:
            # Several sessions per connection (HTTP/2 streams): the transport coalesces writes.
            key = (self.addr, self.device, hash(self.agent) % self.w.shared)
            ch = self.w.channels.get(key)
            if ch is None:
                opts = [*channel_options(10.0), ("grpc.use_local_subchannel_pool", 1)]
                ch = self.w.channels[key] = grpc.aio.secure_channel(self.addr, creds, options=opts)
            self.shared_channel = ch
        else:
            opts = [*channel_options(10.0), ("grpc.use_local_subchannel_pool", 1)]
            self.channel = ch = grpc.aio.secure_channel(self.addr, creds, options=opts)
        self.call = ch.stream_stream(
            METHOD,
            request_serializer=events_pb2.ClientEvent.SerializeToString,
            response_deserializer=events_pb2.ServerEvent.FromString,
        )()
        loop = asyncio.get_running_loop()
        reg = self.waiters["reg"] = loop.create_future()
        caught = self.waiters["caught_up"] = loop.create_future()
        self.task = loop.create_task(self._read())
        try:
            await self.write(
                events_pb2.ClientEvent(
                    request_id="reg",
                    register=events_pb2.Register(
                        agent=resources_pb2.Agent(id=self.agent),
                        cursors=[resources_pb2.Cursor(conversation=c, seq=s) for c, s in self.cursors.items()],
                    ),
                )
            )
            await asyncio.wait_for(reg, timeout)
            await asyncio.wait_for(caught, timeout)
            if join:
                for g in self.groups:
                    fut = self.waiters["j-" + g] = loop.create_future()
                    await self.write(
                        events_pb2.ClientEvent(
                            request_id="j-" + g, join_group=events_pb2.JoinGroup(group_id=g, create_if_missing=True)
                        )
                    )
                    ev = await asyncio.wait_for(fut, timeout)
                    conv = ev.group_joined.group.conversation or "group:" + g
                    if conv not in self.cursors:
                        self.cursors[conv] = ev.group_joined.joined_seq
        except BaseException:
            await self.drop()
            raise
        self.live = True

    async def write(self, ev: events_pb2.ClientEvent) -> None:
        async with self.lock:
            try:
                await self.call.write(ev)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
                raise Refused(f"write failed: {exc}") from None

    async def drop(self) -> None:
        """End abruptly: no half-close, no last ack (a lost link)."""
        self.live = False
        if self.call is not None:
            self.call.cancel()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self.task = None
        if self.channel is not None:
            await self.channel.close(grace=None)
            self.channel = None
        self.call = None
        for f in self.waiters.values():
            if not f.done():
                f.set_exception(Refused("dropped"))
                f.exception()  # nobody may be waiting any more: no "never retrieved" noise
        self.waiters.clear()

    async def _read(self) -> None:
        err: BaseException | None = None
        try:
            call = self.call
            while True:
                ev = await call.read()
                if ev is grpc.aio.EOF:
                    break
                self._on_event(ev)
            code = await call.code()
            err = Refused(f"stream ended: {code.name} {await call.details()}")
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            err = Refused(f"{exc.code().name}: {exc.details()}")
        except Exception as exc:  # noqa: BLE001
            err = Refused(f"{type(exc).__name__}: {exc}")
        finally:
            self.live = False
            for f in self.waiters.values():
                if not f.done():
                    f.set_exception(err or Refused("stream ended"))
                    f.exception()
            self.waiters.clear()
            # Sends still waiting for an answer will not get one on this stream.
            for sem, _ in self.windows.values():
                sem.release()
            self.windows.clear()
            self.pending.clear()

    def _on_event(self, ev: events_pb2.ServerEvent) -> None:
        kind = ev.WhichOneof("event")
        w = self.w
        if kind == "message":
            m = ev.message
            conv = m.conversation
            seq = m.seq
            last = self.cursors.get(conv, 0)
            if seq <= last:
                self.dups += 1
                w.dups += 1
                return
            if seq != last + 1:
                self.gaps += seq - last - 1
            self.cursors[conv] = seq
            self.acked[conv] = seq
            w.received += 1
            c = m.content
            if c.startswith("b "):
                try:
                    t0 = int(c[2 : c.index(" ", 2)])
                except ValueError:
                    t0 = 0
                if t0:
                    w.lat.add(time.monotonic_ns() - t0)
            if m.sender == self.agent:
                win = self.windows.get(m.client_msg_id)
                if win is not None and win[1]:
                    del self.windows[m.client_msg_id]
                    win[0].release()
            if self.remaining and conv in self.base:
                self.remaining -= 1
                if not self.remaining:
                    w.receiver_done()
            return
        rid = ev.request_id
        if kind == "message_ack":
            t0 = self.pending.pop(rid, 0)
            if t0:
                now = time.monotonic_ns()
                w.ack_lat.add(now - t0)
                w.acks += 1
                w.last_ack = now
                win = self.windows.get(rid)
                if win is not None and not win[1]:
                    del self.windows[rid]
                    win[0].release()
            return
        if kind == "error":
            self.last_error = f"{ev.error.status} {ev.error.reason}: {ev.error.message}"[:300]
            if not rid and ev.error.reason == "ACK_AHEAD":
                # A delivery ack for a seq the server's writer has sent but not yet recorded
                # (a race in the server, see docs/performance.md); not a failed send.
                w.ack_refused += 1
                return
            self.errors += 1
            w.errors += 1
            w.last_error = self.last_error
            fut = self.waiters.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(Refused(self.last_error))
            self.pending.pop(rid, None)
            win = self.windows.pop(rid, None)
            if win is not None:
                win[0].release()
            return
        if kind == "caught_up":
            self.caught_up_at = time.monotonic()
            fut = self.waiters.pop("caught_up", None)
            if fut is not None and not fut.done():
                fut.set_result(ev)
            w.caught_up(self)
            return
        if rid:
            fut = self.waiters.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(ev)

    # -- load ---------------------------------------------------------------------------------

    async def send_many(self, group: str, n: int, rate: float, window: int, on_echo: bool, tag: str) -> None:
        w = self.w
        sem = asyncio.Semaphore(window)
        signer = w.signer(self.device) if w.sign else None
        loop = asyncio.get_running_loop()
        start = loop.time()
        unanswered: list[str] = []
        for i in range(n):
            await sem.acquire()
            if rate:
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if not self.live:
                w.send_failures += 1
                continue
            cid = f"{tag}.{group}.{i}"
            t0 = time.monotonic_ns()
            sm = events_pb2.SendMessage(group_id=group, client_msg_id=cid, content=f"b {t0} {self.agent} {i}")
            if signer is not None:
                signer.sign_send(sm, self.agent)
            self.pending[cid] = t0
            self.windows[cid] = (sem, on_echo)
            if not w.first_send:
                w.first_send = t0
            try:
                await self.write(events_pb2.ClientEvent(request_id=cid, message=sm))
            except Refused:
                self.pending.pop(cid, None)
                self.windows.pop(cid, None)
                sem.release()
                w.send_failures += 1
                continue
            w.sent += 1
            unanswered.append(cid)
        # Done when every send has its answer (ack or error) and, with the window released on the
        # echo, its echo too. Draining the window is not enough: the server queues the echo and
        # the ack separately, so the echo can come first, and a run that ended on the last echo
        # reported one ack short (fan-out acks 39 of 40). The reader clears both when the stream ends.
        deadline = loop.time() + 60
        while True:
            unanswered = [c for c in unanswered if c in self.pending or c in self.windows]
            if not unanswered or loop.time() >= deadline:
                break
            await asyncio.sleep(0.005)


class Worker:
    def __init__(self) -> None:
        self.sign = True
        self.shared = 0
        self.channels: dict[Any, grpc.aio.Channel] = {}
        self.sets: dict[str, list[Lean]] = {}
        self._devices: dict[str, Device] = {}
        self._creds: dict[str, grpc.ChannelCredentials] = {}
        self._signers: dict[str, Any] = {}
        self.reset()
        self._done = asyncio.Event()
        self._receivers = 0
        self._armed: tuple[str, dict[str, int]] | None = None  # (set, expected new messages per conversation)
        self.caught_ups = 0
        self.refused = 0

    def reset(self) -> None:
        self.received = 0
        self.dups = 0
        self.errors = 0
        self.acks = 0
        self.sent = 0
        self.send_failures = 0
        self.first_send = 0
        self.last_error = ""
        self.lat = Hist()
        self.ack_lat = Hist()
        self.last_done = 0
        self.last_ack = 0
        self.ack_refused = 0

    def device(self, folder: str) -> Device:
        d = self._devices.get(folder)
        if d is None:
            d = self._devices[folder] = load_device(folder)
        return d

    def creds(self, folder: str, dev: Device) -> grpc.ChannelCredentials:
        c = self._creds.get(folder)
        if c is None:
            c = self._creds[folder] = grpc.ssl_channel_credentials(
                root_certificates=dev.ca_pem, private_key=dev.key_pem, certificate_chain=dev.cert_pem
            )
        return c

    def signer(self, folder: str) -> Any:
        s = self._signers.get(folder)
        if s is None:
            from agentnet_client.signing import Signer

            s = self._signers[folder] = Signer(self.device(folder))
        return s

    def receiver_done(self) -> None:
        self._receivers -= 1
        self.last_done = time.monotonic_ns()
        if self._receivers <= 0:
            self._done.set()

    def caught_up(self, s: Lean) -> None:
        self.caught_ups += 1

    # -- background ---------------------------------------------------------------------------

    async def heartbeat_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            sessions = [s for ss in self.sets.values() for s in ss if s.live]
            for i, s in enumerate(sessions):
                if s.live:
                    try:
                        await s.write(events_pb2.ClientEvent(heartbeat=events_pb2.Heartbeat()))
                    except Refused:
                        pass
                if i % 100 == 99:
                    await asyncio.sleep(0)

    async def ack_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for ss in list(self.sets.values()):
                for s in ss:
                    if s.acked and s.live:
                        batch = [resources_pb2.Cursor(conversation=c, seq=q) for c, q in s.acked.items()]
                        s.acked = {}
                        try:
                            await s.write(events_pb2.ClientEvent(ack=events_pb2.Ack(cursors=batch)))
                        except Refused:
                            pass

    # -- commands -----------------------------------------------------------------------------

    async def _connect_retrying(
        self, s: Lean, sem: asyncio.Semaphore, join: bool, jitter: float, attempts: int
    ) -> bool:
        if jitter:
            await asyncio.sleep(random.uniform(0, jitter))
        backoff = 0.25
        for attempt in range(attempts):
            async with sem:
                try:
                    await s.connect(join=join)
                    return True
                except (Refused, TimeoutError, grpc.aio.AioRpcError) as exc:
                    self.refused += 1
                    self.last_error = str(exc)[:300]
            await asyncio.sleep(random.uniform(0, min(2.0, backoff * 2**attempt)))
        return False

    async def cmd_open(self, c: dict[str, Any]) -> dict[str, Any]:
        self.sign = c.get("sign", True)
        self.shared = c.get("shared", 0)
        sessions = [
            Lean(self, x.get("addr", c["addr"]), x["agent"], x["device"], x.get("groups", [])) for x in c["sessions"]
        ]
        self.sets.setdefault(c["set"], []).extend(sessions)
        sem = asyncio.Semaphore(c.get("concurrency", 20))
        self.refused = 0
        t0 = time.monotonic()
        tasks = [
            asyncio.create_task(self._connect_retrying(s, sem, True, c.get("jitter", 0.0), c.get("attempts", 8)))
            for s in sessions
        ]
        _, late = await asyncio.wait(tasks, timeout=c.get("timeout"))
        for t in late:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ok = [t.done() and not t.cancelled() and t.result() for t in tasks]
        for s, good in zip(sessions, ok, strict=True):
            if not good:
                await s.drop()
        if late:
            self.sets[c["set"]] = [s for s, good in zip(sessions, ok, strict=True) if good] + [
                s for s in self.sets[c["set"]] if s not in sessions
            ]
        return {
            "opened": sum(ok),
            "timed_out": len(late),
            "failed": len(ok) - sum(ok),
            "refused": self.refused,
            "seconds": time.monotonic() - t0,
            "last_error": self.last_error,
        }

    async def cmd_arm(self, c: dict[str, Any]) -> dict[str, Any]:
        """Before a run: take every local member's starting cursor in the planned groups. The
        controller arms all load processes before any of them sends; a process that took its
        starting cursors after another had begun sending would miss the first deliveries."""
        sessions = self.sets[c["set"]]
        expect: dict[str, int] = {}
        for p in c["plan"]:
            conv = "group:" + p["group"]
            expect[conv] = expect.get(conv, 0) + p["n"]
        self.reset()
        self._done = asyncio.Event()
        self._receivers = 0
        for s in sessions:
            s.base = {}
            s.remaining = 0
            s.dups = s.gaps = 0
            for g in s.groups:
                conv = "group:" + g
                if conv in expect:
                    s.base[conv] = s.cursors.get(conv, 0)
                    s.remaining += expect[conv]
            if s.remaining:
                self._receivers += 1
        if not self._receivers:
            self._done.set()
        self._armed = (c["set"], expect)
        return {"receivers": self._receivers}

    async def cmd_run(self, c: dict[str, Any]) -> dict[str, Any]:
        """Senders in the plan that live here send; every local member of a planned group waits
        until it has the planned number of new messages there (or progress stalls). Arms itself
        when the controller did not (a run on one load process)."""
        if self._armed is None or self._armed[0] != c["set"]:
            await self.cmd_arm(c)
        assert self._armed is not None
        expect = self._armed[1]
        self._armed = None
        sessions = self.sets[c["set"]]
        by_agent = {s.agent: s for s in sessions}
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        senders = [
            asyncio.create_task(
                by_agent[p["sender"]].send_many(
                    p["group"], p["n"], c.get("rate", 0.0), c.get("window", 64), c.get("on_echo", True), c["tag"]
                )
            )
            for p in c["plan"]
            if p["sender"] in by_agent
        ]
        stall = c.get("stall", 10.0)
        last = -1
        last_change = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(self._done.wait(), 0.5)
            except TimeoutError:
                pass
            senders_done = all(t.done() for t in senders)
            if self._done.is_set() and senders_done:
                break
            progress = self.received + self.acks + self.sent
            if progress != last:
                last, last_change = progress, time.monotonic()
            elif time.monotonic() - last_change > stall:
                break
        for t in senders:
            if not t.done():
                t.cancel()
        for res in await asyncio.gather(*senders, return_exceptions=True):
            # A sender that failed (not one cancelled at the stall) is an error of the run, reported.
            if isinstance(res, Exception):
                self.errors += 1
                self.last_error = f"sender failed: {type(res).__name__}: {res}"[:300]
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        lost = 0
        for s in sessions:
            for conv, base in s.base.items():
                got = s.cursors.get(conv, 0) - base
                lost += max(0, expect[conv] - got)
            lost += s.gaps
        return {
            "sent": self.sent,
            "send_failures": self.send_failures,
            "acks": self.acks,
            "errors": self.errors,
            "ack_refused": self.ack_refused,
            "last_error": self.last_error,
            "received": self.received,
            "dups": self.dups,
            "lost": lost,
            "first_send": self.first_send,
            "last_done": self.last_done,
            "last_ack": self.last_ack,
            "lat": self.lat.to_json(),
            "ack_lat": self.ack_lat.to_json(),
            "cpu": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
        }

    async def cmd_drop(self, c: dict[str, Any]) -> dict[str, Any]:
        sessions = self.sets.get(c["set"], [])
        await asyncio.gather(*(s.drop() for s in sessions))
        return {"dropped": len(sessions)}

    async def cmd_reopen(self, c: dict[str, Any]) -> dict[str, Any]:
        """Reconnect every session of a set with its cursors; report when all are caught up to
        the given heads."""
        sessions = self.sets[c["set"]]
        heads: dict[str, int] = c["heads"]
        self.reset()
        self.refused = 0
        for s in sessions:
            s.dups = s.gaps = 0
        sem = asyncio.Semaphore(c.get("concurrency", 10_000))
        t0 = time.monotonic()
        tasks = [
            asyncio.create_task(self._connect_retrying(s, sem, False, c.get("jitter", 0.25), c.get("attempts", 12)))
            for s in sessions
        ]
        # Real clients retry for ever; the bench gives up after `deadline` and reports the rest.
        _, late = await asyncio.wait(tasks, timeout=c.get("deadline"))
        for t in late:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ok = [t.done() and not t.cancelled() and t.result() for t in tasks]
        # Registered and caught_up received; now every conversation must reach its head.
        deadline = time.monotonic() + (c.get("timeout", 60.0) if not late else 0.0)
        while time.monotonic() < deadline:
            behind = [
                s for s in sessions for g in s.groups if s.cursors.get("group:" + g, 0) < heads.get("group:" + g, 0)
            ]
            if not behind:
                break
            await asyncio.sleep(0.05)
        done_at = max((s.caught_up_at for s in sessions), default=t0)
        back = [s for s, good in zip(sessions, ok, strict=True) if good]
        away = [s for s, good in zip(sessions, ok, strict=True) if not good]

        def missing(group: list[Lean]) -> int:
            return sum(
                max(0, heads.get("group:" + g, 0) - s.cursors.get("group:" + g, 0)) for s in group for g in s.groups
            ) + sum(s.gaps for s in group)

        lost = missing(back)
        return {
            "reconnected": sum(ok),
            "failed": len(ok) - sum(ok),
            "refused": self.refused,
            "seconds": max(done_at, t0) - t0,
            "all_done_seconds": time.monotonic() - t0,
            "received": self.received,
            "dups": self.dups,
            "lost": lost,
            "missing_not_back": missing(away),
            "last_error": self.last_error,
        }

    async def cmd_close(self, c: dict[str, Any]) -> dict[str, Any]:
        sessions = self.sets.pop(c["set"], [])
        await asyncio.gather(*(s.drop() for s in sessions))
        return {"closed": len(sessions)}

    async def cmd_cursors(self, c: dict[str, Any]) -> dict[str, Any]:
        return {s.agent: s.cursors for s in self.sets.get(c["set"], [])}


async def amain() -> int:
    w = Worker()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    bg = [asyncio.create_task(w.heartbeat_loop(5.0)), asyncio.create_task(w.ack_loop(0.2))]
    out = sys.stdout
    try:
        while True:
            line = await reader.readline()
            if not line:
                return 0
            c = json.loads(line)
            name = c["cmd"]
            if name == "exit":
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return 0
            try:
                result = await getattr(w, "cmd_" + name)(c)
                reply = {"ok": True, **result}
            except Exception as exc:  # noqa: BLE001 - reported to the controller
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    finally:
        for t in bg:
            t.cancel()
        for ss in w.sets.values():
            for s in ss:
                await s.drop()


def main() -> int:
    # Thousands of long-lived sessions make CPython's cyclic GC the top client cost (py-spy:
    # gc_collect_main ~37 % while connecting); collect rarely so the load side stays cheap.
    gc.set_threshold(200_000, 50, 1000)
    return asyncio.run(amain())


if __name__ == "__main__":
    raise SystemExit(main())

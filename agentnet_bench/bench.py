"""`agentnet bench`: a load generator that measures agentnet against the raw transport ceiling.

It makes a throwaway network in a temp folder (CA, server certificate and bench devices made by
agentnet_server.pki), starts its own `agentnet-server serve` (SQLite, synchronous=FULL, TLS) and
a minimal forwarding servicer over the same protocol and TLS (raw.py, the ceiling), and
drives both with the same lean sessions from separate worker processes (load.py), so the
controller's CPU does not count. Rounds alternate agentnet and raw (A B A B ...): this
machine's speed drifts within minutes, so every agentnet figure is reported as a ratio to the
raw figure of the same round, with the median and spread over the rounds.

Scenarios: fanout (flat out), rate (fixed msg/s), durable (acknowledged sends with group
commit), storm (K sessions drop and come back), idle (server memory per TLS session).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import platform
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from agentnet_server.process import ServerProcess, serve_args

from .load import merge_hists, percentiles

SCENARIOS = ("fanout", "rate", "durable", "storm", "idle", "replicas")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# Sizes: the defaults finish in about a minute on 2 cores; --targets (what `make bench` runs)
# uses the sizes the targets are stated for.
SIZES = {
    "quick": {"rounds": 2, "durable_messages": 2000, "storm_sessions": 500, "idle": [1000]},
    "targets": {"rounds": 3, "durable_messages": 4000, "storm_sessions": 2000, "idle": [1000, 5000]},
}

TARGETS = {
    "fanout_ratio": 0.6,  # delivered/s >= 0.6 x raw
    "rate_p99_ms": 25.0,
    "durable_per_s": 5000.0,
    "idle_ratio": 1.25,  # memory per session <= 1.25 x raw
    "storm_seconds": 10.0,
}


# -- machine ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import grpc
    from google.protobuf import __version__ as pb_version

    model = ""
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(pathlib.Path("/proc/meminfo").read_text().split()[1]) // 1024
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_mib": mem,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": pb_version,
        "os": f"{platform.system()} {platform.release()}",
    }


# -- processes --------------------------------------------------------------------------------


class Proc(ServerProcess):
    """A server child process with its CPU time and RSS from /proc."""

    def __init__(self, name: str, args: list[str], workdir: pathlib.Path) -> None:
        super().__init__(workdir / f"{name}.log", workdir, name)
        self.args = args
        self.addr = ""

    def launch(self, timeout: float = 60.0) -> Proc:
        self.addr = self.start(self.args, self.workdir / f"{self.name}.ready", timeout)["grpc"]
        return self

    def cpu(self) -> float:
        """User + system CPU seconds of the whole process (all threads)."""
        fields = pathlib.Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss(self) -> int:
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    async def quiet(self, below: float = 0.05, window: float = 0.5, timeout: float = 30.0) -> None:
        """Wait until the process uses less than `below` of a core over `window` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c0 = self.cpu()
            await asyncio.sleep(window)
            if (self.cpu() - c0) / window < below:
                return


class WorkerProc:
    """A load.py process: one JSON command per line in, one JSON answer per line out."""

    def __init__(self, index: int, workdir: pathlib.Path) -> None:
        self.index = index
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> WorkerProc:
        self.err = open(self.workdir / f"worker{self.index}.log", "ab")  # noqa: SIM115, ASYNC230 - closed in stop()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agentnet_bench.load",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.err,
            limit=256 * 1024 * 1024,
        )
        return self

    async def call(self, cmd: str, **kw: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write((json.dumps({"cmd": cmd, **kw}) + "\n").encode())
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench worker {self.index} died; see {self.workdir}/worker{self.index}.log")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"bench worker {self.index}: {cmd}: {reply.get('error')}")
        return reply

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("exit"), 15)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 10)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        self.err.close()


# -- progress ---------------------------------------------------------------------------------


class Progress:
    """One line on stderr: a bar of finished steps, the current step and the elapsed time."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.label = "starting"
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.enabled and self.tty:
            self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(0.5)

    def step(self, label: str) -> None:
        self.label = label
        if self.enabled and not self.tty:
            print(f"[{self.done + 1}/{self.total}] {label} ({time.monotonic() - self.t0:.0f} s)", file=sys.stderr)
        self.draw()

    def advance(self) -> None:
        self.done = min(self.total, self.done + 1)
        self.draw()

    def draw(self) -> None:
        if not (self.enabled and self.tty):
            return
        width = 28
        filled = int(width * self.done / self.total)
        bar = "█" * filled + "·" * (width - filled)
        line = f"\r[{bar}] {self.done}/{self.total} {self.label[:48]:<48} {time.monotonic() - self.t0:5.0f} s"
        sys.stderr.write(line)
        sys.stderr.flush()

    def finish(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


# -- helpers ----------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    vals = [v for v in values if v == v]  # drop NaN
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


class Bench:
    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns
        self.scenarios = ns.scenarios
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="agentnet-bench-"))
        self.run_id = uuid.uuid4().hex[:6]
        self.workers: list[WorkerProc] = []
        self.servers: list[Proc] = []
        self.results: dict[str, Any] = {}
        self.devices: list[str] = []

    # -- set-up -------------------------------------------------------------------------------

    def make_certs(self) -> None:
        from agentnet_server import pki

        self.certs = pki.CertsDir(self.tmp / "certs")
        pki.ensure_server(self.certs, [])
        # One device per worker: the per-device limits are switched off on the bench server
        # (flags below), so each worker's sessions can share its certificate.
        for i in range(self.ns.procs):
            pki.issue_device(self.certs, f"bench-{i}")
            self.devices.append(str(self.certs.device_dir(f"bench-{i}")))

    def agentnet_server(self, name: str, db: str | None = None) -> Proc:
        args = serve_args(
            self.certs.root,
            db or f"sqlite:///{self.tmp / (name + '.db')}",
            sqlite_synchronous="FULL",
            http_addr="off",
            health_addr="off",
            log_level="WARNING",
            max_agents_per_device=0,
            max_sessions_per_device=0,
            sends_per_second=0,
            events_per_second=0,
        )
        p = Proc(name, args, self.tmp)
        self.servers.append(p)
        return p.launch()

    def raw_server(self, name: str) -> Proc:
        args = [sys.executable, "-m", "agentnet_bench.raw", "--certs", str(self.certs.root)]
        p = Proc(name, args, self.tmp)
        self.servers.append(p)
        return p.launch()

    async def start_workers(self) -> None:
        self.workers = [await WorkerProc(i, self.tmp).start() for i in range(self.ns.procs)]

    async def all_workers(self, cmd: str, per_worker: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(w.call(cmd, **per_worker(w.index)) for w in self.workers)))

    async def open_set(
        self,
        set_name: str,
        addr: str,
        agents: list[tuple[str, list[str]]],
        concurrency: int = 20,
        jitter: float = 0.0,
        timeout: float | None = None,
        addrs: list[str] | None = None,
    ) -> dict[str, Any]:
        """Open sessions, agent i on worker i % procs, with that worker's device (and, with
        `addrs`, on server i % len(addrs))."""
        n = len(self.workers)

        def part(i: int) -> dict[str, Any]:
            mine = [
                {"agent": a, "device": self.devices[i], "groups": g, "addr": addrs[k % len(addrs)] if addrs else addr}
                for k, (a, g) in enumerate(agents)
                if k % n == i
            ]
            return {
                "set": set_name,
                "addr": addr,
                "sessions": mine,
                "concurrency": concurrency,
                "jitter": jitter,
                "timeout": timeout,
                "sign": True,
                "shared": self.ns.shared_connections,
            }

        replies = await self.all_workers("open", part)
        failed = sum(r["failed"] for r in replies)
        timed_out = sum(r["timed_out"] for r in replies)
        if failed and not timeout:
            raise RuntimeError(
                f"{failed} session(s) of {set_name} could not connect: {[r['last_error'] for r in replies]}"
            )
        return {
            "opened": sum(r["opened"] for r in replies),
            "timed_out": timed_out,
            "refused": sum(r["refused"] for r in replies),
            "seconds": max(r["seconds"] for r in replies),
        }

    async def run_load(self, set_name: str, server: Proc, plan: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        # Every load process takes its members' starting cursors before any process sends.
        await self.all_workers("arm", lambda i: {"set": set_name, "plan": plan})
        cpu0 = server.cpu()
        replies = await self.all_workers("run", lambda i: {"set": set_name, "plan": plan, **kw})
        cpu1 = server.cpu()
        first = min((r["first_send"] for r in replies if r["first_send"]), default=0)
        last_done = max(r["last_done"] for r in replies) or time.monotonic_ns()
        last_ack = max(r["last_ack"] for r in replies) or last_done
        dur = max(1e-9, (last_done - first) / 1e9)
        ack_dur = max(1e-9, (last_ack - first) / 1e9)
        received = sum(r["received"] for r in replies)
        acks = sum(r["acks"] for r in replies)
        lat = percentiles(merge_hists(r["lat"] for r in replies), (50, 95, 99))
        ack_lat = percentiles(merge_hists(r["ack_lat"] for r in replies), (50, 95, 99))
        return {
            "sent": sum(r["sent"] for r in replies),
            "acks": acks,
            "errors": sum(r["errors"] + r["send_failures"] for r in replies),
            "ack_refused": sum(r["ack_refused"] for r in replies),
            "last_error": next((r["last_error"] for r in replies if r["last_error"]), ""),
            "delivered": received,
            "duplicates": sum(r["dups"] for r in replies),
            "lost": sum(r["lost"] for r in replies),
            "seconds": dur,
            "sent_per_s": sum(r["sent"] for r in replies) / dur,
            "delivered_per_s": received / dur,
            "acks_per_s": acks / ack_dur,
            "latency_ms": lat,
            "ack_latency_ms": ack_lat,
            "server_cpu_s": cpu1 - cpu0,
            "server_cpu_us_per_delivery": (cpu1 - cpu0) * 1e6 / received if received else float("nan"),
            "server_cpu_us_per_ack": (cpu1 - cpu0) * 1e6 / acks if acks else float("nan"),
            "client_cpu_s": sum(r["cpu"] for r in replies),
            "server_rss_mib": server.rss() / 2**20,
        }

    # -- scenarios ----------------------------------------------------------------------------

    def fan_members(self) -> list[str]:
        return [f"m{i:04d}-{self.run_id}" for i in range(self.ns.members)]

    async def setup_fan(self) -> None:
        g = f"fan-{self.run_id}"
        self.fan_group = g
        members = [(a, [g]) for a in self.fan_members()]
        self.progress.step(f"connecting {len(members)} members to agentnet and raw")
        await self.open_set("fan-an", self.an.addr, members)
        if not self.ns.no_raw:
            await self.open_set("fan-raw", self.raw.addr, members)
        self.progress.advance()

    def fan_plan(self, total: int) -> list[dict[str, Any]]:
        senders = self.fan_members()[: self.ns.senders]
        per = max(1, total // len(senders))
        return [{"sender": s, "group": self.fan_group, "n": per} for s in senders]

    async def interleaved(
        self, name: str, label: str, run: Callable[[str, Proc, str, int], Any]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        an_rounds: list[dict[str, Any]] = []
        raw_rounds: list[dict[str, Any]] = []
        for r in range(self.ns.rounds):
            for kind in ("agentnet", "raw"):
                if kind == "raw" and self.ns.no_raw:
                    continue
                self.progress.step(f"{label} round {r + 1}/{self.ns.rounds}: {kind}")
                server = self.an if kind == "agentnet" else self.raw
                res = await run(kind, server, f"{name}{r}{kind[0]}", r)
                (an_rounds if kind == "agentnet" else raw_rounds).append(res)
                self.progress.advance()
        return an_rounds, raw_rounds

    async def sc_fanout(self) -> None:
        plan = self.fan_plan(self.ns.messages)

        async def run(kind: str, server: Proc, tag: str, r: int) -> dict[str, Any]:
            set_name = "fan-an" if kind == "agentnet" else "fan-raw"
            return await self.run_load(set_name, server, plan, tag=tag, window=self.ns.window, on_echo=True)

        an, raw = await self.interleaved("f", "fan-out flat out", run)
        self.results["fanout"] = self.summarize(
            an,
            raw,
            {
                "members": self.ns.members,
                "senders": self.ns.senders,
                "messages_per_round": sum(p["n"] for p in plan),
                "window_per_sender": self.ns.window,
            },
        )

    async def sc_rate(self) -> None:
        rate = self.ns.rate
        n_senders = min(self.ns.senders, self.ns.members)
        total = max(n_senders, int(rate * self.ns.rate_seconds))
        plan = self.fan_plan(total)

        async def run(kind: str, server: Proc, tag: str, r: int) -> dict[str, Any]:
            set_name = "fan-an" if kind == "agentnet" else "fan-raw"
            return await self.run_load(
                set_name, server, plan, tag=tag, rate=rate / len(plan), window=100_000, on_echo=False
            )

        an, raw = await self.interleaved("r", f"{rate:g} msg/s", run)
        self.results["rate"] = self.summarize(
            an,
            raw,
            {"members": self.ns.members, "rate": rate, "messages_per_round": sum(p["n"] for p in plan)},
        )

    async def sc_durable(self) -> None:
        d = self.ns.durable_senders
        agents = [(f"d{i:04d}-{self.run_id}", [f"dur{i:04d}-{self.run_id}"]) for i in range(d)]
        self.progress.step(f"connecting {d} durable senders")
        await self.open_set("dur-an", self.an.addr, agents)
        if not self.ns.no_raw:
            await self.open_set("dur-raw", self.raw.addr, agents)
        self.progress.advance()
        per = max(1, self.ns.durable_messages // d)
        plan = [{"sender": a, "group": g[0], "n": per} for a, g in agents]

        async def run(kind: str, server: Proc, tag: str, r: int) -> dict[str, Any]:
            set_name = "dur-an" if kind == "agentnet" else "dur-raw"
            return await self.run_load(set_name, server, plan, tag=tag, window=self.ns.durable_window, on_echo=False)

        an, raw = await self.interleaved("d", "durable sends", run)
        self.results["durable"] = self.summarize(
            an,
            raw,
            {
                "senders": d,
                "window_per_sender": self.ns.durable_window,
                "messages_per_round": per * d,
                "sqlite_synchronous": "FULL",
            },
        )
        for s in ("dur-an", "dur-raw"):
            await self.all_workers("close", lambda i, s=s: {"set": s})  # type: ignore[misc]
        self.progress.step("durable: the store alone (no gRPC)")
        try:
            self.results["durable"]["store_only"] = await store_ceiling(
                self.tmp / "store-only.db", self.ns.durable_messages, d * self.ns.durable_window
            )
        except Exception as exc:  # noqa: BLE001 - a diagnostic; the store's API may have moved
            self.results["durable"]["store_only"] = {"error": f"{type(exc).__name__}: {exc}"}
        self.progress.advance()

    async def sc_storm(self) -> None:
        k = self.ns.storm_sessions
        per_group = 100
        groups = [f"st{j:03d}-{self.run_id}" for j in range(max(1, k // per_group))]
        agents = [(f"s{i:05d}-{self.run_id}", [groups[i % len(groups)]]) for i in range(k)]
        self.progress.step(f"storm: connecting {k} sessions")
        opened = await self.open_set("storm", self.an.addr, agents)
        tx = f"stx-{self.run_id}"
        await self.workers[0].call(
            "open",
            set="storm-tx",
            addr=self.an.addr,
            sessions=[{"agent": tx, "device": self.devices[0], "groups": groups}],
            sign=True,
        )
        await self.an.quiet(timeout=30)
        self.progress.advance()
        self.progress.step(f"storm: {k} sessions drop, {self.ns.storm_messages} messages per group meanwhile")
        await self.all_workers("drop", lambda i: {"set": "storm"})
        plan = [{"sender": tx, "group": g, "n": self.ns.storm_messages} for g in groups]
        sent = await self.workers[0].call("run", set="storm-tx", plan=plan, tag="storm", window=64, on_echo=False)
        cursors = await self.workers[0].call("cursors", set="storm-tx")
        heads = {c: s for c, s in cursors[tx].items() if c.startswith("group:")}
        await self.an.quiet(timeout=30)
        self.progress.advance()
        self.progress.step(f"storm: {k} sessions reconnect at once")
        cpu0 = self.an.cpu()
        replies = await self.all_workers(
            "reopen",
            lambda i: {
                "set": "storm",
                "heads": heads,
                "jitter": self.ns.storm_jitter,
                "timeout": 60.0,
                "attempts": 1000,
                "deadline": self.ns.storm_deadline,
            },
        )
        cpu1 = self.an.cpu()
        self.progress.advance()
        res = {
            "sessions": k,
            "groups": len(groups),
            "missed_messages_per_session": self.ns.storm_messages,
            "sent_while_down": sent["acks"],
            "connect_refused": opened["refused"],
            "seconds_to_all_caught_up": max(r["all_done_seconds"] for r in replies),
            "seconds_to_last_caught_up_event": max(r["seconds"] for r in replies),
            "reconnected": sum(r["reconnected"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "refused_attempts": sum(r["refused"] for r in replies),
            "replayed": sum(r["received"] for r in replies),
            "duplicates": sum(r["dups"] for r in replies),
            "lost": sum(r["lost"] for r in replies),
            "missing_not_back": sum(r["missing_not_back"] for r in replies),
            "last_error": next((r["last_error"] for r in replies if r["last_error"]), ""),
            "deadline_s": self.ns.storm_deadline,
            "server_cpu_s": cpu1 - cpu0,
            "server_rss_mib": self.an.rss() / 2**20,
            "reconnect_jitter_s": self.ns.storm_jitter,
        }
        self.results["storm"] = res
        for s in ("storm", "storm-tx"):
            await self.all_workers("close", lambda i, s=s: {"set": s})  # type: ignore[misc]
        if self.ns.no_raw:
            return
        # The same storm through the raw forwarder: TLS handshakes and register only (it has no
        # log to replay), i.e. the transport's own floor for this many reconnects.
        self.progress.step(f"storm: {k} sessions drop and reconnect to the raw forwarder")
        await self.open_set("storm-raw", self.raw.addr, agents)
        await self.raw.quiet(timeout=30)
        await self.all_workers("drop", lambda i: {"set": "storm-raw"})
        replies = await self.all_workers(
            "reopen",
            lambda i: {
                "set": "storm-raw",
                "heads": {},
                "jitter": self.ns.storm_jitter,
                "timeout": 60.0,
                "attempts": 60,
            },
        )
        res["raw_seconds_to_all_reconnected"] = max(r["all_done_seconds"] for r in replies)
        res["raw_refused_attempts"] = sum(r["refused"] for r in replies)
        res["raw_failed"] = sum(r["failed"] for r in replies)
        res["ratio_to_raw"] = ratio(res["seconds_to_all_caught_up"], res["raw_seconds_to_all_reconnected"])
        await self.all_workers("close", lambda i: {"set": "storm-raw"})
        self.progress.advance()

    async def sc_idle(self) -> None:
        levels = sorted(self.ns.idle)
        out: dict[str, Any] = {"levels": levels}
        for kind in ("agentnet", "raw"):
            if kind == "raw" and self.ns.no_raw:
                continue
            self.progress.step(f"idle sessions: fresh {kind} server")
            srv = self.agentnet_server("idle-an") if kind == "agentnet" else self.raw_server("idle-raw")
            try:
                warm: list[tuple[str, list[str]]] = [(f"w{i}-{self.run_id}", []) for i in range(len(self.workers))]
                await self.open_set("idle-warm", srv.addr, warm)
                await srv.quiet()
                base = srv.rss()
                rows = []
                have = 0
                connect_s = 0.0
                refused = 0
                for level in levels:
                    self.progress.step(f"idle sessions: {kind}, {have} → {level}")
                    agents: list[tuple[str, list[str]]] = [(f"i{i:05d}-{self.run_id}", []) for i in range(have, level)]
                    t0 = time.monotonic()
                    opened = await self.open_set(
                        "idle",
                        srv.addr,
                        agents,
                        concurrency=self.ns.idle_batch,
                        jitter=0.5,
                        timeout=self.ns.idle_timeout,
                    )
                    connect_s += time.monotonic() - t0
                    refused += opened["refused"]
                    have += opened["opened"]
                    if have == 0:
                        break
                    await srv.quiet(timeout=60)
                    await asyncio.sleep(1.0)
                    rss = srv.rss()
                    rows.append(
                        {
                            "target_sessions": level,
                            "sessions": have,
                            "complete": have == level,
                            "server_rss_mib": rss / 2**20,
                            "kib_per_session": (rss - base) / 1024 / have,
                            "connect_seconds": connect_s,
                            "refused": refused,
                        }
                    )
                    self.progress.advance()
                    if have < level:
                        break  # the rest would take too long; reported as incomplete
                out[kind] = {"base_rss_mib": base / 2**20, "rows": rows}
                for s in ("idle", "idle-warm"):
                    await self.all_workers("close", lambda i, s=s: {"set": s})  # type: ignore[misc]
            finally:
                srv.stop()
                self.servers.remove(srv)
        if "raw" in out:
            out["ratio"] = [
                ratio(a["kib_per_session"], b["kib_per_session"])
                for a, b in zip(out["agentnet"]["rows"], out["raw"]["rows"], strict=False)
            ]
        self.results["idle"] = out

    # -- summary ------------------------------------------------------------------------------

    async def sc_replicas(self) -> None:
        """Cross-replica fan-out: N replicas on one PostgreSQL database, the senders on the first,
        the members spread over all of them; against the same load with every member on one
        replica of the same database. Rounds interleaved; ratio = N replicas / 1 replica."""
        import psycopg

        base = self.ns.postgres
        name = f"agentnet_bench_{self.run_id}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.scratch_db = (base, name)
        url = base.rsplit("/", 1)[0] + "/" + name
        n = self.ns.replicas
        self.progress.step(f"starting {n} replicas on PostgreSQL")
        reps = [self.agentnet_server(f"replica{i}", url) for i in range(n)]
        self.progress.advance()
        one_group, spread_group = f"rep1-{self.run_id}", f"repn-{self.run_id}"
        one = [f"r1-{i:04d}-{self.run_id}" for i in range(self.ns.members)]
        # Member k on replica k % n: the senders (members 0, n, 2n, ...) all on the first one.
        spread_members = [f"rn-{i:04d}-{self.run_id}" for i in range(self.ns.members)]
        self.progress.step("connecting members to the replicas")
        await self.open_set("rep-1", reps[0].addr, [(a, [one_group]) for a in one])
        await self.open_set(
            "rep-n", reps[0].addr, [(a, [spread_group]) for a in spread_members], addrs=[r.addr for r in reps]
        )
        self.progress.advance()
        senders = min(self.ns.senders, len(spread_members[::n]))
        per = max(1, self.ns.messages // senders)
        plan_one = [{"sender": a, "group": one_group, "n": per} for a in one[::n][:senders]]
        plan_spread = [{"sender": a, "group": spread_group, "n": per} for a in spread_members[::n][:senders]]
        spread_rounds: list[dict[str, Any]] = []
        one_rounds: list[dict[str, Any]] = []
        for r in range(self.ns.rounds):
            for kind in ("spread", "one"):
                self.progress.step(f"replicas round {r + 1}/{self.ns.rounds}: {n if kind == 'spread' else 1}")
                set_name, plan = ("rep-n", plan_spread) if kind == "spread" else ("rep-1", plan_one)
                res = await self.run_load(set_name, reps[0], plan, tag=f"r{r}{kind[0]}", window=self.ns.window)
                (spread_rounds if kind == "spread" else one_rounds).append(res)
                self.progress.advance()
        for set_name in ("rep-1", "rep-n"):
            await self.all_workers("close", lambda i, s=set_name: {"set": s})  # type: ignore[misc]
        self.results["replicas"] = self.summarize(
            spread_rounds,
            one_rounds,
            {
                "replicas": n,
                "members": self.ns.members,
                "remote_members": sum(1 for k in range(self.ns.members) if k % n),
                "senders": senders,
                "messages_per_round": per * senders,
                "window_per_sender": self.ns.window,
            },
        )

    def drop_scratch_db(self) -> None:
        scratch = getattr(self, "scratch_db", None)
        if scratch is None:
            return
        import psycopg

        base, name = scratch
        with contextlib.suppress(psycopg.Error), psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def summarize(self, an: list[dict[str, Any]], raw: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        keys = {
            "sent_per_s": lambda r: r["sent_per_s"],
            "delivered_per_s": lambda r: r["delivered_per_s"],
            "acks_per_s": lambda r: r["acks_per_s"],
            "p50_ms": lambda r: r["latency_ms"]["p50"],
            "p95_ms": lambda r: r["latency_ms"]["p95"],
            "p99_ms": lambda r: r["latency_ms"]["p99"],
            "max_ms": lambda r: r["latency_ms"]["max"],
            "ack_p99_ms": lambda r: r["ack_latency_ms"]["p99"],
            "server_cpu_us_per_delivery": lambda r: r["server_cpu_us_per_delivery"],
            "server_cpu_us_per_ack": lambda r: r["server_cpu_us_per_ack"],
            "server_rss_mib": lambda r: r["server_rss_mib"],
        }
        summary: dict[str, Any] = {"params": params, "rounds": {"agentnet": an, "raw": raw}}
        for k, f in keys.items():
            a = [f(r) for r in an]
            b = [f(r) for r in raw]
            entry: dict[str, Any] = {"agentnet": spread(a)}
            if raw:
                entry["raw"] = spread(b)
                entry["ratio"] = spread([ratio(x, y) for x, y in zip(a, b, strict=False)])
            summary[k] = entry
        summary["totals"] = {
            "acks": sum(r["acks"] for r in an),
            "errors": sum(r["errors"] for r in an),
            "ack_refused": sum(r["ack_refused"] for r in an),
            "duplicates": sum(r["duplicates"] for r in an),
            "lost": sum(r["lost"] for r in an),
            "raw_duplicates": sum(r["duplicates"] for r in raw),
            "raw_lost": sum(r["lost"] for r in raw),
            "last_error": next((r["last_error"] for r in an if r["last_error"]), ""),
        }
        return summary

    def verdicts(self) -> list[dict[str, Any]]:
        out = []
        r = self.results
        if "fanout" in r and "ratio" in r["fanout"]["delivered_per_s"]:
            v = r["fanout"]["delivered_per_s"]["ratio"]["median"]
            out.append(
                {
                    "target": f"fan-out {self.ns.members} members flat out: delivered/s >= "
                    f"{TARGETS['fanout_ratio']} x raw",
                    "value": f"{v:.2f} x",
                    "met": v >= TARGETS["fanout_ratio"],
                }
            )
        if "rate" in r:
            v = r["rate"]["p99_ms"]["agentnet"]["median"]
            out.append(
                {
                    "target": f"{self.ns.rate:g} msg/s into {self.ns.members} members: p99 <= "
                    f"{TARGETS['rate_p99_ms']:g} ms",
                    "value": f"{v:.1f} ms",
                    "met": v <= TARGETS["rate_p99_ms"],
                }
            )
        if "durable" in r:
            v = r["durable"]["acks_per_s"]["agentnet"]["median"]
            out.append(
                {
                    "target": f"durable acknowledged sends >= {TARGETS['durable_per_s']:,.0f}/s",
                    "value": f"{v:,.0f}/s",
                    "met": v >= TARGETS["durable_per_s"],
                }
            )
        if "idle" in r and "ratio" in r["idle"]:
            worst = max(r["idle"]["ratio"])
            out.append(
                {
                    "target": f"idle TLS session memory <= {TARGETS['idle_ratio']} x raw",
                    "value": " / ".join(f"{x:.2f} x" for x in r["idle"]["ratio"]),
                    "met": worst <= TARGETS["idle_ratio"],
                }
            )
        if "storm" in r:
            s = r["storm"]
            ok = s["seconds_to_all_caught_up"] <= TARGETS["storm_seconds"] and s["lost"] == 0 and not s["failed"]
            out.append(
                {
                    "target": f"reconnect storm of {s['sessions']}: all caught up <= {TARGETS['storm_seconds']:g} s, "
                    "nothing lost",
                    "value": f"{s['seconds_to_all_caught_up']:.1f} s, lost {s['lost']}",
                    "met": ok,
                }
            )
        for key in ("fanout", "rate", "durable"):
            if key in r:
                t = r[key]["totals"]
                out.append(
                    {
                        "target": f"{key}: duplicates and losses are 0",
                        "value": f"duplicates {t['duplicates']}, lost {t['lost']}, errors {t['errors']}",
                        "met": t["duplicates"] == 0 and t["lost"] == 0 and t["errors"] == 0,
                    }
                )
        return out

    # -- main ---------------------------------------------------------------------------------

    def steps(self) -> int:
        n = 0
        per_round = self.ns.rounds * (1 if self.ns.no_raw else 2)
        if "fanout" in self.scenarios or "rate" in self.scenarios:
            n += 1
        for s in ("fanout", "rate", "durable"):
            if s in self.scenarios:
                n += per_round
        if "durable" in self.scenarios:
            n += 2
        if "storm" in self.scenarios:
            n += 3 if self.ns.no_raw else 4
        if "idle" in self.scenarios:
            n += len(self.ns.idle) * (1 if self.ns.no_raw else 2)
        if "replicas" in self.scenarios:
            n += 2 + 2 * self.ns.rounds
        return n

    async def run(self) -> dict[str, Any]:
        self.progress = Progress(self.steps(), not self.ns.quiet)
        self.progress.start()
        t0 = time.monotonic()
        try:
            _raise_nofile()
            self.make_certs()
            need_main = any(s in self.scenarios for s in ("fanout", "rate", "durable", "storm"))
            if need_main:
                self.an = self.agentnet_server("agentnet")
                if not self.ns.no_raw:
                    self.raw = self.raw_server("raw")
            await self.start_workers()
            if "fanout" in self.scenarios or "rate" in self.scenarios:
                await self.setup_fan()
            if "fanout" in self.scenarios:
                await self.sc_fanout()
            if "rate" in self.scenarios:
                await self.sc_rate()
            if "fanout" in self.scenarios or "rate" in self.scenarios:
                for s in ("fan-an", "fan-raw"):
                    await self.all_workers("close", lambda i, s=s: {"set": s})  # type: ignore[misc]
            if "durable" in self.scenarios:
                await self.sc_durable()
            if "storm" in self.scenarios:
                await self.sc_storm()
            if "idle" in self.scenarios:
                await self.sc_idle()
            if "replicas" in self.scenarios:
                await self.sc_replicas()
        finally:
            self.progress.finish()
            for w in self.workers:
                await w.stop()
            for srv in self.servers:
                srv.stop()
            self.drop_scratch_db()
            if self.ns.keep:
                print(f"bench files kept in {self.tmp}", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        return {
            "machine": machine(),
            "command": "agentnet bench " + " ".join(self.ns.argv),
            "seconds": time.monotonic() - t0,
            "settings": {
                "rounds": self.ns.rounds,
                "sizes": "targets" if self.ns.targets else "quick",
                "worker_processes": self.ns.procs,
                "signed_sends": True,
                "tls": "mTLS (P-256) on every connection, one connection per session",
                "store": "SQLite WAL, synchronous=FULL, group commit",
            },
            "results": self.results,
            "targets": self.verdicts(),
        }


async def store_ceiling(path: pathlib.Path, n: int, window: int) -> dict[str, Any]:
    """Acknowledged sends through the server's store alone (its writer thread with group commit,
    SQLite synchronous=FULL), no gRPC: separates the store's limit from the transport's."""
    import hashlib

    from agentnet_server.records import AgentWrite, MessageWrite
    from agentnet_server.store import ops
    from agentnet_server.store.db import Database

    from .load import Hist

    db = Database(f"sqlite:///{path}", "FULL", readers=1, batch=512)
    await asyncio.to_thread(db.migrate)
    db.start(asyncio.get_running_loop())
    try:
        await db.write(ops.register_agent, AgentWrite("bench", "store-bench", "store-bench", "store-bench", "", ""), 0)
        await db.write(ops.create_group, "store-bench", "store-bench", "", "", 0)
        conv = "group:store-bench"
        sem = asyncio.Semaphore(window)
        hist = Hist()
        done = asyncio.Event()
        left = n

        def finished(t0: int) -> Callable[[asyncio.Future[Any]], None]:
            def cb(f: asyncio.Future[Any]) -> None:
                nonlocal left
                f.exception()
                hist.add(time.monotonic_ns() - t0)
                sem.release()
                left -= 1
                if not left:
                    done.set()

            return cb

        t_start = time.monotonic()
        for i in range(n):
            await sem.acquire()
            content = f"store bench {i}"
            digest = hashlib.sha256(content.encode()).hexdigest()
            t0 = time.monotonic_ns()
            write = MessageWrite("store-bench", "bench", conv, f"s{i}", digest, content, None, (), content)
            fut = db.write(ops.send_message, write)
            fut.add_done_callback(finished(t0))
        await done.wait()
        seconds = time.monotonic() - t_start
        lat = percentiles(hist.to_json(), (50, 99))
        return {"commits_per_s": n / seconds, "p50_ms": lat["p50"], "p99_ms": lat["p99"], "transactions": db.commits}
    finally:
        await asyncio.to_thread(db.close)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# -- output -----------------------------------------------------------------------------------


def _f(v: float, digits: int = 0) -> str:
    if v != v:  # NaN
        return "-"
    return f"{v:,.{digits}f}"


def _cell(entry: dict[str, Any], side: str, digits: int) -> str:
    s = entry.get(side)
    if not s:
        return "-"
    if s["min"] == s["max"]:
        return _f(s["median"], digits)
    return f"{_f(s['median'], digits)} ({_f(s['min'], digits)}–{_f(s['max'], digits)})"


def render(report: dict[str, Any]) -> str:
    lines: list[str] = []
    m = report["machine"]
    lines.append(
        f"machine: {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), {m['memory_mib']:,} MiB, {m['os']}; "
        f"Python {m['python']}, grpcio {m['grpcio']}, protobuf {m['protobuf']}"
    )
    st = report["settings"]
    lines.append(
        f"command: {report['command']}  ({report['seconds']:.0f} s; {st['rounds']} rounds agentnet/raw interleaved, "
        f"{st['worker_processes']} load processes; {st['tls']}; {st['store']})"
    )
    lines.append("figures: median (min–max) over the rounds; ratio = agentnet / raw of the same round")
    r = report["results"]
    rows_spec: list[tuple[str, str, int]] = [
        ("sent_per_s", "sent/s", 0),
        ("delivered_per_s", "delivered/s", 0),
        ("acks_per_s", "acks/s", 0),
        ("p50_ms", "send→receive p50 ms", 2),
        ("p95_ms", "send→receive p95 ms", 2),
        ("p99_ms", "send→receive p99 ms", 2),
        ("max_ms", "send→receive max ms", 1),
        ("ack_p99_ms", "ack p99 ms", 2),
        ("server_cpu_us_per_delivery", "server CPU µs/delivery", 1),
        ("server_cpu_us_per_ack", "server CPU µs/ack", 1),
        ("server_rss_mib", "server RSS MiB", 0),
    ]
    titles = {
        "fanout": "fan-out, flat out",
        "rate": "fan-out at a fixed rate",
        "durable": "durable acknowledged sends",
    }
    for key in ("fanout", "rate", "durable"):
        if key not in r:
            continue
        sec = r[key]
        p = sec["params"]
        lines.append("")
        lines.append(f"== {titles[key]}: " + ", ".join(f"{k}={v}" for k, v in p.items()))
        lines.append(f"{'metric':<24} {'agentnet':>28} {'raw ceiling':>28} {'ratio':>20}")
        for k, label, d in rows_spec:
            if key == "durable" and k in ("delivered_per_s", "server_cpu_us_per_delivery", "p50_ms", "p95_ms"):
                continue
            if key != "durable" and k in ("acks_per_s", "server_cpu_us_per_ack"):
                continue
            e = sec[k]
            lines.append(
                f"{label:<24} {_cell(e, 'agentnet', d):>28} {_cell(e, 'raw', d):>28} {_cell(e, 'ratio', 2):>20}"
            )
        so = sec.get("store_only")
        if so:
            lines.append(
                f"{'store alone (no gRPC)':<24} "
                + (
                    f"{so['commits_per_s']:,.0f} acknowledged sends/s, p50 {so['p50_ms']:.1f} ms, "
                    f"p99 {so['p99_ms']:.1f} ms, {so['transactions']:,} transactions"
                    if "error" not in so
                    else f"unavailable ({so['error']})"
                )
            )
        t = sec["totals"]
        lines.append(
            f"{'acks / errors':<24} {t['acks']:>20,} / {t['errors']:<5}  duplicates {t['duplicates']}, "
            f"lost {t['lost']} (raw: duplicates {t['raw_duplicates']}, lost {t['raw_lost']})"
        )
        if t.get("ack_refused"):
            lines.append(
                f"  delivery acks refused as ACK_AHEAD: {t['ack_refused']} (a server race, see docs/performance.md)"
            )
        if t["last_error"]:
            lines.append(f"  last error: {' '.join(t['last_error'].split())[:240]}")
    if "storm" in r:
        s = r["storm"]
        lines.append("")
        lines.append(
            f"== reconnect storm: {s['sessions']} sessions in {s['groups']} groups drop at once, "
            f"{s['missed_messages_per_session']} messages each while down, come back within "
            f"{s['reconnect_jitter_s']:g} s (jitter)"
        )
        lines.append(f"  all caught up after       {s['seconds_to_all_caught_up']:.2f} s")
        lines.append(
            f"  reconnected {s['reconnected']}, not back within {s['deadline_s']:g} s {s['failed']}, "
            f"refused attempts {s['refused_attempts']}, replayed {s['replayed']:,}, duplicates {s['duplicates']}, "
            f"lost {s['lost']} (sessions that are back), {s['missing_not_back']} still owed to sessions not back"
        )
        lines.append(f"  server CPU {s['server_cpu_s']:.2f} s, RSS {s['server_rss_mib']:.0f} MiB")
        if "raw_seconds_to_all_reconnected" in s:
            lines.append(
                f"  raw forwarder, same storm (handshake + register, nothing to replay): "
                f"{s['raw_seconds_to_all_reconnected']:.2f} s, refused attempts {s['raw_refused_attempts']}, "
                f"failed {s['raw_failed']}; agentnet / raw {s['ratio_to_raw']:.2f}"
            )
        if s["last_error"]:
            lines.append(f"  last error: {' '.join(s['last_error'].split())[:240]}")
    if "idle" in r:
        i = r["idle"]
        lines.append("")
        lines.append("== idle sessions (one TLS connection each, registered; fresh servers)")
        lines.append(
            f"{'sessions':>9} {'agentnet KiB/session':>22} {'raw KiB/session':>17} {'ratio':>7} {'RSS MiB':>16}"
        )
        for n, row in enumerate(i["agentnet"]["rows"]):
            raw_row = i["raw"]["rows"][n] if "raw" in i and n < len(i["raw"]["rows"]) else None
            if not row["complete"]:
                lines.append(
                    f"  agentnet reached only {row['sessions']:,} of {row['target_sessions']:,} sessions within "
                    f"--idle-timeout; its figure is per connected session"
                )
            lines.append(
                f"{row['sessions']:>9,} {row['kib_per_session']:>22.1f} "
                f"{(raw_row['kib_per_session'] if raw_row else float('nan')):>17.1f} "
                f"{(i['ratio'][n] if 'ratio' in i and n < len(i['ratio']) else float('nan')):>7.2f} "
                f"{row['server_rss_mib']:>7.0f} / {(raw_row['server_rss_mib'] if raw_row else 0):>6.0f}"
            )
        lines.append(
            f"  connect time agentnet {i['agentnet']['rows'][-1]['connect_seconds']:.1f} s"
            + (f", raw {i['raw']['rows'][-1]['connect_seconds']:.1f} s" if "raw" in i else "")
        )
    if "replicas" in r:
        sec = r["replicas"]
        p = sec["params"]
        lines.append("")
        lines.append(
            f"== cross-replica fan-out on PostgreSQL: {p['replicas']} replicas, {p['members']} members "
            f"({p['remote_members']} on other replicas than the senders), {p['senders']} senders, "
            f"{p['messages_per_round']} messages per round; against the same load on 1 replica"
        )
        lines.append(f"{'metric':<24} {str(p['replicas']) + ' replicas':>28} {'1 replica':>28} {'ratio':>20}")
        for k, label, d in rows_spec:
            if k in ("acks_per_s", "server_cpu_us_per_ack", "server_cpu_us_per_delivery", "server_rss_mib"):
                continue
            e = sec[k]
            lines.append(
                f"{label:<24} {_cell(e, 'agentnet', d):>28} {_cell(e, 'raw', d):>28} {_cell(e, 'ratio', 2):>20}"
            )
        t = sec["totals"]
        lines.append(
            f"{'acks / errors':<24} {t['acks']:>20,} / {t['errors']:<5}  duplicates {t['duplicates']}, "
            f"lost {t['lost']} (1 replica: duplicates {t['raw_duplicates']}, lost {t['raw_lost']})"
        )
        if t["last_error"]:
            lines.append(f"  last error: {' '.join(t['last_error'].split())[:240]}")
    if report["targets"]:
        lines.append("")
        lines.append("== targets")
        if report["settings"].get("sizes") == "quick":
            lines.append("  (a quick run: the storm and idle targets are for 2,000 and 5,000 sessions; see --targets)")
        for t in report["targets"]:
            lines.append(f"  [{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {t['value']}")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        help="run only this scenario (repeatable; default all): " + ", ".join(SCENARIOS),
    )
    p.add_argument("--members", type=int, default=100, help="group members for fan-out and rate (default 100)")
    p.add_argument("--senders", type=int, default=4, help="senders in the group (default 4)")
    p.add_argument("--messages", type=int, default=300, help="messages per fan-out round (default 300)")
    p.add_argument("--window", type=int, default=32, help="fan-out: messages in flight per sender (default 32)")
    p.add_argument("--rate", type=float, default=50.0, help="fixed-rate scenario: msg/s into the group (default 50)")
    p.add_argument("--rate-seconds", type=float, default=3.0, help="length of one fixed-rate round (default 3)")
    p.add_argument("--durable-senders", type=int, default=64, help="concurrent durable senders (default 64)")
    p.add_argument(
        "--durable-messages", type=int, help="acknowledged sends per round (default 2000; 4000 with --targets)"
    )
    p.add_argument("--durable-window", type=int, default=16, help="unacknowledged sends per sender (default 16)")
    p.add_argument(
        "--storm-sessions", type=int, help="sessions in the reconnect storm (default 500; 2000 with --targets)"
    )
    p.add_argument("--storm-messages", type=int, default=10, help="messages each storm session misses (default 10)")
    p.add_argument(
        "--storm-deadline",
        type=float,
        default=120.0,
        help="seconds after which storm sessions still not back are counted as failed (default 120)",
    )
    p.add_argument("--storm-jitter", type=float, default=0.25, help="reconnect jitter in seconds (default 0.25)")
    p.add_argument(
        "--idle",
        type=lambda s: [int(x) for x in s.split(",") if x],
        help="idle session counts, comma-separated (default 1000; 1000,5000 with --targets)",
    )
    p.add_argument("--idle-batch", type=int, default=20, help="connects in flight per load process (default 20)")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=120.0,
        help="seconds to reach each idle level; the figure is then taken at the count reached (default 120)",
    )
    p.add_argument("--rounds", type=int, help="interleaved agentnet/raw rounds (default 2; 3 with --targets)")
    p.add_argument(
        "--targets",
        action="store_true",
        help="measure at the sizes the targets are stated for (3 rounds, a storm of 2,000, 1,000 and 5,000 "
        "idle sessions; several minutes); `make bench` runs this",
    )
    p.add_argument("--procs", type=int, default=2, help="load processes (default 2)")
    p.add_argument(
        "--shared-connections",
        type=int,
        default=0,
        metavar="N",
        help="multiplex the sessions of each load process over N connections (default 0: one TLS connection each)",
    )
    p.add_argument("--no-raw", action="store_true", help="skip the raw transport ceiling")
    p.add_argument(
        "--postgres",
        default=os.environ.get("AGENTNET_BENCH_POSTGRES") or None,
        metavar="URL",
        help="PostgreSQL server for the replicas scenario (a scratch database is created and dropped); "
        "default AGENTNET_BENCH_POSTGRES; without it `all` leaves that scenario out",
    )
    p.add_argument("--replicas", type=int, default=3, help="replicas in the replicas scenario (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs, databases)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


async def cmd_bench(ns: argparse.Namespace) -> int:
    chosen = ns.scenario or ["all"]
    ns.scenarios = list(SCENARIOS) if "all" in chosen else [s for s in SCENARIOS if s in chosen]
    if not ns.postgres:
        if "replicas" in chosen:
            print("agentnet bench: the replicas scenario needs --postgres URL (a PostgreSQL server)", file=sys.stderr)
            return 2
        ns.scenarios = [s for s in ns.scenarios if s != "replicas"]
    if ns.replicas < 2:
        print("agentnet bench: --replicas must be >= 2", file=sys.stderr)
        return 2
    if getattr(ns, "argv", None) is None:
        ns.argv = _argv_after("bench")
    for name, value in SIZES["targets" if ns.targets else "quick"].items():
        if getattr(ns, name) is None:
            setattr(ns, name, value)
    for name in ("members", "senders", "messages", "rounds", "procs", "durable_senders", "storm_sessions"):
        if getattr(ns, name) < 1:
            print(f"agentnet bench: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    ns.senders = min(ns.senders, ns.members)
    bench = Bench(ns)
    main = asyncio.current_task()
    if main is not None:
        # SIGTERM ends the run like Ctrl-C: the finally blocks stop the servers and workers.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    report = await bench.run()
    if ns.json:
        print(json.dumps(_no_nan(report), indent=2, ensure_ascii=False, default=_json_default, allow_nan=False))
    else:
        print(render(report))
    return 0


def _no_nan(v: Any) -> Any:
    """NaN (a figure that could not be measured) becomes null: strict JSON for other tools."""
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_no_nan(x) for x in v]
    return v


def _json_default(v: Any) -> Any:
    return str(v)


def _argv_after(word: str) -> list[str]:
    args = sys.argv[1:]
    return args[args.index(word) + 1 :] if word in args else []


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="agentnet bench", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    add_arguments(ap)
    return ap


async def run(argv: list[str], json_output: bool = False) -> int:
    """`agentnet bench ARGS...` (the client CLI hands its arguments over; `--json` may come from either)."""
    ns = parser().parse_args(argv)
    ns.json = ns.json or json_output
    ns.argv = argv
    return await cmd_bench(ns)


def main(argv: Iterable[str] | None = None) -> int:
    return asyncio.run(run(list(argv) if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    raise SystemExit(main())

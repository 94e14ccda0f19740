"""The OpenClaw bridge: hands mentions, direct messages and task events to the local OpenClaw
gateway (POST /hooks/agent), once per item, across restarts of either side.

The agent's local cache is the queue: the session records every event there before the bridge
sees it, and the bridge records what it handed over (table bridge_handover). On start it hands
over anything recorded but not handed over yet. Each POST carries an Idempotency-Key, so a crash
between the gateway's answer and our record does not start a second run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from agentnet.v1 import events_pb2, resources_pb2

from .client import Client
from .errors import AgentnetError
from .session import State

log = logging.getLogger("agentnet.bridge")

KINDS = ("mention", "dm", "task")
SCHEMA = """
CREATE TABLE IF NOT EXISTS bridge_handover (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, status TEXT NOT NULL, time REAL NOT NULL
);
"""


class BridgeError(Exception):
    """A configuration problem the bridge cannot retry its way out of (e.g. a wrong hook token)."""


@dataclasses.dataclass(frozen=True)
class HookConfig:
    url: str
    token: str
    openclaw_agent: str = ""
    session_key_prefix: str = ""
    deliver: bool = False
    channel: str = ""
    to: str = ""
    timeout: float = 30.0


@dataclasses.dataclass(frozen=True)
class Handover:
    key: str
    text: str
    session: str  # conversation or task id, used for the optional session key


def _status(n: int) -> str:
    return resources_pb2.TaskStatus.Name(n).removeprefix("TASK_STATUS_").lower()


def _where(conv: str) -> str:
    return f"group {conv.removeprefix('group:')}" if conv.startswith("group:") else "a direct message"


class Bridge:
    def __init__(self, client: Client, hook: HookConfig, kinds: Iterable[str] = KINDS) -> None:
        if client.agent is None or client.cache is None:
            raise BridgeError("the bridge needs an agent session with a local cache")
        self.client = client
        self.me = client.agent.id
        self.hook = hook
        self.kinds = set(kinds)
        self.cache = client.cache
        self.cache.db.executescript(SCHEMA)
        self.handed = 0
        self._http: aiohttp.ClientSession | None = None

    # -- what to hand over --------------------------------------------------------------------

    def handover_for(self, ev: events_pb2.ServerEvent) -> Handover | None:
        kind = ev.WhichOneof("event")
        if kind == "mention" and "mention" in self.kinds:
            m, item = ev.mention.message, ev.mention.item
            group = m.group_id
            return Handover(
                f"{self.me}:mention:{item.seq}",
                f"[agentnet] {m.sender} mentioned you in {_where(m.conversation)} (message #{m.seq}):\n"
                f"{m.content}\n\n"
                f'Reply in the group: agentnet send {group} "<your reply>"\n'
                f"Mark it read: agentnet read --group {group} --up-to {m.seq}",
                m.conversation,
            )
        if kind == "message" and "dm" in self.kinds:
            m = ev.message
            if not m.conversation.startswith("dm:") or m.sender == self.me:
                return None
            return Handover(
                f"{self.me}:dm:{m.conversation}:{m.seq}",
                f"[agentnet] direct message from {m.sender} (#{m.seq}):\n{m.content}\n\n"
                f'Reply: agentnet dm {m.sender} "<your reply>"\n'
                f"Mark it read: agentnet read --dm {m.sender} --up-to {m.seq}",
                m.conversation,
            )
        if kind in ("task_assigned", "task_updated") and "task" in self.kinds:
            tev = getattr(ev, kind)
            t, c = tev.task, tev.change
            if c.actor == self.me:
                return None
            if kind == "task_assigned" and t.assignee == self.me:
                due = f", due {t.due_time.ToDatetime().isoformat()}Z" if t.HasField("due_time") else ""
                prio = resources_pb2.TaskPriority.Name(t.priority).removeprefix("TASK_PRIORITY_").lower()
                return Handover(
                    f"{self.me}:task:{t.id}:{t.version}",
                    f'[agentnet] task {t.id} assigned to you by {c.actor}: "{t.title}" (priority {prio}{due})\n'
                    + (f"{t.description}\n" if t.description else "")
                    + f"\nAccept: agentnet task accept {t.id}\nStart: agentnet task start {t.id}\n"
                    f'Finish: agentnet task done {t.id} --result "<what you did>"\n'
                    f'Decline: agentnet task reject {t.id} --note "<why>"',
                    t.id,
                )
            if t.creator == self.me and c.from_status != c.to_status:
                note = f" — {c.note}" if c.note else ""
                result = f"\nResult: {t.result}" if t.result else ""
                return Handover(
                    f"{self.me}:task:{t.id}:{t.version}",
                    f'[agentnet] your task {t.id} "{t.title}" is now {_status(c.to_status)} '
                    f"(by {c.actor}){note}{result}\nDetails: agentnet task show {t.id}",
                    t.id,
                )
        return None

    def _handed(self, key: str) -> bool:
        return self.cache.db.execute("SELECT 1 FROM bridge_handover WHERE key = ?", (key,)).fetchone() is not None

    def _record(self, key: str, run_id: str, status: str) -> None:
        self.cache.db.execute(
            "INSERT OR REPLACE INTO bridge_handover (key, run_id, status, time) VALUES (?, ?, ?, ?)",
            (key, run_id, status, time.time()),
        )

    def backlog(self) -> list[events_pb2.ServerEvent]:
        """Events recorded in the cache since the bridge's first start that were not handed over."""
        origin_text = self.cache.get_meta("bridge_origin")
        if origin_text is None:
            origin = self.cache.cursors()
            self.cache.set_meta("bridge_origin", json.dumps(origin))
            return []
        origin = json.loads(origin_text)
        out: list[events_pb2.ServerEvent] = []
        feed_from = origin.get(f"inbox:{self.me}", 0)
        for (raw,) in self.cache.db.execute("SELECT raw FROM feed WHERE seq > ? ORDER BY seq", (feed_from,)):
            out.append(events_pb2.ServerEvent.FromString(raw))
        for conv, seq, raw in self.cache.db.execute(
            "SELECT conv, seq, raw FROM message WHERE conv LIKE 'dm:%' ORDER BY create_time, conv, seq"
        ):
            if seq > origin.get(conv, 0):
                out.append(events_pb2.ServerEvent(message=resources_pb2.Message.FromString(raw)))
        return out

    # -- handing over -------------------------------------------------------------------------

    def payload(self, h: Handover) -> dict[str, Any]:
        body: dict[str, Any] = {"message": h.text, "name": "agentnet", "wakeMode": "now", "deliver": self.hook.deliver}
        if self.hook.openclaw_agent:
            body["agentId"] = self.hook.openclaw_agent
        if self.hook.session_key_prefix:
            body["sessionKey"] = self.hook.session_key_prefix + h.session.replace("+", "-")
        if self.hook.channel:
            body["channel"] = self.hook.channel
        if self.hook.to:
            body["to"] = self.hook.to
        return body

    async def hand_over(self, h: Handover) -> bool:
        """POST to the gateway until it accepts (2xx) or refuses the request itself (4xx)."""
        if self._handed(h.key):
            return False
        assert self._http is not None
        delay = 0.5
        while True:
            try:
                async with self._http.post(
                    self.hook.url,
                    json=self.payload(h),
                    headers={"Authorization": f"Bearer {self.hook.token}", "Idempotency-Key": h.key},
                    timeout=aiohttp.ClientTimeout(total=self.hook.timeout),
                ) as resp:
                    text = await resp.text()
                    if 200 <= resp.status < 300:
                        run_id = ""
                        try:
                            run_id = str(json.loads(text).get("runId", ""))
                        except (ValueError, AttributeError):
                            pass
                        self._record(h.key, run_id, "accepted")
                        self.handed += 1
                        log.info("handed %s to OpenClaw (run %s)", h.key, run_id or "?")
                        return True
                    if resp.status == 401:
                        raise BridgeError(
                            "the OpenClaw gateway refused the hook token (401); check --hook-token "
                            "against hooks.token in the gateway configuration"
                        )
                    if resp.status == 429:
                        wait = float(resp.headers.get("Retry-After", "5") or 5)
                        log.warning("gateway says too many requests; waiting %.0f s", wait)
                        await asyncio.sleep(wait)
                        continue
                    if 400 <= resp.status < 500:
                        # The gateway will never take this one (e.g. unknown agentId, sessionKey not
                        # allowed): record it so it is not retried forever, and say why.
                        self._record(h.key, "", f"refused {resp.status}")
                        log.error("gateway refused %s with %d: %s", h.key, resp.status, text[:300])
                        return False
                    log.warning("gateway answered %d for %s; retrying", resp.status, h.key)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("gateway not reachable (%s); retrying %s", exc, h.key)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 30.0)

    async def _session_failed(self) -> AgentnetError:
        """Resolves when the session has failed for good (revoked device, agent owned elsewhere)."""
        session = self.client.session
        assert session is not None
        await session.wait_for(State.FAILED)
        return session.error or AgentnetError("UNAVAILABLE", "the session ended", "SESSION_ENDED")

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        async with aiohttp.ClientSession() as http:
            self._http = http
            for ev in self.backlog():
                h = self.handover_for(ev)
                if h is not None:
                    await self.hand_over(h)
            events = self.client.events()
            failed = asyncio.ensure_future(self._session_failed())
            while not stop.is_set():
                nxt = asyncio.ensure_future(events.__anext__())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({nxt, stopper, failed}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if failed in done:
                    nxt.cancel()
                    raise failed.result()
                if nxt not in done:
                    nxt.cancel()
                    break
                ev = nxt.result()
                h = self.handover_for(ev)
                if h is not None:
                    await self.hand_over(h)

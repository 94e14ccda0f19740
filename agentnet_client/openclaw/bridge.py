"""The OpenClaw bridge: when a mention, a direct message or a task reaches the local agent, run a
turn of the OpenClaw agent and post its answer back where the item came from, as the agent,
signed by the device and threaded to what it answers (see README "Connect your OpenClaw").

Records (tables in the agent's local cache, created before anything else runs):

- bridge_item: every item that needs the agent, by a key that names its trigger, with its state
  (pending → answered → done, or skipped / failed with a note).
- bridge_turn: each turn's answer, written in the same transaction that marks its items answered,
  before the answer is posted. The answer's client_msg_id is derived from the trigger, so posting
  it again after a crash or restart is a duplicate on the server, never a second message.
- bridge_session: per conversation, the last message seq the agent has seen in a turn.

Exactly once: a turn interrupted by a crash (before its answer is recorded) runs again after the
restart (the gateway does not deduplicate turns); its answer is still posted once.

Scheduling: one worker per conversation runs its turns strictly in order; items that arrive while a
turn runs (or waits for the rate limit) go into the next turn together; items that arrive while the
gateway is unreachable keep a turn each, so after an outage every one gets its own threaded answer,
in order. At most `parallel` turns run at a time across conversations; a token bucket per
conversation limits the rate of turns.

Loop guard: the agent's own messages are never items; an automatic message (auto_hops > 0) is
answered only when it names this agent with @id or @name; an answer that would exceed `max_hops`
automatic hops is not started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

from agentnet.v1 import events_pb2, resources_pb2

from ..client import Client
from ..errors import AgentnetError
from ..session import State
from .gateway import Gateway, GatewayError, GatewayUnavailable
from .options import BridgeOptions, GatewayConfig
from .turns import TERMINAL, Directory, Item, mentions_explicitly, message_turn, session_key, task_fields, task_turn

log = logging.getLogger("agentnet.bridge")

MAX_CONTENT_BYTES = 65_536  # the server's default content limit (UTF-8 bytes) when it announces none
MAX_NOTE_BYTES = 16_000
TRUNCATED = "…(truncated)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS bridge_item (
    key TEXT PRIMARY KEY, session TEXT NOT NULL, ord INTEGER NOT NULL, body TEXT NOT NULL,
    state TEXT NOT NULL, turn TEXT, note TEXT NOT NULL DEFAULT '', time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bridge_item_state ON bridge_item (state, session, ord);
CREATE TABLE IF NOT EXISTS bridge_turn (
    id TEXT PRIMARY KEY, session TEXT NOT NULL, keys TEXT NOT NULL, reply TEXT NOT NULL,
    target TEXT NOT NULL, cmid TEXT NOT NULL, state TEXT NOT NULL, posted_seq INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '', started REAL NOT NULL, answered REAL NOT NULL, posted REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS bridge_turn_state ON bridge_turn (state, session);
CREATE TABLE IF NOT EXISTS bridge_session (session TEXT PRIMARY KEY, seen_seq INTEGER NOT NULL);
"""


class BridgeError(Exception):
    """A configuration problem the bridge cannot retry its way out of (e.g. a wrong token)."""


@dataclasses.dataclass
class Turn:
    id: str
    session: str
    keys: list[str]
    reply: str
    target: dict[str, Any]
    cmid: str


@dataclasses.dataclass
class Stats:
    """Timings (monotonic seconds) per trigger key, for the overhead benchmark."""

    request_sent: dict[str, float] = dataclasses.field(default_factory=dict)
    answer_received: dict[str, float] = dataclasses.field(default_factory=dict)
    reply_committed: dict[str, float] = dataclasses.field(default_factory=dict)
    turns: int = 0
    posted: int = 0


class Bucket:
    """Token bucket: `burst` turns at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def wait_time(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1.0 or self.rate <= 0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


TURN_ATTEMPTS = 3  # attempts of a turn that failed after reaching the gateway (5xx, timeout)
START_GRACE = 2.0  # seconds of clock difference tolerated between the server and this device (first start)


def _event_time(ev: events_pb2.ServerEvent) -> float:
    """When the server committed what the event reports (0 when unknown)."""
    kind = ev.WhichOneof("event")
    if kind == "mention":
        ts = ev.mention.message.create_time
    elif kind == "message":
        ts = ev.message.create_time
    elif kind in ("task_assigned", "task_updated"):
        ts = getattr(ev, kind).task.update_time
    else:
        return 0.0
    return ts.seconds + ts.nanos / 1e9 if (ts.seconds or ts.nanos) else 0.0


def reply_cmid(me: str, trigger: str) -> str:
    """The client_msg_id of the answer to a trigger: the same after any retry or restart."""
    return "oc-" + hashlib.sha256(f"{me}\n{trigger}".encode()).hexdigest()[:40]


def clip_utf8(text: str, limit: int) -> str:
    """The text in at most `limit` UTF-8 bytes: when it is longer, cut at a character boundary and
    end with a visible marker."""
    data = text.encode()
    if len(data) <= limit:
        return text
    room = max(0, limit - len(TRUNCATED.encode()))
    return data[:room].decode(errors="ignore") + TRUNCATED


class Bridge:
    def __init__(self, client: Client, gateway: GatewayConfig, options: BridgeOptions | None = None) -> None:
        if client.agent is None or client.cache is None:
            raise BridgeError("the bridge needs an agent session with a local cache")
        self.client = client
        self.me = client.agent.id
        self.cfg = gateway
        self.opt = options or BridgeOptions()
        self.cache = client.cache
        self.db = client.cache.db
        self.db.executescript(SCHEMA)  # before anything reads them
        self.directory = Directory()
        self.my_name = ""
        self.gw: Gateway | None = None
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.buckets: dict[str, Bucket] = {}
        self.sem = asyncio.Semaphore(max(1, self.opt.parallel))
        self.stats = Stats()
        self._fatal: asyncio.Future[BaseException] | None = None
        # Batching: per conversation, whether a turn is busy (in flight, posting, or waiting for the
        # rate limit) and a number for each busy period; items that arrive in one busy period share it.
        self.busy: dict[str, int] = {}
        self.epochs: dict[str, int] = {}
        self.joined: dict[str, int] = {}
        self._directory_time = 0.0
        self._background: set[asyncio.Future[None]] = set()
        self._recovering = False  # items found at start keep a turn each, like after an outage
        self.since = 0.0  # when the bridge first started with this cache: older history is not answered

    # -- records ------------------------------------------------------------------------------

    def _tx(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Run statements in one transaction (synchronous: a cancellation cannot split it)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self.db.execute(sql, args)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def add(self, item: Item, state: str = "pending", note: str = "") -> bool:
        """Record an item; False when its key is known already (a replay or a duplicate event)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO bridge_item (key, session, ord, body, state, note, time) "
            "VALUES (?, ?, (SELECT COALESCE(MAX(ord), 0) + 1 FROM bridge_item), ?, ?, ?, ?)",
            (item.key, item.session, item.to_json(), state, note, time.time()),
        )
        if cur.rowcount != 1:
            return False
        if state == "pending":
            if item.session in self.busy and not self._recovering:
                self.joined[item.key] = self.busy[item.session]
            self._wake(item.session)
        else:
            log.info("not answering %s: %s", item.key, note)
        return True

    def pending(self, session: str, limit: int = 1_000_000) -> list[Item]:
        rows = self.db.execute(
            "SELECT body FROM bridge_item WHERE state = 'pending' AND session = ? ORDER BY ord LIMIT ?",
            (session, limit),
        ).fetchall()
        return [Item.from_json(r[0]) for r in rows]

    def _answered(self, session: str) -> Turn | None:
        row = self.db.execute(
            "SELECT id, session, keys, reply, target, cmid FROM bridge_turn WHERE state = 'answered' AND session = ? "
            "ORDER BY answered LIMIT 1",
            (session,),
        ).fetchone()
        if row is None:
            return None
        return Turn(row[0], row[1], json.loads(row[2]), row[3], json.loads(row[4]), row[5])

    def items_by_state(self, state: str) -> list[tuple[str, str]]:
        return [(k, n) for k, n in self.db.execute("SELECT key, note FROM bridge_item WHERE state = ?", (state,))]

    # -- what needs the agent -----------------------------------------------------------------

    def item_for(self, ev: events_pb2.ServerEvent) -> tuple[Item, str] | None:
        """The item an event makes, with "" or the reason it is not answered; None if not for us."""
        kind = ev.WhichOneof("event")
        if kind == "mention" and "mention" in self.opt.kinds:
            m = ev.mention.message
            if m.sender == self.me or not m.conversation.startswith("group:"):
                return None
            return self._message_item("mention", m)
        if kind == "message" and "dm" in self.opt.kinds:
            m = ev.message
            if not m.conversation.startswith("dm:") or m.sender == self.me:
                return None
            return self._message_item("dm", m)
        if kind in ("task_assigned", "task_updated") and "task" in self.opt.kinds:
            tev = getattr(ev, kind)
            t, c = tev.task, tev.change
            if c.actor == self.me:
                return None
            assigned = t.assignee == self.me and (kind == "task_assigned" or c.to_assignee != c.from_assignee)
            if assigned and c.to_assignee == self.me:
                return Item(
                    f"task:{t.id}:{t.version}",
                    "task",
                    f"task:{t.id}",
                    c.actor,
                    t.title,
                    "",
                    t.version,
                    0,
                    task_fields(t),
                ), ""
            if t.creator == self.me and c.from_status != c.to_status and kind == "task_updated":
                fields = task_fields(t)
                return (
                    Item(
                        f"task:{t.id}:{t.version}",
                        "task_status",
                        f"task:{t.id}",
                        c.actor,
                        c.note,
                        "",
                        t.version,
                        0,
                        fields,
                    ),
                    "",
                )
        return None

    def _message_item(self, kind: str, m: resources_pb2.Message) -> tuple[Item, str]:
        item = Item(
            f"{kind}:{m.conversation}:{m.seq}",
            kind,
            m.conversation,
            m.sender,
            m.content,
            m.conversation,
            m.seq,
            m.auto_hops,
        )
        if m.auto_hops:
            if not mentions_explicitly(m, self.me, self.my_name):
                return item, f"automatic message (hop {m.auto_hops}) that does not name @{self.me}"
            if m.auto_hops + 1 > self.opt.max_hops:
                return (
                    item,
                    f"hop limit: an answer would be automatic hop {m.auto_hops + 1} > --max-hops {self.opt.max_hops}",
                )
        return item, ""

    def take(self, ev: events_pb2.ServerEvent) -> None:
        found = self.item_for(ev)
        if found is not None:
            item, skip = found
            if not skip and self.since and _event_time(ev) < self.since - START_GRACE:
                skip = "from before the bridge first started on this device"
            self.add(item, "skipped" if skip else "pending", skip)

    def backlog(self) -> list[events_pb2.ServerEvent]:
        """Events recorded in the cache since the bridge's first start (the queue survives crashes:
        the session records each event before the bridge sees it)."""
        origin_text = self.cache.get_meta("bridge_origin")
        since = self.cache.get_meta("bridge_since")
        if since is None:
            since = str(self.opt.started or time.time())
            self.cache.set_meta("bridge_since", since)
        self.since = float(since)
        if origin_text is None:
            self.cache.set_meta("bridge_origin", json.dumps(self.cache.cursors()))
            return []
        origin = json.loads(origin_text)
        out: list[events_pb2.ServerEvent] = []
        feed_from = origin.get(f"inbox:{self.me}", 0)
        for (raw,) in self.db.execute("SELECT raw FROM feed WHERE seq > ? ORDER BY seq", (feed_from,)):
            out.append(events_pb2.ServerEvent.FromString(raw))
        for conv, seq, raw in self.db.execute(
            "SELECT conv, seq, raw FROM message WHERE conv LIKE 'dm:%' ORDER BY create_time, conv, seq"
        ):
            if seq > origin.get(conv, 0):
                out.append(events_pb2.ServerEvent(message=resources_pb2.Message.FromString(raw)))
        return out

    # -- workers ------------------------------------------------------------------------------

    def _wake(self, session: str) -> None:
        if session not in self.workers and self._fatal is not None and not self._fatal.done():
            self._set_busy(session)
            self.workers[session] = asyncio.ensure_future(self._worker(session))

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(exc)

    async def _worker(self, session: str) -> None:
        try:
            while True:
                turn = self._answered(session)
                if turn is not None:
                    await self._post(turn)
                    continue
                self.busy.pop(session, None)
                if not self.pending(session, 1):
                    return  # no await since the check: a new item finds no worker and starts one
                self._set_busy(session)  # items arriving from now on wait for the next turn together
                await self._rate_wait(session)
                async with self.sem:
                    items = self.batch(session)
                    if items:
                        await self._turn(session, items)
        except asyncio.CancelledError:
            raise
        except (BridgeError, GatewayError) as exc:
            self._fail(exc)
        except Exception as exc:
            log.exception("the worker for %s failed", session)
            self._fail(exc)
        finally:
            self.busy.pop(session, None)
            if self.workers.get(session) is asyncio.current_task():
                del self.workers[session]

    def _set_busy(self, session: str) -> None:
        if session not in self.busy:
            self.epochs[session] = self.epochs.get(session, 0) + 1
            self.busy[session] = self.epochs[session]

    def batch(self, session: str) -> list[Item]:
        """The next turn's items: the oldest pending one and the following ones that arrived while
        this conversation was busy — during the previous turn (if the oldest did too) or while this
        turn waited for the rate limit or a free slot — up to batch_max. Items that arrived while the
        gateway was unreachable are in no busy period: each keeps a turn of its own."""
        items = self.pending(session, self.opt.batch_max)
        if not items:
            return []
        epochs = {self.busy.get(session), self.joined.get(items[0].key)} - {None}
        out = [items[0]]
        for i in items[1:]:
            if self.joined.get(i.key) not in epochs:
                break
            out.append(i)
        for i in out:
            self.joined.pop(i.key, None)
        return out

    async def _rate_wait(self, session: str) -> None:
        bucket = self.buckets.get(session)
        if bucket is None:
            bucket = self.buckets[session] = Bucket(self.opt.rate_per_minute / 60.0, self.opt.burst)
        wait = bucket.wait_time()
        if wait > 0:
            self._set_busy(session)
            log.info("rate limit for %s: next turn in %.1f s (items arriving meanwhile go into it)", session, wait)
            await asyncio.sleep(wait)
            bucket.wait_time()
        bucket.take()

    async def _retrying(self, what: str, fn: Any) -> Any:
        """Call fn() until it succeeds; GatewayUnavailable and retryable AgentnetErrors wait and retry
        (cancellable at any point). An unreachable gateway is retried for ever; a failure after the
        request reached it (5xx, a turn timeout: the turn may have run) at most TURN_ATTEMPTS times
        in all, then a (non-fatal) GatewayError gives up on the items."""
        delay = 0.5
        ran = 0
        while True:
            try:
                return await fn()
            except GatewayUnavailable as exc:
                ran += exc.ran
                if ran >= TURN_ATTEMPTS:
                    raise GatewayError(f"{exc}; gave up after {ran} attempts") from None
                wait = exc.retry_after if exc.retry_after is not None else delay * random.uniform(0.5, 1.0)
                log.warning("%s; retrying %s in %.1f s", exc, what, wait)
            except AgentnetError as exc:
                if not exc.retryable:
                    raise
                wait = exc.retry_after or delay * random.uniform(0.5, 1.0)
                log.warning("%s; retrying %s in %.1f s", exc, what, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.opt.retry_cap)

    # -- one turn -----------------------------------------------------------------------------

    async def _turn(self, session: str, items: list[Item]) -> None:
        assert self.gw is not None
        last = items[-1]
        turn_id = hashlib.sha256("\n".join(i.key for i in items).encode()).hexdigest()[:32]
        started = time.time()
        if self.cfg.endpoint == "hook":
            text = await self._input(session, items)
            key = self.opt.session_key_prefix + session.replace("+", "-") if self.opt.session_key_prefix else ""
            gw = self.gw
            try:
                run_id = await self._retrying(
                    f"hand-over of {last.key}", lambda: gw.hook(turn_id, key, text, {"deliver": self.opt.deliver})
                )
            except GatewayError as exc:
                if exc.fatal:
                    raise
                log.error("%s; %d item(s) of %s not handed over", exc, len(items), session)
                self._mark(items, "failed", str(exc))
                return
            self._record(
                Turn(turn_id, session, [i.key for i in items], "", {}, ""), items, "handed", started, f"run {run_id}"
            )
            log.info("handed %d item(s) of %s to OpenClaw (run %s)", len(items), session, run_id or "?")
            return
        text = await self._input(session, items)

        async def run() -> str:
            t0 = time.monotonic()
            for i in items:
                self.stats.request_sent.setdefault(i.key, t0)
            self._set_busy(session)
            try:
                return await self.gw.turn(session_key(self.me, session), text)  # type: ignore[union-attr]
            except GatewayUnavailable:
                self.busy.pop(session, None)  # items arriving during the outage keep a turn each
                raise

        try:
            reply = await self._retrying(f"the turn for {last.key}", run)
        except GatewayError as exc:
            if exc.fatal:
                raise
            log.error("%s; %d item(s) of %s not answered", exc, len(items), session)
            self._mark(items, "failed", str(exc))
            return
        now = time.monotonic()
        for i in items:
            self.stats.answer_received[i.key] = now
        self.stats.turns += 1
        if last.kind in ("task", "task_status"):
            target: dict[str, Any] = {
                "task": last.task["id"],
                "version": last.seq,
                "group": last.task.get("group_id", ""),
                "creator": last.task.get("creator", ""),
            }
            reply = clip_utf8(reply, min(MAX_NOTE_BYTES, self._content_limit()))
        else:
            target = {"conv": last.conv, "reply_to": last.seq, "hops": last.auto_hops + 1}
            reply = clip_utf8(reply, self._content_limit())
        turn = Turn(turn_id, session, [i.key for i in items], reply, target, reply_cmid(self.me, last.key))
        seen = max((i.seq for i in items if i.conv), default=0)
        if reply and last.kind == "task_status" and last.task.get("status") in TERMINAL:
            # A closed task takes no notes; the turn told the agent so.
            self._record(turn, items, "closed", started, "task closed: answer not posted", seen)
            log.info("task %s is closed: the agent's answer to its status change is not posted", last.task["id"])
            return
        self._record(turn, items, "answered" if reply else "silent", started, "", seen)
        if reply:
            await self._post(turn)
        else:
            log.info("the agent stayed silent on %s (%d item(s))", session, len(items))

    def _record(self, turn: Turn, items: list[Item], state: str, started: float, note: str = "", seen: int = 0) -> None:
        item_state = "answered" if state == "answered" else "done"
        stmts: list[tuple[str, Sequence[Any]]] = [
            (
                "INSERT OR REPLACE INTO bridge_turn (id, session, keys, reply, target, cmid, state, note, started, "
                "answered) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn.id,
                    turn.session,
                    json.dumps(turn.keys),
                    turn.reply,
                    json.dumps(turn.target),
                    turn.cmid,
                    state,
                    note,
                    started,
                    time.time(),
                ),
            ),
            *[
                ("UPDATE bridge_item SET state = ?, turn = ? WHERE key = ?", (item_state, turn.id, i.key))
                for i in items
            ],
        ]
        if seen:
            stmts.append(
                (
                    "INSERT INTO bridge_session (session, seen_seq) VALUES (?, ?) ON CONFLICT (session) "
                    "DO UPDATE SET seen_seq = MAX(seen_seq, excluded.seen_seq)",
                    (turn.session, seen),
                )
            )
        self._tx(stmts)

    def _mark(self, items: Iterable[Item], state: str, note: str) -> None:
        self._tx([("UPDATE bridge_item SET state = ?, note = ? WHERE key = ?", (state, note, i.key)) for i in items])

    def _finish(self, turn: Turn, state: str, seq: int = 0, note: str = "") -> None:
        item_state = "done" if state == "posted" else "failed"
        self._tx(
            [
                (
                    "UPDATE bridge_turn SET state = ?, posted_seq = ?, note = ?, posted = ? WHERE id = ?",
                    (state, seq, note, time.time(), turn.id),
                ),
                ("UPDATE bridge_item SET state = ?, note = ? WHERE turn = ?", (item_state, note, turn.id)),
            ]
        )

    async def _post(self, turn: Turn) -> None:
        """Post a recorded answer (again, after a crash: the server answers a duplicate)."""
        t = turn.target
        try:
            if "task" in t:
                try:
                    await self._retrying(
                        f"the note on task {t['task']}",
                        lambda: self._note(t["task"], turn.reply, int(t.get("version", 0))),
                    )
                except AgentnetError as exc:
                    if exc.reason != "TASK_TERMINAL":
                        raise
                    await self._post_closed_task(turn)
                    return
                self._finish(turn, "posted")
                log.info("added the agent's answer to task %s as a note", t["task"])
            else:
                conv = t["conv"]
                group_id = to_agent = ""
                if conv.startswith("group:"):
                    group_id = conv.removeprefix("group:")
                else:
                    a, b = conv.removeprefix("dm:").split("+", 1)
                    to_agent = b if a == self.me else a
                ack = await self._retrying(
                    f"the reply to {conv} #{t['reply_to']}",
                    lambda: self.client.send(
                        turn.reply,
                        group_id=group_id,
                        to_agent=to_agent,
                        client_msg_id=turn.cmid,
                        reply_to=int(t["reply_to"]),
                        auto_hops=int(t["hops"]),
                    ),
                )
                now = time.monotonic()
                for k in turn.keys:
                    self.stats.reply_committed[k] = now
                self._finish(turn, "posted", ack.seq)
                self.stats.posted += 1
                log.info(
                    "posted the agent's answer to %s #%d as #%d%s",
                    conv,
                    t["reply_to"],
                    ack.seq,
                    " (already posted before a restart)" if ack.duplicate else "",
                )
                # Off the conversation's path: the next turn need not wait for it.
                bg = asyncio.ensure_future(self._mark_read(conv, int(t["reply_to"])))
                self._background.add(bg)
                bg.add_done_callback(self._background.discard)
        except AgentnetError as exc:
            log.error("the agent's answer on %s could not be posted: %s", turn.session, exc.message)
            self._finish(turn, "failed", 0, f"{exc.status}: {exc.message}")

    async def _post_closed_task(self, turn: Turn) -> None:
        """The task was closed (by the agent itself, in its turn) before its answer could become a
        note: post the answer in the task's group, or to its creator directly, so it is not lost."""
        t = turn.target
        group_id = t.get("group", "")
        to_agent = "" if group_id or t.get("creator") == self.me else t.get("creator", "")
        if not group_id and not to_agent:
            self._finish(turn, "failed", 0, "task closed; it has no group and was created by this agent")
            log.warning("task %s is closed and is its own creator's: the agent's answer is not posted", t["task"])
            return
        ack = await self._retrying(
            f"the answer on closed task {t['task']}",
            lambda: self.client.send(
                clip_utf8(f"[task {t['task']}] {turn.reply}", self._content_limit()),
                group_id=group_id,
                to_agent=to_agent,
                client_msg_id=turn.cmid,
                auto_hops=1,
            ),
        )
        self._finish(turn, "posted", ack.seq)
        self.stats.posted += 1
        where = f"group {group_id}" if group_id else f"a direct message to {to_agent}"
        log.info("task %s was closed before the note: posted the agent's answer to %s", t["task"], where)

    def _content_limit(self) -> int:
        """The server's content limit in UTF-8 bytes, as its `registered` event announced it."""
        session = self.client.session
        reg = session.registered if session is not None else None
        announced = reg.limits.max_content_bytes if reg is not None and reg.HasField("limits") else 0
        return announced if announced > 0 else MAX_CONTENT_BYTES

    async def _mark_read(self, conv: str, seq: int) -> None:
        """The agent handled the conversation up to what it answered: its inbox says so."""
        try:
            await self.client.mark_read(up_to={conv: seq})
        except AgentnetError as exc:
            log.debug("could not mark %s read: %s", conv, exc)

    async def _note(self, task_id: str, note: str, version: int) -> None:
        """Add a note to a task once: after a restart, the note is not added again when the history
        already has it after the trigger's version (an identical earlier answer does not count)."""
        task = await self.client.get_task(task_id)
        if any(c.actor == self.me and c.note == note and c.version > version for c in task.history):
            return
        await self.client.update_task(task_id, note=note)

    # -- turn input ---------------------------------------------------------------------------

    async def refresh_directory(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._directory_time < 300:
            return
        try:
            self.directory.agents = {a.id: a for a in await self.client.list_agents()}
            self.directory.groups.clear()
            self._directory_time = time.monotonic()
        except AgentnetError as exc:
            log.warning("could not read the agent list (%s); names may be missing from turns", exc.message)
        me = self.directory.agents.get(self.me)
        if me is not None:
            self.my_name = me.display_name

    async def _group(self, gid: str) -> None:
        if gid in self.directory.groups:
            return
        title, members = gid, []
        try:
            for g in await self.client.list_groups(member=self.me):
                if g.id == gid:
                    title = g.title or gid
            members = [m.agent_id for m in await self.client.list_members(gid)]
        except AgentnetError as exc:
            log.warning("could not read group %s (%s)", gid, exc.message)
        self.directory.groups[gid] = (title, members)

    async def _input(self, session: str, items: list[Item]) -> str:
        await self.refresh_directory()
        unknown = {i.sender for i in items} - set(self.directory.agents)
        if unknown:
            await self.refresh_directory(force=True)
        last = items[-1]
        if last.kind in ("task", "task_status"):
            return task_turn(items, self.me, self.directory, self.opt.agentnet)
        if last.conv.startswith("group:"):
            await self._group(last.conv.removeprefix("group:"))
        row = self.db.execute("SELECT seen_seq FROM bridge_session WHERE session = ?", (session,)).fetchone()
        seen = row[0] if row else 0
        context = [
            resources_pb2.Message.FromString(raw)
            for (raw,) in self.db.execute(
                "SELECT raw FROM message WHERE conv = ? AND seq > ? AND seq <= ? ORDER BY seq",
                (last.conv, seen, last.seq),
            )
        ]
        return message_turn(items, context, self.me, self.directory, self.opt.agentnet, self.opt.max_hops)

    # -- running ------------------------------------------------------------------------------

    async def check_gateway(self) -> None:
        """The start-up checks: raises BridgeError with one line on the first failure."""
        async with Gateway(self.cfg) as gw:
            for name, ok, detail in await gw.probe():
                if not ok:
                    raise BridgeError(f"{name}: {detail}")

    async def _session_failed(self) -> BaseException:
        session = self.client.session
        assert session is not None
        await session.wait_for(State.FAILED)
        return session.error or AgentnetError("UNAVAILABLE", "the session ended", "SESSION_ENDED")

    async def _consume(self) -> None:
        async for ev in self.client.events():
            self.take(ev)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (returns) or a configuration error / session failure (raises)."""
        stop = stop or asyncio.Event()
        self._fatal = asyncio.get_running_loop().create_future()
        async with Gateway(self.cfg) as gw:
            self.gw = gw
            tasks: list[asyncio.Future[Any]] = []
            try:
                await self.refresh_directory(force=True)
                self._recovering = True
                for ev in self.backlog():
                    self.take(ev)
                self._recovering = False
                sessions = {
                    s for (s,) in self.db.execute("SELECT DISTINCT session FROM bridge_item WHERE state = 'pending'")
                }
                sessions |= {
                    s for (s,) in self.db.execute("SELECT DISTINCT session FROM bridge_turn WHERE state = 'answered'")
                }
                for s in sorted(sessions):
                    self._wake(s)
                consumer = asyncio.ensure_future(self._consume())
                failed = asyncio.ensure_future(self._session_failed())
                stopper = asyncio.ensure_future(stop.wait())
                tasks = [consumer, failed, stopper]
                waiting: set[asyncio.Future[Any]] = {consumer, failed, stopper, self._fatal}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if self._fatal.done():
                    exc = self._fatal.result()
                    raise BridgeError(str(exc)) if isinstance(exc, GatewayError) else exc
                if failed in done:
                    raise failed.result()
                if consumer in done:
                    consumer.result()
            finally:
                workers = [*self.workers.values(), *self._background]
                for t in [*tasks, *workers]:
                    t.cancel()
                await asyncio.gather(*tasks, *workers, return_exceptions=True)
                self.workers.clear()
                self.gw = None

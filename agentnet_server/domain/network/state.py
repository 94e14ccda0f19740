"""The network's shared state (caches of agents and memberships, the live sessions as a `Live`),
the records its use cases return, and the acting-agent rule. The commands they take live in
domain/commands.py."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from ...config import Settings
from ...errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from ...records import (
    AgentRec,
    FeedRec,
    SendResult,
)
from ...store import hygiene, ops
from ...store.db import Database
from .. import mentions, validate
from ..live import Live

log = logging.getLogger("agentnet.network")
T = TypeVar("T")

EXCERPT = 280
REPLAY_PAGE = 500


@dataclasses.dataclass(frozen=True)
class Sent:
    result: SendResult
    unresolved: tuple[str, ...]


def excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("background write failed: %s", fut.exception())


def _lowest(pairs: Iterable[Sequence[Any]]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for key, seq in pairs:
        out[key] = min(int(seq), out.get(key, int(seq)))
    return out


def _ref_key(item: FeedRec) -> Any:
    if item.task_id:
        return ("task", item.task_id, item.task_version)
    return (item.conversation, item.message_seq)


class State:
    def __init__(self, settings: Settings, db: Database, live: Live) -> None:
        self.settings = settings
        self.db = db
        self.live = live  # the live sessions (the hub, given by the app)
        self.agents: dict[str, AgentRec] = {}
        self.name_keys: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}
        self.agent_groups: dict[str, set[str]] = {}
        self.agents_version = 0  # bumped when an agent's profile changes (caches key on it)
        # Changes made to each cached agent and each group's cached members. A refresh from the
        # store applies its read only if nothing changed the entry while the read was under way:
        # a local commit seen meanwhile is newer than the read and must not be undone by it.
        self.agent_changes: collections.Counter[str] = collections.Counter()
        self.member_changes: collections.Counter[str] = collections.Counter()  # per group
        self.membership_changes: collections.Counter[str] = collections.Counter()  # per agent: joins, leaves
        self._resolvers: dict[str, mentions.Resolver] = {}
        self._known: mentions.Resolver | None = None
        # Set by the tasks module: loads the tasks that feed items refer to.
        self.task_refs: Any = None
        self.limiter: Any = None  # domain.limits.Limiter (set by the app): group creation per agent
        # Groups without members, since when (monotonic): deleted after settings.empty_group_ttl.
        self.empty_since: dict[str, float] = {}

    async def load(self) -> None:
        for a in await self.db.read(ops.agents_all):
            self._cache_agent(a)
        for m in await self.db.read(ops.members_all):
            self.members.setdefault(m.group_id, set()).add(m.agent_id)
            self.agent_groups.setdefault(m.agent_id, set()).add(m.group_id)
        started = time.monotonic()
        for g in await self.db.read(hygiene.empty_groups):
            self.empty_since[g] = started

    async def expire_empty_groups(self, now: float | None = None) -> list[str]:
        """Delete groups that have had no members for settings.empty_group_ttl seconds.

        The caches change in the delete's commit callback, in commit order: a join that re-creates
        or joins the group is committed either before the delete (which then keeps the group) or
        after it (its callback then runs after this one and is not undone)."""
        ttl = self.settings.empty_group_ttl
        now = time.monotonic() if now is None else now
        due = [g for g, since in self.empty_since.items() if now - since >= ttl]
        if not ttl or not due:
            return []

        def done(gone: Iterable[str]) -> None:
            for g in gone:
                self.empty_since.pop(g, None)
                self.members.pop(g, None)
                self._resolvers.pop(g, None)
                self.member_changes[g] += 1

        return list(await self.db.write(hygiene.delete_empty_groups, due, on_commit=done))

    def acting_agent(self, device: str, agent_id: str) -> str:
        """The agent a call acts as: `agent_id` if this device may act as it, else the device's
        only agent."""
        if agent_id:
            validate.check_id("agent_id", agent_id)
            agent = self.agents.get(agent_id)
            if agent is None:
                raise NotFound(f"agent {agent_id!r} is not registered", reason="AGENT_NOT_FOUND")
            if device not in agent.devices:
                raise PermissionDenied(
                    f"device {device!r} may not act as agent {agent_id!r} (it belongs to {agent.owner_device!r})",
                    reason="NOT_YOUR_AGENT",
                )
            return agent_id
        mine = [a.id for a in self.agents.values() if device in a.devices]
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise FailedPrecondition(
                f"device {device!r} has no registered agent; register one first", reason="NO_AGENT"
            )
        raise InvalidArgument(
            f"device {device!r} acts as {len(mine)} agents ({', '.join(sorted(mine))}); set agent_id",
            reason="AGENT_AMBIGUOUS",
        )

    def _cache_agent(self, a: AgentRec) -> None:
        self.agents_version += 1
        self.agent_changes[a.id] += 1
        old = self.agents.get(a.id)
        if old is not None:
            self.name_keys.pop(validate.name_key(old.display_name), None)
        self.agents[a.id] = a
        self.name_keys[validate.name_key(a.display_name)] = a.id
        if old is None or old.display_name != a.display_name:
            self._resolvers.clear()
            self._known = None

    async def _read_stable(self, changes: collections.Counter[str], key: str, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, taken again while the cache entry `key` changed during it (a local commit seen
        meanwhile is newer than the read). The caller applies the result before it next awaits."""
        while True:
            seen = changes[key]
            result = await read()
            if changes[key] == seen:
                return result

    async def _refresh_agent(self, agent_id: str) -> None:
        """Re-read an agent into the cache, unless a newer change reached the cache during the read."""
        rec = await self._read_stable(self.agent_changes, agent_id, lambda: self.db.read(ops.agent_get, agent_id))
        if rec is not None:
            self._cache_agent(rec)

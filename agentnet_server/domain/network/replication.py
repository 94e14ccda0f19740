"""Replication: changes announced by other replicas of a PostgreSQL store, and resynchronisation."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from ...records import (
    GROUP_PREFIX,
    MemberRec,
    dm_parties,
    inbox_conv,
    now_us,
)
from ...store import ops
from .resume import Resume
from .state import _log_failure, _lowest


class Network(Resume):
    async def apply_remote(self, data: dict[str, Any]) -> None:
        """Changes another replica committed: refresh the caches, then push to local sessions.

        Envelopes go through the same cursor rules as local ones, so a notification that arrives
        late, twice or out of order only causes a store read, never a gap or a duplicate."""
        if data.get("resync"):
            await self._resync()
            return
        if "po" in data or "pf" in data:
            self.live.remote_presence(
                str(data.get("r")), data.get("po", ()), data.get("pf", ()), 3 * self.settings.heartbeat_interval
            )
        for agent_id in data.get("a", ()):
            await self._refresh_agent(agent_id)
        for group_id in data.get("g", ()):
            await self._refresh_group(group_id)
        for conv, lo in _lowest(data.get("m", ())).items():
            if conv.startswith(GROUP_PREFIX):
                audience: Iterable[str] = self.members.get(conv[len(GROUP_PREFIX) :], ())
            else:
                audience = dm_parties(conv)
            if any(self.live.has_sessions(a) for a in audience):
                for env in await self.fetch("", conv, lo - 1):
                    self.live.publish(env, audience)
        for agent, lo in _lowest(data.get("f", ())).items():
            if self.live.has_sessions(agent):
                for env in await self.fetch(agent, inbox_conv(agent), lo - 1):
                    self.live.publish(env, (agent,))

    async def _resync(self) -> None:
        """After missing notifications: re-read the caches and let every session catch up.

        An entry that changed here while the reads were under way is re-read on its own instead
        (see _refresh_group): the bulk read may predate that change."""
        agents_seen = self.agent_changes.copy()
        members_seen = self.member_changes.copy()
        agents = await self.db.read(ops.agents_all)
        # All memberships in one read (not one per group): a short connection loss on a large
        # network must not keep the replica out of service past the outage grace.
        by_group: dict[str, list[MemberRec]] = {}
        for m in await self.db.read(ops.members_all):
            by_group.setdefault(m.group_id, []).append(m)
        stale_agents = {a.id for a in agents if self.agent_changes[a.id] != agents_seen[a.id]}
        for a in agents:
            if a.id not in stale_agents:
                self._cache_agent(a)
        groups = by_group.keys() | self.members.keys()
        stale_groups = {g for g in groups if self.member_changes[g] != members_seen[g]}
        for group_id in groups:
            if group_id not in stale_groups:
                self._apply_members(group_id, by_group.get(group_id, []))
        for agent_id in stale_agents:
            await self._refresh_agent(agent_id)
        for group_id in stale_groups:
            await self._refresh_group(group_id)
        self.live.catch_up_all()

    async def joined_seq(self, agent_id: str, conv: str) -> int | None:
        """Where live delivery of a group starts for a member (None: not a member)."""
        return await self.db.read(ops.joined_seq, conv[len(GROUP_PREFIX) :], agent_id)

    def on_acked(self, agent_id: str, cursors: Sequence[tuple[str, int]]) -> None:
        """Hook after a delivery ack is stored (receipts use it)."""

    def mark_seen(self, agent_id: str, device: str) -> None:
        """Record last-seen times when a session ends (fire and forget)."""
        t = now_us()
        fut = self.db.write(ops.touch_seen, agent_id, device, t, on_commit=lambda _: self._seen(agent_id, t))
        fut.add_done_callback(_log_failure)

    def _seen(self, agent_id: str, t: int) -> None:
        a = self.agents.get(agent_id)
        if a is not None and (a.last_seen or 0) < t:
            self.agents[agent_id] = dataclasses.replace(a, last_seen=t)
            self.agent_changes[agent_id] += 1

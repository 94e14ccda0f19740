"""The roster and presence policy: what agent_list and presence events a session gets.

Up to FULL_ROSTER agents every session hears about every agent; in a larger network a session
hears about the agents it shares a group or direct messages with. Everything is serialized once
per change (of an agent record or of presence) and shared, not once per session: a reconnect
storm would otherwise cost O(sessions x agents)."""

from __future__ import annotations

from collections.abc import Iterable

from ..domain.network import Network
from ..records import DM_PREFIX, GROUP_PREFIX, AgentRec, dm_parties
from . import encode
from .hub import Hub, PresenceChange

FULL_ROSTER = 500  # networks up to this many agents send every agent in agent_list


class Roster:
    def __init__(self, net: Network, hub: Hub) -> None:
        self.net = net
        self.hub = hub
        self._roster: tuple[tuple[int, int], bytes, bytes] | None = None
        self._entries: dict[str, tuple[AgentRec, bool, bytes]] = {}

    def _entry(self, a: AgentRec) -> bytes:
        """An agent's AgentList entry, serialized once per change of its record or presence: a
        reconnect storm asks for the same agents in thousands of agent_lists."""
        online = self.hub.online(a.id)
        hit = self._entries.get(a.id)
        if hit is not None and hit[0] is a and hit[1] == online:
            return hit[2]
        entry = encode.agent_entry(a, online)
        self._entries[a.id] = (a, online, entry)
        return entry

    def _roster_bytes(self) -> tuple[bytes, bytes]:
        """The agent list and a presence snapshot, serialized once per change of agents or presence
        (not once per session: a reconnect storm would otherwise cost O(sessions x agents))."""
        key = (self.net.agents_version, self.hub.presence_version)
        if self._roster is None or self._roster[0] != key:
            agents = list(self.net.agents.values())
            agent_list = encode.agent_list_event([self._entry(a) for a in agents])
            snapshot = encode.presence(
                [PresenceChange(a.id, self.hub.online(a.id), a.last_seen or 0) for a in agents],
                {a.id: a.display_name for a in agents},
                snapshot=True,
            )
            self._roster = (key, agent_list, snapshot)
        return self._roster[1], self._roster[2]

    def agent_list(self, agent_id: str, conversations: Iterable[str]) -> bytes:
        """All agents, or in a large network (more than FULL_ROSTER) the ones this agent shares a
        group or direct messages with; ListAgents pages through everyone."""
        if len(self.net.agents) <= FULL_ROSTER:
            return self._roster_bytes()[0]
        related = {agent_id}
        for conv in conversations:
            if conv.startswith(GROUP_PREFIX):
                related |= self.net.members.get(conv[len(GROUP_PREFIX) :], set())
            elif conv.startswith(DM_PREFIX):
                related.update(dm_parties(conv))
        agents = self.net.agents
        return encode.agent_list_event([self._entry(agents[a]) for a in sorted(related) if a in agents])

    def broadcast_presence(self, changes: list[PresenceChange]) -> None:
        """Tell sessions about presence changes. In a network of up to FULL_ROSTER agents every
        session hears about every agent. In a larger one (like agent_list) a session hears about
        the agents it shares a group or direct messages with, and itself: a reconnect storm of N
        agents would otherwise cost N x N presence entries. One serialization per distinct set."""
        names = {a.id: a.display_name for a in self.net.agents.values()}
        if len(self.net.agents) <= FULL_ROSTER:
            self.hub.broadcast_presence(encode.presence(changes, names))
            return
        by_agent = {c.agent_id: c for c in changes}
        by_group: dict[str, list[PresenceChange]] = {}
        for c in changes:
            for g in self.net.agent_groups.get(c.agent_id, ()):
                by_group.setdefault(g, []).append(c)
        encoded: dict[tuple[tuple[str, ...], tuple[str, ...]], bytes] = {}
        for s in self.hub.sessions():
            me = s.agent_id
            groups = tuple(sorted(g for g in self.net.agent_groups.get(me, ()) if g in by_group))
            peers = {me} if me in by_agent else set()
            for conv in s.cursors:
                if conv.startswith(DM_PREFIX):
                    peers.update(p for p in dm_parties(conv) if p in by_agent)
            key = (groups, tuple(sorted(peers)))
            if not groups and not peers:
                continue
            data = encoded.get(key)
            if data is None:
                mine = {a: by_agent[a] for a in key[1]}
                for g in groups:
                    mine.update((c.agent_id, c) for c in by_group[g])
                data = encoded[key] = encode.presence(list(mine.values()), names)
            s.push_presence(data)

    def presence_snapshot(self) -> bytes:
        return self._roster_bytes()[1]

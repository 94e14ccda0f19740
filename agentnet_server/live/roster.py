"""The roster and presence policy: what agent_list and presence events a session gets.

Up to FULL_ROSTER agents every session hears about every agent; in a larger network a session
hears about the agents it shares a group or direct messages with. Everything is built once per
change (of an agent record or of presence) and shared as one Event, not once per session: a
reconnect storm would otherwise cost O(sessions x agents). Each agent's AgentList entry is
serialized once per change and agent lists are assembled from those bytes
(encode.AgentListEvent)."""

from __future__ import annotations

from collections.abc import Iterable

from ..domain.network import Network
from ..records import DM_PREFIX, GROUP_PREFIX, AgentRec, dm_parties
from . import encode
from .hub import Event, Hub, PresenceChange

FULL_ROSTER = 500  # networks up to this many agents send every agent in agent_list


class Roster:
    def __init__(self, net: Network, hub: Hub) -> None:
        self.net = net
        self.hub = hub
        self._roster: tuple[tuple[int, int], Event, Event] | None = None
        self._entries: dict[str, tuple[AgentRec, bool, bytes]] = {}

    def _entry(self, a: AgentRec) -> tuple[AgentRec, bool, bytes]:
        """An agent's AgentList entry (record, online, serialized entry), serialized once per
        change of its record or presence: a reconnect storm asks for the same agents in thousands
        of agent_lists."""
        online = self.hub.online(a.id)
        hit = self._entries.get(a.id)
        if hit is not None and hit[0] is a and hit[1] == online:
            return hit
        hit = self._entries[a.id] = (a, online, encode.agent_entry(a, online))
        return hit

    def _agent_list(self, agents: list[AgentRec]) -> Event:
        return encode.AgentListEvent([self._entry(a) for a in agents])

    def _roster_events(self) -> tuple[Event, Event]:
        """The agent list and a presence snapshot, built once per change of agents or presence
        (not once per session: a reconnect storm would otherwise cost O(sessions x agents))."""
        key = (self.net.agents_version, self.hub.presence_version)
        if self._roster is None or self._roster[0] != key:
            agents = list(self.net.agents.values())
            agent_list = self._agent_list(agents)
            snapshot = encode.presence(
                [PresenceChange(a.id, self.hub.online(a.id), a.last_seen or 0) for a in agents],
                {a.id: a.display_name for a in agents},
                snapshot=True,
            )
            self._roster = (key, agent_list, snapshot)
        return self._roster[1], self._roster[2]

    def agent_list(self, agent_id: str, conversations: Iterable[str]) -> Event:
        """All agents, or in a large network (more than FULL_ROSTER) the ones this agent shares a
        group or direct messages with; ListAgents pages through everyone."""
        if len(self.net.agents) <= FULL_ROSTER:
            return self._roster_events()[0]
        related = {agent_id}
        for conv in conversations:
            if conv.startswith(GROUP_PREFIX):
                related |= self.net.members.get(conv[len(GROUP_PREFIX) :], set())
            elif conv.startswith(DM_PREFIX):
                related.update(dm_parties(conv))
        agents = self.net.agents
        return self._agent_list([agents[a] for a in sorted(related) if a in agents])

    def broadcast_presence(self, changes: list[PresenceChange]) -> None:
        """Tell sessions about presence changes. In a network of up to FULL_ROSTER agents every
        session hears about every agent. In a larger one (like agent_list) a session hears about
        the agents it shares a group or direct messages with, and itself: a reconnect storm of N
        agents would otherwise cost N x N presence entries. One Event per distinct set."""
        names = {a.id: a.display_name for a in self.net.agents.values()}
        if len(self.net.agents) <= FULL_ROSTER:
            self.hub.broadcast_presence(encode.presence(changes, names))
            return
        by_agent = {c.agent_id: c for c in changes}
        by_group: dict[str, list[PresenceChange]] = {}
        for c in changes:
            for g in self.net.agent_groups.get(c.agent_id, ()):
                by_group.setdefault(g, []).append(c)
        encoded: dict[tuple[tuple[str, ...], tuple[str, ...]], Event] = {}
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
            ev = encoded.get(key)
            if ev is None:
                mine = {a: by_agent[a] for a in key[1]}
                for g in groups:
                    mine.update((c.agent_id, c) for c in by_group[g])
                ev = encoded[key] = encode.presence(list(mine.values()), names)
            s.push_presence(ev)

    def presence_snapshot(self) -> Event:
        return self._roster_events()[1]

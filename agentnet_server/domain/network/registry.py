"""Agents: registration, device authorization, the directory, last-seen."""

from __future__ import annotations

from ...errors import NotFound
from ...logs import audit
from ...records import (
    AgentRec,
    AgentWrite,
)
from ...store import ops
from .. import validate
from .state import State


class Registry(State):
    async def register(
        self, device: str, agent_id: str, display_name: str, role: str, description: str
    ) -> tuple[AgentRec, bool]:
        validate.check_id("agent id", agent_id)
        existing = self.agents.get(agent_id)
        # Empty fields keep what is stored, so reconnecting with just the id renames nothing. The
        # store fills them in its transaction (`keep`): with replicas this cache may trail a rename
        # made through another one, and writing its values back would undo that rename.
        keep = frozenset(
            f for f, v in (("display_name", display_name), ("role", role), ("description", description)) if not v
        )
        if existing is not None:
            display_name = display_name or existing.display_name
            role = role or existing.role
            description = description or existing.description
        name, key = validate.display_name(display_name or agent_id)
        validate.check_text("role", role, validate.MAX_ROLE)
        validate.check_text("description", description, validate.MAX_DESCRIPTION, single_line=False)
        if (
            self.db.replica is None  # with replicas the cache may trail a rename made elsewhere
            and existing is not None
            and device in existing.devices
            and (existing.display_name, existing.role, existing.description) == (name, role, description)
        ):
            # A reconnect that changes nothing: no write (a reconnect storm is thousands of these).
            return existing, False
        rec, created = await self.db.write(
            ops.register_agent,
            AgentWrite(device, agent_id, name, key, role, description, keep),
            self.settings.max_agents_per_device,
            on_commit=lambda r: self._cache_agent(r[0]),
        )
        audit("agent.register" if created else "agent.update", agent_id, device=device)
        return rec, created

    async def authorize_device(self, owner_device: str, agent_id: str, device: str) -> AgentRec:
        validate.check_id("agent_id", agent_id)
        validate.check_id("device_id", device)
        return await self.db.write(ops.authorize_device, owner_device, agent_id, device, on_commit=self._cache_agent)

    def agent(self, agent_id: str) -> AgentRec:
        validate.check_id("agent_id", agent_id)
        a = self.agents.get(agent_id)
        if a is None:
            raise NotFound(f"agent {agent_id!r} is not registered", reason="AGENT_NOT_FOUND")
        return a

    def list_agents(self, online_only: bool, page_size: int, token: str) -> tuple[list[AgentRec], str]:
        size = validate.page_size(page_size)
        after = validate.decode_token("agents", token) or ""
        ids = sorted(a for a in self.agents if a > after and (not online_only or self.live.online(a)))
        page = ids[:size]
        nxt = validate.encode_token("agents", page[-1]) if len(ids) > size else ""
        return [self.agents[i] for i in page], nxt

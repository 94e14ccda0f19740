"""Groups and memberships, and the membership cache."""

from __future__ import annotations

import time

from ...errors import NotFound
from ...logs import audit
from ...records import (
    GroupRec,
    GroupWrite,
    MemberRec,
    group_conv,
)
from ...store import access, ops
from .. import validate
from .registry import Registry


class Groups(Registry):
    def _cache_join(self, group_id: str, member: MemberRec) -> None:
        self.member_changes[group_id] += 1
        self.membership_changes[member.agent_id] += 1
        self.empty_since.pop(group_id, None)
        self.members.setdefault(group_id, set()).add(member.agent_id)
        self.agent_groups.setdefault(member.agent_id, set()).add(group_id)
        self._resolvers.pop(group_id, None)
        self.live.member_joined(member.agent_id, group_conv(group_id), member.joined_seq)

    def _cache_leave(self, group_id: str, agent_id: str) -> None:
        self.member_changes[group_id] += 1
        self.membership_changes[agent_id] += 1
        self.members.get(group_id, set()).discard(agent_id)
        if not self.members.get(group_id):
            self.empty_since.setdefault(group_id, time.monotonic())
        self.agent_groups.get(agent_id, set()).discard(group_id)
        self._resolvers.pop(group_id, None)
        self.live.member_left(agent_id, group_conv(group_id))

    def _check_group_id(self, group_id: str) -> str:
        return validate.check_id("group_id", group_id)

    async def create_group(
        self,
        agent_id: str,
        group_id: str,
        title: str,
        description: str,
        join_rule: str = access.PUBLIC,
        history: str = access.SHARED,
    ) -> GroupRec:
        self._check_group_id(group_id)
        validate.check_text("title", title, validate.MAX_TITLE)
        validate.check_text("description", description, validate.MAX_DESCRIPTION, single_line=False)

        def done(r: tuple[GroupRec, MemberRec]) -> None:
            self._cache_join(group_id, r[1])
            audit("group.create", agent_id, group=group_id)

        if self.limiter is not None:
            self.limiter.check_group_create(agent_id)
        group, _ = await self.db.write(
            access.create_group,
            GroupWrite(agent_id, group_id, title, description, join_rule, history),
            self.settings.max_groups_per_agent,
            on_commit=done,
        )
        return group

    async def invite(self, agent_id: str, group_id: str, invitee: str) -> tuple[GroupRec, bool]:
        """A member invites an agent into a group (needed to join an invite-only one)."""
        self._check_group_id(group_id)
        validate.check_id("invitee", invitee)
        created: bool = await self.db.write(access.invite, group_id, agent_id, invitee)
        if created:
            audit("group.invite", agent_id, group=group_id, invitee=invitee)
        return await self.group(group_id), created

    async def join(
        self, agent_id: str, group_id: str, create_if_missing: bool = False, title: str = ""
    ) -> tuple[GroupRec, MemberRec, bool]:
        self._check_group_id(group_id)
        validate.check_text("title", title, validate.MAX_TITLE)

        def done(r: tuple[GroupRec, MemberRec, bool]) -> None:
            self._cache_join(group_id, r[1])
            if r[2]:
                audit("group.join", agent_id, group=group_id)

        if create_if_missing and self.limiter is not None and not self.members.get(group_id):
            # May create it (an empty or unknown group): counts as a creation.
            self.limiter.check_group_create(agent_id)
        return await self.db.write(
            access.join_group,
            agent_id,
            group_id,
            create_if_missing,
            title,
            self.settings.max_groups_per_agent,
            on_commit=done,
        )

    async def leave(self, agent_id: str, group_id: str) -> bool:
        self._check_group_id(group_id)

        def done(left: bool) -> None:
            self._cache_leave(group_id, agent_id)
            if left:
                audit("group.leave", agent_id, group=group_id)

        return await self.db.write(ops.leave_group, agent_id, group_id, on_commit=done)

    async def group(self, group_id: str) -> GroupRec:
        self._check_group_id(group_id)
        g = await self.db.read(ops.group_get, group_id)
        if g is None:
            raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
        return g

    async def list_groups(self, member: str, page_size: int, token: str) -> tuple[list[GroupRec], str]:
        if member:
            validate.check_id("member", member)
        size = validate.page_size(page_size)
        after = validate.decode_token("groups", token) or ""
        rows = await self.db.read(ops.groups_page, after, size + 1, member)
        nxt = validate.encode_token("groups", rows[size - 1].id) if len(rows) > size else ""
        return rows[:size], nxt

    async def list_members(self, group_id: str, page_size: int, token: str) -> tuple[list[MemberRec], str]:
        await self.group(group_id)
        size = validate.page_size(page_size)
        after = validate.decode_token("members", token) or ""
        rows = await self.db.read(ops.members_page, group_id, after, size + 1)
        nxt = validate.encode_token("members", rows[size - 1].agent_id) if len(rows) > size else ""
        return rows[:size], nxt

    def is_member(self, agent_id: str, group_id: str) -> bool:
        return agent_id in self.members.get(group_id, ())

    async def _refresh_group(self, group_id: str) -> None:
        """Make the cached members of a group what the store says now.

        A join or leave committed here while the read was under way is newer than the read: the
        read is then taken again rather than applied (applying it would drop a member who just
        joined, and with him the messages other replicas send to the group)."""

        async def read() -> list[MemberRec]:
            rows: list[MemberRec] = await self.db.read(ops.members_page, group_id, "", 10**9)
            for agent_id in {m.agent_id for m in rows} - self.agents.keys():
                await self._refresh_agent(agent_id)
            return rows

        self._apply_members(group_id, await self._read_stable(self.member_changes, group_id, read))

    def _apply_members(self, group_id: str, rows: list[MemberRec]) -> None:
        """Make the cached members of a group what the store says (rows: all of them)."""
        now = {m.agent_id: m for m in rows}
        before = set(self.members.get(group_id, ()))
        for agent_id in before - now.keys():
            self._cache_leave(group_id, agent_id)
        for agent_id, m in now.items():
            if agent_id not in before:
                self._cache_join(group_id, m)
                # Joined through another replica: what that replica fanned out before this
                # cache knew comes from the store.
                self.live.catch_up(agent_id, group_conv(group_id))

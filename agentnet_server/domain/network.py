"""The network's use cases: registry, groups, chat and resume. Transport-free.

Caches of agents and memberships live here and change only in post-commit callbacks, which
run on the event loop in commit order, so fan-out always sees the membership that the store
committed the message under.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cryptography import x509

from ..config import Settings
from ..errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from ..live.hub import FEED, MESSAGE, Envelope, Hub
from ..logs import audit
from ..records import (
    GROUP_PREFIX,
    INBOX_PREFIX,
    AgentRec,
    FeedKind,
    FeedRec,
    GroupRec,
    MemberRec,
    MessageRec,
    SendResult,
    dm_conv,
    dm_parties,
    group_conv,
    inbox_conv,
    now_us,
)
from ..store import hygiene, ops
from ..store.db import Database
from . import mentions, signatures, validate

log = logging.getLogger("agentnet.network")

EXCERPT = 280
REPLAY_PAGE = 500


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a send goes: a group or an agent (direct message)."""

    group_id: str = ""
    to_agent: str = ""


@dataclasses.dataclass(frozen=True)
class Sent:
    result: SendResult
    unresolved: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SignedFields:
    """A request's signature, and the TLS certificate of the device that sent it."""

    signature: bytes = b""
    signer_fp: str = ""
    sign_time: int = 0
    cert: x509.Certificate | None = None


@dataclasses.dataclass(frozen=True)
class SendCommand:
    """One send as an adapter hands it to the domain (from a Session event or a unary call)."""

    agent_id: str
    device: str
    target: Target
    client_msg_id: str
    content: str
    payload: dict[str, Any] | None = None
    mentions: Sequence[str] = ()
    signed: SignedFields = SignedFields()
    reply_to: int = 0
    auto_hops: int = 0


@dataclasses.dataclass(frozen=True)
class PreparedSend:
    """A send whose fields passed validation."""

    agent_id: str
    device: str
    target: Target
    conv: str
    client_msg_id: str
    content: str
    payload_json: str | None
    explicit: tuple[str, ...]
    signed: SignedFields
    reply_to: int = 0
    auto_hops: int = 0


def excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


class Network:
    def __init__(self, settings: Settings, db: Database, hub: Hub) -> None:
        self.settings = settings
        self.db = db
        self.hub = hub
        self.agents: dict[str, AgentRec] = {}
        self.name_keys: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}
        self.agent_groups: dict[str, set[str]] = {}
        self.agents_version = 0  # bumped when an agent's profile changes (caches key on it)
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
        """Delete groups that have had no members for settings.empty_group_ttl seconds."""
        ttl = self.settings.empty_group_ttl
        now = time.monotonic() if now is None else now
        due = [g for g, since in self.empty_since.items() if now - since >= ttl]
        if not ttl or not due:
            return []
        gone = await self.db.write(hygiene.delete_empty_groups, due)
        for g in due:
            self.empty_since.pop(g, None)  # deleted, or joined meanwhile
        for g in gone:
            self.members.pop(g, None)
            self._resolvers.pop(g, None)
        return list(gone)

    # -- identity -----------------------------------------------------------------------------

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

    # -- registry -----------------------------------------------------------------------------

    def _cache_agent(self, a: AgentRec) -> None:
        self.agents_version += 1
        old = self.agents.get(a.id)
        if old is not None:
            self.name_keys.pop(validate.name_key(old.display_name), None)
        self.agents[a.id] = a
        self.name_keys[validate.name_key(a.display_name)] = a.id
        if old is None or old.display_name != a.display_name:
            self._resolvers.clear()
            self._known = None

    async def register(
        self, device: str, agent_id: str, display_name: str, role: str, description: str
    ) -> tuple[AgentRec, bool]:
        validate.check_id("agent id", agent_id)
        existing = self.agents.get(agent_id)
        if existing is not None:
            # Empty fields keep what is stored, so reconnecting with just the id renames nothing.
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
            device,
            agent_id,
            name,
            key,
            role,
            description,
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
        ids = sorted(a for a in self.agents if a > after and (not online_only or self.hub.online(a)))
        page = ids[:size]
        nxt = validate.encode_token("agents", page[-1]) if len(ids) > size else ""
        return [self.agents[i] for i in page], nxt

    # -- groups -------------------------------------------------------------------------------

    def _cache_join(self, group_id: str, member: MemberRec) -> None:
        self.empty_since.pop(group_id, None)
        self.members.setdefault(group_id, set()).add(member.agent_id)
        self.agent_groups.setdefault(member.agent_id, set()).add(group_id)
        self._resolvers.pop(group_id, None)
        conv = group_conv(group_id)
        for s in self.hub.by_agent.get(member.agent_id, ()):
            if s.cursors.get(conv) is None:
                s.cursors[conv] = member.joined_seq

    def _cache_leave(self, group_id: str, agent_id: str) -> None:
        self.members.get(group_id, set()).discard(agent_id)
        if not self.members.get(group_id):
            self.empty_since.setdefault(group_id, time.monotonic())
        self.agent_groups.get(agent_id, set()).discard(group_id)
        self._resolvers.pop(group_id, None)
        conv = group_conv(group_id)
        for s in self.hub.by_agent.get(agent_id, ()):
            s.cursors[conv] = None

    def _check_group_id(self, group_id: str) -> str:
        return validate.check_id("group_id", group_id)

    async def create_group(self, agent_id: str, group_id: str, title: str, description: str) -> GroupRec:
        self._check_group_id(group_id)
        validate.check_text("title", title, validate.MAX_TITLE)
        validate.check_text("description", description, validate.MAX_DESCRIPTION, single_line=False)

        def done(r: tuple[GroupRec, MemberRec]) -> None:
            self._cache_join(group_id, r[1])
            audit("group.create", agent_id, group=group_id)

        if self.limiter is not None:
            self.limiter.check_group_create(agent_id)
        group, _ = await self.db.write(
            ops.create_group,
            agent_id,
            group_id,
            title,
            description,
            self.settings.max_groups_per_agent,
            on_commit=done,
        )
        return group

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
            ops.join_group,
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

    # -- chat ---------------------------------------------------------------------------------

    def _member_names(self, agent_ids: Iterable[str]) -> dict[str, str]:
        """id and display name -> id, for the given agents."""
        names: dict[str, str] = {}
        for agent_id in agent_ids:
            a = self.agents.get(agent_id)
            if a is not None:
                names[a.id] = a.id
                names[a.display_name] = a.id
        return names

    def _resolver(self, group_id: str) -> mentions.Resolver:
        r = self._resolvers.get(group_id)
        if r is None:
            r = self._resolvers[group_id] = mentions.Resolver(self._member_names(self.members.get(group_id, ())))
        return r

    def _known_resolver(self) -> mentions.Resolver:
        if self._known is None:
            self._known = mentions.Resolver(self._member_names(self.agents))
        return self._known

    def conversation_of(self, agent_id: str, target: Target) -> str:
        if bool(target.group_id) == bool(target.to_agent):
            raise InvalidArgument("a message needs exactly one of group_id or to_agent", reason="NO_TARGET")
        if target.group_id:
            self._check_group_id(target.group_id)
            return group_conv(target.group_id)
        peer = validate.check_id("to_agent", target.to_agent)
        if peer not in self.agents:
            raise NotFound(f"agent {peer!r} is not registered", reason="AGENT_NOT_FOUND")
        if peer == agent_id:
            raise InvalidArgument("a direct message needs another agent as recipient", reason="DM_TO_SELF")
        return dm_conv(agent_id, peer)

    def _mentions(
        self, agent_id: str, target: Target, content: str, explicit: Sequence[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if not target.group_id:
            return (), ()  # a direct message reaches its recipient anyway
        if "@" not in content and not explicit:
            return (), ()
        members = self.members.get(target.group_id, set())
        found = (
            mentions.scan(content, self._resolver(target.group_id), self._known_resolver()) if "@" in content else None
        )
        extra, unresolved_explicit = (
            mentions.resolve_explicit(explicit, self._member_names(members)) if explicit else ([], [])
        )
        agents: list[str] = []
        if found is not None and found.everyone:
            agents.extend(sorted(members))
        for a in (*(found.agents if found else ()), *extra):
            if a not in agents:
                agents.append(a)
        agents = [a for a in agents if a != agent_id]
        unresolved = (*(found.unresolved if found else ()), *unresolved_explicit)
        return tuple(agents), tuple(dict.fromkeys(unresolved))

    def prepare_send(self, cmd: SendCommand) -> PreparedSend:
        """Check a send's fields (everything but the signature, which check_signature does; and
        whether `reply_to` exists, which the writer checks in its transaction)."""
        agent_id, device, target, client_msg_id = cmd.agent_id, cmd.device, cmd.target, cmd.client_msg_id
        content, payload, explicit_mentions, signed = cmd.content, cmd.payload, cmd.mentions, cmd.signed
        reply_to, auto_hops = cmd.reply_to, cmd.auto_hops
        conv = self.conversation_of(agent_id, target)
        validate.reply_ref(reply_to, auto_hops)
        if not client_msg_id and (signed.signature or self.settings.require_signatures):
            raise InvalidArgument(
                "client_msg_id is empty: a signed message needs one chosen by the sender (the signature covers "
                "it, so the server cannot make one up); use a fresh unique id such as a UUID (docs/signing.md)",
                reason="BAD_CLIENT_ID",
            )
        client_msg_id = validate.client_id("client_msg_id", client_msg_id or f"srv-{uuid.uuid4().hex}")
        validate.content(content, self.settings.max_content_bytes, payload is not None)
        payload_json = validate.payload(payload, self.settings.max_payload_bytes, self.settings.max_payload_depth)
        if len(explicit_mentions) > self.settings.max_mentions:
            raise InvalidArgument(
                f"{len(explicit_mentions)} explicit mentions; the limit is {self.settings.max_mentions}",
                reason="TOO_MANY_MENTIONS",
            )
        if target.group_id and target.group_id in self.members and not self.is_member(agent_id, target.group_id):
            # Fast refusal; the writer re-checks membership under the transaction either way.
            raise PermissionDenied(
                f"agent {agent_id!r} is not a member of group {target.group_id!r}; join it first",
                reason="NOT_A_MEMBER",
            )
        return PreparedSend(
            agent_id,
            device,
            target,
            conv,
            client_msg_id,
            content,
            payload_json,
            tuple(explicit_mentions),
            signed,
            reply_to,
            auto_hops,
        )

    def signature_check(self, p: PreparedSend) -> Callable[[], None] | None:
        """The device-signature check for a send. A missing one is refused here; a present one is
        checked by the writer thread before the send is stored (the crypto releases the GIL, so it
        runs beside the event loop, and the writer's order keeps a stream's sends in order)."""
        s = p.signed
        if not s.signature and not self.settings.require_signatures:
            return None
        target = f"group:{p.target.group_id}" if p.target.group_id else f"agent:{p.target.to_agent}"
        check = functools.partial(
            signatures.check_message,
            s.cert,
            p.device,
            p.agent_id,
            target,
            p.client_msg_id,
            p.content,
            p.payload_json,
            s.signature,
            s.sign_time,
            self.settings.require_signatures,
            p.reply_to,
            p.auto_hops,
            window=(self.settings.sign_time_max_age, self.settings.sign_time_max_skew),
        )
        if not s.signature:
            check()  # raises SIGNATURE_MISSING
        return check

    def enqueue_send(self, p: PreparedSend) -> tuple[asyncio.Future[SendResult], tuple[str, ...]]:
        """Queue a checked send for commit without waiting (keeps a stream's sends in order).

        Returns the future of the committed result and the mentions that did not resolve."""
        check = self.signature_check(p)
        resolved, unresolved = self._mentions(p.agent_id, p.target, p.content, p.explicit)
        # The reply fields count in the digest only when set, so digests stored before they existed
        # still match a resend of the same message.
        extra = (str(p.reply_to), str(p.auto_hops)) if p.reply_to or p.auto_hops else ()
        digest = validate.digest(p.conv, p.content, p.payload_json, *extra)
        s = p.signed
        fut = self.db.write(
            ops.send_message,
            p.agent_id,
            p.device,
            p.conv,
            p.client_msg_id,
            digest,
            p.content,
            p.payload_json,
            resolved,
            excerpt(p.content),
            s.signature,
            s.signer_fp,
            s.sign_time,
            check,
            p.reply_to,
            p.auto_hops,
            on_commit=self._fan_out,
            key=p.conv,
        )
        return fut, unresolved

    async def submit(self, cmd: SendCommand) -> tuple[asyncio.Future[SendResult], tuple[str, ...]]:
        """The send use case without waiting for the commit (a stream keeps its sends in order and
        answers each when its future resolves): check, refresh stale caches, queue for commit.
        Returns the future of the committed result and the mentions that did not resolve."""
        p = self.prepare_send(cmd)
        await self.refresh_for_send(p.agent_id, p.target, p.content, p.explicit)
        return self.enqueue_send(p)

    async def send(self, cmd: SendCommand) -> Sent:
        """The send use case, waiting for the commit (unary calls)."""
        fut, unresolved = await self.submit(cmd)
        result = await fut
        return Sent(result, () if result.duplicate else unresolved)

    async def refresh_for_send(self, agent_id: str, target: Target, content: str, explicit: Sequence[str]) -> None:
        """With several replicas, caches trail the store by a notification: when a send's checks
        would fail on the cache (not a member, unknown peer, unresolved mention), re-read first."""
        if self.db.replica is None:
            return
        if target.to_agent and target.to_agent not in self.agents:
            rec = await self.db.read(ops.agent_get, target.to_agent)
            if rec is not None:
                self._cache_agent(rec)
        if target.group_id:
            stale = not self.is_member(agent_id, target.group_id)
            if not stale and ("@" in content or explicit):
                stale = bool(self._mentions(agent_id, target, content, explicit)[1])
            if stale:
                await self._refresh_group(target.group_id)

    def _fan_out(self, result: SendResult) -> None:
        if result.duplicate:
            return
        msg = result.message
        # Ids and sizes only: message text never goes to a log.
        log.info(
            "message %s #%d from %s (device %s, %d bytes)",
            msg.conversation,
            msg.seq,
            msg.sender,
            msg.sender_device,
            len(msg.content.encode()),
        )
        env = Envelope(MESSAGE, msg.conversation, msg.seq, msg)
        if msg.conversation.startswith(GROUP_PREFIX):
            self.hub.publish(env, self.members.get(msg.group_id, ()))
        else:
            self.hub.publish(env, (msg.sender, msg.recipient))
        self.publish_feed(result.feed, msg)

    def publish_feed(self, feed: Iterable[FeedRec], ref: Any) -> None:
        for item in feed:
            self.hub.publish(Envelope(FEED, inbox_conv(item.agent), item.seq, (item, ref)), (item.agent,))

    def _check_reader(self, agent_id: str, conv: str) -> None:
        if conv.startswith(GROUP_PREFIX):
            gid = conv[len(GROUP_PREFIX) :]
            if not self.is_member(agent_id, gid):
                if gid not in self.members:
                    raise NotFound(f"group {gid!r} does not exist", reason="GROUP_NOT_FOUND")
                raise PermissionDenied(f"agent {agent_id!r} is not a member of group {gid!r}", reason="NOT_A_MEMBER")

    async def history(
        self, agent_id: str, conv: str, after_seq: int, newest_first: bool, page_size: int, token: str
    ) -> tuple[list[MessageRec], str, int]:
        self._check_reader(agent_id, conv)
        if after_seq < 0:
            raise InvalidArgument(f"after_seq must not be negative, got {after_seq}", reason="BAD_SEQ")
        size = validate.page_size(page_size)
        mark = validate.decode_token("history", token)
        if mark is not None and (not isinstance(mark, list) or len(mark) != 2 or mark[0] != conv):
            raise InvalidArgument("page_token belongs to another conversation", reason="BAD_PAGE_TOKEN")
        last = await self.db.read(ops.conv_last_seq, conv)
        if newest_first:
            before = int(mark[1]) if mark else last + 1
            rows = await self.db.read(ops.messages_before, conv, before, after_seq, size + 1)
        else:
            after = int(mark[1]) if mark else after_seq
            rows = await self.db.read(ops.messages_after, conv, after, size + 1)
        nxt = validate.encode_token("history", [conv, rows[size - 1].seq]) if len(rows) > size else ""
        return rows[:size], nxt, last

    # -- resume -------------------------------------------------------------------------------

    async def resume_cursors(
        self, agent_id: str, device: str, given: dict[str, int]
    ) -> tuple[dict[str, int | None], dict[str, int]]:
        """Starting cursors for a session and the heads it will be caught up to.

        Conversation cursors come from the client, else from what this device acknowledged,
        else from the join point. Cursors for conversations the agent is not in are ignored; a
        cursor beyond a conversation's head is clamped to the head (caught_up reports the heads).
        """
        # Through the writer queue (read-only): delivery acks the previous connection queued are
        # committed first, so a client that resumes from server-side acks gets no duplicates.
        heads_and_starts, acked, feed_head = await self.db.write(ops.resume_state, agent_id, device)
        mine = inbox_conv(agent_id)
        # Cursors for conversations the agent is not in (any more) are ignored, not refused: a
        # client's cache can outlive a membership or a server reset, and must still reconnect.
        stale = [c for c in given if c != mine and c not in heads_and_starts]
        if stale:
            log.info(
                "agent %s resumed with %d cursor(s) for conversations it is not in: %s",
                agent_id,
                len(stale),
                ", ".join(sorted(stale)[:5]),
            )
        cursors: dict[str, int | None] = {}
        heads: dict[str, int] = {}
        for conv, (last, start) in heads_and_starts.items():
            cur = given.get(conv, acked.get(conv, start))
            cursors[conv] = max(0, min(cur, last)) if cur is not None else start
            heads[conv] = last
        cursors[mine] = max(0, min(given.get(mine, acked.get(mine, 0)), feed_head))
        heads[mine] = feed_head
        return cursors, heads

    async def heads(self, agent_id: str) -> dict[str, int]:
        """The newest seq of every conversation of the agent (its feed included), from the store."""
        return await self.db.read(ops.heads, agent_id)

    async def fetch(self, agent_id: str, conv: str, after: int, limit: int = REPLAY_PAGE) -> list[Envelope]:
        """Envelopes after a cursor, from the store (replay and gap repair)."""
        if conv.startswith(INBOX_PREFIX):
            items = await self.db.read(ops.feed_after, conv[len(INBOX_PREFIX) :], after, limit)
            refs = await self._feed_refs(items)
            return [Envelope(FEED, conv, it.seq, (it, refs.get(_ref_key(it)))) for it in items]
        msgs = await self.db.read(ops.messages_after, conv, after, limit)
        return [Envelope(MESSAGE, conv, m.seq, m) for m in msgs]

    async def _feed_refs(self, items: list[FeedRec]) -> dict[Any, Any]:
        keys = {
            (it.conversation, it.message_seq) for it in items if it.kind in (FeedKind.MENTION, FeedKind.DIRECT_MESSAGE)
        }
        refs: dict[Any, Any] = {}
        if keys:
            refs.update(await self.db.read(ops.messages_by_key, keys))
        if self.task_refs is not None:
            refs.update(await self.task_refs([it for it in items if it.task_id]))
        return refs

    async def ack(self, agent_id: str, device: str, cursors: Sequence[tuple[str, int]]) -> None:
        if cursors:
            await self.db.write(ops.ack, agent_id, device, list(cursors))

    # -- other replicas ------------------------------------------------------------------------

    async def apply_remote(self, data: dict[str, Any]) -> None:
        """Changes another replica committed: refresh the caches, then push to local sessions.

        Envelopes go through the same cursor rules as local ones, so a notification that arrives
        late, twice or out of order only causes a store read, never a gap or a duplicate."""
        if data.get("resync"):
            await self._resync()
            return
        if "po" in data or "pf" in data:
            self.hub.remote_presence(
                str(data.get("r")), data.get("po", ()), data.get("pf", ()), 3 * self.settings.heartbeat_interval
            )
        for agent_id in data.get("a", ()):
            rec = await self.db.read(ops.agent_get, agent_id)
            if rec is not None:
                self._cache_agent(rec)
        for group_id in data.get("g", ()):
            await self._refresh_group(group_id)
        for conv, lo in _lowest(data.get("m", ())).items():
            if conv.startswith(GROUP_PREFIX):
                audience: Iterable[str] = self.members.get(conv[len(GROUP_PREFIX) :], ())
            else:
                audience = dm_parties(conv)
            if any(a in self.hub.by_agent for a in audience):
                for env in await self.fetch("", conv, lo - 1):
                    self.hub.publish(env, audience)
        for agent, lo in _lowest(data.get("f", ())).items():
            if agent in self.hub.by_agent:
                for env in await self.fetch(agent, inbox_conv(agent), lo - 1):
                    self.hub.publish(env, (agent,))

    async def _refresh_group(self, group_id: str) -> None:
        rows = await self.db.read(ops.members_page, group_id, "", 10**9)
        now = {m.agent_id: m for m in rows}
        for agent_id in now.keys() - self.agents.keys():
            rec = await self.db.read(ops.agent_get, agent_id)
            if rec is not None:
                self._cache_agent(rec)
        before = set(self.members.get(group_id, ()))
        for agent_id in before - now.keys():
            self._cache_leave(group_id, agent_id)
        for agent_id, m in now.items():
            if agent_id not in before:
                self._cache_join(group_id, m)
                for s in self.hub.by_agent.get(agent_id, ()):
                    # Joined through another replica: what that replica fanned out before this
                    # cache knew comes from the store.
                    s.dropped_convs.add(group_conv(group_id))
                    s.lagging = True
                    s.wake.set()

    async def _resync(self) -> None:
        """After missing notifications: re-read the caches and let every session catch up."""
        for a in await self.db.read(ops.agents_all):
            self._cache_agent(a)
        groups = {m.group_id for m in await self.db.read(ops.members_all)} | set(self.members)
        for group_id in groups:
            await self._refresh_group(group_id)
        for s in self.hub.sessions():
            s.lagging = True
            s.wake.set()

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

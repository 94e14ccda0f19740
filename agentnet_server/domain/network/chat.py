"""Chat: sends (check, queue for commit, fan-out after commit), mentions and history."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...errors import InvalidArgument, NotFound, PermissionDenied
from ...records import (
    FEED,
    GROUP_PREFIX,
    MESSAGE,
    Envelope,
    FeedRec,
    MessageRec,
    MessageWrite,
    SendResult,
    dm_conv,
    group_conv,
    inbox_conv,
)
from ...store import access, ops
from .. import mentions, signatures, validate
from ..commands import PreparedSend, SendCommand, Target
from .groups import Groups
from .state import Sent, excerpt, log


class Chat(Groups):
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
        client_msg_id = validate.idempotency_key(
            "client_msg_id", client_msg_id, bool(signed.signature or self.settings.require_signatures)
        )
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
        if not p.signed.signature and not self.settings.require_signatures:
            return None
        check = functools.partial(signatures.check_message, p, signatures.Policy.of(self.settings))
        if not p.signed.signature:
            check()  # raises SIGNATURE_MISSING
        return check

    def message_write(self, p: PreparedSend, mentioned: tuple[str, ...]) -> MessageWrite:
        """The store's record of a checked send, with the agents it mentions."""
        # The reply fields count in the digest only when set, so digests stored before they existed
        # still match a resend of the same message.
        extra = (str(p.reply_to), str(p.auto_hops)) if p.reply_to or p.auto_hops else ()
        s = p.signed
        return MessageWrite(
            p.agent_id,
            p.device,
            p.conv,
            p.client_msg_id,
            validate.digest(p.conv, p.content, p.payload_json, *extra),
            p.content,
            p.payload_json,
            mentioned,
            excerpt(p.content),
            s.signature,
            s.signer_fp,
            s.sign_time,
            p.reply_to,
            p.auto_hops,
        )

    def enqueue_send(self, p: PreparedSend) -> tuple[asyncio.Future[SendResult], tuple[str, ...]]:
        """Queue a checked send for commit without waiting (keeps a stream's sends in order).

        Returns the future of the committed result and the mentions that did not resolve."""
        check = self.signature_check(p)
        resolved, unresolved = self._mentions(p.agent_id, p.target, p.content, p.explicit)
        fut = self.db.write(
            ops.send_message, self.message_write(p, resolved), check, on_commit=self._fan_out, key=p.conv
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
            await self._refresh_agent(target.to_agent)
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
            self.live.publish(env, self.members.get(msg.group_id, ()))
        else:
            self.live.publish(env, (msg.sender, msg.recipient))
        self.publish_feed(result.feed, msg)

    def publish_feed(self, feed: Iterable[FeedRec], ref: Any) -> None:
        for item in feed:
            self.live.publish(Envelope(FEED, inbox_conv(item.agent), item.seq, (item, ref)), (item.agent,))

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
        if conv.startswith(GROUP_PREFIX):
            # A group whose history is visible from the join on: nothing before this member's join.
            floor: int = await self.db.read(access.visible_from, conv[len(GROUP_PREFIX) :], agent_id)
            after_seq = max(after_seq, floor)
        if newest_first:
            before = int(mark[1]) if mark else last + 1
            rows = await self.db.read(ops.messages_before, conv, before, after_seq, size + 1)
        else:
            after = int(mark[1]) if mark else after_seq
            rows = await self.db.read(ops.messages_after, conv, after, size + 1)
        nxt = validate.encode_token("history", [conv, rows[size - 1].seq]) if len(rows) > size else ""
        return rows[:size], nxt, last

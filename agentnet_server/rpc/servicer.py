"""Unary RPCs: translate protobuf requests to domain calls and records back to protobuf."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from agentnet.v1 import resources_pb2, service_pb2

from ..auth import current_peer
from ..domain.inbox import Inbox
from ..domain.limits import Limiter
from ..domain.network import Network, Target
from ..domain.tasks import Tasks
from ..errors import InvalidArgument, NotFound
from ..live import encode
from ..live.hub import Hub
from ..records import TaskFilter, dm_conv, group_conv
from ..store import ops
from . import convert

Ctx: TypeAlias = grpc.aio.ServicerContext
SendRequest: TypeAlias = service_pb2.SendGroupMessageRequest | service_pb2.SendDirectMessageRequest
HistoryRequest: TypeAlias = service_pb2.ListGroupMessagesRequest | service_pb2.ListDirectMessagesRequest

# Unset (0) means the default: public, shared history.
_JOIN_RULES = {
    0: "public",
    resources_pb2.GROUP_JOIN_RULE_PUBLIC: "public",
    resources_pb2.GROUP_JOIN_RULE_INVITE: "invite",
}
_HISTORY = {
    0: "shared",
    resources_pb2.HISTORY_VISIBILITY_SHARED: "shared",
    resources_pb2.HISTORY_VISIBILITY_JOINED: "joined",
}


class AgentNetServicer:
    """agentnet.v1.AgentNet unary methods. The Session stream lives in session.py."""

    def __init__(self, net: Network, hub: Hub, inbox: Inbox, tasks: Tasks) -> None:
        self.net = net
        self.hub = hub
        self.inbox = inbox
        self.tasks = tasks
        self.limiter: Limiter | None = None
        for name in dir(type(self)):
            if name.startswith(("Get", "List")):
                setattr(self, name, self._read_limited(getattr(self, name)))

    def _read_limited(self, fn: Callable[[Any, Ctx], Awaitable[Any]]) -> Callable[[Any, Ctx], Awaitable[Any]]:
        """Read calls (Get*, List*) count against the device's read rate limit, on gRPC and REST."""

        @functools.wraps(fn)
        async def call(req: Any, ctx: Ctx) -> Any:
            if self.limiter is not None:
                self.limiter.check_read(current_peer.get().device_id)
            return await fn(req, ctx)

        return call

    def _agent_pb(self, agent_id: str) -> resources_pb2.Agent:
        return encode.agent(self.net.agent(agent_id), self.hub.online(agent_id))

    def _acting(self, agent_id: str) -> tuple[str, str]:
        device = current_peer.get().device_id
        return self.net.acting_agent(device, agent_id), device

    # -- agents -------------------------------------------------------------------------------

    async def RegisterAgent(self, req: service_pb2.RegisterAgentRequest, ctx: Ctx) -> service_pb2.RegisterAgentResponse:
        a = req.agent
        rec, created = await self.net.register(
            current_peer.get().device_id, a.id, a.display_name, a.role, a.description
        )
        return service_pb2.RegisterAgentResponse(agent=encode.agent(rec, self.hub.online(rec.id)), created=created)

    async def ListAgents(self, req: service_pb2.ListAgentsRequest, ctx: Ctx) -> service_pb2.ListAgentsResponse:
        agents, nxt = self.net.list_agents(req.online_only, req.page_size, req.page_token)
        return service_pb2.ListAgentsResponse(
            agents=[encode.agent(a, self.hub.online(a.id)) for a in agents], next_page_token=nxt
        )

    async def GetAgent(self, req: service_pb2.GetAgentRequest, ctx: Ctx) -> resources_pb2.Agent:
        return self._agent_pb(req.agent_id)

    async def AuthorizeDevice(self, req: service_pb2.AuthorizeDeviceRequest, ctx: Ctx) -> resources_pb2.Agent:
        rec = await self.net.authorize_device(current_peer.get().device_id, req.agent_id, req.device_id)
        return encode.agent(rec, self.hub.online(rec.id))

    # -- groups -------------------------------------------------------------------------------

    async def CreateGroup(self, req: service_pb2.CreateGroupRequest, ctx: Ctx) -> resources_pb2.Group:
        agent, _ = self._acting(req.agent_id)
        join_rule = _JOIN_RULES.get(req.join_rule)
        history = _HISTORY.get(req.history_visibility)
        if join_rule is None or history is None:
            raise InvalidArgument(
                f"join_rule {req.join_rule} / history_visibility {req.history_visibility} is not a known value",
                reason="BAD_VALUE",
            )
        return encode.group(
            await self.net.create_group(agent, req.group_id, req.title, req.description, join_rule, history)
        )

    async def InviteToGroup(self, req: service_pb2.InviteToGroupRequest, ctx: Ctx) -> Any:
        agent, _ = self._acting(req.agent_id)
        group, created = await self.net.invite(agent, req.group_id, req.invitee)
        return service_pb2.InviteToGroupResponse(group=encode.group(group), created=created)

    async def ListGroups(self, req: service_pb2.ListGroupsRequest, ctx: Ctx) -> service_pb2.ListGroupsResponse:
        groups, nxt = await self.net.list_groups(req.member, req.page_size, req.page_token)
        return service_pb2.ListGroupsResponse(groups=[encode.group(g) for g in groups], next_page_token=nxt)

    async def GetGroup(self, req: service_pb2.GetGroupRequest, ctx: Ctx) -> resources_pb2.Group:
        return encode.group(await self.net.group(req.group_id))

    async def ListGroupMembers(
        self, req: service_pb2.ListGroupMembersRequest, ctx: Ctx
    ) -> service_pb2.ListGroupMembersResponse:
        members, nxt = await self.net.list_members(req.group_id, req.page_size, req.page_token)
        agents = self.net.agents
        return service_pb2.ListGroupMembersResponse(
            members=[
                encode.member(
                    m, agents[m.agent_id].display_name if m.agent_id in agents else "", self.hub.online(m.agent_id)
                )
                for m in members
            ],
            next_page_token=nxt,
        )

    async def JoinGroup(self, req: service_pb2.JoinGroupRequest, ctx: Ctx) -> service_pb2.JoinGroupResponse:
        agent, _ = self._acting(req.agent_id)
        group, member, new = await self.net.join(agent, req.group_id, req.create_if_missing, req.title)
        return service_pb2.JoinGroupResponse(group=encode.group(group), joined_seq=member.joined_seq, newly_joined=new)

    async def LeaveGroup(self, req: service_pb2.LeaveGroupRequest, ctx: Ctx) -> service_pb2.LeaveGroupResponse:
        if not req.agent_id:
            raise InvalidArgument("agent_id is required: which agent leaves", reason="MISSING_AGENT_ID")
        agent, _ = self._acting(req.agent_id)
        return service_pb2.LeaveGroupResponse(left=await self.net.leave(agent, req.group_id))

    # -- messages -----------------------------------------------------------------------------

    async def _send(
        self, agent_id: str, target: Target, req: SendRequest, mentions: list[str]
    ) -> service_pb2.SendMessageResponse:
        agent, device = self._acting(agent_id)
        peer = current_peer.get()
        if self.limiter is not None:
            self.limiter.check_send(device)
        sent = await self.net.send(convert.send_command(req, agent, target, peer, mentions))
        return service_pb2.SendMessageResponse(
            message=encode.message(sent.result.message),
            duplicate=sent.result.duplicate,
            unresolved_mentions=sent.unresolved,
        )

    async def SendGroupMessage(
        self, req: service_pb2.SendGroupMessageRequest, ctx: Ctx
    ) -> service_pb2.SendMessageResponse:
        return await self._send(req.agent_id, Target(group_id=req.group_id), req, list(req.mentions))

    async def SendDirectMessage(
        self, req: service_pb2.SendDirectMessageRequest, ctx: Ctx
    ) -> service_pb2.SendMessageResponse:
        return await self._send(req.agent_id, Target(to_agent=req.peer_id), req, [])

    async def _history(self, conv: str, agent: str, req: HistoryRequest) -> service_pb2.ListMessagesResponse:
        convert.check_seq("after_seq", req.after_seq)
        msgs, nxt, last = await self.net.history(
            agent, conv, req.after_seq, req.newest_first, req.page_size, req.page_token
        )
        return service_pb2.ListMessagesResponse(
            messages=[encode.message(m) for m in msgs], next_page_token=nxt, last_seq=last
        )

    async def ListGroupMessages(
        self, req: service_pb2.ListGroupMessagesRequest, ctx: Ctx
    ) -> service_pb2.ListMessagesResponse:
        agent, _ = self._acting(req.agent_id)
        conv = self.net.conversation_of(agent, Target(group_id=req.group_id))
        return await self._history(conv, agent, req)

    async def ListDirectMessages(
        self, req: service_pb2.ListDirectMessagesRequest, ctx: Ctx
    ) -> service_pb2.ListMessagesResponse:
        agent, _ = self._acting(req.agent_id)
        conv = self.net.conversation_of(agent, Target(to_agent=req.peer_id))
        return await self._history(conv, agent, req)

    # -- inbox and receipts -------------------------------------------------------------------

    async def GetInbox(self, req: service_pb2.GetInboxRequest, ctx: Ctx) -> service_pb2.GetInboxResponse:
        agent, _ = self._acting(req.agent_id)
        v = await self.inbox.view(agent, req.unread_only, req.kind, req.page_size, req.page_token)
        return service_pb2.GetInboxResponse(
            items=[encode.feed_item(i) for i in v.items],
            next_page_token=v.next_token,
            unread_total=v.unread_total,
            unread_by_kind={resources_pb2.InboxItemKind.Name(k): n for k, n in v.unread_by_kind.items()},
            conversations=[
                service_pb2.ConversationUnread(
                    conversation=c, unread_items=items, unread_messages=msgs, read_seq=read, last_seq=last
                )
                for c, items, msgs, read, last in v.conversations
            ],
        )

    async def MarkRead(self, req: service_pb2.MarkReadRequest, ctx: Ctx) -> service_pb2.MarkReadResponse:
        agent, _ = self._acting(req.agent_id)
        r = await self.inbox.mark_read(agent, [(c.conversation, c.seq) for c in req.up_to], list(req.item_seqs))
        return service_pb2.MarkReadResponse(
            markers=[resources_pb2.Cursor(conversation=c, seq=v) for c, v in r.markers.items()],
            unread_total=r.unread_total,
        )

    async def GetReceipts(self, req: service_pb2.GetReceiptsRequest, ctx: Ctx) -> service_pb2.GetReceiptsResponse:
        agent, _ = self._acting(req.agent_id)
        conv = conversation_for(agent, req.group_id, req.peer_id)
        msg, rows = await self.inbox.receipts(agent, conv, req.seq)
        return service_pb2.GetReceiptsResponse(
            message=encode.message(msg),
            receipts=[
                resources_pb2.Receipt(
                    agent_id=r.agent_id,
                    persisted=True,
                    delivered=r.delivered,
                    read=r.read,
                    delivered_seq=r.delivered_seq,
                    read_seq=r.read_seq,
                )
                for r in rows
            ],
        )

    # -- tasks --------------------------------------------------------------------------------

    async def CreateTask(self, req: service_pb2.CreateTaskRequest, ctx: Ctx) -> resources_pb2.Task:
        agent, _ = self._acting(req.agent_id)
        c = await self.tasks.create(convert.create_task(req, agent, current_peer.get()))
        return encode.task(c.task)

    async def ListTasks(self, req: service_pb2.ListTasksRequest, ctx: Ctx) -> service_pb2.ListTasksResponse:
        agent, _ = self._acting(req.agent_id)
        f = TaskFilter(req.assignee, req.creator, req.status, req.group_id)
        tasks, nxt = await self.tasks.list(agent, f, req.page_size, req.page_token)
        return service_pb2.ListTasksResponse(tasks=[encode.task(t) for t in tasks], next_page_token=nxt)

    async def GetTask(self, req: service_pb2.GetTaskRequest, ctx: Ctx) -> resources_pb2.Task:
        agent, _ = self._acting(req.agent_id)
        return encode.task(await self.tasks.get(agent, req.task_id))

    async def UpdateTask(self, req: service_pb2.UpdateTaskRequest, ctx: Ctx) -> resources_pb2.Task:
        agent, _ = self._acting(req.agent_id)
        c = await self.tasks.update(convert.update_task(req, agent, current_peer.get()))
        return encode.task(c.task)

    # -- devices ------------------------------------------------------------------------------

    async def GetDevice(self, req: service_pb2.GetDeviceRequest, ctx: Ctx) -> resources_pb2.Device:
        from ..domain import validate

        validate.check_id("device_id", req.device_id)
        if req.fingerprint:
            cert = await self.net.db.read(ops.device_cert, req.fingerprint.lower())
            if cert is None or cert.device_id != req.device_id:
                raise NotFound(
                    f"device {req.device_id!r} has no certificate {req.fingerprint[:16]!r}", reason="CERT_NOT_FOUND"
                )
        else:
            certs = await self.net.db.read(ops.device_certs, req.device_id)
            if not certs:
                raise NotFound(f"device {req.device_id!r} is not known", reason="DEVICE_NOT_FOUND")
            cert = certs[-1]
        return resources_pb2.Device(
            id=cert.device_id,
            fingerprint=cert.fingerprint,
            certificate_pem=cert.pem,
            not_after=encode.ts(cert.not_after),
            revoked=cert.revoked_at is not None,
        )


def conversation_for(agent: str, group_id: str, peer_id: str) -> str:
    if bool(group_id) == bool(peer_id):
        raise InvalidArgument("give exactly one of group_id or peer_id", reason="NO_TARGET")
    return group_conv(group_id) if group_id else dm_conv(agent, peer_id)

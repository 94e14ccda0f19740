"""`Client`: the typed async façade over the unary RPCs and the live Session stream."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import pathlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from agentnet.v1 import events_pb2, resources_pb2, service_pb2, service_pb2_grpc

from .cache import Cache
from .device import DEFAULT_SERVER, Device, load_device, secure_channel
from .errors import AgentnetError, explain_transport, permanent_transport
from .session import AgentProfile, Backoff, SessionClient, State, make_send
from .signing import Signer, Verification, Verifier, acceptable
from .targets import Targets

T = TypeVar("T")
log = logging.getLogger("agentnet.client")

IDEMPOTENT_RETRIES = 3


def settings_from_env(server: str | None, device_dir: str | os.PathLike[str] | None) -> tuple[str, pathlib.Path]:
    server = server or os.environ.get("AGENTNET_SERVER") or DEFAULT_SERVER
    folder = device_dir or os.environ.get("AGENTNET_DEVICE_DIR")
    if not folder:
        raise AgentnetError(
            "FAILED_PRECONDITION",
            "no device folder: pass --device-dir or set AGENTNET_DEVICE_DIR to a folder with cert.pem, key.pem "
            "and ca.pem (from `make certs DEVICE=<id>`)",
            "NO_DEVICE_DIR",
        )
    return server, pathlib.Path(folder)


class Client:
    """Connects one device (and optionally one agent's live session) to an agentnet server.

    Every received message is checked against its signer's certificate (which must chain to the
    network CA). A message that does not verify, that is unsigned or whose signer is unknown is
    never handed over: the application gets an `error` event with reason MESSAGE_REJECTED instead,
    `on_rejected(message, verification)` is called and `rejected` counts it. `accept_unsigned=True`
    lets unsigned messages through (flagged) for legacy networks whose senders do not sign;
    `verify=False` turns the check off entirely.

    >>> async with Client(agent=AgentProfile("xiaoxing", "小邢")) as c:
    ...     await c.wait_live()
    ...     await c.send("hello @老邢", group_id="dev-team")
    ...     async for event in c.events(): ...
    """

    def __init__(
        self,
        server: str | None = None,
        device_dir: str | os.PathLike[str] | None = None,
        agent: AgentProfile | str | None = None,
        *,
        cache: bool | str | os.PathLike[str] = True,
        server_name: str | None = None,
        backoff: Backoff | None = None,
        event_queue: int = 10_000,
        sign: bool = True,
        verify: bool = True,
        accept_unsigned: bool = False,
        on_rejected: Callable[[resources_pb2.Message, Verification], None] | None = None,
        connect_timeout: float = 10.0,
        rebalance: float = 60.0,
    ) -> None:
        self.server, folder = settings_from_env(server, device_dir)
        self._rebalance = rebalance
        self.device: Device = load_device(folder)
        self.device.check_valid()
        self.server_name = server_name
        self.agent = AgentProfile(agent) if isinstance(agent, str) else agent
        self._cache_opt = cache
        self._backoff = backoff
        self._event_queue = event_queue
        self._sign = sign
        self._verify = verify
        self._accept_unsigned = accept_unsigned
        self._on_rejected = on_rejected
        self._history_rejected = 0
        if not math.isfinite(connect_timeout) or connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
        self._connect_timeout = connect_timeout
        self.verifier = Verifier(self.device.ca_pem, self.get_device) if verify else None
        self.cache: Cache | None = None
        self.session: SessionClient | None = None
        self._channel: grpc.aio.Channel | None = None
        self.stub: service_pb2_grpc.AgentNetStub | None = None
        self._connected = False

    # -- life cycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def cache_path(self) -> pathlib.Path | None:
        if self.agent is None or self._cache_opt is False:
            return None
        if self._cache_opt is True:
            folder = os.environ.get("AGENTNET_CACHE_DIR") or self.device.folder
            return pathlib.Path(folder) / f"cache-{self.device.id}-{self.agent.id}.sqlite"
        return pathlib.Path(self._cache_opt)

    async def open(self, connect: bool = True) -> None:
        """Open the unary channel and, when an agent is set, start its live session.

        Raises CacheError (before any connection) when the agent's cache file cannot be used."""
        path = self.cache_path()
        if path is not None:
            self.cache = Cache(path)
        try:
            self._new_session(connect)
        except BaseException:
            if self.cache is not None:
                self.cache.close()
                self.cache = None
            raise
        # `server` may list several addresses (targets.py): unary calls move down the list too.
        self._targets = Targets(self.server, self.server_name, seed=self.device.id)
        self._dial()
        if self.session is not None:
            self.session.start()

    def _new_session(self, connect: bool) -> None:
        """The agent's live session (not started): it reads its cursors and outbox from the cache."""
        if self.agent is not None and connect:
            self.session = SessionClient(
                self.server,
                self.device,
                self.agent,
                self.cache,
                server_name=self.server_name,
                backoff=self._backoff,
                event_queue=self._event_queue,
                signer=Signer(self.device).sign_send if self._sign else None,
                task_signer=Signer(self.device).sign_task_update if self._sign else None,
                verifier=self.verifier,
                accept_unsigned=self._accept_unsigned,
                on_rejected=self._on_rejected,
                connect_timeout=self._connect_timeout,
                rebalance=self._rebalance,
            )

    def _dial(self) -> None:
        self._target = self._targets.pick()
        self._channel = secure_channel(self._target.addr, self.device, self._target.name)
        self.stub = service_pb2_grpc.AgentNetStub(self._channel)

    async def _next_address(self) -> None:
        """A unary call found its address unavailable: the next one in the list."""
        if not self._targets.several:
            return
        self._targets.failed(self._target)
        old = self._channel
        self._dial()
        if old is not None:
            await old.close(grace=None)

    def _rebind(self, fn: Any) -> Any:
        """The same RPC on the current channel (after moving to another address)."""
        method = getattr(fn, "_method", None)  # b"/agentnet.v1.AgentNet/Name" on grpc.aio callables
        if isinstance(method, bytes):
            return getattr(self._stub(), method.decode().rsplit("/", 1)[-1], fn)
        return fn

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self._channel is not None:
            await self._channel.close(grace=None)
        if self.cache is not None:
            self.cache.close()

    # -- live session -------------------------------------------------------------------------

    def _live(self) -> SessionClient:
        if self.session is None:
            raise AgentnetError("FAILED_PRECONDITION", "this client has no agent session", "NO_SESSION")
        return self.session

    @property
    def state(self) -> State:
        return self.session.state if self.session is not None else State.IDLE

    async def wait_live(self, timeout: float | None = 30.0) -> None:
        """Wait until registered and caught up; raises the session's error if it failed."""
        s = self._live()
        state = await s.wait_for(State.LIVE, timeout=timeout)
        if state != State.LIVE:
            raise s.error or AgentnetError("UNAVAILABLE", f"session ended in state {state.value}", "SESSION_ENDED")

    def events(self) -> AsyncIterator[events_pb2.ServerEvent]:
        return self._live().events()

    async def next_event(self, timeout: float | None = None) -> events_pb2.ServerEvent:
        return await self._live().next_event(timeout)

    async def send(
        self,
        content: str = "",
        *,
        group_id: str = "",
        to_agent: str = "",
        payload: dict[str, Any] | None = None,
        mentions: list[str] | None = None,
        client_msg_id: str = "",
        reply_to: int = 0,
        auto_hops: int = 0,
    ) -> events_pb2.MessageAck:
        """Send over the live stream (outbox: survives disconnects; idempotent). `reply_to` is the
        seq of the message answered in the same conversation; `auto_hops` marks an automatic reply."""
        return await self._live().send(
            content,
            group_id=group_id,
            to_agent=to_agent,
            payload=payload,
            mentions=mentions,
            client_msg_id=client_msg_id,
            reply_to=reply_to,
            auto_hops=auto_hops,
        )

    async def dm(
        self,
        to_agent: str,
        content: str,
        *,
        payload: dict[str, Any] | None = None,
        client_msg_id: str = "",
        reply_to: int = 0,
        auto_hops: int = 0,
    ) -> events_pb2.MessageAck:
        """Send a direct message over the live stream (see send)."""
        return await self.send(
            content,
            to_agent=to_agent,
            payload=payload,
            client_msg_id=client_msg_id,
            reply_to=reply_to,
            auto_hops=auto_hops,
        )

    async def join(self, group_id: str, create: bool = False, title: str = "") -> events_pb2.GroupJoined:
        return await self._live().join(group_id, create, title)

    async def leave(self, group_id: str) -> None:
        await self._live().leave(group_id)

    # -- unary RPCs ---------------------------------------------------------------------------

    async def _ready(self) -> None:
        """Wait up to connect_timeout for the channel: a server that accepts TCP but never completes the
        TLS handshake is given up on then, not at the call's 30 s deadline. A connection that fails
        outright is left to the call, which reports why."""
        if self._connected or self._channel is None:
            return
        channel = self._channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        state = channel.get_state(try_to_connect=True)
        idle = (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING)
        while state in idle:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AgentnetError(
                    "UNAVAILABLE",
                    f"no answer from {self.server} within {self._connect_timeout:g} s: it accepts connections but "
                    "does not complete the TLS handshake (a firewall, a proxy, or not the agentnet gRPC port?)",
                    "CONNECT_TIMEOUT",
                )
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                continue
            state = channel.get_state()
        self._connected = state == grpc.ChannelConnectivity.READY

    def _explained(self, err: AgentnetError) -> AgentnetError:
        """A connection failure in words with a fix; the transport's own text stays in metadata["detail"]."""
        if err.status != "UNAVAILABLE":
            return err
        hint = explain_transport(err.message, self.server, self.server_name)
        if hint is None:
            return err
        return AgentnetError("UNAVAILABLE", hint, "CONNECT_FAILED", {"detail": err.message})

    async def _rpc(self, fn: Callable[..., Awaitable[T]], req: Any, *, idempotent: bool, timeout: float = 30.0) -> T:
        assert self.stub is not None, "call open() first"
        attempt = 0
        while True:
            try:
                await self._ready()
                return await fn(req, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                err = AgentnetError.from_rpc(exc)
                attempt += 1
                retry = err.status == "UNAVAILABLE" and not permanent_transport(err.message)
                if retry:
                    await self._next_address()
                    fn = self._rebind(fn)
                if idempotent and retry and attempt < IDEMPOTENT_RETRIES:
                    await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
                    continue
                raise self._explained(err) from None

    def _stub(self) -> service_pb2_grpc.AgentNetStub:
        assert self.stub is not None, "call open() first"
        return self.stub

    async def register_agent(self, agent: AgentProfile) -> service_pb2.RegisterAgentResponse:
        req = service_pb2.RegisterAgentRequest(
            agent=resources_pb2.Agent(
                id=agent.id, display_name=agent.display_name, role=agent.role, description=agent.description
            )
        )
        return await self._rpc(self._stub().RegisterAgent, req, idempotent=True)

    async def _all_pages(self, method: Any, request: Any, field: str, limit: int = 1_000_000) -> list[Any]:
        """Follow next_page_token until the list ends (or `limit` items)."""
        out: list[Any] = []
        while len(out) < limit:
            request.page_size = min(1000, limit - len(out))
            resp = await self._rpc(method, request, idempotent=True)
            out.extend(getattr(resp, field))
            request.page_token = resp.next_page_token
            if not request.page_token:
                break
        return out

    async def list_agents(self, online_only: bool = False) -> list[resources_pb2.Agent]:
        return await self._all_pages(
            self._stub().ListAgents, service_pb2.ListAgentsRequest(online_only=online_only), "agents"
        )

    async def get_agent(self, agent_id: str) -> resources_pb2.Agent:
        return await self._rpc(self._stub().GetAgent, service_pb2.GetAgentRequest(agent_id=agent_id), idempotent=True)

    async def list_groups(self, member: str = "") -> list[resources_pb2.Group]:
        return await self._all_pages(self._stub().ListGroups, service_pb2.ListGroupsRequest(member=member), "groups")

    async def create_group(
        self,
        group_id: str,
        title: str = "",
        description: str = "",
        agent_id: str = "",
        *,
        join_rule: int = 0,
        history_visibility: int = 0,
    ) -> resources_pb2.Group:
        """Create a group; by default public with shared history (resources_pb2.GROUP_JOIN_RULE_INVITE
        makes it invite-only, HISTORY_VISIBILITY_JOINED hides what was sent before a member joined)."""
        return await self._rpc(
            self._stub().CreateGroup,
            service_pb2.CreateGroupRequest(
                group_id=group_id,
                title=title,
                description=description,
                agent_id=agent_id,
                join_rule=_enum(join_rule),
                history_visibility=_enum(history_visibility),
            ),
            idempotent=False,
        )

    async def invite(self, group_id: str, invitee: str, agent_id: str = "") -> service_pb2.InviteToGroupResponse:
        """Invite an agent into a group this client's agent is a member of."""
        return await self._rpc(
            self._stub().InviteToGroup,
            service_pb2.InviteToGroupRequest(group_id=group_id, agent_id=agent_id, invitee=invitee),
            idempotent=True,
        )

    async def join_group(
        self, group_id: str, agent_id: str = "", create: bool = False, title: str = ""
    ) -> service_pb2.JoinGroupResponse:
        return await self._rpc(
            self._stub().JoinGroup,
            service_pb2.JoinGroupRequest(group_id=group_id, agent_id=agent_id, create_if_missing=create, title=title),
            idempotent=True,
        )

    async def leave_group(self, group_id: str, agent_id: str) -> service_pb2.LeaveGroupResponse:
        return await self._rpc(
            self._stub().LeaveGroup,
            service_pb2.LeaveGroupRequest(group_id=group_id, agent_id=agent_id),
            idempotent=True,
        )

    async def list_members(self, group_id: str) -> list[resources_pb2.GroupMember]:
        return await self._all_pages(
            self._stub().ListGroupMembers, service_pb2.ListGroupMembersRequest(group_id=group_id), "members"
        )

    async def post(
        self,
        content: str,
        *,
        group_id: str = "",
        to_agent: str = "",
        agent_id: str = "",
        payload: dict[str, Any] | None = None,
        mentions: list[str] | None = None,
        client_msg_id: str = "",
        reply_to: int = 0,
        auto_hops: int = 0,
    ) -> service_pb2.SendMessageResponse:
        """Send with a unary RPC (no live session needed); retried safely with one client_msg_id."""
        sm = make_send(
            content,
            group_id=group_id,
            to_agent=to_agent,
            payload=payload,
            mentions=mentions,
            client_msg_id=client_msg_id,
            reply_to=reply_to,
            auto_hops=auto_hops,
        )
        if self._sign:
            Signer(self.device).sign_send(sm, await self.acting_agent(agent_id))
        common: dict[str, Any] = dict(
            agent_id=agent_id,
            client_msg_id=sm.client_msg_id,
            content=content,
            signature=sm.signature,
            reply_to=reply_to,
            auto_hops=auto_hops,
        )
        for name in ("payload", "sign_time"):
            if sm.HasField(name):
                common[name] = getattr(sm, name)
        if group_id:
            req: Any = service_pb2.SendGroupMessageRequest(group_id=group_id, mentions=sm.mentions, **common)
            return await self._rpc(self._stub().SendGroupMessage, req, idempotent=True)
        req = service_pb2.SendDirectMessageRequest(peer_id=to_agent, **common)
        return await self._rpc(self._stub().SendDirectMessage, req, idempotent=True)

    async def acting_agent(self, agent_id: str = "") -> str:
        """The agent unary calls act as: agent_id, this client's agent, or the device's only agent."""
        if agent_id:
            return agent_id
        if self.agent is not None:
            return self.agent.id
        mine = [a.id for a in await self.list_agents() if self.device.id in a.devices]
        if len(mine) != 1:
            raise AgentnetError(
                "FAILED_PRECONDITION",
                f"device {self.device.id!r} acts as {len(mine)} agents ({', '.join(mine) or 'none'}); give --agent",
                "AGENT_AMBIGUOUS" if mine else "NO_AGENT",
            )
        return mine[0]

    async def history(
        self,
        *,
        group_id: str = "",
        peer_id: str = "",
        agent_id: str = "",
        after_seq: int = 0,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[resources_pb2.Message]:
        """Messages of a group or a direct-message pair (paginates until `limit`).

        Messages whose signature does not verify are left out and reported like live ones
        (`on_rejected`, `rejected`); `raw_history` returns them unchecked."""
        messages = await self.raw_history(
            group_id=group_id,
            peer_id=peer_id,
            agent_id=agent_id,
            after_seq=after_seq,
            newest_first=newest_first,
            limit=limit,
        )
        if not self._verify:
            return messages
        kept = []
        for m in messages:
            status = await self.verify(m)
            if acceptable(status, self._accept_unsigned):
                kept.append(m)
                continue
            self._history_rejected += 1
            log.warning(
                "history: rejected message %s #%d from %s: signature %s", m.conversation, m.seq, m.sender, status.value
            )
            if self._on_rejected is not None:
                self._on_rejected(m, status)
        return kept

    async def raw_history(
        self,
        *,
        group_id: str = "",
        peer_id: str = "",
        agent_id: str = "",
        after_seq: int = 0,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[resources_pb2.Message]:
        """Messages as the server stored them, signatures unchecked (for audits and tools)."""
        common: dict[str, Any] = dict(agent_id=agent_id, after_seq=after_seq, newest_first=newest_first)
        if group_id:
            req: Any = service_pb2.ListGroupMessagesRequest(group_id=group_id, **common)
            return await self._all_pages(self._stub().ListGroupMessages, req, "messages", limit)
        req = service_pb2.ListDirectMessagesRequest(peer_id=peer_id, **common)
        return await self._all_pages(self._stub().ListDirectMessages, req, "messages", limit)

    @property
    def rejected(self) -> int:
        """Messages refused so far because their signature did not verify (live and history)."""
        live = self.session.rejected if self.session is not None else 0
        return live + self._history_rejected

    # -- inbox, receipts and tasks -------------------------------------------------------------

    async def inbox(
        self, agent_id: str = "", unread_only: bool = False, kind: int = 0, limit: int = 50
    ) -> service_pb2.GetInboxResponse:
        """Inbox items newest first (up to `limit`) with unread counts."""
        agent = await self.acting_agent(agent_id)
        first: service_pb2.GetInboxResponse | None = None
        token = ""
        while True:
            resp = await self._rpc(
                self._stub().GetInbox,
                service_pb2.GetInboxRequest(
                    agent_id=agent,
                    unread_only=unread_only,
                    kind=_enum(kind),
                    page_size=min(500, limit),
                    page_token=token,
                ),
                idempotent=True,
            )
            if first is None:
                first = resp
            else:
                first.items.extend(resp.items)
            token = resp.next_page_token
            if not token or len(first.items) >= limit:
                del first.items[limit:]
                first.next_page_token = token
                return first

    async def mark_read(
        self, up_to: dict[str, int] | None = None, item_seqs: list[int] | None = None, agent_id: str = ""
    ) -> service_pb2.MarkReadResponse:
        """Mark everything up to a seq per conversation, and/or single inbox items, as read."""
        agent = await self.acting_agent(agent_id)
        return await self._rpc(
            self._stub().MarkRead,
            service_pb2.MarkReadRequest(
                agent_id=agent,
                up_to=[resources_pb2.Cursor(conversation=c, seq=s) for c, s in (up_to or {}).items()],
                item_seqs=item_seqs or [],
            ),
            idempotent=True,
        )

    async def receipts(
        self, seq: int, *, group_id: str = "", peer_id: str = "", agent_id: str = ""
    ) -> service_pb2.GetReceiptsResponse:
        return await self._rpc(
            self._stub().GetReceipts,
            service_pb2.GetReceiptsRequest(group_id=group_id, peer_id=peer_id, seq=seq, agent_id=agent_id),
            idempotent=True,
        )

    async def create_task(
        self,
        title: str,
        assignee: str,
        *,
        description: str = "",
        group_id: str = "",
        priority: int = 0,
        due_time: Any = None,
        agent_id: str = "",
        client_task_id: str = "",
    ) -> resources_pb2.Task:
        task = resources_pb2.Task(
            title=title, assignee=assignee, description=description, group_id=group_id, priority=_enum(priority)
        )
        if due_time is not None:
            task.due_time.FromDatetime(due_time)
        cid = client_task_id or uuid.uuid4().hex
        req = service_pb2.CreateTaskRequest(task=task, agent_id=agent_id, client_task_id=cid)
        if self._sign:
            req.signature, sign_time = Signer(self.device).sign_task_create(
                await self.acting_agent(agent_id), cid, task
            )
            req.sign_time.FromMicroseconds(sign_time)
        return await self._rpc(self._stub().CreateTask, req, idempotent=True)

    async def list_tasks(
        self,
        *,
        assignee: str = "",
        creator: str = "",
        status: int = 0,
        group_id: str = "",
        agent_id: str = "",
        limit: int = 1000,
    ) -> list[resources_pb2.Task]:
        request = service_pb2.ListTasksRequest(
            assignee=assignee, creator=creator, status=_enum(status), group_id=group_id, agent_id=agent_id
        )
        return await self._all_pages(self._stub().ListTasks, request, "tasks", limit)

    async def get_task(self, task_id: str, agent_id: str = "") -> resources_pb2.Task:
        return await self._rpc(
            self._stub().GetTask, service_pb2.GetTaskRequest(task_id=task_id, agent_id=agent_id), idempotent=True
        )

    async def update_task(
        self,
        task_id: str,
        *,
        status: int = 0,
        assignee: str = "",
        note: str = "",
        result: str = "",
        expected_version: int = 0,
        agent_id: str = "",
    ) -> resources_pb2.Task:
        """Change a task (status names: resources_pb2.TaskStatus.Value("TASK_STATUS_DONE"))."""
        req = service_pb2.UpdateTaskRequest(
            task_id=task_id,
            status=_enum(status),
            assignee=assignee,
            note=note,
            result=result,
            expected_version=expected_version,
            agent_id=agent_id,
        )
        if self._sign:
            actor = await self.acting_agent(agent_id)
            req.signature, sign_time = Signer(self.device).sign_task_update(
                actor, task_id, status, assignee, note, result, expected_version
            )
            req.sign_time.FromMicroseconds(sign_time)
        return await self._rpc(self._stub().UpdateTask, req, idempotent=False)

    async def verify(self, message: resources_pb2.Message) -> Verification:
        """Check a message's signature against its signer's certificate (fetched once, must chain to the CA)."""
        if self.verifier is None:
            self.verifier = Verifier(self.device.ca_pem, self.get_device)
        return await self.verifier.check(message)

    def verification(self, message: resources_pb2.Message) -> Verification | None:
        """The check made when the live session received this message (None if not received live)."""
        if self.session is None:
            return None
        return self.session.verification.get((message.conversation, message.seq))

    async def get_device(self, device_id: str, fingerprint: str = "") -> resources_pb2.Device:
        return await self._rpc(
            self._stub().GetDevice,
            service_pb2.GetDeviceRequest(device_id=device_id, fingerprint=fingerprint),
            idempotent=True,
        )


def _enum(value: int) -> Any:
    """Enum fields take plain ints at run time; the generated stubs want the enum type."""
    return value

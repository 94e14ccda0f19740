"""Records -> protobuf: the ServerEvents and resources every adapter sends (gRPC, REST, SSE).

Pure protobuf, no transport. Sequenced envelopes are serialized once and the bytes shared by
every recipient (`encode`); the agent list is assembled in serialized form from cached
per-agent entries, and its message form is built only for a format that needs it
(`AgentListEvent`)."""

from __future__ import annotations

import json
from typing import Any, cast

from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import code_pb2

from agentnet.v1 import events_pb2, resources_pb2

from ..errors import AgentnetError
from ..records import (
    FEED,
    MESSAGE,
    AgentRec,
    Envelope,
    FeedKind,
    FeedRec,
    GroupRec,
    MemberRec,
    MessageRec,
    TaskChangeRec,
    TaskRec,
)
from .hub import Event, PresenceChange


def ts(us: int | None) -> timestamp_pb2.Timestamp | None:
    if not us:
        return None
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(us)
    return t


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """One length-delimited field (a message, bytes or string) on the protobuf wire. Repeated
    message fields are such entries back to back, so a list can be built from cached parts."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


AGENT_LIST_FIELD = events_pb2.ServerEvent.DESCRIPTOR.fields_by_name["agent_list"].number
AGENTS_FIELD = events_pb2.AgentList.DESCRIPTOR.fields_by_name["agents"].number


def agent_list_event(entries: list[bytes]) -> bytes:
    """A serialized ServerEvent{agent_list} from entries made by agent_entry."""
    return length_delimited(AGENT_LIST_FIELD, b"".join(entries))


def agent_entry(a: AgentRec, online: bool) -> bytes:
    """One `agents` entry of an AgentList, serialized."""
    return length_delimited(AGENTS_FIELD, agent(a, online).SerializeToString())


class AgentListEvent(Event):
    """ServerEvent{agent_list}, serialized from per-agent entries made by agent_entry (cached by
    the roster, so a reconnect storm does not serialize the same agents thousands of times). The
    message form, for a format that renders from messages, is built from the same records only
    when asked for, never parsed back from the bytes."""

    __slots__ = ("entries",)

    def __init__(self, entries: list[tuple[AgentRec, bool, bytes]]) -> None:
        """`entries`: (record, online, agent_entry(record, online)) of each agent, in order."""
        super().__init__(data=agent_list_event([e[2] for e in entries]))
        self.entries = entries

    def build(self) -> events_pb2.ServerEvent:
        return events_pb2.ServerEvent(
            agent_list=events_pb2.AgentList(agents=[agent(a, online) for a, online, _ in self.entries])
        )


def agent(a: AgentRec, online: bool) -> resources_pb2.Agent:
    return resources_pb2.Agent(
        id=a.id,
        display_name=a.display_name,
        role=a.role,
        description=a.description,
        owner_device=a.owner_device,
        devices=a.devices,
        online=online,
        last_seen_time=ts(a.last_seen),
        create_time=ts(a.create_time),
    )


def group(g: GroupRec) -> resources_pb2.Group:
    return resources_pb2.Group(
        id=g.id,
        title=g.title,
        description=g.description,
        creator=g.creator,
        member_count=g.member_count,
        last_seq=g.last_seq,
        create_time=ts(g.create_time),
        conversation="group:" + g.id,
        join_rule=JOIN_RULES.get(g.join_rule, 0),  # type: ignore[arg-type]
        history_visibility=HISTORY.get(g.history, 0),  # type: ignore[arg-type]
    )


JOIN_RULES = {"public": resources_pb2.GROUP_JOIN_RULE_PUBLIC, "invite": resources_pb2.GROUP_JOIN_RULE_INVITE}
HISTORY = {"shared": resources_pb2.HISTORY_VISIBILITY_SHARED, "joined": resources_pb2.HISTORY_VISIBILITY_JOINED}


def member(m: MemberRec, display_name: str, online: bool) -> resources_pb2.GroupMember:
    return resources_pb2.GroupMember(
        agent_id=m.agent_id,
        display_name=display_name,
        join_time=ts(m.join_time),
        joined_seq=m.joined_seq,
        online=online,
    )


def message(m: MessageRec) -> resources_pb2.Message:
    pb = resources_pb2.Message(
        conversation=m.conversation,
        seq=m.seq,
        sender=m.sender,
        sender_device=m.sender_device,
        client_msg_id=m.client_msg_id,
        content=m.content,
        create_time=ts(m.create_time),
        group_id=m.group_id,
        recipient=m.recipient,
        mentions=m.mentions,
        signature=m.signature,
        signer_fingerprint=m.signer_fp,
        sign_time=ts(m.sign_time),
        reply_to=m.reply_to,
        auto_hops=m.auto_hops,
    )
    if m.payload_json is not None:
        pb.payload.update(json.loads(m.payload_json))
    return pb


def feed_item(f: FeedRec) -> resources_pb2.InboxItem:
    return resources_pb2.InboxItem(
        seq=f.seq,
        kind=cast(Any, int(f.kind)),
        conversation=f.conversation,
        message_seq=f.message_seq,
        task_id=f.task_id,
        task_version=f.task_version,
        actor=f.actor,
        excerpt=f.excerpt,
        unread=not f.read,
        create_time=ts(f.create_time),
        in_inbox=f.in_inbox,
    )


def task_change(c: TaskChangeRec) -> resources_pb2.TaskChange:
    return resources_pb2.TaskChange(
        version=c.version,
        actor=c.actor,
        from_status=cast(Any, c.from_status),
        to_status=cast(Any, c.to_status),
        from_assignee=c.from_assignee,
        to_assignee=c.to_assignee,
        note=c.note,
        time=ts(c.time),
    )


def task(t: TaskRec) -> resources_pb2.Task:
    return resources_pb2.Task(
        id=t.id,
        title=t.title,
        description=t.description,
        creator=t.creator,
        assignee=t.assignee,
        group_id=t.group_id,
        priority=cast(Any, t.priority),
        due_time=ts(t.due_time),
        status=cast(Any, int(t.status)),
        version=t.version,
        result=t.result,
        create_time=ts(t.create_time),
        update_time=ts(t.update_time),
        history=[task_change(c) for c in t.history],
    )


def feed_event(item: FeedRec, ref: Any) -> events_pb2.ServerEvent:
    pb_item = feed_item(item)
    if item.kind == FeedKind.MENTION:
        ev = events_pb2.MentionEvent(item=pb_item)
        if isinstance(ref, MessageRec):
            ev.message.CopyFrom(message(ref))
        return events_pb2.ServerEvent(mention=ev)
    if item.kind == FeedKind.DIRECT_MESSAGE:
        return events_pb2.ServerEvent(direct_message=events_pb2.InboxEvent(item=pb_item))
    tev = events_pb2.TaskEvent(item=pb_item)
    if ref is not None:
        t, change = ref
        tev.task.CopyFrom(task(t))
        if change is not None:
            tev.change.CopyFrom(task_change(change))
    if item.kind == FeedKind.TASK_ASSIGNED:
        return events_pb2.ServerEvent(task_assigned=tev)
    return events_pb2.ServerEvent(task_updated=tev)


def envelope_event(env: Envelope) -> events_pb2.ServerEvent:
    """The ServerEvent of an envelope (a message, or an inbox item with what it refers to)."""
    if env.kind == MESSAGE:
        return events_pb2.ServerEvent(message=message(env.rec))
    if env.kind == FEED:
        item, ref = env.rec
        return feed_event(item, ref)
    raise ValueError(f"unknown envelope kind {env.kind!r}")


def encode(env: Envelope) -> bytes:
    """Serialized ServerEvent for an envelope; computed once and shared by every recipient."""
    data = env.data
    if data is None:
        data = env.data = envelope_event(env).SerializeToString()
    return data


def presence(changes: list[PresenceChange], names: dict[str, str], snapshot: bool = False) -> Event:
    """A presence update (or snapshot) as one Event, to be shared by every session it goes to."""
    return Event(
        events_pb2.ServerEvent(
            presence=events_pb2.PresenceUpdate(
                agents=[
                    events_pb2.AgentPresence(
                        agent_id=c.agent_id,
                        display_name=names.get(c.agent_id, ""),
                        online=c.online,
                        last_seen_time=ts(c.last_seen),
                    )
                    for c in changes
                ],
                snapshot=snapshot,
            )
        )
    )


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


_CODES: dict[str, int] = dict(code_pb2.Code.items())


def error_event(exc: AgentnetError, request_id: str = "", fatal: bool = False) -> events_pb2.ServerEvent:
    """An Error event for the stream; `code` is the google.rpc.Code number of the status name."""
    code = _CODES.get(exc.status, code_pb2.INTERNAL)
    err = events_pb2.Error(
        code=code,
        status=exc.status,
        message=exc.message,
        reason=exc.reason,
        fatal=fatal,
        metadata=exc.metadata,
    )
    if exc.retry_after is not None:
        err.retry_after.CopyFrom(duration(exc.retry_after))
    return events_pb2.ServerEvent(request_id=request_id, error=err)

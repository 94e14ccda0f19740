import datetime

from agentnet.v1 import resources_pb2 as _resources_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientEvent(_message.Message):
    __slots__ = ("request_id", "register", "join_group", "leave_group", "message", "heartbeat", "ack", "mark_read", "create_task", "update_task")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    JOIN_GROUP_FIELD_NUMBER: _ClassVar[int]
    LEAVE_GROUP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    MARK_READ_FIELD_NUMBER: _ClassVar[int]
    CREATE_TASK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TASK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    register: Register
    join_group: JoinGroup
    leave_group: LeaveGroup
    message: SendMessage
    heartbeat: Heartbeat
    ack: Ack
    mark_read: MarkRead
    create_task: CreateTaskEvent
    update_task: UpdateTaskEvent
    def __init__(self, request_id: _Optional[str] = ..., register: _Optional[_Union[Register, _Mapping]] = ..., join_group: _Optional[_Union[JoinGroup, _Mapping]] = ..., leave_group: _Optional[_Union[LeaveGroup, _Mapping]] = ..., message: _Optional[_Union[SendMessage, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., mark_read: _Optional[_Union[MarkRead, _Mapping]] = ..., create_task: _Optional[_Union[CreateTaskEvent, _Mapping]] = ..., update_task: _Optional[_Union[UpdateTaskEvent, _Mapping]] = ...) -> None: ...

class ServerEvent(_message.Message):
    __slots__ = ("request_id", "registered", "agent_list", "presence", "message", "message_ack", "mention", "task_assigned", "task_updated", "caught_up", "heartbeat_ack", "error", "group_joined", "group_left", "read_markers", "direct_message", "history_gap", "task_result")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    AGENT_LIST_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ACK_FIELD_NUMBER: _ClassVar[int]
    MENTION_FIELD_NUMBER: _ClassVar[int]
    TASK_ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    TASK_UPDATED_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GROUP_JOINED_FIELD_NUMBER: _ClassVar[int]
    GROUP_LEFT_FIELD_NUMBER: _ClassVar[int]
    READ_MARKERS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_GAP_FIELD_NUMBER: _ClassVar[int]
    TASK_RESULT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    registered: Registered
    agent_list: AgentList
    presence: PresenceUpdate
    message: _resources_pb2.Message
    message_ack: MessageAck
    mention: MentionEvent
    task_assigned: TaskEvent
    task_updated: TaskEvent
    caught_up: CaughtUp
    heartbeat_ack: HeartbeatAck
    error: Error
    group_joined: GroupJoined
    group_left: GroupLeft
    read_markers: ReadMarkers
    direct_message: InboxEvent
    history_gap: HistoryGap
    task_result: TaskResult
    def __init__(self, request_id: _Optional[str] = ..., registered: _Optional[_Union[Registered, _Mapping]] = ..., agent_list: _Optional[_Union[AgentList, _Mapping]] = ..., presence: _Optional[_Union[PresenceUpdate, _Mapping]] = ..., message: _Optional[_Union[_resources_pb2.Message, _Mapping]] = ..., message_ack: _Optional[_Union[MessageAck, _Mapping]] = ..., mention: _Optional[_Union[MentionEvent, _Mapping]] = ..., task_assigned: _Optional[_Union[TaskEvent, _Mapping]] = ..., task_updated: _Optional[_Union[TaskEvent, _Mapping]] = ..., caught_up: _Optional[_Union[CaughtUp, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., group_joined: _Optional[_Union[GroupJoined, _Mapping]] = ..., group_left: _Optional[_Union[GroupLeft, _Mapping]] = ..., read_markers: _Optional[_Union[ReadMarkers, _Mapping]] = ..., direct_message: _Optional[_Union[InboxEvent, _Mapping]] = ..., history_gap: _Optional[_Union[HistoryGap, _Mapping]] = ..., task_result: _Optional[_Union[TaskResult, _Mapping]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("agent", "cursors")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    agent: _resources_pb2.Agent
    cursors: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Cursor]
    def __init__(self, agent: _Optional[_Union[_resources_pb2.Agent, _Mapping]] = ..., cursors: _Optional[_Iterable[_Union[_resources_pb2.Cursor, _Mapping]]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("agent", "device_id", "session_id", "heartbeat_interval", "server_time", "limits", "created")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    agent: _resources_pb2.Agent
    device_id: str
    session_id: str
    heartbeat_interval: _duration_pb2.Duration
    server_time: _timestamp_pb2.Timestamp
    limits: Limits
    created: bool
    def __init__(self, agent: _Optional[_Union[_resources_pb2.Agent, _Mapping]] = ..., device_id: _Optional[str] = ..., session_id: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_content_bytes", "max_payload_bytes", "session_queue", "sends_per_second", "send_burst")
    MAX_CONTENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    SESSION_QUEUE_FIELD_NUMBER: _ClassVar[int]
    SENDS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SEND_BURST_FIELD_NUMBER: _ClassVar[int]
    max_content_bytes: int
    max_payload_bytes: int
    session_queue: int
    sends_per_second: float
    send_burst: int
    def __init__(self, max_content_bytes: _Optional[int] = ..., max_payload_bytes: _Optional[int] = ..., session_queue: _Optional[int] = ..., sends_per_second: _Optional[float] = ..., send_burst: _Optional[int] = ...) -> None: ...

class AgentList(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Agent]
    def __init__(self, agents: _Optional[_Iterable[_Union[_resources_pb2.Agent, _Mapping]]] = ...) -> None: ...

class AgentPresence(_message.Message):
    __slots__ = ("agent_id", "display_name", "online", "last_seen_time")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    display_name: str
    online: bool
    last_seen_time: _timestamp_pb2.Timestamp
    def __init__(self, agent_id: _Optional[str] = ..., display_name: _Optional[str] = ..., online: _Optional[bool] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PresenceUpdate(_message.Message):
    __slots__ = ("agents", "snapshot")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentPresence]
    snapshot: bool
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentPresence, _Mapping]]] = ..., snapshot: _Optional[bool] = ...) -> None: ...

class JoinGroup(_message.Message):
    __slots__ = ("group_id", "create_if_missing", "title")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_IF_MISSING_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    create_if_missing: bool
    title: str
    def __init__(self, group_id: _Optional[str] = ..., create_if_missing: _Optional[bool] = ..., title: _Optional[str] = ...) -> None: ...

class GroupJoined(_message.Message):
    __slots__ = ("group", "joined_seq", "newly_joined")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    JOINED_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEWLY_JOINED_FIELD_NUMBER: _ClassVar[int]
    group: _resources_pb2.Group
    joined_seq: int
    newly_joined: bool
    def __init__(self, group: _Optional[_Union[_resources_pb2.Group, _Mapping]] = ..., joined_seq: _Optional[int] = ..., newly_joined: _Optional[bool] = ...) -> None: ...

class LeaveGroup(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    def __init__(self, group_id: _Optional[str] = ...) -> None: ...

class GroupLeft(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    def __init__(self, group_id: _Optional[str] = ...) -> None: ...

class SendMessage(_message.Message):
    __slots__ = ("group_id", "to_agent", "client_msg_id", "content", "payload", "mentions", "signature", "sign_time", "reply_to", "auto_hops")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TO_AGENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MENTIONS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    AUTO_HOPS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    to_agent: str
    client_msg_id: str
    content: str
    payload: _struct_pb2.Struct
    mentions: _containers.RepeatedScalarFieldContainer[str]
    signature: bytes
    sign_time: _timestamp_pb2.Timestamp
    reply_to: int
    auto_hops: int
    def __init__(self, group_id: _Optional[str] = ..., to_agent: _Optional[str] = ..., client_msg_id: _Optional[str] = ..., content: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., mentions: _Optional[_Iterable[str]] = ..., signature: _Optional[bytes] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to: _Optional[int] = ..., auto_hops: _Optional[int] = ...) -> None: ...

class MessageAck(_message.Message):
    __slots__ = ("conversation", "seq", "client_msg_id", "create_time", "duplicate", "mentioned", "unresolved_mentions")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    MENTIONED_FIELD_NUMBER: _ClassVar[int]
    UNRESOLVED_MENTIONS_FIELD_NUMBER: _ClassVar[int]
    conversation: str
    seq: int
    client_msg_id: str
    create_time: _timestamp_pb2.Timestamp
    duplicate: bool
    mentioned: _containers.RepeatedScalarFieldContainer[str]
    unresolved_mentions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conversation: _Optional[str] = ..., seq: _Optional[int] = ..., client_msg_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duplicate: _Optional[bool] = ..., mentioned: _Optional[_Iterable[str]] = ..., unresolved_mentions: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("client_time",)
    CLIENT_TIME_FIELD_NUMBER: _ClassVar[int]
    client_time: _timestamp_pb2.Timestamp
    def __init__(self, client_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("client_time", "server_time")
    CLIENT_TIME_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    client_time: _timestamp_pb2.Timestamp
    server_time: _timestamp_pb2.Timestamp
    def __init__(self, client_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("cursors",)
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    cursors: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Cursor]
    def __init__(self, cursors: _Optional[_Iterable[_Union[_resources_pb2.Cursor, _Mapping]]] = ...) -> None: ...

class MarkRead(_message.Message):
    __slots__ = ("up_to", "item_seqs")
    UP_TO_FIELD_NUMBER: _ClassVar[int]
    ITEM_SEQS_FIELD_NUMBER: _ClassVar[int]
    up_to: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Cursor]
    item_seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, up_to: _Optional[_Iterable[_Union[_resources_pb2.Cursor, _Mapping]]] = ..., item_seqs: _Optional[_Iterable[int]] = ...) -> None: ...

class ReadMarkers(_message.Message):
    __slots__ = ("markers", "item_seqs", "unread_total")
    MARKERS_FIELD_NUMBER: _ClassVar[int]
    ITEM_SEQS_FIELD_NUMBER: _ClassVar[int]
    UNREAD_TOTAL_FIELD_NUMBER: _ClassVar[int]
    markers: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Cursor]
    item_seqs: _containers.RepeatedScalarFieldContainer[int]
    unread_total: int
    def __init__(self, markers: _Optional[_Iterable[_Union[_resources_pb2.Cursor, _Mapping]]] = ..., item_seqs: _Optional[_Iterable[int]] = ..., unread_total: _Optional[int] = ...) -> None: ...

class MentionEvent(_message.Message):
    __slots__ = ("item", "message")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    item: _resources_pb2.InboxItem
    message: _resources_pb2.Message
    def __init__(self, item: _Optional[_Union[_resources_pb2.InboxItem, _Mapping]] = ..., message: _Optional[_Union[_resources_pb2.Message, _Mapping]] = ...) -> None: ...

class InboxEvent(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: _resources_pb2.InboxItem
    def __init__(self, item: _Optional[_Union[_resources_pb2.InboxItem, _Mapping]] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("item", "task", "change")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    item: _resources_pb2.InboxItem
    task: _resources_pb2.Task
    change: _resources_pb2.TaskChange
    def __init__(self, item: _Optional[_Union[_resources_pb2.InboxItem, _Mapping]] = ..., task: _Optional[_Union[_resources_pb2.Task, _Mapping]] = ..., change: _Optional[_Union[_resources_pb2.TaskChange, _Mapping]] = ...) -> None: ...

class CreateTaskEvent(_message.Message):
    __slots__ = ("task", "client_task_id", "signature", "sign_time")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    task: _resources_pb2.Task
    client_task_id: str
    signature: bytes
    sign_time: _timestamp_pb2.Timestamp
    def __init__(self, task: _Optional[_Union[_resources_pb2.Task, _Mapping]] = ..., client_task_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateTaskEvent(_message.Message):
    __slots__ = ("task_id", "status", "assignee", "note", "result", "expected_version", "signature", "sign_time")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: _resources_pb2.TaskStatus
    assignee: str
    note: str
    result: str
    expected_version: int
    signature: bytes
    sign_time: _timestamp_pb2.Timestamp
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[_Union[_resources_pb2.TaskStatus, str]] = ..., assignee: _Optional[str] = ..., note: _Optional[str] = ..., result: _Optional[str] = ..., expected_version: _Optional[int] = ..., signature: _Optional[bytes] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _resources_pb2.Task
    def __init__(self, task: _Optional[_Union[_resources_pb2.Task, _Mapping]] = ...) -> None: ...

class CaughtUp(_message.Message):
    __slots__ = ("heads", "replayed")
    HEADS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    heads: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Cursor]
    replayed: int
    def __init__(self, heads: _Optional[_Iterable[_Union[_resources_pb2.Cursor, _Mapping]]] = ..., replayed: _Optional[int] = ...) -> None: ...

class HistoryGap(_message.Message):
    __slots__ = ("conversation", "from_seq", "to_seq")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation: str
    from_seq: int
    to_seq: int
    def __init__(self, conversation: _Optional[str] = ..., from_seq: _Optional[int] = ..., to_seq: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "status", "message", "reason", "fatal", "metadata", "retry_after")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    code: int
    status: str
    message: str
    reason: str
    fatal: bool
    metadata: _containers.ScalarMap[str, str]
    retry_after: _duration_pb2.Duration
    def __init__(self, code: _Optional[int] = ..., status: _Optional[str] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., fatal: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupJoinRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUP_JOIN_RULE_UNSPECIFIED: _ClassVar[GroupJoinRule]
    GROUP_JOIN_RULE_PUBLIC: _ClassVar[GroupJoinRule]
    GROUP_JOIN_RULE_INVITE: _ClassVar[GroupJoinRule]

class HistoryVisibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HISTORY_VISIBILITY_UNSPECIFIED: _ClassVar[HistoryVisibility]
    HISTORY_VISIBILITY_SHARED: _ClassVar[HistoryVisibility]
    HISTORY_VISIBILITY_JOINED: _ClassVar[HistoryVisibility]

class InboxItemKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INBOX_ITEM_KIND_UNSPECIFIED: _ClassVar[InboxItemKind]
    INBOX_ITEM_KIND_MENTION: _ClassVar[InboxItemKind]
    INBOX_ITEM_KIND_DIRECT_MESSAGE: _ClassVar[InboxItemKind]
    INBOX_ITEM_KIND_TASK_ASSIGNED: _ClassVar[InboxItemKind]
    INBOX_ITEM_KIND_TASK_UPDATED: _ClassVar[InboxItemKind]

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_PENDING: _ClassVar[TaskStatus]
    TASK_STATUS_ACCEPTED: _ClassVar[TaskStatus]
    TASK_STATUS_IN_PROGRESS: _ClassVar[TaskStatus]
    TASK_STATUS_BLOCKED: _ClassVar[TaskStatus]
    TASK_STATUS_DONE: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]
    TASK_STATUS_REJECTED: _ClassVar[TaskStatus]

class TaskPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_PRIORITY_UNSPECIFIED: _ClassVar[TaskPriority]
    TASK_PRIORITY_LOW: _ClassVar[TaskPriority]
    TASK_PRIORITY_NORMAL: _ClassVar[TaskPriority]
    TASK_PRIORITY_HIGH: _ClassVar[TaskPriority]
    TASK_PRIORITY_URGENT: _ClassVar[TaskPriority]
GROUP_JOIN_RULE_UNSPECIFIED: GroupJoinRule
GROUP_JOIN_RULE_PUBLIC: GroupJoinRule
GROUP_JOIN_RULE_INVITE: GroupJoinRule
HISTORY_VISIBILITY_UNSPECIFIED: HistoryVisibility
HISTORY_VISIBILITY_SHARED: HistoryVisibility
HISTORY_VISIBILITY_JOINED: HistoryVisibility
INBOX_ITEM_KIND_UNSPECIFIED: InboxItemKind
INBOX_ITEM_KIND_MENTION: InboxItemKind
INBOX_ITEM_KIND_DIRECT_MESSAGE: InboxItemKind
INBOX_ITEM_KIND_TASK_ASSIGNED: InboxItemKind
INBOX_ITEM_KIND_TASK_UPDATED: InboxItemKind
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_PENDING: TaskStatus
TASK_STATUS_ACCEPTED: TaskStatus
TASK_STATUS_IN_PROGRESS: TaskStatus
TASK_STATUS_BLOCKED: TaskStatus
TASK_STATUS_DONE: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus
TASK_STATUS_REJECTED: TaskStatus
TASK_PRIORITY_UNSPECIFIED: TaskPriority
TASK_PRIORITY_LOW: TaskPriority
TASK_PRIORITY_NORMAL: TaskPriority
TASK_PRIORITY_HIGH: TaskPriority
TASK_PRIORITY_URGENT: TaskPriority

class Agent(_message.Message):
    __slots__ = ("id", "display_name", "role", "description", "owner_device", "devices", "online", "last_seen_time", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    role: str
    description: str
    owner_device: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    online: bool
    last_seen_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., role: _Optional[str] = ..., description: _Optional[str] = ..., owner_device: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., online: _Optional[bool] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("id", "title", "description", "creator", "member_count", "last_seq", "create_time", "conversation", "join_rule", "history_visibility")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    JOIN_RULE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    description: str
    creator: str
    member_count: int
    last_seq: int
    create_time: _timestamp_pb2.Timestamp
    conversation: str
    join_rule: GroupJoinRule
    history_visibility: HistoryVisibility
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., creator: _Optional[str] = ..., member_count: _Optional[int] = ..., last_seq: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., conversation: _Optional[str] = ..., join_rule: _Optional[_Union[GroupJoinRule, str]] = ..., history_visibility: _Optional[_Union[HistoryVisibility, str]] = ...) -> None: ...

class GroupMember(_message.Message):
    __slots__ = ("agent_id", "display_name", "join_time", "joined_seq", "online")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    JOIN_TIME_FIELD_NUMBER: _ClassVar[int]
    JOINED_SEQ_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    display_name: str
    join_time: _timestamp_pb2.Timestamp
    joined_seq: int
    online: bool
    def __init__(self, agent_id: _Optional[str] = ..., display_name: _Optional[str] = ..., join_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., joined_seq: _Optional[int] = ..., online: _Optional[bool] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("conversation", "seq", "sender", "sender_device", "client_msg_id", "content", "payload", "create_time", "group_id", "recipient", "mentions", "signature", "signer_fingerprint", "sign_time", "reply_to", "auto_hops")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SENDER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    MENTIONS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    AUTO_HOPS_FIELD_NUMBER: _ClassVar[int]
    conversation: str
    seq: int
    sender: str
    sender_device: str
    client_msg_id: str
    content: str
    payload: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    group_id: str
    recipient: str
    mentions: _containers.RepeatedScalarFieldContainer[str]
    signature: bytes
    signer_fingerprint: str
    sign_time: _timestamp_pb2.Timestamp
    reply_to: int
    auto_hops: int
    def __init__(self, conversation: _Optional[str] = ..., seq: _Optional[int] = ..., sender: _Optional[str] = ..., sender_device: _Optional[str] = ..., client_msg_id: _Optional[str] = ..., content: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_id: _Optional[str] = ..., recipient: _Optional[str] = ..., mentions: _Optional[_Iterable[str]] = ..., signature: _Optional[bytes] = ..., signer_fingerprint: _Optional[str] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to: _Optional[int] = ..., auto_hops: _Optional[int] = ...) -> None: ...

class InboxItem(_message.Message):
    __slots__ = ("seq", "kind", "conversation", "message_seq", "task_id", "task_version", "actor", "excerpt", "unread", "create_time", "in_inbox")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_SEQ_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    EXCERPT_FIELD_NUMBER: _ClassVar[int]
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    IN_INBOX_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: InboxItemKind
    conversation: str
    message_seq: int
    task_id: str
    task_version: int
    actor: str
    excerpt: str
    unread: bool
    create_time: _timestamp_pb2.Timestamp
    in_inbox: bool
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[InboxItemKind, str]] = ..., conversation: _Optional[str] = ..., message_seq: _Optional[int] = ..., task_id: _Optional[str] = ..., task_version: _Optional[int] = ..., actor: _Optional[str] = ..., excerpt: _Optional[str] = ..., unread: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., in_inbox: _Optional[bool] = ...) -> None: ...

class TaskChange(_message.Message):
    __slots__ = ("version", "actor", "from_status", "to_status", "from_assignee", "to_assignee", "note", "time")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    FROM_ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    TO_ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    version: int
    actor: str
    from_status: TaskStatus
    to_status: TaskStatus
    from_assignee: str
    to_assignee: str
    note: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[int] = ..., actor: _Optional[str] = ..., from_status: _Optional[_Union[TaskStatus, str]] = ..., to_status: _Optional[_Union[TaskStatus, str]] = ..., from_assignee: _Optional[str] = ..., to_assignee: _Optional[str] = ..., note: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "title", "description", "creator", "assignee", "group_id", "priority", "due_time", "status", "version", "result", "create_time", "update_time", "history")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    description: str
    creator: str
    assignee: str
    group_id: str
    priority: TaskPriority
    due_time: _timestamp_pb2.Timestamp
    status: TaskStatus
    version: int
    result: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    history: _containers.RepeatedCompositeFieldContainer[TaskChange]
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., creator: _Optional[str] = ..., assignee: _Optional[str] = ..., group_id: _Optional[str] = ..., priority: _Optional[_Union[TaskPriority, str]] = ..., due_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., version: _Optional[int] = ..., result: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., history: _Optional[_Iterable[_Union[TaskChange, _Mapping]]] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("agent_id", "persisted", "delivered", "read", "delivered_seq", "read_seq")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PERSISTED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_SEQ_FIELD_NUMBER: _ClassVar[int]
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    persisted: bool
    delivered: bool
    read: bool
    delivered_seq: int
    read_seq: int
    def __init__(self, agent_id: _Optional[str] = ..., persisted: _Optional[bool] = ..., delivered: _Optional[bool] = ..., read: _Optional[bool] = ..., delivered_seq: _Optional[int] = ..., read_seq: _Optional[int] = ...) -> None: ...

class Cursor(_message.Message):
    __slots__ = ("conversation", "seq")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation: str
    seq: int
    def __init__(self, conversation: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "fingerprint", "certificate_pem", "not_after", "revoked")
    ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    id: str
    fingerprint: str
    certificate_pem: str
    not_after: _timestamp_pb2.Timestamp
    revoked: bool
    def __init__(self, id: _Optional[str] = ..., fingerprint: _Optional[str] = ..., certificate_pem: _Optional[str] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked: _Optional[bool] = ...) -> None: ...

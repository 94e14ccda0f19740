import datetime

from agentnet.v1 import events_pb2 as _events_pb2
from agentnet.v1 import resources_pb2 as _resources_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterAgentRequest(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _resources_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_resources_pb2.Agent, _Mapping]] = ...) -> None: ...

class RegisterAgentResponse(_message.Message):
    __slots__ = ("agent", "created")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    agent: _resources_pb2.Agent
    created: bool
    def __init__(self, agent: _Optional[_Union[_resources_pb2.Agent, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("online_only", "page_size", "page_token")
    ONLINE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    online_only: bool
    page_size: int
    page_token: str
    def __init__(self, online_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[_resources_pb2.Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class AuthorizeDeviceRequest(_message.Message):
    __slots__ = ("agent_id", "device_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    device_id: str
    def __init__(self, agent_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class CreateGroupRequest(_message.Message):
    __slots__ = ("group_id", "title", "description", "agent_id", "join_rule", "history_visibility")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    JOIN_RULE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    title: str
    description: str
    agent_id: str
    join_rule: _resources_pb2.GroupJoinRule
    history_visibility: _resources_pb2.HistoryVisibility
    def __init__(self, group_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., agent_id: _Optional[str] = ..., join_rule: _Optional[_Union[_resources_pb2.GroupJoinRule, str]] = ..., history_visibility: _Optional[_Union[_resources_pb2.HistoryVisibility, str]] = ...) -> None: ...

class InviteToGroupRequest(_message.Message):
    __slots__ = ("group_id", "agent_id", "invitee")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    INVITEE_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    agent_id: str
    invitee: str
    def __init__(self, group_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., invitee: _Optional[str] = ...) -> None: ...

class InviteToGroupResponse(_message.Message):
    __slots__ = ("group", "created")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    group: _resources_pb2.Group
    created: bool
    def __init__(self, group: _Optional[_Union[_resources_pb2.Group, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ("member", "page_size", "page_token")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    member: str
    page_size: int
    page_token: str
    def __init__(self, member: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ("groups", "next_page_token")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Group]
    next_page_token: str
    def __init__(self, groups: _Optional[_Iterable[_Union[_resources_pb2.Group, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetGroupRequest(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    def __init__(self, group_id: _Optional[str] = ...) -> None: ...

class ListGroupMembersRequest(_message.Message):
    __slots__ = ("group_id", "page_size", "page_token")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    page_size: int
    page_token: str
    def __init__(self, group_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListGroupMembersResponse(_message.Message):
    __slots__ = ("members", "next_page_token")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[_resources_pb2.GroupMember]
    next_page_token: str
    def __init__(self, members: _Optional[_Iterable[_Union[_resources_pb2.GroupMember, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class JoinGroupRequest(_message.Message):
    __slots__ = ("group_id", "agent_id", "create_if_missing", "title")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_IF_MISSING_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    agent_id: str
    create_if_missing: bool
    title: str
    def __init__(self, group_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., create_if_missing: _Optional[bool] = ..., title: _Optional[str] = ...) -> None: ...

class JoinGroupResponse(_message.Message):
    __slots__ = ("group", "joined_seq", "newly_joined")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    JOINED_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEWLY_JOINED_FIELD_NUMBER: _ClassVar[int]
    group: _resources_pb2.Group
    joined_seq: int
    newly_joined: bool
    def __init__(self, group: _Optional[_Union[_resources_pb2.Group, _Mapping]] = ..., joined_seq: _Optional[int] = ..., newly_joined: _Optional[bool] = ...) -> None: ...

class LeaveGroupRequest(_message.Message):
    __slots__ = ("group_id", "agent_id")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    agent_id: str
    def __init__(self, group_id: _Optional[str] = ..., agent_id: _Optional[str] = ...) -> None: ...

class LeaveGroupResponse(_message.Message):
    __slots__ = ("left",)
    LEFT_FIELD_NUMBER: _ClassVar[int]
    left: bool
    def __init__(self, left: _Optional[bool] = ...) -> None: ...

class SendGroupMessageRequest(_message.Message):
    __slots__ = ("group_id", "agent_id", "client_msg_id", "content", "payload", "mentions", "signature", "sign_time", "reply_to", "auto_hops")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MENTIONS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    AUTO_HOPS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    agent_id: str
    client_msg_id: str
    content: str
    payload: _struct_pb2.Struct
    mentions: _containers.RepeatedScalarFieldContainer[str]
    signature: bytes
    sign_time: _timestamp_pb2.Timestamp
    reply_to: int
    auto_hops: int
    def __init__(self, group_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., client_msg_id: _Optional[str] = ..., content: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., mentions: _Optional[_Iterable[str]] = ..., signature: _Optional[bytes] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to: _Optional[int] = ..., auto_hops: _Optional[int] = ...) -> None: ...

class SendDirectMessageRequest(_message.Message):
    __slots__ = ("peer_id", "agent_id", "client_msg_id", "content", "payload", "signature", "sign_time", "reply_to", "auto_hops")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    AUTO_HOPS_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    agent_id: str
    client_msg_id: str
    content: str
    payload: _struct_pb2.Struct
    signature: bytes
    sign_time: _timestamp_pb2.Timestamp
    reply_to: int
    auto_hops: int
    def __init__(self, peer_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., client_msg_id: _Optional[str] = ..., content: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., signature: _Optional[bytes] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to: _Optional[int] = ..., auto_hops: _Optional[int] = ...) -> None: ...

class SendMessageResponse(_message.Message):
    __slots__ = ("message", "duplicate", "unresolved_mentions")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    UNRESOLVED_MENTIONS_FIELD_NUMBER: _ClassVar[int]
    message: _resources_pb2.Message
    duplicate: bool
    unresolved_mentions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, message: _Optional[_Union[_resources_pb2.Message, _Mapping]] = ..., duplicate: _Optional[bool] = ..., unresolved_mentions: _Optional[_Iterable[str]] = ...) -> None: ...

class ListGroupMessagesRequest(_message.Message):
    __slots__ = ("group_id", "agent_id", "after_seq", "newest_first", "page_size", "page_token")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    agent_id: str
    after_seq: int
    newest_first: bool
    page_size: int
    page_token: str
    def __init__(self, group_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., newest_first: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDirectMessagesRequest(_message.Message):
    __slots__ = ("peer_id", "agent_id", "after_seq", "newest_first", "page_size", "page_token")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    agent_id: str
    after_seq: int
    newest_first: bool
    page_size: int
    page_token: str
    def __init__(self, peer_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., newest_first: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token", "last_seq")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Message]
    next_page_token: str
    last_seq: int
    def __init__(self, messages: _Optional[_Iterable[_Union[_resources_pb2.Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., last_seq: _Optional[int] = ...) -> None: ...

class GetReceiptsRequest(_message.Message):
    __slots__ = ("group_id", "peer_id", "seq", "agent_id")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    peer_id: str
    seq: int
    agent_id: str
    def __init__(self, group_id: _Optional[str] = ..., peer_id: _Optional[str] = ..., seq: _Optional[int] = ..., agent_id: _Optional[str] = ...) -> None: ...

class GetReceiptsResponse(_message.Message):
    __slots__ = ("message", "receipts")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    message: _resources_pb2.Message
    receipts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Receipt]
    def __init__(self, message: _Optional[_Union[_resources_pb2.Message, _Mapping]] = ..., receipts: _Optional[_Iterable[_Union[_resources_pb2.Receipt, _Mapping]]] = ...) -> None: ...

class GetInboxRequest(_message.Message):
    __slots__ = ("agent_id", "unread_only", "kind", "page_size", "page_token")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    UNREAD_ONLY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    unread_only: bool
    kind: _resources_pb2.InboxItemKind
    page_size: int
    page_token: str
    def __init__(self, agent_id: _Optional[str] = ..., unread_only: _Optional[bool] = ..., kind: _Optional[_Union[_resources_pb2.InboxItemKind, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ConversationUnread(_message.Message):
    __slots__ = ("conversation", "unread_items", "unread_messages", "read_seq", "last_seq")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    UNREAD_ITEMS_FIELD_NUMBER: _ClassVar[int]
    UNREAD_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation: str
    unread_items: int
    unread_messages: int
    read_seq: int
    last_seq: int
    def __init__(self, conversation: _Optional[str] = ..., unread_items: _Optional[int] = ..., unread_messages: _Optional[int] = ..., read_seq: _Optional[int] = ..., last_seq: _Optional[int] = ...) -> None: ...

class GetInboxResponse(_message.Message):
    __slots__ = ("items", "next_page_token", "unread_total", "unread_by_kind", "conversations")
    class UnreadByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNREAD_TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNREAD_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_resources_pb2.InboxItem]
    next_page_token: str
    unread_total: int
    unread_by_kind: _containers.ScalarMap[str, int]
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationUnread]
    def __init__(self, items: _Optional[_Iterable[_Union[_resources_pb2.InboxItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., unread_total: _Optional[int] = ..., unread_by_kind: _Optional[_Mapping[str, int]] = ..., conversations: _Optional[_Iterable[_Union[ConversationUnread, _Mapping]]] = ...) -> None: ...

class MarkReadRequest(_message.Message):
    __slots__ = ("agent_id", "up_to", "item_seqs")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_FIELD_NUMBER: _ClassVar[int]
    ITEM_SEQS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    up_to: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Cursor]
    item_seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, agent_id: _Optional[str] = ..., up_to: _Optional[_Iterable[_Union[_resources_pb2.Cursor, _Mapping]]] = ..., item_seqs: _Optional[_Iterable[int]] = ...) -> None: ...

class MarkReadResponse(_message.Message):
    __slots__ = ("markers", "unread_total")
    MARKERS_FIELD_NUMBER: _ClassVar[int]
    UNREAD_TOTAL_FIELD_NUMBER: _ClassVar[int]
    markers: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Cursor]
    unread_total: int
    def __init__(self, markers: _Optional[_Iterable[_Union[_resources_pb2.Cursor, _Mapping]]] = ..., unread_total: _Optional[int] = ...) -> None: ...

class CreateTaskRequest(_message.Message):
    __slots__ = ("task", "agent_id", "client_task_id", "signature", "sign_time")
    TASK_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    task: _resources_pb2.Task
    agent_id: str
    client_task_id: str
    signature: bytes
    sign_time: _timestamp_pb2.Timestamp
    def __init__(self, task: _Optional[_Union[_resources_pb2.Task, _Mapping]] = ..., agent_id: _Optional[str] = ..., client_task_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("assignee", "creator", "status", "group_id", "page_size", "page_token", "agent_id")
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    assignee: str
    creator: str
    status: _resources_pb2.TaskStatus
    group_id: str
    page_size: int
    page_token: str
    agent_id: str
    def __init__(self, assignee: _Optional[str] = ..., creator: _Optional[str] = ..., status: _Optional[_Union[_resources_pb2.TaskStatus, str]] = ..., group_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., agent_id: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[_resources_pb2.Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id", "agent_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    agent_id: str
    def __init__(self, task_id: _Optional[str] = ..., agent_id: _Optional[str] = ...) -> None: ...

class UpdateTaskRequest(_message.Message):
    __slots__ = ("task_id", "agent_id", "status", "assignee", "note", "result", "expected_version", "signature", "sign_time")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    agent_id: str
    status: _resources_pb2.TaskStatus
    assignee: str
    note: str
    result: str
    expected_version: int
    signature: bytes
    sign_time: _timestamp_pb2.Timestamp
    def __init__(self, task_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., status: _Optional[_Union[_resources_pb2.TaskStatus, str]] = ..., assignee: _Optional[str] = ..., note: _Optional[str] = ..., result: _Optional[str] = ..., expected_version: _Optional[int] = ..., signature: _Optional[bytes] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("device_id", "fingerprint")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    fingerprint: str
    def __init__(self, device_id: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...

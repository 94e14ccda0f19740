"""Plain values that cross layers (store → domain → live → rpc). Times are integer microseconds (UTC)."""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any

# Ids and conversation ids are part of the wire contract, shared with the client.
from agentnet_client.wire import (  # noqa: F401 - re-exported for the server's layers
    DM_PREFIX,
    GROUP_PREFIX,
    ID_RE,
    INBOX_PREFIX,
    dm_conv,
    dm_parties,
    group_conv,
    inbox_conv,
)


def now_us() -> int:
    return time.time_ns() // 1000


class FeedKind(enum.IntEnum):
    """Matches agentnet.v1.InboxItemKind numbers."""

    MENTION = 1
    DIRECT_MESSAGE = 2
    TASK_ASSIGNED = 3
    TASK_UPDATED = 4


class TaskStatus(enum.IntEnum):
    """Matches agentnet.v1.TaskStatus numbers."""

    PENDING = 1
    ACCEPTED = 2
    IN_PROGRESS = 3
    BLOCKED = 4
    DONE = 5
    FAILED = 6
    CANCELLED = 7
    REJECTED = 8


TERMINAL = frozenset({TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.REJECTED})


@dataclasses.dataclass(frozen=True, slots=True)
class AgentRec:
    id: str
    display_name: str
    role: str
    description: str
    owner_device: str
    devices: tuple[str, ...]
    create_time: int
    last_seen: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class GroupRec:
    id: str
    title: str
    description: str
    creator: str
    create_time: int
    last_seq: int
    member_count: int
    join_rule: str = "public"  # or "invite"
    history: str = "shared"  # or "joined": members read from their join point on


@dataclasses.dataclass(frozen=True, slots=True)
class MemberRec:
    group_id: str
    agent_id: str
    joined_seq: int
    join_time: int


@dataclasses.dataclass(frozen=True, slots=True)
class MessageRec:
    conversation: str
    seq: int
    sender: str
    sender_device: str
    client_msg_id: str
    content: str
    payload_json: str | None
    create_time: int
    mentions: tuple[str, ...] = ()
    signature: bytes = b""
    signer_fp: str = ""
    sign_time: int = 0
    reply_to: int = 0
    auto_hops: int = 0

    @property
    def group_id(self) -> str:
        return self.conversation[len(GROUP_PREFIX) :] if self.conversation.startswith(GROUP_PREFIX) else ""

    @property
    def recipient(self) -> str:
        if not self.conversation.startswith(DM_PREFIX):
            return ""
        a, b = dm_parties(self.conversation)
        return b if a == self.sender else a


@dataclasses.dataclass(frozen=True, slots=True)
class FeedRec:
    agent: str
    seq: int
    kind: FeedKind
    conversation: str
    message_seq: int
    task_id: str
    task_version: int
    actor: str
    excerpt: str
    in_inbox: bool
    read: bool
    create_time: int


@dataclasses.dataclass(frozen=True, slots=True)
class TaskChangeRec:
    task_id: str
    version: int
    actor: str
    from_status: int
    to_status: int
    from_assignee: str
    to_assignee: str
    note: str
    time: int


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRec:
    id: str
    title: str
    description: str
    creator: str
    assignee: str
    group_id: str
    priority: int
    due_time: int | None
    status: TaskStatus
    version: int
    result: str
    create_time: int
    update_time: int
    history: tuple[TaskChangeRec, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceCertRec:
    fingerprint: str
    device_id: str
    serial: str
    not_after: int
    enrolled_at: int
    revoked_at: int | None
    pem: str


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceRec:
    id: str
    revoked_at: int | None
    create_time: int
    last_seen: int | None
    certs: tuple[DeviceCertRec, ...]
    agents: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class SendResult:
    """What a committed (or deduplicated) send produced."""

    message: MessageRec
    duplicate: bool
    feed: tuple[FeedRec, ...]


# -- published: what the domain hands the live core after a commit --------------------------------

# Envelope kinds.
MESSAGE = "message"
FEED = "feed"


class Envelope:
    """One sequenced event (a message, or an inbox item) for many recipients: the domain makes one
    per committed event (or per replayed one) and the live core pushes the same object to every
    recipient session. Each output format (live/format.py) renders it once and caches the result
    here for every other recipient: `data` holds the serialized ServerEvent (live/encode.py
    `encode`), `text` a second format's rendering (the REST event stream's SSE frame)."""

    __slots__ = ("conv", "data", "kind", "rec", "seq", "text")

    def __init__(self, kind: str, conv: str, seq: int, rec: Any) -> None:
        self.kind = kind
        self.conv = conv
        self.seq = seq
        self.rec = rec
        self.data: bytes | None = None
        self.text: Any = None


# -- writes: what the domain hands the store, built once per request ------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MessageWrite:
    """A checked send, as the store's send transaction commits it. `digest` identifies the content
    for idempotent retries; `excerpt` is what feed (inbox) rows show."""

    sender: str
    device: str
    conv: str
    client_msg_id: str
    digest: str
    content: str
    payload_json: str | None
    mentions: tuple[str, ...]
    excerpt: str
    signature: bytes = b""
    signer_fp: str = ""
    sign_time: int = 0
    reply_to: int = 0
    auto_hops: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class TaskWrite:
    """A checked task creation, as the store commits it (fields as stored: title stripped, the
    default priority filled in, due_time None for none)."""

    creator: str
    device: str
    client_task_id: str
    digest: str
    title: str
    description: str
    assignee: str
    group_id: str
    priority: int
    due_time: int | None
    signature: bytes = b""
    signer_fp: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class TaskChangeWrite:
    """A checked task change, as the store applies it. Empty or 0 fields change nothing; `result`
    None leaves the result as it is; `expected_version` 0 skips the compare-and-set."""

    actor: str
    device: str
    task_id: str
    status: int
    assignee: str
    note: str
    result: str | None
    expected_version: int
    signature: bytes = b""
    signer_fp: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a listing asks for; empty or 0 fields do not filter."""

    assignee: str = ""
    creator: str = ""
    status: int = 0
    group_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class GroupWrite:
    """A new group as the store creates it, with its creator as the first member."""

    creator: str
    group_id: str
    title: str
    description: str
    join_rule: str = "public"
    history: str = "shared"


@dataclasses.dataclass(frozen=True, slots=True)
class AgentWrite:
    """An agent registration (or profile update) by a device, as the store commits it; `name_key`
    is the display name's uniqueness key. `keep` names the profile fields ("display_name", "role",
    "description") the request left empty: an existing agent keeps what the store holds for them
    (read in the transaction, so a change made through another replica is not undone by a cache
    that has not heard of it yet); a new agent gets the values given here."""

    device: str
    agent_id: str
    display_name: str
    name_key: str
    role: str
    description: str
    keep: frozenset[str] = frozenset()

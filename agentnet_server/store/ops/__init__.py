"""Store operations: reads (run on reader threads) and writes (run on the writer thread).

Every function takes a Tx first and returns plain records. Writes check everything they can
refuse before they change anything (see Database). One module per table family; this package
is their surface, so callers write `ops.send_message` whichever module holds it."""

from __future__ import annotations

from .agents import agent_get, agents_all, authorize_device, notify, register_agent, touch_seen
from .cursors import (
    ack,
    conversation_heads,
    delivery_cursors,
    feed_after,
    feed_head,
    heads,
    messages_by_key,
    resume_state,
)
from .devices import device_cert, device_certs, devices_all, record_device_cert, revocations, revoke_device
from .groups import create_group, group_get, groups_page, join_group, joined_seq, leave_group, members_all, members_page
from .messages import conv_last_seq, message_get, messages_after, messages_before, send_message
from .retention import prune_history

__all__ = [
    "ack",
    "agent_get",
    "agents_all",
    "authorize_device",
    "conv_last_seq",
    "conversation_heads",
    "create_group",
    "delivery_cursors",
    "device_cert",
    "device_certs",
    "devices_all",
    "feed_after",
    "feed_head",
    "group_get",
    "groups_page",
    "heads",
    "join_group",
    "joined_seq",
    "leave_group",
    "members_all",
    "members_page",
    "message_get",
    "messages_after",
    "messages_before",
    "messages_by_key",
    "notify",
    "prune_history",
    "record_device_cert",
    "register_agent",
    "resume_state",
    "revocations",
    "revoke_device",
    "send_message",
    "touch_seen",
]

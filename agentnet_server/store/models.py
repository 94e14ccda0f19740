"""Peewee models: the schema. Only the store package imports peewee."""

from __future__ import annotations

import peewee as pw

database_proxy = pw.DatabaseProxy()


class Base(pw.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class SchemaVersion(Base):
    version = pw.IntegerField(primary_key=True)
    applied_at = pw.BigIntegerField()


class Device(Base):
    id = pw.CharField(max_length=64, primary_key=True)
    create_time = pw.BigIntegerField()
    revoked_at = pw.BigIntegerField(null=True)
    last_seen = pw.BigIntegerField(null=True)


class DeviceCert(Base):
    fingerprint = pw.CharField(max_length=64, primary_key=True)
    device = pw.CharField(max_length=64, index=True)
    serial = pw.CharField(max_length=64)
    not_after = pw.BigIntegerField()
    enrolled_at = pw.BigIntegerField()
    revoked_at = pw.BigIntegerField(null=True)
    pem = pw.TextField()


class Agent(Base):
    id = pw.CharField(max_length=64, primary_key=True)
    display_name = pw.CharField(max_length=64)
    name_key = pw.CharField(max_length=64, unique=True)
    role = pw.CharField(max_length=64, default="")
    description = pw.TextField(default="")
    owner_device = pw.CharField(max_length=64, index=True)
    create_time = pw.BigIntegerField()
    last_seen = pw.BigIntegerField(null=True)
    feed_seq = pw.BigIntegerField(default=0)


class AgentDevice(Base):
    agent = pw.CharField(max_length=64)
    device = pw.CharField(max_length=64, index=True)
    grant_time = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("agent", "device")


class Conversation(Base):
    id = pw.CharField(max_length=160, primary_key=True)
    kind = pw.CharField(max_length=8)  # "group" | "dm"
    dm_a = pw.CharField(max_length=64, null=True, index=True)
    dm_b = pw.CharField(max_length=64, null=True, index=True)
    last_seq = pw.BigIntegerField(default=0)
    create_time = pw.BigIntegerField()


class Group(Base):
    id = pw.CharField(max_length=64, primary_key=True)
    title = pw.CharField(max_length=128)
    description = pw.TextField(default="")
    creator = pw.CharField(max_length=64)
    create_time = pw.BigIntegerField()
    # SQL defaults too: rows are inserted with plain SQL (ops.groups), as the v4 migration adds them.
    join_rule = pw.CharField(max_length=8, default="public", constraints=[pw.SQL("DEFAULT 'public'")])
    history = pw.CharField(max_length=8, default="shared", constraints=[pw.SQL("DEFAULT 'shared'")])

    class Meta:
        table_name = "agent_group"


class GroupInvite(Base):
    """An invitation into an invite-only group (removed when the agent joins)."""

    group = pw.CharField(max_length=64, column_name="group_id")
    agent = pw.CharField(max_length=64)
    inviter = pw.CharField(max_length=64)
    create_time = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("group", "agent")


class Member(Base):
    group = pw.CharField(max_length=64, column_name="group_id")
    agent = pw.CharField(max_length=64, index=True)
    joined_seq = pw.BigIntegerField()
    join_time = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("group", "agent")


class Message(Base):
    conv = pw.CharField(max_length=160)
    seq = pw.BigIntegerField()
    sender = pw.CharField(max_length=64)
    sender_device = pw.CharField(max_length=64)
    client_msg_id = pw.CharField(max_length=64)
    digest = pw.CharField(max_length=64)
    content = pw.TextField()
    payload = pw.TextField(null=True)
    mentions = pw.TextField(default="")
    create_time = pw.BigIntegerField()
    signature = pw.BlobField(null=True)
    signer_fp = pw.CharField(max_length=64, default="")
    sign_time = pw.BigIntegerField(default=0)
    reply_to = pw.BigIntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])
    auto_hops = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])

    class Meta:
        primary_key = pw.CompositeKey("conv", "seq")
        indexes = ((("sender", "client_msg_id"), True), (("create_time",), False))


class PrunedSend(Base):
    """What stays of a message deleted by retention: its (sender, client_msg_id) remains taken
    for ever, so a late resend is answered as a duplicate, never stored a second time."""

    sender = pw.CharField(max_length=64)
    client_msg_id = pw.CharField(max_length=64)
    conv = pw.CharField(max_length=160)
    seq = pw.BigIntegerField()
    digest = pw.CharField(max_length=64)
    create_time = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("sender", "client_msg_id")


class Feed(Base):
    agent = pw.CharField(max_length=64)
    seq = pw.BigIntegerField()
    kind = pw.SmallIntegerField()
    conv = pw.CharField(max_length=160, default="")
    message_seq = pw.BigIntegerField(default=0)
    task_id = pw.CharField(max_length=32, default="")
    task_version = pw.BigIntegerField(default=0)
    actor = pw.CharField(max_length=64)
    excerpt = pw.CharField(max_length=400, default="")
    in_inbox = pw.BooleanField()
    read_time = pw.BigIntegerField(null=True)
    create_time = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("agent", "seq")
        indexes = ((("agent", "conv", "message_seq"), False), (("create_time",), False))


class DeliveryCursor(Base):
    agent = pw.CharField(max_length=64)
    device = pw.CharField(max_length=64)
    conv = pw.CharField(max_length=160)
    seq = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("agent", "device", "conv")
        indexes = ((("conv", "agent"), False),)


class ReadMarker(Base):
    agent = pw.CharField(max_length=64)
    conv = pw.CharField(max_length=160)
    seq = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("agent", "conv")


class Task(Base):
    id = pw.CharField(max_length=32, primary_key=True)
    title = pw.CharField(max_length=200)
    description = pw.TextField(default="")
    creator = pw.CharField(max_length=64, index=True)
    assignee = pw.CharField(max_length=64, index=True)
    group_id = pw.CharField(max_length=64, default="", index=True)
    priority = pw.SmallIntegerField()
    due_time = pw.BigIntegerField(null=True)
    status = pw.SmallIntegerField(index=True)
    version = pw.BigIntegerField()
    result = pw.TextField(default="")
    create_time = pw.BigIntegerField()
    update_time = pw.BigIntegerField(index=True)
    client_task_id = pw.CharField(max_length=64)
    digest = pw.CharField(max_length=64)

    class Meta:
        indexes = ((("creator", "client_task_id"), True),)


class TaskChange(Base):
    task = pw.CharField(max_length=32)
    version = pw.BigIntegerField()
    actor = pw.CharField(max_length=64)
    actor_device = pw.CharField(max_length=64, default="")
    from_status = pw.SmallIntegerField()
    to_status = pw.SmallIntegerField()
    from_assignee = pw.CharField(max_length=64, default="")
    to_assignee = pw.CharField(max_length=64, default="")
    note = pw.TextField(default="")
    time = pw.BigIntegerField()
    signature = pw.BlobField(null=True)
    signer_fp = pw.CharField(max_length=64, default="")

    class Meta:
        primary_key = pw.CompositeKey("task", "version")


ALL_MODELS: tuple[type[Base], ...] = (
    SchemaVersion,
    Device,
    DeviceCert,
    Agent,
    AgentDevice,
    Conversation,
    Group,
    GroupInvite,
    Member,
    Message,
    PrunedSend,
    Feed,
    DeliveryCursor,
    ReadMarker,
    Task,
    TaskChange,
)

"""Schema versions. A new database gets the current models and the newest version stamp; an
older one is brought forward one migration at a time, each in its own transaction."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import peewee as pw

from ..records import now_us
from .models import ALL_MODELS, SchemaVersion


def _v2_retention(db: pw.Database) -> None:
    """The retention job deletes the oldest messages and inbox entries by create_time, and keeps
    the send ids of deleted messages in pruned_send."""
    db.execute_sql("CREATE INDEX IF NOT EXISTS message_create_time ON message (create_time)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS feed_create_time ON feed (create_time)")
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS pruned_send (sender VARCHAR(64) NOT NULL, client_msg_id VARCHAR(64) NOT NULL, "
        "conv VARCHAR(160) NOT NULL, seq BIGINT NOT NULL, digest VARCHAR(64) NOT NULL, create_time BIGINT NOT NULL, "
        "PRIMARY KEY (sender, client_msg_id))"
    )


def _v3_replies(db: pw.Database) -> None:
    """Messages say which message they answer (reply_to, a seq in the same conversation) and
    whether they were posted automatically (auto_hops); existing messages get 0 for both."""
    db.execute_sql("ALTER TABLE message ADD COLUMN reply_to BIGINT NOT NULL DEFAULT 0")
    db.execute_sql("ALTER TABLE message ADD COLUMN auto_hops INTEGER NOT NULL DEFAULT 0")


def _v4_group_access(db: pw.Database) -> None:
    """Groups get a join rule (public or invite-only, with invitations) and a history visibility
    (shared: everything; joined: from the member's join point); existing groups stay public/shared."""
    db.execute_sql("ALTER TABLE agent_group ADD COLUMN join_rule VARCHAR(8) NOT NULL DEFAULT 'public'")
    db.execute_sql("ALTER TABLE agent_group ADD COLUMN history VARCHAR(8) NOT NULL DEFAULT 'shared'")
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS group_invite (group_id VARCHAR(64) NOT NULL, agent VARCHAR(64) NOT NULL, "
        "inviter VARCHAR(64) NOT NULL, create_time BIGINT NOT NULL, PRIMARY KEY (group_id, agent))"
    )


# version -> migration. Version 1 is the initial schema; a new database is created from the
# models and stamped with CURRENT_VERSION, an older one runs each later migration in order.
MIGRATIONS: dict[int, Callable[[pw.Database], None]] = {2: _v2_retention, 3: _v3_replies, 4: _v4_group_access}
CURRENT_VERSION = 4


class SchemaError(Exception):
    """The database schema is newer than this code, or a migration failed."""


# Plain SQL on `db` (not the models, which are bound through a process-wide proxy): the version
# must be read and written on the connection that holds the schema lock.
def current_version(db: pw.Database) -> int | None:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return None
    row = db.execute_sql("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def _stamp(db: pw.Database, version: int) -> None:
    db.execute_sql(
        f"INSERT INTO schema_version (version, applied_at) VALUES ({db.param}, {db.param})", (version, now_us())
    )


def migrate(db: pw.Database) -> int:
    """Create or upgrade the schema; returns the version now in place.

    Each step runs in its own transaction that first takes a lock and then reads the version,
    so replicas of one PostgreSQL store that start together migrate it once, in order."""
    while True:
        with _locked(db):
            version = current_version(db)
            if version is None:
                with _BIND_LOCK, db.bind_ctx(ALL_MODELS):  # bindings are process-wide
                    db.create_tables(ALL_MODELS, safe=True)
                _stamp(db, CURRENT_VERSION)
                return CURRENT_VERSION
            if version > CURRENT_VERSION:
                raise SchemaError(
                    f"the database has schema version {version} but this agentnet knows only up to "
                    f"{CURRENT_VERSION}; upgrade agentnet or point --db at another database"
                )
            if version == CURRENT_VERSION:
                return CURRENT_VERSION
            step = MIGRATIONS.get(version + 1)
            if step is None:
                raise SchemaError(f"no migration to schema version {version + 1}")
            step(db)
            _stamp(db, version + 1)


_BIND_LOCK = threading.Lock()
MIGRATION_LOCK = 0x61676E74  # "agnt": the advisory lock key for schema changes


@contextlib.contextmanager
def _locked(db: pw.Database) -> Iterator[None]:
    """A transaction that holds the schema lock from its start: an advisory lock on PostgreSQL
    (released at commit), BEGIN IMMEDIATE (the write lock) on SQLite."""
    if isinstance(db, pw.PostgresqlDatabase):
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            yield
    else:
        with db.atomic("IMMEDIATE"):
            yield

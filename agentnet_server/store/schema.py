"""Schema versions. A new database gets the current models and the newest version stamp; an
older one is brought forward one migration at a time, each in its own transaction."""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw

from ..records import now_us
from .models import ALL_MODELS, SchemaVersion


def _v2_history_time_indexes(db: pw.Database) -> None:
    """The retention job deletes the oldest messages and inbox entries by create_time."""
    db.execute_sql("CREATE INDEX IF NOT EXISTS message_create_time ON message (create_time)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS feed_create_time ON feed (create_time)")


# version -> migration. Version 1 is the initial schema; a new database is created from the
# models and stamped with CURRENT_VERSION, an older one runs each later migration in order.
MIGRATIONS: dict[int, Callable[[pw.Database], None]] = {2: _v2_history_time_indexes}
CURRENT_VERSION = 2


class SchemaError(Exception):
    """The database schema is newer than this code, or a migration failed."""


def current_version(db: pw.Database) -> int | None:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return None
    row = SchemaVersion.select(pw.fn.MAX(SchemaVersion.version)).scalar()
    return int(row) if row is not None else None


def migrate(db: pw.Database) -> int:
    """Create or upgrade the schema; returns the version now in place."""
    with db.atomic():
        version = current_version(db)
        if version is None:
            db.create_tables(ALL_MODELS, safe=True)
            SchemaVersion.create(version=CURRENT_VERSION, applied_at=now_us())
            return CURRENT_VERSION
    if version > CURRENT_VERSION:
        raise SchemaError(
            f"the database has schema version {version} but this agentnet knows only up to "
            f"{CURRENT_VERSION}; upgrade agentnet or point --db at another database"
        )
    for target in range(version + 1, CURRENT_VERSION + 1):
        step = MIGRATIONS.get(target)
        if step is None:
            raise SchemaError(f"no migration to schema version {target}")
        with db.atomic():
            step(db)
            SchemaVersion.create(version=target, applied_at=now_us())
    return CURRENT_VERSION

"""Schema versions. A new database gets the current models and the newest version stamp; an
older one is brought forward one migration at a time, each in its own transaction."""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw

from ..records import now_us
from .models import ALL_MODELS, SchemaVersion

# version -> migration. Version 1 is the initial schema (created from the models). Add
# migrations as functions taking the database, e.g. using playhouse.migrate.
MIGRATIONS: dict[int, Callable[[pw.Database], None]] = {}
CURRENT_VERSION = 1


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

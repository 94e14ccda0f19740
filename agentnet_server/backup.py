"""`agentnet-server backup` / `restore` for the SQLite store, and the lock a running server holds.

A backup is SQLite's online backup API in one step: a consistent snapshot taken inside one read
transaction, while the server keeps writing (WAL readers never block the writer). Every message
acknowledged before the backup started is in it. PostgreSQL is backed up with its own tools
(pg_dump / pg_restore, see docs/operations.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import pathlib
import sqlite3
from collections.abc import Iterator

from .startup import StartupError


def lock_path(db_file: pathlib.Path) -> pathlib.Path:
    return db_file.with_name(db_file.name + ".lock")


@contextlib.contextmanager
def exclusive(db_file: pathlib.Path, what: str) -> Iterator[None]:
    """Hold the database's lock file: one server per SQLite file, and no restore under a running one."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(db_file), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(f"{db_file} is in use by a running agentnet-server; {what}") from None
        yield
    finally:
        os.close(fd)


def _check(path: pathlib.Path) -> int:
    """The schema version of a sound agentnet database file; ValueError otherwise."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ValueError(f"{path} is not a readable SQLite database: {exc}") from None
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()
        if not ok or ok[0] != "ok":
            raise ValueError(f"{path} fails SQLite's integrity check: {ok[0] if ok else '?'}")
        row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} is not an agentnet database: {exc}") from None
    finally:
        con.close()
    return int(row[0] or 0)


def _copy(src: pathlib.Path, dest: pathlib.Path) -> None:
    """SQLite online backup of `src` into a new file `dest` (fsynced, owner-only)."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(tmp)
    try:
        with target:
            source.backup(target)  # one step: one read transaction, a consistent snapshot
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def backup(db_file: pathlib.Path, out: pathlib.Path) -> int:
    """Write a consistent copy of the live database to `out`; returns its schema version."""
    if out.exists():
        raise ValueError(f"{out} exists; choose a new file name (backups are never overwritten)")
    if out.resolve() == db_file.resolve():
        raise ValueError("the backup file must not be the database itself")
    _copy(db_file, out)
    return _check(out)


def restore(backup_file: pathlib.Path, db_file: pathlib.Path, force: bool) -> tuple[int, pathlib.Path | None]:
    """Replace the (stopped) server's database with `backup_file`; the old one is kept aside."""
    if not backup_file.exists():
        raise ValueError(f"no backup file at {backup_file}")
    version = _check(backup_file)
    kept: pathlib.Path | None = None
    with exclusive(db_file, "stop it before restoring"):
        if db_file.exists():
            if not force:
                raise ValueError(f"{db_file} exists; --force replaces it (the current database is kept beside it)")
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = db_file.with_name(f"{db_file.name}.before-restore-{stamp}")
            os.replace(db_file, kept)
            for suffix in ("-wal", "-shm"):
                side = db_file.with_name(db_file.name + suffix)
                if side.exists():
                    os.replace(side, kept.with_name(kept.name + suffix))
        _copy(backup_file, db_file)
    return version, kept

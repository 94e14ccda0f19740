"""Data at rest is owner-only: the SQLite database with its -wal and -shm files (SECURITY.md)."""

from __future__ import annotations

import logging
import os
import pathlib

from . import config

log = logging.getLogger("agentnet.server")

SIDE_FILES = ("", "-wal", "-shm", "-journal")


def secure_sqlite(db_url: str) -> None:
    """Create the database file owner-only before SQLite does (SQLite gives -wal and -shm the
    database's mode), and tighten files an older version left readable by others."""
    path = config.sqlite_path(db_url)
    if path is None or str(path) == ":memory:":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in SIDE_FILES:
        tighten(path.with_name(path.name + suffix))


def tighten(path: pathlib.Path) -> None:
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
        log.warning("%s was readable by other users (mode %04o); made it owner-only", path, mode)

"""The client's local SQLite cache: received events, cursors and the outbox (readable offline)."""

from __future__ import annotations

import functools
import os
import pathlib
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import ParamSpec, TypeVar

from agentnet.v1 import events_pb2, resources_pb2

from .wire import INBOX_PREFIX

# `cursor` holds, per conversation, the last seq the application has taken (or, for a session
# without an event queue, received and stored): the session resumes from it. Events stored after
# it were received but never handed over; the server sends them again.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursor (conv TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS message (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, sender TEXT NOT NULL, create_time INTEGER NOT NULL,
    raw BLOB NOT NULL, PRIMARY KEY (conv, seq)
);
CREATE TABLE IF NOT EXISTS feed (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS task (id TEXT PRIMARY KEY, version INTEGER NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    client_msg_id TEXT PRIMARY KEY, created REAL NOT NULL, raw BLOB NOT NULL
);
"""
# 1: the cursor moved when an event arrived. 2: it moves when the application takes the event.
SCHEMA_VERSION = "2"

P = ParamSpec("P")
R = TypeVar("R")


class CacheError(Exception):
    """The cache file cannot be used (damaged, not a database, unreadable); the message names it
    and says what to do."""

    @classmethod
    def of(cls, path: pathlib.Path, exc: sqlite3.Error) -> CacheError:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return cls(
                f"the local cache {path} is damaged ({text}); move it aside (mv {path} {path}.damaged) and run "
                "again: a new cache is filled from the server"
            )
        return cls(f"cannot use the local cache {path}: {text}")


def _file_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """A read of a damaged file raises CacheError (which names the file) instead of sqlite3's error."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            cache = args[0]
            assert isinstance(cache, Cache)
            raise CacheError.of(cache.path, exc) from exc

    return wrapper


class Cache:
    """One file per agent. Writes are small and committed per event (WAL, synchronous=NORMAL).

    Raises CacheError when the file is not a usable cache (damaged, or another kind of file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # It holds private conversations: owner-only from the first byte (SQLite gives its -wal and
        # -shm files the database file's mode), and tightened if an older version left it readable.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for name in (self.path.name, self.path.name + "-wal", self.path.name + "-shm"):
            f = self.path.with_name(name)
            if f.exists() and f.stat().st_mode & 0o077:
                os.chmod(f, 0o600)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise CacheError.of(self.path, exc) from exc

    def _open(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        with self._tx():
            version = self.get_meta("schema")
            if version == "1":
                # Version 1 moved a cursor when an event arrived, before the application had it, so
                # an event still queued when the program ended was never handed over, and a resume
                # went past it. Those cursors cannot say what was taken: resume from what this
                # device acknowledged to the server instead, which counts only taken events
                # (events already stored are stored again, not duplicated).
                self.db.execute("DELETE FROM cursor")
            if version in (None, "1"):
                self.set_meta("schema", SCHEMA_VERSION)

    def close(self) -> None:
        self.db.close()

    # -- meta ---------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- cursors and received events ----------------------------------------------------------

    @_file_errors
    def cursors(self) -> dict[str, int]:
        """Per conversation, the last seq the application took: where a session resumes."""
        return {c: s for c, s in self.db.execute("SELECT conv, seq FROM cursor")}

    def record(self, conv: str, seq: int, event: events_pb2.ServerEvent, *, taken: bool = False) -> None:
        """Store a received sequenced event (and with `taken`, move the cursor over it), atomically.

        The server is the truth: an event under a (conversation, seq) this cache already holds
        replaces it (the same event again, or a restored server that reused the seq)."""
        kind = event.WhichOneof("event")
        with self._tx():
            if kind == "message":
                m = event.message
                self.db.execute(
                    "INSERT INTO message (conv, seq, sender, create_time, raw) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (conv, seq) DO UPDATE SET sender = excluded.sender, "
                    "create_time = excluded.create_time, raw = excluded.raw",
                    (m.conversation, m.seq, m.sender, m.create_time.ToMicroseconds(), m.SerializeToString()),
                )
            else:
                item = _feed_item(event)
                if item is not None:
                    self.db.execute(
                        "INSERT INTO feed (seq, kind, raw) VALUES (?, ?, ?) "
                        "ON CONFLICT (seq) DO UPDATE SET kind = excluded.kind, raw = excluded.raw",
                        (item.seq, item.kind, event.SerializeToString()),
                    )
                task = _task(event)
                if task is not None:
                    self.db.execute(
                        "INSERT INTO task (id, version, raw) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                        "version = excluded.version, raw = excluded.raw WHERE task.version < excluded.version",
                        (task.id, task.version, task.SerializeToString()),
                    )
            if taken:
                self._move_cursor(conv, seq)

    def take(self, conv: str, seq: int) -> None:
        """The application has the event at (conv, seq): a resume starts after it."""
        self._move_cursor(conv, seq)

    def _move_cursor(self, conv: str, seq: int) -> None:
        self.db.execute(
            "INSERT INTO cursor (conv, seq) VALUES (?, ?) ON CONFLICT (conv) DO UPDATE SET seq = excluded.seq "
            "WHERE cursor.seq < excluded.seq",
            (conv, seq),
        )

    def reset_cursor(self, conv: str, seq: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO cursor (conv, seq) VALUES (?, ?)", (conv, seq))

    def follow_heads(self, heads: Mapping[str, int]) -> int:
        """The server's history of each conversation ends at its head: drop what this cache holds
        after it (it came from a server that was later reset or restored from a backup) and move
        cursors beyond it back. Returns how many stored events were dropped."""
        dropped = 0
        with self._tx():
            for conv, head in heads.items():
                if conv.startswith(INBOX_PREFIX):
                    cur = self.db.execute("DELETE FROM feed WHERE seq > ?", (head,))
                else:
                    cur = self.db.execute("DELETE FROM message WHERE conv = ? AND seq > ?", (conv, head))
                dropped += max(cur.rowcount, 0)
                self.db.execute("UPDATE cursor SET seq = ? WHERE conv = ? AND seq > ?", (head, conv, head))
        return dropped

    @_file_errors
    def messages(self, conv: str, after_seq: int = 0, limit: int = 100) -> list[resources_pb2.Message]:
        rows = self.db.execute(
            "SELECT raw FROM message WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?", (conv, after_seq, limit)
        )
        return [resources_pb2.Message.FromString(r[0]) for r in rows]

    @_file_errors
    def last_messages(self, conv: str, limit: int = 20) -> list[resources_pb2.Message]:
        rows = self.db.execute("SELECT raw FROM message WHERE conv = ? ORDER BY seq DESC LIMIT ?", (conv, limit))
        return [resources_pb2.Message.FromString(r[0]) for r in rows][::-1]

    @_file_errors
    def conversations(self) -> list[tuple[str, int]]:
        return list(self.db.execute("SELECT conv, MAX(seq) FROM message GROUP BY conv ORDER BY conv"))

    @_file_errors
    def feed(self, limit: int = 100) -> list[events_pb2.ServerEvent]:
        rows = self.db.execute("SELECT raw FROM feed ORDER BY seq DESC LIMIT ?", (limit,))
        return [events_pb2.ServerEvent.FromString(r[0]) for r in rows]

    @_file_errors
    def tasks(self) -> list[resources_pb2.Task]:
        return [resources_pb2.Task.FromString(r[0]) for r in self.db.execute("SELECT raw FROM task ORDER BY id")]

    # -- outbox -------------------------------------------------------------------------------

    def outbox_put(self, client_msg_id: str, send: events_pb2.SendMessage) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO outbox (client_msg_id, created, raw) VALUES (?, ?, ?)",
            (client_msg_id, time.time(), send.SerializeToString()),
        )

    def outbox_remove(self, client_msg_id: str) -> None:
        self.db.execute("DELETE FROM outbox WHERE client_msg_id = ?", (client_msg_id,))

    @_file_errors
    def outbox(self) -> list[tuple[str, events_pb2.SendMessage]]:
        rows = self.db.execute("SELECT client_msg_id, raw FROM outbox ORDER BY created, rowid").fetchall()
        return [(cid, events_pb2.SendMessage.FromString(raw)) for cid, raw in rows]

    def _tx(self) -> _Tx:
        return _Tx(self.db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _feed_item(event: events_pb2.ServerEvent) -> resources_pb2.InboxItem | None:
    kind = event.WhichOneof("event")
    if kind == "mention":
        return event.mention.item
    if kind == "direct_message":
        return event.direct_message.item
    if kind in ("task_assigned", "task_updated"):
        return getattr(event, kind).item
    return None


def _task(event: events_pb2.ServerEvent) -> resources_pb2.Task | None:
    kind = event.WhichOneof("event")
    if kind in ("task_assigned", "task_updated"):
        tev = getattr(event, kind)
        return tev.task if tev.HasField("task") else None
    return None

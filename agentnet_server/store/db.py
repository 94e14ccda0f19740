"""Connections, the single writer thread (group commit) and the reader pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import pathlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import peewee as pw
from playhouse.db_url import connect as url_connect

from ..errors import Aborted, AgentnetError, Internal, StoreUnavailable
from .models import database_proxy
from .schema import migrate

log = logging.getLogger("agentnet.store")
T = TypeVar("T")


def open_database(url: str, synchronous: str = "FULL") -> pw.Database:
    """sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite://").removeprefix("/")
        if not path or path == ":memory:":
            raise ValueError("an in-memory SQLite store would lose everything; give a file path")
        if url.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        file = pathlib.Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        return pw.SqliteDatabase(
            str(file),
            pragmas={
                "journal_mode": "wal",
                "synchronous": synchronous.upper(),
                "busy_timeout": 10_000,
                "foreign_keys": 0,
                "cache_size": -32_000,
                "temp_store": "memory",
            },
        )
    if url.startswith(("postgresql:", "postgres:")):
        return url_connect(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")


class Changes:
    """What one write transaction changed that other server replicas must hear about (ids only)."""

    __slots__ = ("agents", "feed", "groups", "messages")

    def __init__(self) -> None:
        self.messages: list[tuple[str, int]] = []
        self.feed: list[tuple[str, int]] = []
        self.agents: set[str] = set()
        self.groups: set[str] = set()

    def payloads(self, replica: str, limit: int = 7000) -> list[str]:
        """JSON notifications under PostgreSQL's 8000-byte payload limit."""
        items: list[tuple[str, Any]] = [("a", a) for a in sorted(self.agents)] + [("g", g) for g in sorted(self.groups)]
        items += [("m", m) for m in self.messages] + [("f", f) for f in self.feed]
        out: list[str] = []
        chunk: dict[str, list[Any]] = {}
        size = 0
        for key, value in items:
            piece = len(json.dumps(value)) + 1
            if chunk and size + piece > limit:
                out.append(json.dumps({"r": replica, **chunk}, separators=(",", ":")))
                chunk, size = {}, 0
            chunk.setdefault(key, []).append(value)
            size += piece
        if chunk:
            out.append(json.dumps({"r": replica, **chunk}, separators=(",", ":")))
        return out


class Tx:
    """Raw SQL helpers bound to one connection. SQL is written with '?' placeholders."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.pg = isinstance(db, pw.PostgresqlDatabase)
        self._cache: dict[str, str] = {}
        # Filled by write operations in the writer thread (see Database.replica).
        self.changes = Changes()

    def sql(self, text: str) -> str:
        if not self.pg:
            return text
        out = self._cache.get(text)
        if out is None:
            out = self._cache[text] = text.replace("?", "%s")
        return out

    def exec(self, text: str, params: Sequence[Any] = ()) -> int:
        cur = self.db.execute_sql(self.sql(text), params)
        return cur.rowcount

    def one(self, text: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self.db.execute_sql(self.sql(text), params).fetchone()

    def all(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.db.execute_sql(self.sql(text), params).fetchall())

    def scalar(self, text: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(text, params)
        return None if row is None else row[0]


class _Op:
    __slots__ = ("args", "fn", "future", "on_commit")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        on_commit: Callable[[Any], None] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        self.on_commit = on_commit


_STOP = object()


def _store_error(exc: BaseException) -> AgentnetError:
    if isinstance(exc, pw.IntegrityError):
        return Aborted(
            f"a concurrent change conflicted with this write ({exc}); nothing was committed, retry",
            reason="CONFLICT",
        )
    if isinstance(exc, (pw.DatabaseError, pw.InterfaceError, OSError)):
        return StoreUnavailable(
            f"the store refused the write ({type(exc).__name__}: {exc}); nothing was committed, retry later"
        )
    log.error("write failed with an unexpected error", exc_info=exc)
    return Internal(f"internal error while writing ({type(exc).__name__}); nothing was committed")


# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back and
# may simply be run again.
RETRY_SQLSTATES = frozenset({"40P01", "40001"})


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, also when peewee wrapped it in its own exception type."""
    e: BaseException | None = exc
    for _ in range(6):
        if e is None:
            return None
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
        inner = e.args[0] if e.args and isinstance(e.args[0], BaseException) else None
        e = inner or e.__cause__ or e.__context__
    return None


def retryable(exc: BaseException) -> bool:
    return sqlstate(exc) in RETRY_SQLSTATES


class Database:
    """Owns the connections: one writer thread with group commit and a pool of reader threads.

    Write functions run in the writer thread as fn(tx, *args). They must raise a domain error
    before changing anything, so a batch can commit around a refused request. Results reach
    the event loop in commit order; on_commit callbacks run there, in that order, before the
    caller's await returns.
    """

    def __init__(self, url: str, synchronous: str = "FULL", readers: int = 4, batch: int = 512) -> None:
        self.url = url
        self.db = open_database(url, synchronous)
        database_proxy.initialize(self.db)
        self.tx = Tx(self.db)
        self.batch = batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._readers = concurrent.futures.ThreadPoolExecutor(readers, thread_name_prefix="agentnet-read")
        self._writer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0
        self.committed_ops = 0
        # Set on PostgreSQL with several replicas: each write transaction then announces what it
        # changed with pg_notify, delivered to the other replicas only if it commits.
        self.replica: str | None = None

    @property
    def is_postgres(self) -> bool:
        return self.tx.pg

    def migrate(self) -> int:
        with self.db.connection_context():
            return migrate(self.db)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._writer = threading.Thread(target=self._run_writer, name="agentnet-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=30)
            self._writer = None
        self._readers.shutdown(wait=True)
        if not self.db.is_closed():
            self.db.close()

    # -- reads --------------------------------------------------------------------------

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read function fn(tx, *args) on a reader thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, self._read_call, fn, args)
        except pw.DatabaseError as exc:
            raise StoreUnavailable(f"the store could not be read ({type(exc).__name__}: {exc})") from exc

    def _read_call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return fn(self.tx, *args)
        except pw.InterfaceError:
            # A dropped connection (PostgreSQL restart): reconnect once.
            if not self.db.is_closed():
                self.db.close()
            return fn(self.tx, *args)

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """For start-up and command-line tools (not on the event loop)."""
        return fn(self.tx, *args)

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """For command-line tools only: a write in its own transaction on this thread."""
        with self._atomic():
            return fn(self.tx, *args)

    # -- writes -------------------------------------------------------------------------

    def write(
        self, fn: Callable[..., T], *args: Any, on_commit: Callable[[T], None] | None = None
    ) -> asyncio.Future[T]:
        """Queue a write; the future resolves after the transaction holding it committed."""
        assert self._loop is not None, "Database.start() was not called"
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Op(fn, args, fut, on_commit))
        return fut

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """One transaction. SQLite takes the write lock up front (IMMEDIATE) so a writer in another
        process (the CLI) makes this wait instead of failing mid-way. The original error is kept
        even when the database already rolled back by itself (SQLITE_FULL does)."""
        self.tx.exec("BEGIN IMMEDIATE" if isinstance(self.db, pw.SqliteDatabase) else "BEGIN")
        try:
            yield
            self.tx.exec("COMMIT")
        except BaseException:
            try:
                self.tx.exec("ROLLBACK")
            except Exception:  # noqa: BLE001 - already rolled back, or the connection is gone
                pass
            raise

    def _run_writer(self) -> None:
        q = self._queue
        while True:
            first = q.get()
            if first is _STOP:
                break
            batch = [first]
            stop = False
            while len(batch) < self.batch:
                try:
                    op = q.get_nowait()
                except queue.Empty:
                    break
                if op is _STOP:
                    stop = True
                    break
                batch.append(op)
            results = self._apply(batch)
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._complete, batch, results)
            except RuntimeError:  # loop closed during shutdown
                pass
            if stop:
                break
        if not self.db.is_closed():
            self.db.close()

    def _apply(self, batch: list[_Op], attempt: int = 0) -> list[tuple[bool, Any]]:
        try:
            results = self._apply_in_one(batch)
            self.commits += 1
            self.committed_ops += sum(1 for ok, _ in results if ok)
            return results
        except Exception as exc:  # noqa: BLE001 - any store failure is reported per op
            if retryable(exc):
                # Two replicas took row locks in different orders; PostgreSQL chose this one.
                self._reset_connection()
                if attempt < 3:
                    return self._apply(batch, attempt + 1)
            if len(batch) == 1:
                log.warning("store write failed: %s: %s", type(exc).__name__, exc)
                self._reset_connection()
                return [(False, _store_error(exc))]
            # Isolate: one bad op (or a failing commit) must not take the others down.
            self._reset_connection()
            return [r for op in batch for r in self._apply([op])]

    def _apply_in_one(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        self.tx.changes = changes = Changes()
        with self._atomic():
            for op in batch:
                try:
                    results.append((True, op.fn(self.tx, *op.args)))
                except AgentnetError as exc:
                    results.append((False, exc))
            if self.replica is not None:
                for payload in changes.payloads(self.replica):
                    self.tx.exec("SELECT pg_notify('agentnet', ?)", (payload,))
        return results

    def _reset_connection(self) -> None:
        try:
            if not self.db.is_closed():
                self.db.close()
        except Exception:  # noqa: BLE001 - the connection is being replaced anyway
            pass

    def _complete(self, batch: list[_Op], results: list[tuple[bool, Any]]) -> None:
        for op, (ok, value) in zip(batch, results, strict=True):
            if ok and op.on_commit is not None:
                try:
                    op.on_commit(value)
                except Exception:
                    log.exception("post-commit hook failed")
            if op.future.done():
                continue
            if ok:
                op.future.set_result(value)
            else:
                op.future.set_exception(value)

"""Connections, the single writer thread (group commit) and the reader pool."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import pathlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import peewee as pw
from playhouse.db_url import parse as parse_url

from ..errors import Aborted, AgentnetError, Internal, StoreUnavailable
from .models import database_proxy
from .schema import migrate

log = logging.getLogger("agentnet.store")
T = TypeVar("T")


def open_database(
    url: str, synchronous: str = "FULL", lock_timeout: float = 1.0, statement_timeout: float = 5.0
) -> pw.Database:
    """sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db.

    Every statement is bounded: on PostgreSQL by lock_timeout (a row or table another transaction
    holds) and statement_timeout, on SQLite by busy_timeout; TCP keepalives notice a silent peer."""
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
                "busy_timeout": int(max(lock_timeout, statement_timeout) * 1000),
                "foreign_keys": 0,
                "cache_size": -32_000,
                "temp_store": "memory",
            },
        )
    if url.startswith(("postgresql:", "postgres:")):
        options = f"-c lock_timeout={int(lock_timeout * 1000)} -c statement_timeout={int(statement_timeout * 1000)}"
        return _Postgres(
            **parse_url(url),
            options=options,
            connect_timeout=max(1, int(statement_timeout)),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")


# PostgreSQL's limit is 8000 bytes; stay well below it, whatever the ids look like.
NOTIFY_LIMIT = 7600


class _Postgres(pw.PostgresqlDatabase):
    """Each connection names its process and thread in pg_stat_activity.application_name
    ("agentnet[pid] agentnet-writer", "... agentnet-read_0"): an operator (or a test) can tell
    the writer, the readers and the listener apart."""

    def _initialize_connection(self, conn: Any) -> None:
        name = f"agentnet[{os.getpid()}] {threading.current_thread().name}"[:63]
        conn.execute("SELECT set_config('application_name', %s, false)", (name,))


class Changes:
    """What one write transaction changed that other server replicas must hear about (ids only),
    and which agents this replica holds sessions for (presence)."""

    __slots__ = ("agents", "feed", "groups", "messages", "offline", "online")

    def __init__(self) -> None:
        self.messages: list[tuple[str, int]] = []
        self.feed: list[tuple[str, int]] = []
        self.agents: set[str] = set()
        self.groups: set[str] = set()
        self.online: list[str] = []
        self.offline: list[str] = []

    def payloads(self, replica: str, limit: int = NOTIFY_LIMIT) -> list[str]:
        """JSON notifications, each under `limit` bytes (UTF-8), split by size, never by count."""
        items: list[tuple[str, Any]] = [("a", a) for a in sorted(self.agents)] + [("g", g) for g in sorted(self.groups)]
        items += [("m", m) for m in self.messages] + [("f", f) for f in self.feed]
        items += [("po", a) for a in self.online] + [("pf", a) for a in self.offline]
        return chunk_payloads(replica, items, limit)


def chunk_payloads(replica: str, items: Sequence[tuple[str, Any]], limit: int = NOTIFY_LIMIT) -> list[str]:
    """Pack (key, value) items into JSON objects {"r", "t", key: [values]} of at most `limit` bytes."""
    head = len(_encode({"r": replica, "t": _now_ms()}))
    out: list[str] = []
    chunk: dict[str, list[Any]] = {}
    size = head
    for key, value in items:
        piece = len(_encode(value).encode()) + 1
        extra = piece + (len(key) + 5 if key not in chunk else 0)  # ,"key":[ ... ]
        if head + extra > limit:
            raise ValueError(f"a single change ({key}: {str(value)[:40]}...) does not fit in a notification")
        if chunk and size + extra > limit:
            out.append(_encode({"r": replica, "t": _now_ms(), **chunk}))
            chunk, size = {}, head
            extra = piece + len(key) + 5
        chunk.setdefault(key, []).append(value)
        size += extra
    if chunk:
        out.append(_encode({"r": replica, "t": _now_ms(), **chunk}))
    return out


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    __slots__ = ("args", "deadline", "fn", "future", "key", "on_commit")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        on_commit: Callable[[Any], None] | None,
        deadline: float,
        key: str | None = None,
    ) -> None:
        self.key = key
        self.fn = fn
        self.args = args
        self.future = future
        self.on_commit = on_commit
        self.deadline = deadline


_STOP = object()

# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back and
# may simply be run again.
RETRY_SQLSTATES = frozenset({"40P01", "40001"})
# A connection that is gone: class 08 (connection exception), and admin_shutdown, crash_shutdown,
# cannot_connect_now (a server stopping, restarting or starting; pg_terminate_backend).
LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
LOCK_TIMEOUT = "55P03"  # lock_not_available: lock_timeout expired
STATEMENT_TIMEOUT = "57014"  # query_canceled: statement_timeout expired


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


def connection_lost(exc: BaseException, conn: Any = None) -> bool:
    """Whether an error means the connection is gone, by SQLSTATE class or by the connection's
    own state (psycopg 3 `closed` / `broken`), never by exception class or message."""
    state = sqlstate(exc)
    if state is not None and (state.startswith("08") or state in LOST_SQLSTATES):
        return True
    return conn is not None and bool(getattr(conn, "closed", False) or getattr(conn, "broken", False))


def error_kind(exc: BaseException, lost: bool = False) -> str:
    """A stable word for metrics and logs."""
    if lost:
        return "connection_lost"
    state = sqlstate(exc)
    if state == LOCK_TIMEOUT:
        return "lock_timeout"
    if state == STATEMENT_TIMEOUT:
        return "statement_timeout"
    if state in RETRY_SQLSTATES:
        return "conflict"
    if isinstance(exc, pw.IntegrityError):
        return "integrity"
    # sqlite3 errors carry their result code name (SQLITE_BUSY, SQLITE_FULL, ...).
    name = getattr(exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc, "sqlite_errorname", "")
    if name:
        return str(name).lower().removeprefix("sqlite_")
    return "other"


def _driver_text(exc: BaseException) -> str:
    """The driver's primary message, for a client: its first line only. PostgreSQL's DETAIL and
    CONTEXT lines, which quote the key values of rows, stay in the server's log."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


def _store_error(exc: BaseException) -> AgentnetError:
    if isinstance(exc, pw.IntegrityError):
        log.warning("write conflict: %s", exc)
        return Aborted(
            f"a concurrent change conflicted with this write ({_driver_text(exc)}); nothing was committed, retry",
            reason="CONFLICT",
        )
    kind = error_kind(exc)
    if kind in ("lock_timeout", "statement_timeout", "busy", "locked"):
        return StoreUnavailable(
            "the store could not take this write in time (another transaction holds what it needs); "
            "nothing was committed, retry",
            reason="STORE_TIMEOUT",
        )
    if isinstance(exc, (pw.DatabaseError, pw.InterfaceError, OSError)):
        return StoreUnavailable(
            f"the store refused the write ({_driver_text(exc)}); nothing was committed, retry later"
        )
    log.error("write failed with an unexpected error", exc_info=exc)
    return Internal(f"internal error while writing ({type(exc).__name__}); nothing was committed")


class StoreStats:
    """Plain counters of the store's life, read by the metrics endpoint (any thread may count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors: collections.Counter[str] = collections.Counter()
        self.reconnects: collections.Counter[str] = collections.Counter()
        self.writes: collections.Counter[str] = collections.Counter()

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def reconnect(self, connection: str) -> None:
        with self._lock:
            self.reconnects[connection] += 1

    def wrote(self, names: Iterable[str]) -> None:
        with self._lock:
            self.writes.update(names)


def _ping(tx: Tx) -> None:
    tx.one("SELECT 1")


def _presence(tx: Tx, online: Sequence[str], offline: Sequence[str]) -> None:
    tx.changes.online.extend(online)
    tx.changes.offline.extend(offline)


class Database:
    """Owns the connections: one writer thread with group commit and a pool of reader threads.

    Write functions run in the writer thread as fn(tx, *args). They must raise a domain error
    before changing anything, so a batch can commit around a refused request. Results reach
    the event loop in commit order; on_commit callbacks run there, in that order, before the
    caller's await returns.

    Every operation has a deadline (`timeout`). A connection that is gone (PostgreSQL restarted,
    a backend terminated, a pooler restarted) is noticed by SQLSTATE or connection state on any
    thread, replaced with backoff, and reported through `on_lost` so the replica can resynchronise.
    A write is retried on a new connection only when its COMMIT was not sent; otherwise it fails
    with UNAVAILABLE and the caller's idempotent retry tells what happened.
    """

    def __init__(
        self,
        url: str,
        synchronous: str = "FULL",
        readers: int = 4,
        batch: int = 512,
        *,
        timeout: float = 5.0,
        lock_timeout: float = 1.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.db = open_database(url, synchronous, lock_timeout, timeout)
        database_proxy.initialize(self.db)
        self.tx = Tx(self.db)
        self.batch = batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._readers = concurrent.futures.ThreadPoolExecutor(readers, thread_name_prefix="agentnet-read")
        self._writer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committing = False
        self._stopping = False
        self._current: _Op | None = None  # the op running in the writer (which one hit a lock)
        # key (a conversation) -> until when its writes fail fast: another transaction holds its lock.
        self._cooling: dict[str, float] = {}
        self.cooldown = 2 * lock_timeout
        self.commits = 0
        self.committed_ops = 0
        self.stats = StoreStats()
        # Bumped whenever any connection is found dead: every thread then replaces its own before
        # its next use (it is most likely dead too), instead of each finding out by an error that
        # would restart the replica's resynchronisation once per thread.
        self._epoch = 0
        self._local = threading.local()
        # Called on the event loop with (connection kind, error) when a connection was found dead.
        self.on_lost: Callable[[str, BaseException], None] | None = None
        # Called in the writer thread with each commit's duration in seconds.
        self.on_commit_time: Callable[[float], None] | None = None
        # Set on PostgreSQL with several replicas: each write transaction then announces what it
        # changed with pg_notify, delivered to the other replicas only if it commits.
        self.replica: str | None = None

    @property
    def is_postgres(self) -> bool:
        return self.tx.pg

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def migrate(self) -> int:
        with self.db.connection_context():
            if self.is_postgres:
                # A schema change may rightly take long or wait for another replica's migration.
                self.db.execute_sql("SET statement_timeout = 0")
                self.db.execute_sql("SET lock_timeout = 0")
            return migrate(self.db)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._writer = threading.Thread(target=self._run_writer, name="agentnet-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        self._stopping = True
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=30)
            self._writer = None
        self._readers.shutdown(wait=True)
        self._reset_connection()

    # -- connections --------------------------------------------------------------------------

    def _raw_conn(self) -> Any:
        """This thread's driver connection, without opening one (peewee keeps it per thread)."""
        state = getattr(self.db, "_state", None)
        return getattr(state, "conn", None)

    def _is_lost(self, exc: BaseException) -> bool:
        # A connection that could not even be opened leaves the thread without one.
        return connection_lost(exc, self._raw_conn()) or (
            self.tx.pg and isinstance(exc, (pw.OperationalError, pw.InterfaceError)) and self.db.is_closed()
        )

    def suspect_connections(self) -> None:
        """A store connection (this one's or the change listener's) was found dead."""
        self._epoch += 1

    def _fresh(self, kind: str) -> None:
        """Before this thread uses its connection: replace it if a loss was seen since its last use
        (counted as a reconnect of its kind, without an error)."""
        epoch = self._epoch
        if getattr(self._local, "epoch", epoch) != epoch and not self.db.is_closed():
            self.stats.reconnect(kind)
            self._reset_connection()
        self._local.epoch = epoch

    def _lost(self, kind: str, exc: BaseException) -> None:
        self.suspect_connections()
        self.stats.error("connection_lost")
        self.stats.reconnect(kind)
        log.warning("store connection (%s) lost: %s; reconnecting", kind, str(exc).strip().splitlines()[0][:200])
        loop, hook = self._loop, self.on_lost
        if loop is not None and hook is not None:
            try:
                loop.call_soon_threadsafe(hook, kind, exc)
            except RuntimeError:  # loop closed during shutdown
                pass

    def _reset_connection(self) -> None:
        try:
            if not self.db.is_closed():
                self.db.close()
        except Exception:  # noqa: BLE001 - the connection is being replaced anyway
            self.db.dispose()

    async def ping(self) -> None:
        """One read and one write round trip (each on its own connection), within the deadline."""
        await self.read(_ping)
        await self.write(_ping)

    # -- reads --------------------------------------------------------------------------

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read function fn(tx, *args) on a reader thread, within the deadline."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.timeout
        try:
            return await loop.run_in_executor(self._readers, self._read_call, fn, args, deadline)
        except (pw.DatabaseError, pw.InterfaceError, OSError) as exc:
            log.debug("read failed: %s: %s", type(exc).__name__, str(exc).strip()[:500])
            raise StoreUnavailable(f"the store could not be read ({_driver_text(exc)}); retry later") from exc

    def _read_call(self, fn: Callable[..., T], args: tuple[Any, ...], deadline: float) -> T:
        delay = 0.05
        while True:
            try:
                self._fresh("reader")
                return fn(self.tx, *args)
            except (pw.DatabaseError, pw.InterfaceError) as exc:
                if not self._is_lost(exc):
                    self.stats.error(error_kind(exc))
                    raise
                self._lost("reader", exc)
                self._reset_connection()
                if self._stopping or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """For start-up and command-line tools (not on the event loop)."""
        return fn(self.tx, *args)

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """For command-line tools only: a write in its own transaction on this thread."""
        with self._atomic():
            return fn(self.tx, *args)

    # -- writes -------------------------------------------------------------------------

    def write(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_commit: Callable[[T], None] | None = None,
        key: str | None = None,
    ) -> asyncio.Future[T]:
        """Queue a write; the future resolves after the transaction holding it committed, or fails
        with UNAVAILABLE when that did not happen within the deadline.

        `key` names what the write locks (a conversation): when another transaction holds that
        lock past lock_timeout, writes with the same key fail fast for a short cooldown instead
        of making every other write wait behind them."""
        assert self._loop is not None, "Database.start() was not called"
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Op(fn, args, fut, on_commit, time.monotonic() + self.timeout, key))
        return fut

    def announce_presence(self, online: Sequence[str], offline: Sequence[str]) -> asyncio.Future[None]:
        """Tell other replicas which agents are connected here (in notifications cut by size)."""
        return self.write(_presence, list(online), list(offline))

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """One transaction. SQLite takes the write lock up front (IMMEDIATE) so a writer in another
        process (the CLI) makes this wait instead of failing mid-way. The original error is kept
        even when the database already rolled back by itself (SQLITE_FULL does)."""
        self._committing = False
        self.tx.exec("BEGIN IMMEDIATE" if isinstance(self.db, pw.SqliteDatabase) else "BEGIN")
        try:
            yield
            self._committing = True
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
        self._reset_connection()

    def _apply(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        """Commit a batch in one transaction. A dead connection is replaced and the batch run again
        while its deadline allows (unless COMMIT was already sent); a deadlock is retried; any
        other failure is isolated to the op that caused it."""
        results: list[tuple[bool, Any] | None] = [None] * len(batch)
        delay, conflicts = 0.05, 0
        while True:
            now = time.monotonic()
            cooling = self._cooling
            for i, op in enumerate(batch):
                if results[i] is not None:
                    continue
                if op.deadline <= now:
                    self.stats.error("deadline")
                    results[i] = (False, _timed_out(self.timeout))
                elif cooling and op.key is not None and cooling.get(op.key, 0.0) > now:
                    self.stats.error("locked")
                    results[i] = (False, _locked(op.key))
            pending = [i for i, r in enumerate(results) if r is None]
            if not pending:
                break
            ops_ = [batch[i] for i in pending]
            try:
                self._fresh("writer")
                out = self._apply_in_one(ops_)
            except Exception as exc:  # noqa: BLE001 - any store failure is reported per op
                lost = self._is_lost(exc)
                committing = self._committing
                culprit, self._current = self._current, None
                self._reset_connection()
                if lost:
                    self._lost("writer", exc)
                    if committing:
                        for i in pending:
                            results[i] = (False, _in_doubt())
                        break
                    if self._stopping:
                        for i in pending:
                            results[i] = (False, _store_error(exc))
                        break
                    time.sleep(min(delay, max(0.0, min(op.deadline for op in ops_) - time.monotonic())))
                    delay = min(delay * 2, 1.0)
                    continue
                kind = error_kind(exc)
                if kind in ("lock_timeout", "statement_timeout") and culprit is not None and len(ops_) > 1:
                    # One op waited for a lock another transaction holds: it fails, the rest go on.
                    self.stats.error(kind)
                    i = pending[ops_.index(culprit)]
                    results[i] = (False, _store_error(exc))
                    if culprit.key is not None:
                        self._cool(culprit.key)
                    continue
                if kind == "lock_timeout" and culprit is not None and culprit.key is not None:
                    self._cool(culprit.key)
                if retryable(exc) and conflicts < 3:
                    # Two replicas took row locks in different orders; PostgreSQL chose this one.
                    conflicts += 1
                    self.stats.error("conflict")
                    continue
                if len(ops_) == 1:
                    self.stats.error(error_kind(exc))
                    log.warning("store write failed: %s: %s", type(exc).__name__, str(exc).strip()[:300])
                    results[pending[0]] = (False, _store_error(exc))
                    break
                # Isolate: one bad op (or a failing commit) must not take the others down.
                for i in pending:
                    results[i] = self._apply([batch[i]])[0]
                break
            else:
                self.commits += 1
                self.committed_ops += sum(1 for ok, _ in out if ok)
                self.stats.wrote(getattr(op.fn, "__name__", "op") for op, (ok, _) in zip(ops_, out, strict=True) if ok)
                for i, r in zip(pending, out, strict=True):
                    results[i] = r
                break
        return [r for r in results if r is not None]

    def _apply_in_one(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        self.tx.changes = changes = Changes()
        started = time.perf_counter()
        with self._atomic():
            for op in batch:
                self._current = op
                try:
                    results.append((True, op.fn(self.tx, *op.args)))
                except AgentnetError as exc:
                    results.append((False, exc))
            self._current = None
            if self.replica is not None:
                self._notify(changes)
        if self.on_commit_time is not None:
            self.on_commit_time(time.perf_counter() - started)
        return results

    def _cool(self, key: str) -> None:
        now = time.monotonic()
        if len(self._cooling) > 1000:
            self._cooling = {k: t for k, t in self._cooling.items() if t > now}
        self._cooling[key] = now + self.cooldown
        log.warning("%s is locked by another transaction; its writes fail fast for %g s", key, self.cooldown)

    def _notify(self, changes: Changes) -> None:
        """pg_notify inside a savepoint: a notification that fails never aborts the commit; the
        other replicas are then told to resynchronise instead."""
        assert self.replica is not None
        payloads = changes.payloads(self.replica)
        if not payloads:
            return
        self.tx.exec("SAVEPOINT agentnet_notify")
        try:
            for payload in payloads:
                self.tx.exec("SELECT pg_notify('agentnet', ?)", (payload,))
            self.tx.exec("RELEASE SAVEPOINT agentnet_notify")
        except pw.DatabaseError as exc:
            if self._is_lost(exc):
                raise
            self.stats.error("notify")
            log.warning("could not notify other replicas (%s); asking them to resynchronise", exc)
            self.tx.exec("ROLLBACK TO SAVEPOINT agentnet_notify")
            self.tx.exec("SELECT pg_notify('agentnet', ?)", (_encode({"r": self.replica, "resync": True}),))

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


def _timed_out(timeout: float) -> StoreUnavailable:
    return StoreUnavailable(
        f"the store did not take this write within {timeout:g} s; nothing was committed, retry",
        reason="STORE_TIMEOUT",
    )


def _locked(key: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"{key} is locked by another transaction in the store; nothing was committed, retry shortly",
        reason="STORE_TIMEOUT",
    )


def _in_doubt() -> StoreUnavailable:
    return StoreUnavailable(
        "the connection to the store broke while committing; retry with the same ids "
        "(a send that was stored is answered as a duplicate of the original)",
        reason="STORE_UNAVAILABLE",
    )

"""The store on SQLite (a real file) and PostgreSQL (the real server, when AGENTNET_TEST_POSTGRES is
set): schema versions, group commit, isolation of a failing request, seq allocation."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sqlite3

import pytest

from agentnet_server.errors import AlreadyExists, InvalidArgument, NotFound, StoreUnavailable
from agentnet_server.records import AgentWrite, MessageWrite, group_conv
from agentnet_server.store import ops
from agentnet_server.store.db import Database
from agentnet_server.store.schema import CURRENT_VERSION, SchemaError


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
async def db(db_url: str) -> Database:  # type: ignore[misc]
    d = Database(db_url, "FULL", readers=2, batch=256)
    d.migrate()
    d.start(asyncio.get_running_loop())
    yield d
    await asyncio.to_thread(d.close)


async def _agent(db: Database, agent_id: str, device: str = "dev") -> None:
    await db.write(ops.register_agent, AgentWrite(device, agent_id, agent_id, agent_id, "", ""), 0)


def _send(db: Database, sender: str, conv: str, cid: str, content: str = "hi") -> asyncio.Future:  # type: ignore[type-arg]
    from agentnet_server.domain.validate import digest

    w = MessageWrite(sender, "dev", conv, cid, digest(conv, content, None), content, None, (), content)
    return db.write(ops.send_message, w)


async def test_migrate_is_idempotent_and_versioned(db_url: str) -> None:
    for _ in range(2):
        d = Database(db_url)
        assert d.migrate() == CURRENT_VERSION
        d.close()


def _make_version_1(db_url: str) -> None:
    """A database as version 1 left it: no create_time indexes, version stamp 1."""
    d = Database(db_url)
    d.migrate()
    d.db.execute_sql("DROP INDEX message_create_time")
    d.db.execute_sql("DROP INDEX feed_create_time")
    d.db.execute_sql("DROP TABLE pruned_send")
    d.db.execute_sql("ALTER TABLE message DROP COLUMN reply_to")
    d.db.execute_sql("ALTER TABLE message DROP COLUMN auto_hops")
    _drop_v4(d)
    d.db.execute_sql("DELETE FROM schema_version")
    d.db.execute_sql("INSERT INTO schema_version (version, applied_at) VALUES (1, 0)")
    d.close()


def _drop_v4(d: Database) -> None:
    """Undo schema version 4 (group join rules, invitations, history visibility)."""
    d.db.execute_sql("ALTER TABLE agent_group DROP COLUMN join_rule")
    d.db.execute_sql("ALTER TABLE agent_group DROP COLUMN history")
    d.db.execute_sql("DROP TABLE group_invite")


async def test_version_3_groups_become_public_with_shared_history(db_url: str) -> None:
    """A version-3 database with a group: the migration keeps it public with shared history and
    adds invitations."""
    d = Database(db_url)
    d.migrate()
    _drop_v4(d)
    d.db.execute_sql("DELETE FROM schema_version")
    d.db.execute_sql("INSERT INTO schema_version (version, applied_at) VALUES (3, 0)")
    p = d.db.param
    d.db.execute_sql(
        f"INSERT INTO agent_group (id, title, description, creator, create_time) VALUES ({p}, {p}, '', {p}, 0)",
        ("old-group", "Old", "someone"),
    )
    d.close()
    d = Database(db_url)
    assert d.migrate() == 4
    row = d.db.execute_sql("SELECT join_rule, history FROM agent_group WHERE id = 'old-group'").fetchone()
    assert tuple(row) == ("public", "shared")
    assert d.db.table_exists("group_invite")
    d.close()


async def test_version_1_database_is_migrated_to_the_history_time_indexes(db_url: str) -> None:
    _make_version_1(db_url)

    d = Database(db_url)
    assert d.migrate() == CURRENT_VERSION == 4
    pg_sql, sqlite_sql = "SELECT indexname FROM pg_indexes", "SELECT name FROM sqlite_master WHERE type = 'index'"
    sql = pg_sql if d.is_postgres else sqlite_sql
    names = {r[0] for r in d.db.execute_sql(sql).fetchall()}
    assert {"feed_create_time", "message_create_time"} <= names
    assert d.db.table_exists("pruned_send")
    versions = [r[0] for r in d.db.execute_sql("SELECT version FROM schema_version ORDER BY version").fetchall()]
    assert versions == [1, 2, 3, 4]
    d.close()


async def test_version_2_messages_become_replies_aware(db_url: str) -> None:
    """A version-2 database (no reply_to / auto_hops columns) with a message in it: the migration
    adds both with 0 for the old message, and new sends store them."""
    d = Database(db_url)
    d.migrate()
    d.db.execute_sql("ALTER TABLE message DROP COLUMN reply_to")
    d.db.execute_sql("ALTER TABLE message DROP COLUMN auto_hops")
    _drop_v4(d)
    d.db.execute_sql("DELETE FROM schema_version")
    d.db.execute_sql("INSERT INTO schema_version (version, applied_at) VALUES (2, 0)")
    p = d.db.param
    d.db.execute_sql(
        "INSERT INTO message (conv, seq, sender, sender_device, client_msg_id, digest, content, payload, mentions, "
        f"create_time, signature, signer_fp, sign_time) VALUES ({', '.join([p] * 13)})",
        ("dm:a+b", 1, "a", "dev", "old", "d", "before the upgrade", None, "", 1, None, "", 0),
    )
    d.db.execute_sql(
        f"INSERT INTO conversation (id, kind, dm_a, dm_b, last_seq, create_time) VALUES ({p}, 'dm', 'a', 'b', 1, 0)",
        ("dm:a+b",),
    )
    d.close()

    d = Database(db_url, "FULL", readers=1, batch=16)
    assert d.migrate() == CURRENT_VERSION
    d.start(asyncio.get_running_loop())
    try:
        [old] = await d.read(ops.messages_after, "dm:a+b", 0, 10)
        assert (old.content, old.reply_to, old.auto_hops) == ("before the upgrade", 0, 0)
        await _agent(d, "a")
        await _agent(d, "b")
        from agentnet_server.domain.validate import digest

        w = MessageWrite("b", "dev", "dm:a+b", "new", digest("x"), "answer", None, (), "answer")
        with pytest.raises(InvalidArgument, match="reply_to 2 is not a message of dm:a\\+b"):
            await d.write(ops.send_message, dataclasses.replace(w, reply_to=2, auto_hops=1))
        r = await d.write(ops.send_message, dataclasses.replace(w, reply_to=1, auto_hops=2))
        assert (r.message.seq, r.message.reply_to, r.message.auto_hops) == (2, 1, 2)
        [_, new] = await d.read(ops.messages_after, "dm:a+b", 0, 10)
        assert (new.reply_to, new.auto_hops) == (1, 2)
    finally:
        await asyncio.to_thread(d.close)


async def test_servers_starting_together_migrate_once(db_url: str) -> None:
    """Replicas of one store upgrading at the same moment: one runs each migration, the others
    wait for it and find the schema current; none fails."""
    import concurrent.futures
    import threading

    _make_version_1(db_url)
    barrier = threading.Barrier(4, timeout=10)

    def start() -> int:
        replica = Database(db_url)
        try:
            barrier.wait()
            return replica.migrate()
        finally:
            replica.close()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: start(), range(4)))
    assert results == [CURRENT_VERSION] * 4
    d = Database(db_url)
    versions = [r[0] for r in d.db.execute_sql("SELECT version FROM schema_version ORDER BY version").fetchall()]
    assert versions == [1, 2, 3, 4]
    d.close()


async def test_newer_schema_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "future.db"
    d = Database(f"sqlite:///{path}")
    d.migrate()
    d.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (CURRENT_VERSION + 1,))
    d = Database(f"sqlite:///{path}")
    with pytest.raises(SchemaError, match="upgrade agentnet"):
        d.migrate()
    d.close()


async def test_concurrent_sends_are_group_committed_gap_free(db: Database) -> None:
    await _agent(db, "a")
    await _agent(db, "b")
    await db.write(ops.create_group, "a", "g", "g", "", 0)
    await db.write(ops.join_group, "b", "g", False, "", 0)
    commits_before = db.commits
    futs = [_send(db, "a" if i % 2 else "b", group_conv("g"), f"c{i}") for i in range(400)]
    results = await asyncio.gather(*futs)
    assert sorted(r.message.seq for r in results) == list(range(1, 401))
    # Results come back in submission order (the writer is FIFO).
    assert [r.message.seq for r in results] == list(range(1, 401))
    commits = db.commits - commits_before
    assert commits < 400, f"{commits} commits for 400 sends: no group commit happened"
    rows = await db.read(ops.messages_after, group_conv("g"), 0, 1000)
    assert [m.seq for m in rows] == list(range(1, 401))


async def test_a_refused_request_does_not_fail_its_batch(db: Database) -> None:
    await _agent(db, "a")
    await db.write(ops.create_group, "a", "g", "g", "", 0)
    futs = [
        _send(db, "a", group_conv("g"), "one"),
        _send(db, "a", group_conv("g"), "one", "other content"),  # same id, different content
        _send(db, "a", group_conv("nope"), "two"),  # unknown group
        _send(db, "a", group_conv("g"), "three"),
    ]
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert results[0].message.seq == 1  # type: ignore[union-attr]
    assert isinstance(results[1], AlreadyExists)
    assert isinstance(results[2], NotFound)
    assert results[3].message.seq == 2  # type: ignore[union-attr]


async def test_duplicate_in_same_batch_returns_the_original(db: Database) -> None:
    await _agent(db, "a")
    await db.write(ops.create_group, "a", "g", "g", "", 0)
    r1, r2 = await asyncio.gather(_send(db, "a", group_conv("g"), "same"), _send(db, "a", group_conv("g"), "same"))
    assert (r1.duplicate, r2.duplicate) == (False, True)
    assert r1.message.seq == r2.message.seq == 1


async def test_dm_conversation_is_created_on_first_send(db: Database) -> None:
    await _agent(db, "a")
    await _agent(db, "b")
    r = await _send(db, "a", "dm:a+b", "x")
    assert r.message.seq == 1 and r.message.recipient == "b"
    assert [f.agent for f in r.feed] == ["b"]
    heads = await db.read(ops.conversation_heads, "b")
    assert heads["dm:a+b"] == (1, 0)


async def test_full_store_refuses_writes_cleanly_and_recovers(tmp_path: pathlib.Path) -> None:
    d = Database(f"sqlite:///{tmp_path / 'full.db'}")
    d.migrate()
    d.start(asyncio.get_running_loop())
    try:
        await _agent(d, "a")
        await d.write(ops.create_group, "a", "g", "g", "", 0)
        ok = await _send(d, "a", group_conv("g"), "before", "x" * 1000)
        # The writer's connection may not grow the file any more: SQLITE_FULL on the next insert.
        pages = await d.write(lambda tx: tx.scalar("PRAGMA page_count"))
        await d.write(lambda tx: tx.scalar(f"PRAGMA max_page_count = {pages}"))
        with pytest.raises(StoreUnavailable) as err:
            await _send(d, "a", group_conv("g"), "full", "y" * 60_000)
        assert "nothing was committed" in err.value.message and "full" in err.value.message
        rows = await d.read(ops.messages_after, group_conv("g"), 0, 10)
        assert [m.client_msg_id for m in rows] == ["before"]
        # The store has room again: the same send now commits, with the next seq (no gap).
        await d.write(lambda tx: tx.scalar("PRAGMA max_page_count = 1073741823"))
        again = await _send(d, "a", group_conv("g"), "full", "y" * 60_000)
        assert again.message.seq == ok.message.seq + 1
    finally:
        await asyncio.to_thread(d.close)


@pytest.mark.postgres
def test_a_real_postgresql_deadlock_is_recognised_as_retryable(pg_database: str) -> None:
    """Two transactions lock two rows in opposite orders; PostgreSQL aborts one with SQLSTATE
    40P01. The writer retries such a batch: it must recognise the error by its code, through
    peewee's wrapping, and not retry other errors."""
    import threading

    import peewee as pw
    from playhouse.db_url import connect

    from agentnet_server.store.db import retryable, sqlstate

    setup = connect(pg_database)
    setup.execute_sql("CREATE TABLE lockpair (id int PRIMARY KEY, v int)")
    setup.execute_sql("INSERT INTO lockpair VALUES (1, 0), (2, 0)")
    barrier = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def worker(first: int, second: int) -> None:
        db = connect(pg_database)
        try:
            with db.atomic():
                db.execute_sql("UPDATE lockpair SET v = v + 1 WHERE id = %s", (first,))
                barrier.wait()
                db.execute_sql("UPDATE lockpair SET v = v + 1 WHERE id = %s", (second,))
        except pw.DatabaseError as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=worker, args=pair) for pair in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    [deadlock] = errors
    assert isinstance(deadlock, pw.OperationalError | pw.DatabaseError)
    assert sqlstate(deadlock) == "40P01" and retryable(deadlock)

    with pytest.raises(pw.IntegrityError) as dup:
        setup.execute_sql("INSERT INTO lockpair VALUES (1, 0)")
    assert sqlstate(dup.value) == "23505" and not retryable(dup.value)
    assert not retryable(RuntimeError("deadlock detected"))  # the text alone means nothing
    setup.close()


async def test_prune_history_deletes_the_oldest_in_batches_and_seqs_go_on(db: Database) -> None:
    from agentnet_server.records import now_us

    await _agent(db, "a")
    await db.write(ops.create_group, "a", "g", "g", "", 0)
    conv = group_conv("g")
    for i in range(5):
        await _send(db, "a", conv, f"c{i}")
    cutoff = now_us() + 1
    assert await db.write(ops.prune_history, cutoff, 2) == (2, 0)
    assert [m.seq for m in await db.read(ops.messages_after, conv, 0, 100)] == [3, 4, 5]
    assert await db.write(ops.prune_history, cutoff, 100) == (3, 0)
    assert await db.write(ops.prune_history, cutoff, 100) == (0, 0)
    # Counters live in the conversation row: the next message is 6, not 1.
    ack = await _send(db, "a", conv, "c5")
    assert ack.message.seq == 6
    # Nothing newer than the cutoff is touched.
    assert await db.write(ops.prune_history, cutoff, 100) == (0, 0)
    assert [m.seq for m in await db.read(ops.messages_after, conv, 0, 100)] == [6]
    # (sender, client_msg_id) stays taken after its message is deleted (docs/architecture.md guarantee 2): a late
    # resend is the original's duplicate, a reuse for other content is refused.
    late = await _send(db, "a", conv, "c1")
    assert (late.duplicate, late.message.conversation, late.message.seq) == (True, conv, 2)
    with pytest.raises(AlreadyExists):
        await _send(db, "a", conv, "c1", content="other")
    assert [m.seq for m in await db.read(ops.messages_after, conv, 0, 100)] == [6]

"""History retention (docs/architecture.md guarantee 4: nothing is skipped silently). With --retention-days the server
deletes old messages and inbox entries; a session that resumes across deleted history gets a
history_gap event for exactly that range, then everything still stored, in order, once."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
from typing import Any

from agentnet_client import Client
from tests.conftest import Clients, ServerProc

RETENTION_S = 4.0
GROUP = "ledger"
CONV = f"group:{GROUP}"


async def _events_until_caught_up(c: Client, settle: float = 0.5, timeout: float = 20.0) -> list[tuple[Any, ...]]:
    """Sequenced and gap events in arrival order, until caught_up and then a quiet `settle`."""
    out: list[tuple[Any, ...]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    caught = False
    while loop.time() < deadline:
        try:
            ev = await c.next_event(timeout=settle if caught else deadline - loop.time())
        except TimeoutError:
            if caught:
                return out
            continue
        kind = ev.WhichOneof("event")
        if kind == "caught_up":
            caught = True
        elif kind == "history_gap":
            out.append(("gap", ev.history_gap.conversation, ev.history_gap.from_seq, ev.history_gap.to_seq))
        elif kind == "message":
            out.append(("message", ev.message.conversation, ev.message.seq, ev.message.content))
        elif kind == "mention":
            out.append(("mention", ev.mention.item.seq))
    raise AssertionError(f"no caught_up within {timeout} s; got {out}")


async def _wait_pruned(server: ServerProc, count: int, timeout: float = 4 * RETENTION_S) -> None:
    """Until the store holds exactly `count` messages of the group (read from the SQLite file)."""
    path = server.db.removeprefix("sqlite:///")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with sqlite3.connect(path) as conn:
            n = conn.execute("SELECT COUNT(*) FROM message WHERE conv = ?", (CONV,)).fetchone()[0]
        if n == count:
            return
        assert loop.time() < deadline, f"{n} messages stored, want {count}"
        await asyncio.sleep(0.1)


async def test_resume_across_deleted_history_reports_the_gap_once(make_server: Any, tmp_path: pathlib.Path) -> None:
    server: ServerProc = make_server(retention_days=RETENTION_S / 86_400, prune_interval=0.2)
    cs = Clients(server.certs, server, tmp_path)
    cache = str(tmp_path / "bob.sqlite")
    try:
        alice = await cs.live("laoxing-vps", "alice", "Alice")
        bob = await cs.live("xiaoxing-mac", "bob", "Bob", cache=cache)
        await alice.join(GROUP, create=True)
        await bob.join(GROUP)
        await bob.close()

        # 1. Everything bob missed is deleted: a gap covering it, in the group and in his inbox.
        for i in range(1, 5):
            await alice.send(f"old {i}", group_id=GROUP)
        await alice.send("@Bob an old mention", group_id=GROUP)
        await _wait_pruned(server, 0)
        bob = await cs.live("xiaoxing-mac", "bob", "Bob", cache=cache)
        got = await _events_until_caught_up(bob)
        assert sorted(got) == sorted([("gap", CONV, 1, 5), ("gap", "inbox:bob", 1, 1)]), got
        inbox = await bob.inbox()
        assert (inbox.unread_total, list(inbox.items)) == (0, [])
        # Live traffic goes on right after the gap.
        after = await alice.send("after the gap", group_id=GROUP)
        assert after.seq == 6  # seqs never repeat, even though 1-5 are gone
        assert await _events_until_caught_up_live(bob) == [("message", CONV, 6, "after the gap")]

        # 2. Reconnecting again: the gap is not reported twice, nothing is replayed.
        await bob.close()
        bob = await cs.live("xiaoxing-mac", "bob", "Bob", cache=cache)
        assert await _events_until_caught_up(bob) == []

        # 3. Deleted history followed by stored history: the gap, then the rest in order.
        await bob.close()
        for i in range(7, 10):
            await alice.send(f"old {i}", group_id=GROUP)
        await _wait_pruned(server, 0)
        fresh = [await alice.send(f"new {i}", group_id=GROUP) for i in (10, 11)]
        bob = await cs.live("xiaoxing-mac", "bob", "Bob", cache=cache)
        assert await _events_until_caught_up(bob) == [
            ("gap", CONV, 7, 9),
            ("message", CONV, fresh[0].seq, "new 10"),
            ("message", CONV, fresh[1].seq, "new 11"),
        ]
        assert [m.seq for m in await alice.history(group_id=GROUP)] == [10, 11]
    finally:
        await cs.close_all()


async def _events_until_caught_up_live(c: Client, settle: float = 0.5) -> list[tuple[Any, ...]]:
    """Live events (no caught_up comes): what arrives until a quiet `settle`."""
    out: list[tuple[Any, ...]] = []
    while True:
        try:
            ev = await c.next_event(timeout=settle if out else 10.0)
        except TimeoutError:
            return out
        if ev.WhichOneof("event") == "message":
            out.append(("message", ev.message.conversation, ev.message.seq, ev.message.content))


async def test_retention_flags_are_validated(tmp_path: pathlib.Path) -> None:
    import subprocess
    import sys

    for flags, word in ((["--retention-days", "-1"], "retention-days"), (["--prune-interval", "0"], "prune-interval")):
        out = subprocess.run(
            [sys.executable, "-m", "agentnet_server", "serve", *flags], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 2 and word in out.stderr, out.stderr


async def test_a_lagging_session_is_told_about_history_deleted_while_it_lagged(
    make_server: Any, tmp_path: pathlib.Path
) -> None:
    """A reader stops reading, its queue overflows, and retention deletes what it missed before
    it reads again: it gets gaps and messages that together cover every seq once, in order."""
    from tests.test_faults import _stalled_reader

    server: ServerProc = make_server(retention_days=RETENTION_S / 86_400, prune_interval=0.2, session_queue=8)
    cs = Clients(server.certs, server, tmp_path)
    sender = await cs.live("laoxing-vps", "alice", "Alice")
    await sender.join(GROUP, create=True)
    channel, call, hb = await _stalled_reader(cs.device_dir("xiaojin-mini"), server.addr, "slowpoke", GROUP)
    try:
        big = "z" * 12_000
        n = 150
        for start in range(0, n, 50):
            await asyncio.gather(*(sender.send(f"{i}:{big}", group_id=GROUP) for i in range(start, start + 50)))
        await _wait_pruned(server, 0)
        # Nothing is sent afterwards: the tail must be reported from the heads, not from a later
        # message.
        covered: list[int] = []
        deadline = asyncio.get_running_loop().time() + 30
        while not covered or covered[-1] < n:
            assert asyncio.get_running_loop().time() < deadline, f"covered only up to {covered[-1:]} of {n}"
            ev = await asyncio.wait_for(call.read(), 30)
            kind = ev.WhichOneof("event")
            if kind == "history_gap" and ev.history_gap.conversation == CONV:
                covered.extend(range(ev.history_gap.from_seq, ev.history_gap.to_seq + 1))
            elif kind == "message" and ev.message.conversation == CONV:
                covered.append(ev.message.seq)
        assert covered == list(range(1, n + 1))
        assert "fell behind; catching up from the store" in server.logs()
        after = await sender.send("fresh", group_id=GROUP)
        while True:
            ev = await asyncio.wait_for(call.read(), 30)
            if ev.WhichOneof("event") in ("history_gap", "message"):
                break
        assert (ev.WhichOneof("event"), ev.message.seq) == ("message", after.seq)
    finally:
        hb.cancel()
        call.cancel()
        await channel.close()
        await cs.close_all()

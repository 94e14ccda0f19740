"""Change notifications between server replicas that share one PostgreSQL database.

Writers announce what each transaction changed with pg_notify (see Database.replica); this
listener hears the other replicas' announcements on a dedicated connection and hands them to
the event loop. Payloads carry ids only; the receiver reads the rows from the store.

The connection is checked every few seconds (a silent peer is noticed by TCP keepalives and
the check); when it is lost the listener says so (`on_lost`), reconnects with backoff and is
`ready` again only once LISTEN is in effect, so a resynchronisation started after that point
misses nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from .db import connection_lost

log = logging.getLogger("agentnet.pubsub")
CHANNEL = "agentnet"
CHECK_EVERY = 2.0  # seconds between liveness checks of the LISTEN connection


class Listener(threading.Thread):
    """LISTEN on its own connection; reconnects with backoff and reports each loss."""

    def __init__(
        self,
        url: str,
        replica: str,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[dict[str, Any]], None],
        on_lost: Callable[[str, BaseException], None] | None = None,
        on_lag: Callable[[float], None] | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(name="agentnet-listen", daemon=True)
        self.url = url
        self.replica = replica
        self.loop = loop
        self.deliver = deliver
        self.on_lost = on_lost
        self.on_lag = on_lag
        self.connect_timeout = connect_timeout
        self._stop_event = threading.Event()
        self.ready = threading.Event()
        self.connects = 0

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        delay = 0.1
        while not self._stop_event.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = psycopg.connect(
                    self.url,
                    autocommit=True,
                    application_name=f"agentnet[{os.getpid()}] agentnet-listen",
                    connect_timeout=max(1, int(self.connect_timeout)),
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=3,
                )
                conn.execute(f"LISTEN {CHANNEL}")
                self.connects += 1
                self.ready.set()
                delay = 0.1
                if self.connects == 1:
                    # Changes made before LISTEN took effect were not heard: catch up once listening.
                    # (After a reconnect the replica's recovery resynchronises; see on_lost.)
                    self._hand({"resync": True})
                self._listen(conn)
            except Exception as exc:  # noqa: BLE001 - any failure: report, back off, reconnect
                if self._stop_event.is_set():
                    break
                was_ready = self.ready.is_set()
                self.ready.clear()
                if was_ready or conn is None or connection_lost(exc, conn):
                    log.warning("change listener lost its connection (%s); reconnecting", str(exc).strip()[:200])
                    if self.on_lost is not None:
                        self._call(self.on_lost, "listen", exc)
                self._stop_event.wait(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001 - already gone
                        pass

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        checked = time.monotonic()
        while not self._stop_event.is_set():
            for n in conn.notifies(timeout=0.5):
                try:
                    data = json.loads(n.payload)
                except ValueError:
                    continue
                if not isinstance(data, dict) or data.get("r") == self.replica:
                    continue
                sent = data.get("t")
                if self.on_lag is not None and isinstance(sent, int):
                    self.on_lag(max(0.0, time.time() - sent / 1000))
                self._hand(data)
            if time.monotonic() - checked > CHECK_EVERY:
                conn.execute("SELECT 1")
                checked = time.monotonic()

    def _hand(self, data: dict[str, Any]) -> None:
        self._call(self.deliver, data)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed
            self._stop_event.set()

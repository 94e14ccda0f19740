"""Change notifications between server replicas that share one PostgreSQL database.

Writers announce what each transaction changed with pg_notify (see Database.replica); this
listener hears the other replicas' announcements on a dedicated connection and hands them to
the event loop. Payloads carry ids only; the receiver reads the rows from the store."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

log = logging.getLogger("agentnet.pubsub")
CHANNEL = "agentnet"


class Listener(threading.Thread):
    """LISTEN on its own connection; reconnects, and asks for a full resync after a gap."""

    def __init__(
        self, url: str, replica: str, loop: asyncio.AbstractEventLoop, deliver: Callable[[dict[str, Any]], None]
    ) -> None:
        super().__init__(name="agentnet-listen", daemon=True)
        self.url = url
        self.replica = replica
        self.loop = loop
        self.deliver = deliver
        self._stop_event = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.ready.set()
                    # Changes made before LISTEN took effect (at start, or while reconnecting) were
                    # not heard: catch up from the store once listening.
                    self._hand({"resync": True})
                    while not self._stop_event.is_set():
                        for n in conn.notifies(timeout=0.5):
                            try:
                                data = json.loads(n.payload)
                            except ValueError:
                                continue
                            if data.get("r") != self.replica:
                                self._hand(data)
            except psycopg.Error as exc:
                log.warning("change listener lost its connection (%s); reconnecting", exc)
                time.sleep(1.0)

    def _hand(self, data: dict[str, Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.deliver, data)
        except RuntimeError:  # loop closed
            self._stop_event.set()

"""A TCP proxy for fault tests: forwards bytes, can freeze (stop forwarding without closing) and
can add one-way latency (a long link, e.g. a VPS on another continent)."""

from __future__ import annotations

import asyncio
import contextlib


class FreezableProxy:
    def __init__(self, target_host: str, target_port: int, latency: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.latency = latency  # seconds added to every chunk, each direction
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._running = asyncio.Event()
        self._running.set()
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FreezableProxy:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def freeze(self) -> None:
        """Stop moving bytes in both directions; connections stay open (a silent dead link)."""
        self._running.clear()

    def thaw(self) -> None:
        self._running.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._running.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            t = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._running.wait()
                data = await src.read(65536)
                if not data:
                    break
                if self.latency:
                    await asyncio.sleep(self.latency)
                await self._running.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in list(self._conns):
            with contextlib.suppress(Exception):
                w.close()
        for t in list(self._tasks):
            t.cancel()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

"""A loopback TCP proxy that plays a bad network between the collector and PostgreSQL.

It forwards 127.0.0.1:<port> to the server and, on demand:

- ``cut_all()`` aborts every open connection, and ``Mode.REFUSE`` cuts each new one at once;
- ``latency_s`` delays every chunk in each direction (order kept);
- ``Mode.BLACK_HOLE`` accepts connections and swallows everything, answering nothing;
- ``swallow_acks(n)`` lets the next ``n`` committed writes reach the server, then cuts the
  connection instead of relaying the server's acknowledgement (the lost-acknowledgement case).

The server's acknowledgement of a write is its CommandComplete (``INSERT 0 <rows>`` for an
autocommit statement, ``COMMIT`` for an explicit transaction) followed by ReadyForQuery; PostgreSQL
sends both only after the transaction has committed, so a swallowed acknowledgement is always a
committed write the client does not know about.

It runs an asyncio loop on its own thread; the control methods may be called from any thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Coroutine
from enum import StrEnum
from typing import Any

_ACK = re.compile(rb"C\x00\x00\x00.(?:INSERT 0 (\d+)|COMMIT)\x00", re.DOTALL)
_READY = re.compile(rb"Z\x00\x00\x00\x05[ITE]")
_TAIL = 64


class Mode(StrEnum):
    PASS = "pass"
    REFUSE = "refuse"
    BLACK_HOLE = "black_hole"


class _Link:
    """One proxied connection: the client side, the server side, and the pump tasks."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.server):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    """See the module docstring. Use as a context manager, or call start() and stop()."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.mode = Mode.PASS
        self.latency_s = 0.0
        self.port = 0
        self.connections = 0
        self.swallowed_rows: list[int | None] = []
        self._acks_to_swallow = 0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> int:
        self._thread.start()
        self._call(self._listen())
        return self.port

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def set_mode(self, mode: Mode) -> None:
        """Switch mode. Entering REFUSE, or leaving BLACK_HOLE (whose connections have lost data
        in the middle of the protocol), cuts every open connection."""
        previous, self.mode = self.mode, mode
        if mode is Mode.REFUSE or (previous is Mode.BLACK_HOLE and mode is not Mode.BLACK_HOLE):
            self.cut_all()

    def cut_all(self) -> int:
        """Abort every open connection; returns how many there were."""
        return self._call(self._cut_all())

    def swallow_acks(self, count: int) -> None:
        self._acks_to_swallow = count

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ------------------------------------------------------------------ the loop

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut_all()

    async def _cut_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        self._links.clear()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode is Mode.REFUSE:
            writer.transport.abort()
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            if self.mode is Mode.BLACK_HOLE:
                await self._swallow(reader)
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                return
            link.server = server_writer
            upstream = asyncio.ensure_future(self._pump(reader, server_writer, link, from_server=False))
            downstream = asyncio.ensure_future(self._pump(server_reader, writer, link, from_server=True))
            link.tasks = [upstream, downstream]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            link.abort()
            self._links.discard(link)

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        from_server: bool,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, writer))
        tail = b""
        swallowing: int | None = None  # rows of the acknowledgement being swallowed
        try:
            while chunk := await reader.read(65536):
                if self.mode is Mode.BLACK_HOLE:
                    continue
                if from_server and (swallowing is not None or self._acks_to_swallow > 0):
                    seen = tail + chunk
                    if swallowing is None and (match := _ACK.search(seen)):
                        self._acks_to_swallow -= 1
                        swallowing = int(match.group(1)) if match.group(1) else -1
                    if swallowing is not None:
                        if _READY.search(seen):
                            self.swallowed_rows.append(None if swallowing < 0 else swallowing)
                            link.abort()
                            return
                        tail = seen[-_TAIL:]
                        continue
                    tail = seen[-_TAIL:]
                await queue.put((time.monotonic() + self.latency_s, chunk))
            await queue.put((0.0, b""))
            await sender
        finally:
            sender.cancel()

    @staticmethod
    async def _send(queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(chunk)
            await writer.drain()

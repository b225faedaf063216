"""The server side of the simulator: where the real PostgreSQL is, the
protocol of a session's server connection, and cancel requests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from .. import pgwire

logger = logging.getLogger("orca_db.simulator")


class ServerSide(Protocol):
    """What an :class:`Upstream` reports to (a session)."""

    def server_bytes(self, data: bytes) -> None: ...
    def server_lost(self) -> None: ...
    def server_pause_writing(self) -> None: ...
    def server_resume_writing(self) -> None: ...


class ServerAddress:
    """The real server: ``host`` is an address or a Unix socket directory."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port

    async def connect(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Transport:
        loop = asyncio.get_running_loop()
        if self.host.startswith("/"):
            path = f"{self.host}/.s.PGSQL.{self.port}"
            transport, _ = await loop.create_unix_connection(factory, path)
        else:
            transport, _ = await loop.create_connection(factory, self.host, self.port)
        return transport

    async def send_cancel(self, packet: bytes) -> None:
        """Deliver a CancelRequest on a connection of its own."""
        done = asyncio.get_running_loop().create_future()
        try:
            transport = await self.connect(lambda: CancelSender(packet, done))
        except OSError as exc:
            logger.warning("could not pass a cancel request on: %s", exc)
            return
        try:
            # The server reads the request, then closes without a reply.
            await asyncio.wait_for(done, 5)
        except TimeoutError:
            transport.abort()


class CancelSender(asyncio.Protocol):
    """Sends one CancelRequest and notes when the server hangs up."""

    def __init__(self, packet: bytes, done: asyncio.Future[None]):
        self.packet = packet
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.packet)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Upstream(asyncio.Protocol):
    """A session's server connection: hands what arrives to the session."""

    def __init__(self, session: ServerSide, boundaries: pgwire.Boundaries):
        self.session = session
        self.boundaries = boundaries
        # The session points this at its client's write while bytes flow
        # straight through: the hot path, one call per chunk.
        self.forward: Callable[[bytes], object] | None = None

    def data_received(self, data: bytes) -> None:
        forward = self.forward
        if forward is not None:
            self.boundaries.advance(data)
            forward(data)
        else:
            self.session.server_bytes(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.forward = None
        self.session.server_lost()

    def pause_writing(self) -> None:
        self.session.server_pause_writing()

    def resume_writing(self) -> None:
        self.session.server_resume_writing()

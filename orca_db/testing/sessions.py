"""One proxied connection of the Aurora simulator: the client side, the
server side, and what a fault does to them. Driven by
:class:`orca_db.testing.simulator.AuroraSimulator`, which owns the counters
and the pause/rejection state these classes consult."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import pgwire

if TYPE_CHECKING:
    from .simulator import AuroraSimulator

logger = logging.getLogger("orca_db.simulator")

SCALE_EVENT_MESSAGE = "terminating connection due to serverless scale event timeout"
SCALE_POINT_MESSAGE = (
    "terminating connection because backend initialization completed past serverless scale point"
)
# Aurora's SQLSTATE for the startup rejection is not documented; neither
# driver exposes one for an error at connect time anyway.
SCALE_POINT_SQLSTATE = "57P01"
ADMIN_SHUTDOWN = "57P01"

#: How connections that fail fast during a resume storm fail.
STORM_FAILURES = ("eof", "too_many_connections", "pg_hba")

# Session phases.
STARTUP = "startup"  # reading the client's first packet(s)
HELD = "held"  # paused: waiting for resume()
CONNECTING = "connecting"  # opening the server connection
LOGIN = "login"  # authentication and parameter exchange, until ReadyForQuery
READY = "ready"  # forwarding
TERMINATING = "terminating"  # scale event: waiting for the backend to exit
CLOSED = "closed"


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


class Session(asyncio.Protocol):
    """One client connection and, once started up, its server connection.

    Client to server, bytes are forwarded untouched once the startup packet
    is read. Server to client, the login messages are read (for the
    backend's pid and cancel key, and to see ReadyForQuery), then bytes are
    forwarded as they come while :class:`pgwire.Boundaries` follows where
    messages end."""

    def __init__(self, simulator: AuroraSimulator):
        self.sim = simulator
        self.phase = STARTUP
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.peer_host = "?"
        self._inbox = bytearray()  # client bytes not yet forwarded
        self._task: asyncio.Task[None] | None = None
        # The hot paths: set while bytes flow straight through.
        self._to_server: Callable[[bytes], Any] | None = None
        self._to_client: Callable[[bytes], Any] | None = None
        self._login_reader: pgwire.MessageReader | None = pgwire.MessageReader()
        self.boundaries = pgwire.Boundaries()
        self.backend_pid: int | None = None
        self.backend_key: int | None = None
        self.client_cut = False
        self.upstream_gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ----- client side ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_host = peer[0]
        self.sim._sessions.add(self)
        self.sim._count("connections")
        self.sim._count("active")

    def data_received(self, data: bytes) -> None:
        forward = self._to_server
        if forward is not None:
            forward(data)
        elif self.phase == STARTUP:
            self._inbox += data
            self._read_first_packets()
        elif self.phase in (HELD, CONNECTING):
            self._inbox += data
        # TERMINATING / CLOSED: what the client sends now goes nowhere.

    def connection_lost(self, exc: Exception | None) -> None:
        self.sim._count("active", -1)
        if self._task is not None and self.phase in (HELD, CONNECTING):
            self._task.cancel()
        self._to_server = self._to_client = None
        if self.phase == TERMINATING:
            return  # the scale event still waits for the backend to exit
        self.phase = CLOSED
        self.sim._sessions.discard(self)
        if self.upstream is not None:
            # The backend reads the end of the stream and exits.
            self.upstream.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    def _read_first_packets(self) -> None:
        assert self.client is not None
        while self.phase == STARTUP:
            try:
                first = pgwire.split_first_packet(self._inbox)
            except pgwire.ProtocolViolation as exc:
                logger.warning("closing a client: %s", exc)
                self.client.abort()
                return
            if first is None:
                return
            code, packet = first
            del self._inbox[: len(packet)]
            if code in (pgwire.SSL_REQUEST, pgwire.GSSENC_REQUEST):
                # No encryption here; libpq then carries on in plain text
                # (sslmode=disable/allow/prefer, gssencmode=disable/prefer).
                self.client.write(b"N")
            elif code == pgwire.CANCEL_REQUEST:
                self.phase = CLOSED
                self.sim._count("cancel_requests")
                # The backend pid and key the client knows are the server's
                # own (passed through at login), so the request goes as is.
                asyncio.get_running_loop().create_task(self.sim._send_cancel(packet))
                self.client.close()
            elif code >> 16 == pgwire.PROTOCOL_MAJOR_3:
                self._task = asyncio.get_running_loop().create_task(self._open(packet))
                self.phase = HELD if self.sim._paused else CONNECTING
            else:
                logger.warning("closing a client: unsupported protocol %d", code)
                self.client.abort()
                return

    async def _open(self, packet: bytes) -> None:
        """Hold, reject or start the session whose StartupMessage is ``packet``."""
        sim = self.sim
        assert self.client is not None and sim._resumed is not None
        if sim._paused:
            if sim._storm_strikes():
                self._fail_fast(pgwire.startup_parameters(packet))
                return
            self.phase = HELD
            sim._count("held")
            sim._count("holding")
            try:
                await sim._resumed.wait()
            finally:
                sim._count("holding", -1)
            if self.phase == CLOSED:
                return
        if sim._take_rejection():
            sim._count("rejected")
            rejection = pgwire.error_response("FATAL", SCALE_POINT_SQLSTATE, SCALE_POINT_MESSAGE)
            self._end_client(rejection)
            return
        self.phase = CONNECTING
        try:
            upstream = await sim._connect_upstream(lambda: Upstream(self))
        except OSError as exc:
            # What a client sees of a server that is not there: the stream ends.
            logger.warning("could not reach the upstream server: %s", exc)
            self.phase = CLOSED
            self.client.abort()
            return
        if self.phase == CLOSED:
            upstream.close()
            return
        self.upstream = upstream
        self.phase = LOGIN
        upstream.write(packet + bytes(self._inbox))
        self._inbox.clear()
        self._to_server = upstream.write

    def _fail_fast(self, parameters: dict[str, str]) -> None:
        self.sim._count("storm_failed")
        failure = self.sim._storm_failure
        if failure == "too_many_connections":
            message = pgwire.error_response("FATAL", "53300", "sorry, too many clients already")
        elif failure == "pg_hba":
            message = pgwire.error_response(
                "FATAL",
                "28000",
                f'no pg_hba.conf entry for host "{self.peer_host}", user '
                f'"{parameters.get("user", "")}", database '
                f'"{parameters.get("database", parameters.get("user", ""))}", no encryption',
            )
        else:
            message = b""
        self._end_client(message)

    def _end_client(self, last_message: bytes) -> None:
        assert self.client is not None
        self.phase = CLOSED
        if last_message:
            self.client.write(last_message)
        self.client.close()

    # ----- server side ------------------------------------------------------

    def server_data(self, data: bytes) -> None:
        """The login conversation, and whatever arrives during a scale event."""
        if self.phase == LOGIN:
            assert self.client is not None and self._login_reader is not None
            self.client.write(data)
            for kind, body in self._login_reader.feed(data):
                if kind == pgwire.BACKEND_KEY_DATA:
                    self.backend_pid, self.backend_key = pgwire.parse_backend_key_data(body)
                elif kind == pgwire.READY_FOR_QUERY and self.phase == LOGIN:
                    self.phase = READY
            if self.phase == READY:
                self.boundaries.advance(self._login_reader.leftover())
                self._login_reader = None
                self._to_client = self.client.write
        elif self.phase == TERMINATING and not self.client_cut and self.client is not None:
            # Pass on the rest of the message in progress, then nothing.
            end = self.boundaries.end_of_current(data)
            if end is None:
                self.client.write(data)
                self.boundaries.advance(data)
            else:
                self.client.write(data[:end])
                self.client_cut = True

    def server_lost(self) -> None:
        if not self.upstream_gone.done():
            self.upstream_gone.set_result(None)
        client = self.client
        if self.phase == TERMINATING:
            self.phase = CLOSED
            self.sim._sessions.discard(self)
            if client is not None and not client.is_closing():
                if self.client_cut:
                    # The backend has exited: its transaction is rolled back.
                    client.write(
                        pgwire.error_response("FATAL", ADMIN_SHUTDOWN, SCALE_EVENT_MESSAGE)
                    )
                    client.close()
                else:
                    client.abort()  # died mid-message: nothing sensible to add
            return
        self._to_server = self._to_client = None
        self.phase = CLOSED
        if client is not None:
            client.close()  # after whatever the server said last

    def terminate(self) -> asyncio.Future[None]:
        """Start ending this session as a scale event; the returned future is
        done once the backend has exited (the server closed the stream)."""
        assert self.upstream is not None
        if self._login_reader is not None:
            self.boundaries.advance(self._login_reader.leftover())
            self._login_reader = None
        self.phase = TERMINATING
        self._to_server = self._to_client = None
        self.client_cut = self.boundaries.at_boundary
        # An idle backend reads the end of the stream and exits at once; one
        # running a statement is cancelled first (below).
        if not self.upstream.is_closing():
            self.upstream.write_eof()
        asyncio.get_running_loop().create_task(self._cancel_until_gone())
        return self.upstream_gone

    async def _cancel_until_gone(self) -> None:
        delay = 0.05
        while not self.upstream_gone.done():
            await asyncio.wait([self.upstream_gone], timeout=delay)
            if self.upstream_gone.done() or self.backend_pid is None:
                return
            assert self.backend_key is not None
            await self.sim._send_cancel(pgwire.cancel_request(self.backend_pid, self.backend_key))
            delay = min(delay * 2, 1.0)

    def abort(self) -> None:
        """Cut both sides now, with no message."""
        self._to_server = self._to_client = None
        self.phase = CLOSED
        self.sim._sessions.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.abort()
        if not self.upstream_gone.done():
            self.upstream_gone.set_result(None)


class Upstream(asyncio.Protocol):
    """The server side of a session."""

    def __init__(self, session: Session):
        self.session = session

    def data_received(self, data: bytes) -> None:
        session = self.session
        forward = session._to_client
        if forward is not None:
            session.boundaries.advance(data)
            forward(data)
        else:
            session.server_data(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.server_lost()

    def pause_writing(self) -> None:
        if self.session.client is not None:
            self.session.client.pause_reading()

    def resume_writing(self) -> None:
        if self.session.client is not None:
            self.session.client.resume_reading()

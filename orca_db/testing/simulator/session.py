"""One proxied connection of the Aurora simulator: its client side, its
admission, and the faults the simulator applies to it (the server half is
:class:`~.server_side.ServerSide`). A session sees only the
:class:`~.faults.FaultState` (the faults in force, the counters) and the
:class:`~.upstream.ServerAddress` it connects to.

Client to server, bytes are forwarded untouched once the startup packet is
read (their message lengths are followed, so that watching for a lost reply
can start at a message boundary). Server to client, the login messages are
read (for the backend's pid and cancel key, and to see ReadyForQuery), then
bytes are forwarded as they come while :class:`pgwire.Boundaries` follows
where messages end, so that a session can be cut between two messages."""

from __future__ import annotations

import asyncio
import logging

from .. import pgwire
from .client_link import ClientLink
from .faults import FaultState
from .phase import LIVE, Phase
from .server_side import ServerSide
from .upstream import ServerAddress, Upstream
from .watch import QueryWatcher

logger = logging.getLogger("orca_db.simulator")


class Session(ServerSide, asyncio.Protocol):
    """One client connection and, once admitted, its server connection."""

    def __init__(self, faults: FaultState, server: ServerAddress):
        super().__init__()
        self.faults = faults
        self.server = server
        self.phase = Phase.STARTUP
        self.upstream = None
        self.link: Upstream | None = None
        self.peer_host = "?"
        self.requests = pgwire.Boundaries()  # where the client's messages end
        self._inbox = bytearray()  # client bytes not yet forwarded
        self._task: asyncio.Task[None] | None = None
        # The hot path, client to server: set while bytes flow straight through.
        self._straight_to: asyncio.Transport | None = None
        self._watcher: QueryWatcher | None = None

    @property
    def silent(self) -> bool:
        return self.client.silent

    def route(self) -> None:
        """Point the hot paths straight at the server and the client when
        bytes may flow through untouched; otherwise the slow paths decide."""
        flowing = not self.client.silent
        straight = flowing and self.phase in LIVE and self._watcher is None
        self._straight_to = self.upstream if straight else None
        if self.link is not None:
            ready = flowing and self.phase is Phase.READY
            self.link.forward = self.client.transport.write if ready else None

    # ----- client side ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = ClientLink(transport, self.faults.counters)  # type: ignore[arg-type]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_host = peer[0]
        self.faults.sessions.add(self)
        self.faults.count("connections")
        self.faults.count("active")
        if self.faults.silent and self.faults.silence_new:
            self.silence()

    def data_received(self, data: bytes) -> None:
        upstream = self._straight_to
        if upstream is not None:
            self.requests.advance(data)
            upstream.write(data)
        elif self.client.silent:
            self.client.held_in += data
        elif self._watcher is not None and self.phase in LIVE:
            self._watch(data)
        elif self.phase is Phase.STARTUP:
            self._inbox += data
            self._read_first_packets()
        elif self.phase in (Phase.HELD, Phase.CONNECTING):
            self._inbox += data
        # TERMINATING / CLOSED: what the client sends now goes nowhere.

    def connection_lost(self, exc: Exception | None) -> None:
        self.faults.count("active", -1)
        self.faults.sessions.discard(self)
        self.client.gone()
        if self._task is not None and self.phase in (Phase.HELD, Phase.CONNECTING):
            self._task.cancel()
        if self.phase is not Phase.TERMINATING:  # a scale event waits for the backend
            self.phase = Phase.CLOSED
        self.route()
        if self.upstream is not None:
            # The backend reads the end of the stream and exits (after the
            # statement it runs, if any: PostgreSQL does not look sooner).
            self.upstream.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    def _read_first_packets(self) -> None:
        while self.phase is Phase.STARTUP:
            try:
                first = pgwire.split_first_packet(self._inbox)
            except pgwire.ProtocolViolation as exc:
                logger.warning("closing a client: %s", exc)
                self.abort()
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
                self.phase = Phase.CLOSED
                self.faults.count("cancel_requests")
                # The backend pid and key the client knows are the server's
                # own (passed through at login), so the request goes as is.
                asyncio.get_running_loop().create_task(self.server.send_cancel(packet))
                self.client.close()
            elif code >> 16 == pgwire.PROTOCOL_MAJOR_3:
                self._task = asyncio.get_running_loop().create_task(self._open(packet))
                self.phase = Phase.HELD if self.faults.paused else Phase.CONNECTING
            else:
                logger.warning("closing a client: unsupported protocol %d", code)
                self.abort()

    async def _open(self, packet: bytes) -> None:
        """Hold, refuse or start the session whose StartupMessage is ``packet``."""
        faults = self.faults
        if faults.paused:
            refusal = faults.storm_refusal(self.peer_host, pgwire.startup_parameters(packet))
            if refusal is not None:
                return self._refuse(refusal)
            self.phase = Phase.HELD
            faults.count("held")
            faults.count("holding")
            try:
                await faults.resumed.wait()
            finally:
                faults.count("holding", -1)
            if self.phase is Phase.CLOSED:
                return
        refusal = faults.admit(self)
        if refusal is not None:
            return self._refuse(refusal)
        self.phase = Phase.CONNECTING
        link = Upstream(self, self.replies)
        try:
            upstream = await self.server.connect(lambda: link)
        except OSError as exc:
            # What a client sees of a server that is not there: the stream ends.
            logger.warning("could not reach the upstream server: %s", exc)
            return self.abort()
        except asyncio.CancelledError:
            faults.release(self)
            raise
        if self.phase is Phase.CLOSED:
            upstream.close()  # the client left meanwhile
            return
        self.upstream, self.link = upstream, link
        self.phase = Phase.LOGIN
        if faults.lost_replies is not None:
            self._watcher = QueryWatcher(self.requests)
        upstream.write(packet)
        self.route()
        inbox, self._inbox = bytes(self._inbox), bytearray()
        if inbox:
            self.data_received(inbox)

    def _refuse(self, last_message: bytes) -> None:
        self.phase = Phase.CLOSED
        if last_message:
            self.client.write(last_message)
        self.client.close()

    # ----- faults -----------------------------------------------------------

    def abort(self) -> None:
        """Cut both sides now, with no message (silent or not)."""
        self.phase = Phase.CLOSED
        self.route()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for transport in (self.client.transport, self.upstream):
            if transport is not None:
                transport.abort()
        self.faults.release(self)
        if not self.upstream_gone.done():
            self.upstream_gone.set_result(None)

    def silence(self) -> None:
        """Carry nothing either way from now on, close nothing (ClientLink)."""
        if self.phase is not Phase.CLOSED and self.client.silence():
            self.route()

    def unsilence(self) -> None:
        """Deliver what was held, in order, and carry on."""
        if self.client.silent:
            held_in = self.client.unsilence()
            self.route()
            if held_in:
                self.data_received(held_in)

    def watch(self) -> None:
        """Look for queries in the client's stream: lose_replies() is armed."""
        if self._watcher is None and self.phase in (Phase.LOGIN, Phase.READY):
            self._watcher = QueryWatcher(self.requests)
            self.route()

    def _watch(self, data: bytes) -> None:
        assert self.upstream is not None and self._watcher is not None
        for piece, sql in self._watcher.feed(data):
            self.upstream.write(piece)
            if sql is not None and self.phase is Phase.READY:
                order = self.faults.take_lost_reply(sql)
                if order is not None:
                    self.lose_reply(order)
        if self.faults.lost_replies is None or self.phase not in (Phase.LOGIN, Phase.READY):
            # Back to forwarding straight through, from where the watcher is.
            leftover, self.requests = self._watcher.stop()
            self._watcher = None
            if leftover:
                self.upstream.write(leftover)
            self.route()

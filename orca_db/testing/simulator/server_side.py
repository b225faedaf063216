"""The server half of a proxied session: what the server sends and what
becomes of it, during the login, after a lost reply's query, and when a
scale event ends the session."""

from __future__ import annotations

import asyncio

from .. import pgwire
from . import messages
from .client_link import ClientLink
from .faults import FaultState, LostReplies
from .phase import Phase
from .upstream import ServerAddress
from .watch import ReplyWatcher


class ServerSide:
    """Base class of :class:`~.session.Session`: the server connection's
    events (``Upstream`` reports them here) and the scale event."""

    # Set up by Session.
    faults: FaultState
    server: ServerAddress
    phase: Phase
    client: ClientLink
    upstream: asyncio.Transport | None

    def __init__(self) -> None:
        self.backend_pid: int | None = None
        self.backend_key: int | None = None
        self.replies = pgwire.Boundaries()  # where the server's messages end
        self.client_cut = False  # a scale event: nothing more for the client
        self.upstream_gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._login_reader: pgwire.MessageReader | None = pgwire.MessageReader()
        self._lost: tuple[LostReplies, ReplyWatcher] | None = None

    def route(self) -> None:
        raise NotImplementedError

    def silence(self) -> None:
        raise NotImplementedError

    # ----- events -----------------------------------------------------------

    def server_bytes(self, data: bytes) -> None:
        """What the server sends while it does not flow straight through."""
        phase = self.phase
        if phase is Phase.LOGIN:
            assert self._login_reader is not None
            self.client.write(data)
            for kind, body in self._login_reader.feed(data):
                if kind == pgwire.BACKEND_KEY_DATA:
                    self.backend_pid, self.backend_key = pgwire.parse_backend_key_data(body)
                elif kind == pgwire.READY_FOR_QUERY and self.phase is Phase.LOGIN:
                    self.phase = Phase.READY
            if self.phase is Phase.READY:
                self.replies.advance(self._login_reader.leftover())
                self._login_reader = None
                self.route()
        elif phase is Phase.READY:  # silent: held for later
            self.replies.advance(data)
            self.client.write(data)
        elif phase is Phase.LOSING:
            assert self._lost is not None
            if self._lost[1].feed(data):
                self._reply_lost()
        elif phase is Phase.TERMINATING and not self.client_cut:
            # Pass on the rest of the message in progress, then nothing.
            end = self.replies.end_of_current(data)
            if end is None:
                self.client.write(data)
                self.replies.advance(data)
            else:
                self.client.write(data[:end])
                self.client_cut = True

    def server_lost(self) -> None:
        if not self.upstream_gone.done():
            self.upstream_gone.set_result(None)
        self.faults.release(self)
        phase = self.phase
        if phase is Phase.TERMINATING:
            self.phase = Phase.CLOSED
            if self.client.transport.is_closing():
                return
            if self.client_cut:
                # The backend has exited: its transaction is rolled back.
                self.client.write(messages.scale_event())
                self.client.close()
            else:
                self.client.transport.abort()  # died mid-message: nothing to add
        elif phase is Phase.LOSING:
            self._reply_lost()  # the reply is lost all the same
        elif phase is not Phase.CLOSED:
            self.phase = Phase.CLOSED
            self.route()
            self.client.close()  # after whatever the server said last

    def server_pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def server_resume_writing(self) -> None:
        self.client.transport.resume_reading()

    # ----- lost reply -------------------------------------------------------

    def lose_reply(self, order: LostReplies) -> None:
        """The query just forwarded runs on the server; its reply goes nowhere."""
        self.phase = Phase.LOSING
        self._lost = order, ReplyWatcher(self.replies)
        self.route()

    def _reply_lost(self) -> None:
        """The server has answered (or died): cut the client instead of
        passing the reply on, and close the server session."""
        assert self._lost is not None
        order = self._lost[0]
        self.faults.count("lost_replies")
        if order.silent:
            self.silence()
        self.phase = Phase.CLOSED
        self.route()
        if self.upstream is not None:
            self.upstream.close()  # the backend reads the end of its stream and exits
        self.client.close()  # now, or at unsilence() if silent

    # ----- scale event ------------------------------------------------------

    def terminate(self) -> asyncio.Future[None]:
        """Start ending this session as a scale event; the returned future is
        done once the backend has exited (the server closed the stream)."""
        assert self.upstream is not None
        if self._login_reader is not None:
            self.replies.advance(self._login_reader.leftover())
            self._login_reader = None
        # A lost reply sent the client nothing of the reply: a boundary.
        self.client_cut = self.replies.at_boundary or self.phase is Phase.LOSING
        self.phase = Phase.TERMINATING
        self.route()
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
            await self.server.send_cancel(pgwire.cancel_request(self.backend_pid, self.backend_key))
            delay = min(delay * 2, 1.0)

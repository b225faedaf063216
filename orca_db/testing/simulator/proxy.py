"""The simulator's control surface: :class:`AuroraSimulator`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..ports import PortReservation, reserve_port
from .counters import Counters
from .faults import FaultState, LostReplies
from .loop import LoopThread
from .messages import STORM_FAILURES
from .phase import LIVE, Phase
from .session import Session
from .upstream import ServerAddress

logger = logging.getLogger("orca_db.simulator")


class AuroraSimulator:
    """A proxy in front of the PostgreSQL at ``upstream_host:upstream_port``
    (``upstream_host`` may be a Unix socket directory), listening on
    ``listen_host:listen_port`` (port 0 picks a free one).

    The control methods may be called from any thread but the simulator's
    own and return once the fault is in place."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int | str,
        *,
        listen_port: int = 0,
        listen_host: str = "127.0.0.1",
    ):
        self.upstream_host = upstream_host
        self.upstream_port = int(upstream_port)
        self.listen_host = listen_host
        self.listen_port = listen_port
        # Port 0: a reserved port (testing/ports.py), kept while this object lives.
        self._reservation: PortReservation | None = None
        self._counters = Counters()
        self._loop = LoopThread("aurora-simulator")
        self._faults: FaultState | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._server = ServerAddress(upstream_host, self.upstream_port)

    # ----- life cycle -------------------------------------------------------

    def start(self) -> AuroraSimulator:
        if not self.listen_port:
            self._reservation = reserve_port()
            self.listen_port = self._reservation.port
        self._loop.start(self._listen)
        return self

    async def _listen(self) -> None:
        faults = self._faults = FaultState(self._counters)
        server = self._server
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: Session(faults, server),
            self.listen_host,
            self.listen_port,
            backlog=1024,
            reuse_address=True,
        )
        self.listen_port = self._listener.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close every connection and the listening socket; join the thread."""
        self._loop.stop(self._close_everything)

    def __enter__(self) -> AuroraSimulator:
        return self if self._loop.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """The address clients connect to."""
        return "127.0.0.1" if self.listen_host in ("", "0.0.0.0") else self.listen_host

    @property
    def port(self) -> int:
        return self.listen_port

    @property
    def loop_kind(self) -> str:
        """Which event loop runs the proxy: ``"uvloop"`` or ``"asyncio"``."""
        return self._loop.kind

    def django_settings(self, base_settings_dict: dict[str, Any]) -> dict[str, Any]:
        """A copy of a ``DATABASES`` entry that connects through the proxy.
        The proxy refuses SSL, so ``sslmode`` must allow a plain connection."""
        return {**base_settings_dict, "HOST": self.host, "PORT": str(self.port)}

    @property
    def _state(self) -> FaultState:
        if self._faults is None:
            raise RuntimeError("The simulator is not started.")
        return self._faults

    # ----- faults: new connections ------------------------------------------

    def switch_upstream(self, host: str, port: int | str) -> None:
        """Send every new connection to another server from now on, as a
        blue/green switchover moves the endpoint to another cluster (with
        its own history: its own system identifier and transaction ids).
        Sessions already open stay on the server they started on."""

        def switch() -> None:
            self._server.host, self._server.port = host, int(port)
            self.upstream_host, self.upstream_port = host, int(port)

        self._loop.call(switch)

    def pause(
        self,
        *,
        resume_after: float | None = None,
        storm: float = 0.0,
        storm_failure: str = "eof",
    ) -> None:
        """Hold every new connection after its startup packet until
        :meth:`resume` (or ``resume_after`` seconds), as a paused cluster
        does while it wakes. Sessions already open are left alone.

        ``storm`` (0 to 1) is the share of new connections that fail fast
        instead of being held, as in a v2 resume storm; ``storm_failure``
        says how: ``"eof"`` (closed with no message),
        ``"too_many_connections"`` (FATAL 53300), ``"pg_hba"`` (FATAL
        28000, a pg_hba.conf rejection) or ``"starting_up"`` (FATAL 57P03)."""
        if not 0.0 <= storm <= 1.0:
            raise ValueError("storm must be between 0 and 1")
        if storm_failure not in STORM_FAILURES:
            raise ValueError(f"storm_failure must be one of {', '.join(STORM_FAILURES)}")
        self._loop.call(lambda: self._state.pause(storm, storm_failure, resume_after))

    def resume(self) -> None:
        """Let every held connection proceed to the server."""
        self._loop.call(lambda: self._state.resume())

    @property
    def paused(self) -> bool:
        return self._faults is not None and self._faults.paused

    def reject_startups(self, n: int = 1) -> None:
        """The next ``n`` new connections fail at startup with FATAL
        "terminating connection because backend initialization completed
        past serverless scale point" (added to any still pending)."""
        if n < 0:
            raise ValueError("n must not be negative")
        self._loop.call(lambda: self._state.add_rejections(n))

    def limit_connections(self, n: int | None) -> None:
        """Refuse a new connection with FATAL 53300 "sorry, too many clients
        already" while ``n`` sessions hold a server connection (counter
        ``backends``), as PostgreSQL does at ``max_connections``; None lifts
        the limit. Sessions already open are left alone."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ValueError(f"n must be a non-negative integer or None, got {n!r}")
        self._loop.call(lambda: setattr(self._state, "connection_limit", n))

    def starting_up(self, on: bool = True) -> None:
        """While on, refuse new connections with FATAL 57P03 "the database
        system is starting up", as PostgreSQL does until recovery ends."""
        self._loop.call(lambda: setattr(self._state, "starting_up", bool(on)))

    # ----- faults: open sessions --------------------------------------------

    def scale_event(self, *, timeout: float = 10.0) -> int:
        """End every live session as an Aurora v1 forced scale does: the
        server process behind it exits (rolling back its transaction,
        releasing its locks, dropping its temporary tables), then the client
        receives FATAL 57P01 "terminating connection due to serverless scale
        event timeout". Returns once every backend is gone, with how many
        sessions were ended."""
        return self._loop.call(self._scale_event, timeout)

    async def _scale_event(self, timeout: float) -> int:
        victims = [s for s in self._state.sessions if s.phase in LIVE]
        gone = [session.terminate() for session in victims]
        if gone:
            _, pending = await asyncio.wait(gone, timeout=timeout)
            if pending:
                logger.warning(
                    "scale event: %d backends did not exit within %s s; cut", len(pending), timeout
                )
                for session in victims:
                    if not session.upstream_gone.done():
                        session.abort()
        self._counters.add("terminated", len(victims))
        logger.info("scale event: %d sessions terminated", len(victims))
        return len(victims)

    def drop_connections(self) -> int:
        """Cut every connection (held and silent ones too) with no message,
        as a lost network does: clients see the stream end. The server
        sessions are closed the same way and end when their backend notices
        (a running statement runs to its end first). Returns how many."""
        return self._loop.call(self._drop_all)

    def _drop_all(self) -> int:
        victims = [s for s in self._state.sessions if s.phase is not Phase.CLOSED or s.silent]
        for session in victims:
            session.abort()
        self._counters.add("dropped", len(victims))
        logger.info("dropped %d connections", len(victims))
        return len(victims)

    def silence(self, *, new_connections: bool = True) -> int:
        """Every session stops carrying bytes, both ways; nothing is closed
        (no FIN, no RST), as when a middlebox or the server's host stops
        answering. Bytes either way are held, not lost, and delivered by
        :meth:`unsilence` (as TCP delivers them once the network is back);
        clients block until their own timeout. A client that gives up and
        closes is noticed: its server session is closed. With
        ``new_connections`` (the default) new connections are accepted and
        held silently too (not even an SSL request is answered). Returns how
        many sessions went silent."""

        def silence() -> int:
            state = self._state
            state.silent, state.silence_new = True, new_connections
            sessions = [s for s in state.sessions if not s.silent]
            for session in sessions:
                session.silence()
            logger.info("silenced %d sessions", len(sessions))
            return sum(1 for s in sessions if s.silent)

        return self._loop.call(silence)

    def unsilence(self) -> int:
        """End the silence: held bytes are delivered in order and every
        session carries on (those left silent by a lost reply see their
        stream end). Returns how many sessions were silent."""

        def unsilence() -> int:
            self._state.silent = False
            sessions = [s for s in self._state.sessions if s.silent]
            for session in sessions:
                session.unsilence()
            logger.info("unsilenced %d sessions", len(sessions))
            return len(sessions)

        return self._loop.call(unsilence)

    @property
    def silent(self) -> bool:
        return self._faults is not None and self._faults.silent

    def lose_replies(
        self, n: int = 1, *, contains: str | None = None, silent: bool = False
    ) -> None:
        """The reply to each of the next ``n`` queries (a simple Query, or
        extended-protocol messages up to a Sync that ran an Execute; only
        those whose SQL contains ``contains``, when given) never arrives: the
        query runs on the server to its end (in autocommit: committed), then
        the client's connection is cut with no message (the stream ends)
        instead of receiving the reply, and the server session is closed.
        With ``silent=True`` the client's connection is left open and mute
        instead (until the client gives up, :meth:`unsilence` or
        :meth:`drop_connections`). Replaces an earlier order; ``n=0``
        cancels it. Counted in ``lost_replies`` once each reply is lost."""
        if n < 0:
            raise ValueError("n must not be negative")
        order = LostReplies(n, contains, silent) if n else None

        def arm() -> None:
            self._state.lost_replies = order
            if order is not None:
                for session in self._state.sessions:
                    session.watch()

        self._loop.call(arm)

    # ----- observing --------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """The counters (a copy; see ``STAT_NAMES`` and docs/simulator.md)."""
        return self._counters.snapshot()

    def wait_for(self, predicate: Callable[[dict[str, int]], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate(stats)`` is true, e.g. ``lambda s:
        s["holding"] >= 1``; TimeoutError after ``timeout`` seconds."""
        self._counters.wait_for(predicate, timeout)

    def _close_everything(self) -> None:
        if self._listener is not None:
            self._listener.close()
        state = self._state
        for session in list(state.sessions):
            session.abort()
        state.resume()  # held connections wake up and find their session closed

"""The faults in force: the one object a session consults (and reports
to) about pauses, refusals, silence and lost replies. It lives on the
simulator's loop: the simulator's control methods change it there, sessions
read it there, so nothing here needs a lock (the counters have their own)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

from . import messages
from .counters import Counters

if TYPE_CHECKING:  # for annotations only: sessions import this module
    from .session import Session

logger = logging.getLogger("orca_db.simulator")


@dataclasses.dataclass(frozen=True)
class LostReplies:
    """``lose_replies()``'s order: how many more, which ones, and whether
    the client is then left hanging (silent) or sees its stream end."""

    remaining: int
    contains: str | None = None
    silent: bool = False

    def matches(self, sql: list[str]) -> bool:
        return self.contains is None or any(self.contains in text for text in sql)


class FaultState:
    """What is in force now (pause and storm, startup rejections, the
    connection limit, "starting up", silence, the lost-reply order), the
    registry of sessions, and the counters. Sessions ask it what to do with
    a new connection (:meth:`storm_refusal`, :meth:`admit`) and a query
    (:meth:`take_lost_reply`); the simulator changes it."""

    def __init__(self, counters: Counters):
        self.counters = counters
        #: Sessions whose client connection is open.
        self.sessions: set[Session] = set()
        #: Sessions holding a server connection (what a connection limit counts).
        self.backends: set[object] = set()
        self.paused = False
        #: Set unless paused: held connections wait on it.
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.storm = 0.0
        self.storm_failure = "eof"
        self._storm_credit = 0.0
        self._auto_resume: asyncio.TimerHandle | None = None
        self.rejections = 0
        self.connection_limit: int | None = None
        self.starting_up = False
        self.silent = False
        #: While silent, new connections are held silently too.
        self.silence_new = True
        self.lost_replies: LostReplies | None = None

    def count(self, name: str, delta: int = 1) -> None:
        self.counters.add(name, delta)

    # ----- pause and storm --------------------------------------------------

    def pause(self, storm: float, storm_failure: str, resume_after: float | None) -> None:
        self._cancel_auto_resume()
        self.paused = True
        self.storm, self.storm_failure, self._storm_credit = storm, storm_failure, 0.0
        self.resumed.clear()
        if resume_after is not None:
            loop = asyncio.get_running_loop()
            self._auto_resume = loop.call_later(resume_after, self.resume)
        logger.info("paused%s", f" (resuming in {resume_after} s)" if resume_after else "")

    def resume(self) -> None:
        self._cancel_auto_resume()
        was_paused, self.paused = self.paused, False
        self.storm = 0.0
        self.resumed.set()
        if was_paused:
            logger.info("resumed")

    def _cancel_auto_resume(self) -> None:
        if self._auto_resume is not None:
            self._auto_resume.cancel()
            self._auto_resume = None

    def storm_refusal(self, peer_host: str, parameters: dict[str, str]) -> bytes | None:
        """While paused: None to hold the connection, else the last bytes it
        gets (b"" for none) as a resume storm fails it fast. Spread evenly
        (every second one for 0.5), not at random, so tests can count on it."""
        if self.storm <= 0.0:
            return None
        self._storm_credit += self.storm
        if self._storm_credit < 1.0 - 1e-9:
            return None
        self._storm_credit -= 1.0
        self.count("storm_failed")
        return messages.storm_failure(self.storm_failure, peer_host, parameters)

    # ----- admission --------------------------------------------------------

    def add_rejections(self, n: int) -> None:
        self.rejections += n

    def admit(self, session: object) -> bytes | None:
        """A connection past any pause asks to go on to the server: None
        (admitted, now counted in ``backends``) or the FATAL refusing it, in
        PostgreSQL's order: the postmaster's "starting up", then the
        backend's connection limit, then Aurora's scale point."""
        if self.starting_up:
            self.count("refused_starting_up")
            return messages.starting_up()
        if self.connection_limit is not None and len(self.backends) >= self.connection_limit:
            self.count("limited")
            return messages.too_many_connections()
        if self.rejections > 0:
            self.rejections -= 1
            self.count("rejected")
            return messages.scale_point()
        self.backends.add(session)
        self.count("backends")
        return None

    def release(self, session: object) -> None:
        """``session``'s server connection is gone (or never came)."""
        if session in self.backends:
            self.backends.discard(session)
            self.count("backends", -1)

    # ----- lost replies -----------------------------------------------------

    def take_lost_reply(self, sql: list[str]) -> LostReplies | None:
        """A session is about to forward a query: the order to lose its
        reply, if this is one of the next ``n`` (and matches)."""
        order = self.lost_replies
        if order is None or not order.matches(sql):
            return None
        remaining = order.remaining - 1
        self.lost_replies = dataclasses.replace(order, remaining=remaining) if remaining else None
        return order

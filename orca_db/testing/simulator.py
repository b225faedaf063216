"""An Aurora Serverless simulator: a PostgreSQL wire-protocol proxy in front
of a real PostgreSQL that injects the faults Aurora Serverless shows its
clients (docs/simulator.md)::

    sim = AuroraSimulator("127.0.0.1", 5432).start()
    DATABASES["default"] = sim.django_settings(DATABASES["default"])
    sim.pause()            # new connections are held until resume()
    sim.resume()
    sim.scale_event()      # every live backend is terminated, clients get
                           # FATAL 57P01 "... serverless scale event timeout"
    sim.reject_startups(2) # the next 2 connects fail at startup
    sim.drop_connections() # every connection cut, no message
    sim.stop()

The proxy runs an asyncio loop in a background thread; the control methods
may be called from any thread and return once the fault is in place. After
startup it forwards bytes as they come, only following the server's message
boundaries so that it can cut a session between two messages.

From the command line, for demos::

    python -m orca_db.testing.simulator --upstream 127.0.0.1:5432 --listen 127.0.0.1:6543
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from .sessions import (
    CLOSED,
    LOGIN,
    READY,
    SCALE_EVENT_MESSAGE,
    SCALE_POINT_MESSAGE,
    STORM_FAILURES,
    CancelSender,
    Session,
)

__all__ = ["SCALE_EVENT_MESSAGE", "SCALE_POINT_MESSAGE", "STAT_NAMES", "AuroraSimulator"]

logger = logging.getLogger("orca_db.simulator")

STAT_NAMES = (
    "connections",  # client connections accepted
    "active",  # client connections open now
    "held",  # connections held by a pause (total)
    "holding",  # connections held right now
    "rejected",  # startups rejected past the scale point
    "storm_failed",  # connections failed fast during a resume storm
    "terminated",  # sessions ended by scale events
    "dropped",  # connections cut by drop_connections()
    "cancel_requests",  # CancelRequests passed on to the server
)


class AuroraSimulator:
    """A proxy in front of the PostgreSQL at ``upstream_host:upstream_port``
    (``upstream_host`` may be a Unix socket directory), listening on
    ``listen_host:listen_port`` (port 0 picks a free one)."""

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._sessions: set[Session] = set()
        self._paused = False
        self._resumed: asyncio.Event | None = None
        self._auto_resume: asyncio.TimerHandle | None = None
        self._reject = 0
        self._storm = 0.0
        self._storm_failure = "eof"
        self._storm_credit = 0.0
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        self._changed = threading.Condition()

    # ----- life cycle -------------------------------------------------------

    def start(self) -> AuroraSimulator:
        if self._thread is not None:
            raise RuntimeError("The simulator is already started.")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="aurora-simulator", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            self._thread.join(timeout=5)
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket; join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._call(self._close_everything)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._loop = self._thread = None

    def __enter__(self) -> AuroraSimulator:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """The address clients connect to."""
        return "127.0.0.1" if self.listen_host in ("", "0.0.0.0") else self.listen_host

    @property
    def port(self) -> int:
        return self.listen_port

    def django_settings(self, base_settings_dict: dict[str, Any]) -> dict[str, Any]:
        """A copy of a ``DATABASES`` entry that connects through the proxy.
        The proxy refuses SSL, so ``sslmode`` must allow a plain connection."""
        return {**base_settings_dict, "HOST": self.host, "PORT": str(self.port)}

    # ----- faults -----------------------------------------------------------

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
        ``"too_many_connections"`` (FATAL 53300) or ``"pg_hba"`` (FATAL
        28000, a pg_hba.conf rejection)."""
        if not 0.0 <= storm <= 1.0:
            raise ValueError("storm must be between 0 and 1")
        if storm_failure not in STORM_FAILURES:
            raise ValueError(f"storm_failure must be one of {', '.join(STORM_FAILURES)}")
        self._call(self._pause, resume_after, storm, storm_failure)

    def resume(self) -> None:
        """Let every held connection proceed to the server."""
        self._call(self._resume)

    @property
    def paused(self) -> bool:
        return self._paused

    def scale_event(self, *, timeout: float = 10.0) -> int:
        """End every live session as an Aurora v1 forced scale does: the
        server process behind it exits (rolling back its transaction,
        releasing its locks, dropping its temporary tables), then the client
        receives FATAL 57P01 "terminating connection due to serverless scale
        event timeout". Returns once every backend is gone, with how many
        sessions were ended."""
        return self._call(self._scale_event, timeout)

    def reject_startups(self, n: int = 1) -> None:
        """The next ``n`` new connections fail at startup with FATAL
        "terminating connection because backend initialization completed
        past serverless scale point" (added to any still pending)."""
        if n < 0:
            raise ValueError("n must not be negative")
        self._call(self._add_rejections, n)

    def drop_connections(self) -> int:
        """Cut every connection (held ones too) with no message, as a lost
        network does: clients see the stream end. The server sessions are
        closed the same way and end when their backend notices (a running
        statement runs to its end first). Returns how many were cut."""
        return self._call(self._drop_all)

    @property
    def stats(self) -> dict[str, int]:
        """Counters (a copy): connections, active, held, holding, rejected,
        storm_failed, terminated, dropped, cancel_requests."""
        with self._changed:
            return dict(self._stats)

    def wait_for(self, predicate: Callable[[dict[str, int]], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate(stats)`` is true, e.g. ``lambda s:
        s["holding"] >= 1``; TimeoutError after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(dict(self._stats)), timeout):
                raise TimeoutError(f"simulator stats never matched: {self._stats}")

    # ----- the event loop thread --------------------------------------------

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = _new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._resumed = asyncio.Event()
            self._resumed.set()
            self._server = loop.run_until_complete(
                loop.create_server(
                    lambda: Session(self),
                    self.listen_host,
                    self.listen_port,
                    backlog=1024,
                    reuse_address=True,
                )
            )
        except BaseException as exc:
            loop.close()
            ready.set_exception(exc)
            return
        self.listen_port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` (awaited if a coroutine) on the loop and
        return its result: control methods return once the change is made."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("The simulator is not started.")
        if threading.current_thread() is self._thread:
            raise RuntimeError("Control methods cannot be called from the simulator's own loop.")

        async def invoke() -> Any:
            result = function(*args)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result()

    def _count(self, name: str, delta: int = 1) -> None:
        with self._changed:
            self._stats[name] += delta
            self._changed.notify_all()

    def _pause(self, resume_after: float | None, storm: float, storm_failure: str) -> None:
        self._cancel_auto_resume()
        self._paused = True
        self._storm, self._storm_failure, self._storm_credit = storm, storm_failure, 0.0
        assert self._resumed is not None and self._loop is not None
        self._resumed.clear()
        if resume_after is not None:
            self._auto_resume = self._loop.call_later(resume_after, self._resume)
        logger.info("paused%s", f" (resuming in {resume_after} s)" if resume_after else "")

    def _resume(self) -> None:
        self._cancel_auto_resume()
        self._paused = False
        self._storm = 0.0
        assert self._resumed is not None
        self._resumed.set()
        logger.info("resumed")

    def _cancel_auto_resume(self) -> None:
        if self._auto_resume is not None:
            self._auto_resume.cancel()
            self._auto_resume = None

    def _storm_strikes(self) -> bool:
        """Whether the next connection fails fast. Spread evenly (every
        second one for 0.5), not at random, so tests can count on it."""
        if self._storm <= 0.0:
            return False
        self._storm_credit += self._storm
        if self._storm_credit >= 1.0 - 1e-9:
            self._storm_credit -= 1.0
            return True
        return False

    def _add_rejections(self, n: int) -> None:
        self._reject += n

    def _take_rejection(self) -> bool:
        if self._reject > 0:
            self._reject -= 1
            return True
        return False

    async def _scale_event(self, timeout: float) -> int:
        victims = [s for s in self._sessions if s.phase in (LOGIN, READY)]
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
        self._count("terminated", len(victims))
        logger.info("scale event: %d sessions terminated", len(victims))
        return len(victims)

    def _drop_all(self) -> int:
        victims = [s for s in self._sessions if s.phase != CLOSED]
        for session in victims:
            session.abort()
        self._count("dropped", len(victims))
        logger.info("dropped %d connections", len(victims))
        return len(victims)

    def _close_everything(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.abort()
        # Held connections wake up and find their session closed.
        self._paused = False
        if self._resumed is not None:
            self._resumed.set()

    async def _connect_upstream(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Transport:
        loop = asyncio.get_running_loop()
        if self.upstream_host.startswith("/"):
            path = f"{self.upstream_host}/.s.PGSQL.{self.upstream_port}"
            transport, _ = await loop.create_unix_connection(factory, path)
        else:
            transport, _ = await loop.create_connection(
                factory, self.upstream_host, self.upstream_port
            )
        return transport

    async def _send_cancel(self, packet: bytes) -> None:
        """Deliver a CancelRequest to the server on a connection of its own."""
        done = asyncio.get_running_loop().create_future()
        try:
            transport = await self._connect_upstream(lambda: CancelSender(packet, done))
        except OSError as exc:
            logger.warning("could not pass a cancel request on: %s", exc)
            return
        try:
            # The server reads the request, then closes without a reply.
            await asyncio.wait_for(done, 5)
        except TimeoutError:
            transport.abort()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    # uvloop, when installed, makes each forwarded message cheaper
    # (benchmarks/simulator_latency.py); the standard loop works the same.
    # ORCA_DB_SIMULATOR_LOOP=asyncio insists on the standard one.
    if os.environ.get("ORCA_DB_SIMULATOR_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


if __name__ == "__main__":
    from .simulator_cli import main

    sys.exit(main())

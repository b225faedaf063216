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

import argparse
import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import pgwire

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

# Session phases.
STARTUP = "startup"  # reading the client's first packet(s)
HELD = "held"  # paused: waiting for resume()
CONNECTING = "connecting"  # opening the server connection
LOGIN = "login"  # authentication and parameter exchange, until ReadyForQuery
READY = "ready"  # forwarding
TERMINATING = "terminating"  # scale event: waiting for the backend to exit
CLOSED = "closed"


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
        self._sessions: set[_Session] = set()
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
                    lambda: _Session(self),
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
        return transport  # type: ignore[return-value]

    async def _send_cancel(self, packet: bytes) -> None:
        """Deliver a CancelRequest to the server on a connection of its own."""
        done = asyncio.get_running_loop().create_future()
        try:
            transport = await self._connect_upstream(lambda: _CancelSender(packet, done))
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


class _CancelSender(asyncio.Protocol):
    def __init__(self, packet: bytes, done: asyncio.Future[None]):
        self.packet = packet
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.packet)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Session(asyncio.Protocol):
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
            upstream = await sim._connect_upstream(lambda: _Upstream(self))
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


class _Upstream(asyncio.Protocol):
    """The server side of a session."""

    def __init__(self, session: _Session):
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


# ----- command line -------------------------------------------------------------

_COMMANDS = """\
commands (one per line on stdin):
  pause [SECONDS]          hold new connections (until resume, or for SECONDS)
  storm FRACTION [HOW]     pause, failing FRACTION of new connections fast
                           (HOW: eof, too_many_connections, pg_hba)
  resume                   release held connections
  scale                    scale event: terminate every session (FATAL 57P01)
  reject [N]               the next N startups fail past the scale point
  drop                     cut every connection with no message
  stats                    print the counters
  quit                     stop
signals: SIGUSR1 scale event, SIGUSR2 pause/resume, SIGHUP drop, SIGINT/SIGTERM stop"""


def _address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or default_host, int(port)


def _run_command(sim: AuroraSimulator, line: str) -> bool:
    """Run one command line; False when it asks to stop."""
    words = line.split()
    if not words:
        return True
    command, args = words[0].lower(), words[1:]
    if command in ("quit", "exit", "stop"):
        return False
    if command == "pause":
        sim.pause(resume_after=float(args[0]) if args else None)
    elif command == "storm":
        fraction = float(args[0]) if args else 0.5
        sim.pause(storm=fraction, storm_failure=args[1] if len(args) > 1 else "eof")
    elif command == "resume":
        sim.resume()
    elif command == "scale":
        print(f"terminated {sim.scale_event()} sessions", flush=True)
    elif command == "reject":
        sim.reject_startups(int(args[0]) if args else 1)
    elif command == "drop":
        print(f"dropped {sim.drop_connections()} connections", flush=True)
    elif command != "stats":
        print(_COMMANDS, flush=True)
        return True
    print(" ".join(f"{name}={value}" for name, value in sim.stats.items()), flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orca_db.testing.simulator",
        description="An Aurora Serverless simulator in front of a real PostgreSQL.",
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--upstream",
        type=_address,
        required=True,
        help="HOST:PORT of the real PostgreSQL (HOST may be a Unix socket directory)",
    )
    parser.add_argument(
        "--listen", type=_address, default=("127.0.0.1", 6543), help="HOST:PORT to listen on"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sim = AuroraSimulator(*args.upstream, listen_host=args.listen[0], listen_port=args.listen[1])
    sim.start()
    print(
        f"Aurora simulator on {sim.host}:{sim.port} -> {args.upstream[0]}:{args.upstream[1]}"
        " (type help)",
        flush=True,
    )

    def toggle_pause(*_: object) -> None:
        sim.resume() if sim.paused else sim.pause()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGUSR1, lambda *_: sim.scale_event())
    signal.signal(signal.SIGUSR2, toggle_pause)
    signal.signal(signal.SIGHUP, lambda *_: sim.drop_connections())
    signal.signal(signal.SIGTERM, interrupt)
    try:
        for line in sys.stdin:
            try:
                if not _run_command(sim, line):
                    break
            except (ValueError, IndexError) as exc:
                print(f"error: {exc}", flush=True)
        else:
            # No (more) input, as when run in the background: signals drive it.
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

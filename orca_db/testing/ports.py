"""Ports for the test servers, reserved across processes.

Binding port 0 and closing the socket finds a port nobody listens on *now*.
That is not enough when two test runs share a machine (CI runs the README
suite beside a nox session; pytest-xdist workers; parallel CI jobs): a test
that stops its server and starts it again on the same port could find
another run's new server there, picked in between by bind(0).

So a port given out here is also *reserved*: an exclusive ``flock`` on
``<dir>/<port>.lock`` (dir: ``ORCA_DB_PORTS_DIR``, else
``/tmp/orca-db-ports``: the ports are the machine's, so the directory is
too, whatever ``TMPDIR`` each run has). The lock lives as long as its
owner keeps the reservation: until :meth:`PortReservation.release`, the
owner's garbage collection, or the process's end (the kernel drops it, even
on SIGKILL: no stale reservations). Candidates come from the kernel
(bind to port 0: nothing listens there now); one whose lock another owner
holds (a server stopped for a moment, a server about to start) is skipped.

flock locks belong to an open file, not a process, so two reservations in
one process exclude each other too. POSIX only (fcntl), like the rest of
``orca_db.testing`` (pwd); Linux and macOS, as root or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import weakref
from pathlib import Path

HOST = "127.0.0.1"
#: bind(0) candidates tried before giving up (each one is either free, or
#: reserved by a stopped server: a few in a row at most in practice).
TRIES = 1000


def ports_dir() -> Path:
    explicit = os.environ.get("ORCA_DB_PORTS_DIR")
    if explicit:
        return Path(explicit)
    return Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / "orca-db-ports"


def _directory() -> Path:
    path = ports_dir()
    if not path.is_dir():
        with contextlib.suppress(FileExistsError):
            path.mkdir(parents=True)
            # Shared by every user's runs (root's, and non-root's), sticky as /tmp.
            os.chmod(path, 0o1777)
    return path


def _open(path: Path) -> int:
    # Read-only is enough for flock and works on another user's file. Never
    # O_CREAT on an existing file: Linux's fs.protected_regular refuses that
    # in a sticky directory when the file is another user's (even to root).
    while True:
        with contextlib.suppress(FileNotFoundError):
            return os.open(path, os.O_RDONLY)
        with contextlib.suppress(FileExistsError):
            return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)


class PortReservation:
    """``port`` is this owner's until :meth:`release` (or garbage
    collection, or the process's end). A context manager too."""

    def __init__(self, port: int, path: Path, fd: int):
        self.port = port
        self._finalizer = weakref.finalize(self, _release, path, fd, os.getpid())

    @property
    def held(self) -> bool:
        return self._finalizer.alive

    def release(self) -> None:
        self._finalizer()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<PortReservation {self.port}{'' if self.held else ' (released)'}>"


def _release(path: Path, fd: int, owner: int) -> None:
    # Remove the file while still holding its lock (see try_reserve for the
    # other side), then drop the lock. A forked child closes its copy only:
    # the file and the lock stay the parent's.
    if os.getpid() == owner:
        with contextlib.suppress(OSError):  # another user's file in the sticky dir
            os.unlink(path)
    os.close(fd)


def try_reserve(port: int) -> PortReservation | None:
    """Reserve ``port`` if no other owner holds it (whether anything
    listens there is not checked: :func:`reserve_port` does)."""
    path = _directory() / f"{port}.lock"
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # Between our open and our flock its last owner may have released
        # it (and removed the file), and a third may have created a new file
        # there and locked that one: ours is then a lock nobody looks at.
        with contextlib.suppress(FileNotFoundError):
            here, ours = os.stat(path), os.fstat(fd)
            if (here.st_dev, here.st_ino) == (ours.st_dev, ours.st_ino):
                return PortReservation(port, path, fd)
        os.close(fd)


def reserve_port() -> PortReservation:
    """A port of 127.0.0.1 nothing listens on and no other owner holds."""
    for _ in range(TRIES):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            # Locked while still bound: nobody can start listening there meanwhile.
            reservation = try_reserve(probe.getsockname()[1])
        if reservation is not None:
            return reservation
    raise RuntimeError(f"No free port on {HOST} in {TRIES} tries ({ports_dir()}).")


_for_this_process: list[PortReservation] = []


def free_port() -> int:
    """A free port, reserved until this process ends: for a server started
    later, or a port where nothing must answer during a test. Prefer
    :func:`reserve_port` for an owner that can release it."""
    reservation = reserve_port()
    _for_this_process.append(reservation)
    return reservation.port

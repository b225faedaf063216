"""A throwaway PostgreSQL server for tests, demos and benchmarks.

Uses the ``initdb``/``pg_ctl`` on the PATH, else a Debian/Ubuntu install under
``/usr/lib/postgresql``, else the binaries of the ``pgserver`` wheel. As root
(CI, containers) it runs the server as an unprivileged user, since PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .ports import PortReservation, reserve_port, try_reserve
from .ports import free_port as free_port  # its home before ports.py


class PostgresNotFound(RuntimeError):
    pass


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    explicit = os.environ.get("ORCA_DB_PG_BINDIR")
    candidates = [explicit] if explicit else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    with contextlib.suppress(ImportError):
        import pgserver

        return Path(pgserver.__file__).parent / "pginstall" / "bin"
    raise PostgresNotFound(
        "No PostgreSQL server binaries found: install PostgreSQL (initdb and "
        "pg_ctl on the PATH), `pip install pgserver`, or set ORCA_DB_PG_BINDIR."
    )


def unprivileged_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL (and PgBouncer) as when we are root, since
    both refuse to run as root (``ORCA_DB_PG_OS_USER``, else ``postgres``,
    else ``nobody``); None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("ORCA_DB_PG_OS_USER"), "postgres", "nobody"):
        if name:
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
    raise PostgresNotFound("Running as root and no unprivileged user to run PostgreSQL as.")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on 127.0.0.1."""

    superuser = "postgres"

    def __init__(
        self,
        *,
        port: int | None = None,
        settings: dict[str, Any] | None = None,
        base: Path | None = None,
    ):
        """A server in a new temporary directory, removed at exit; or, with
        ``base``, a persistent one kept there between runs."""
        self.bindir = find_bindir()
        self.persistent = base is not None
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="orca-db-pg-"))
        saved = self.base / "server.json"
        known = json.loads(saved.read_text()) if saved.exists() else {}
        # The port is reserved (orca_db/testing/ports.py) until destroy(), so
        # no other run starts a server on it while this one is stopped to be
        # started again. A port given or kept in server.json is used even if
        # another process holds it (the same persistent server, most likely).
        self.port = known.get("port") or port
        self._reservation: PortReservation | None
        if self.port:
            self._reservation = try_reserve(self.port)
        else:
            self._reservation = reserve_port()
            self.port = self._reservation.port
        self.password = known.get("password") or secrets.token_hex(12)
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "max_connections": 300,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **(settings or {}),
        }
        self._os_user = unprivileged_user()
        self.datadir = self.base / "data"
        self.logfile = self.base / "postgres.log"
        self._initialised = (self.datadir / "PG_VERSION").exists()

    # ----- process control --------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs: dict[str, Any] = {}
        if self._os_user is not None:
            kwargs = {"user": self._os_user.pw_uid, "group": self._os_user.pw_gid}
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=check,
            capture_output=True,
            text=True,
            cwd=self.base,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            **kwargs,
        )

    def _initdb(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        saved = self.base / "server.json"
        saved.write_text(json.dumps({"port": self.port, "password": self.password}))
        os.chmod(saved, 0o600)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._os_user is not None:
            os.chmod(self.base, 0o700)
            for path in (self.base, pwfile):
                os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)
        self._run(
            "initdb", "-D", str(self.datadir), "-U", self.superuser,
            "--pwfile", str(pwfile), "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        pwfile.unlink()
        with open(self.datadir / "postgresql.conf", "a") as conf:
            for key, value in self.settings.items():
                conf.write(f"{key} = '{value}'\n")
            conf.write(f"unix_socket_directories = '{self.base}'\n")
        self._initialised = True

    def start(self, *, standby: bool = False, wait: bool = True) -> PostgresServer:
        """Start the server. ``standby=True`` starts it in recovery with hot
        standby off: it refuses every connection ("the database system is not
        accepting connections") until :meth:`promote`."""
        if not self._initialised:
            self._initdb()
        signal_file = self.datadir / "standby.signal"
        if standby:
            signal_file.touch()
            if self._os_user is not None:
                os.chown(signal_file, self._os_user.pw_uid, self._os_user.pw_gid)
            options = "-c hot_standby=off"
        else:
            options = ""
        args = ["pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-s"]
        if options:
            args += ["-o", options]
        args += ["-w" if wait and not standby else "-W", "start"]
        result = self._run(*args, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL failed to start: {result.stderr}\n{self.log_tail()}")
        if standby:
            self.wait_for(lambda: self.is_listening(), timeout=30)
        if not self.persistent:
            atexit.register(self.destroy)
        return self

    def is_running(self) -> bool:
        if not self._initialised:
            return False
        result = self._run("pg_ctl", "-D", str(self.datadir), "status", check=False)
        return result.returncode == 0

    def ensure_running(self) -> PostgresServer:
        if not self.is_running():
            self.start()
        return self

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-s", "promote")

    def stop(self, mode: str = "fast") -> None:
        if self._initialised and (self.datadir / "postmaster.pid").exists():
            self._run(
                "pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-s", "stop", check=False
            )

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
        if self._reservation is not None:
            self._reservation.release()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text().splitlines()[-lines:])
        return ""

    # ----- state ------------------------------------------------------------

    def is_listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    @staticmethod
    def wait_for(condition, *, timeout: float, interval: float = 0.02) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    # ----- connecting -------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://{self.superuser}:{quote(self.password)}@127.0.0.1:{self.port}/{dbname}"
        )

    def django_settings(self, dbname: str = "postgres", **extra: Any) -> dict[str, Any]:
        return {
            "NAME": dbname,
            "USER": self.superuser,
            "PASSWORD": self.password,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            **extra,
        }

    def connect(self, dbname: str = "postgres", **kwargs: Any):
        """A plain driver connection in autocommit, over the Unix socket
        (so it is not counted or disturbed by faults injected over TCP)."""
        return connect_driver(
            host=str(self.base), port=self.port, user=self.superuser,
            dbname=dbname, **kwargs,
        )  # fmt: skip

    def execute(self, sql: str, params: Any = None, dbname: str = "postgres") -> list[tuple]:
        conn = self.connect(dbname)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
        finally:
            conn.close()


def connect_driver(**kwargs: Any):
    """An autocommit connection with psycopg2 if importable, else psycopg."""
    try:
        import psycopg2
    except ImportError:
        import psycopg

        return psycopg.connect(autocommit=True, **kwargs)
    conn = psycopg2.connect(**kwargs)
    conn.autocommit = True
    return conn


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """One server per process, started on first use, removed at exit."""
    global _shared
    if _shared is None:
        _shared = PostgresServer().start()
    return _shared

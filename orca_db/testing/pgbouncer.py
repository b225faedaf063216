"""A throwaway PgBouncer in front of a PostgreSQL server, for tests.

    server = PostgresServer().start()
    bouncer = PgBouncer(server).start()
    DATABASES = {"default": bouncer.django_settings("postgres")}
    ...
    bouncer.stop()

Transaction pooling (``pool_mode = transaction``, as on a shared cluster),
on a free port of 127.0.0.1. Uses the ``pgbouncer`` binary on the PATH (or
``ORCA_DB_PGBOUNCER``); as root it runs as the same unprivileged user as the
PostgreSQL server, since PgBouncer refuses to run as root.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .ports import reserve_port
from .postgres import PostgresServer, unprivileged_user


class PgBouncerNotFound(RuntimeError):
    pass


def find_pgbouncer() -> str | None:
    explicit = os.environ.get("ORCA_DB_PGBOUNCER")
    if explicit:
        return explicit
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class PgBouncer:
    """One PgBouncer process in a temporary directory, in front of
    ``server``: a :class:`PostgresServer`, or any object with ``port``,
    ``superuser``, ``password`` (and ``host``, default 127.0.0.1)."""

    def __init__(
        self,
        server: Any,
        *,
        pool_mode: str = "transaction",
        settings: dict[str, Any] | None = None,
    ):
        binary = find_pgbouncer()
        if binary is None:
            raise PgBouncerNotFound(
                "No pgbouncer binary: install it (apt-get install -y pgbouncer) "
                "or set ORCA_DB_PGBOUNCER."
            )
        self.binary = binary
        self.server = server
        # Reserved until stop() (orca_db/testing/ports.py).
        self._reservation = reserve_port()
        self.port = self._reservation.port
        self.base = Path(tempfile.mkdtemp(prefix="orca-db-pgbouncer-"))
        self.logfile = self.base / "pgbouncer.log"
        self.settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": str(self.base),
            "auth_type": "scram-sha-256",
            "auth_file": str(self.base / "userlist.txt"),
            "admin_users": server.superuser,
            "pool_mode": pool_mode,
            "max_client_conn": 200,
            "default_pool_size": 20,
            # Test each idle server connection before lending it out: after
            # a scale event every one of them is dead.
            "server_check_delay": 0,
            "server_check_query": "select 1",
            "server_reset_query": "",
            # Startup parameters PgBouncer cannot track (psycopg may send them).
            "ignore_startup_parameters": "extra_float_digits,options",
            "logfile": str(self.logfile),
            "pidfile": str(self.base / "pgbouncer.pid"),
            **(settings or {}),
        }
        self._process: subprocess.Popen | None = None
        self._os_user = unprivileged_user()

    def _write_config(self) -> Path:
        server = self.server
        config = self.base / "pgbouncer.ini"
        lines = [
            "[databases]",
            f"* = host={getattr(server, 'host', '127.0.0.1')} port={server.port}",
            "",
            "[pgbouncer]",
            *(f"{key} = {value}" for key, value in self.settings.items()),
        ]
        config.write_text("\n".join(lines) + "\n")
        userlist = self.base / "userlist.txt"
        userlist.write_text(f'"{server.superuser}" "{server.password}"\n')
        os.chmod(userlist, 0o600)
        if self._os_user is not None:
            for path in (self.base, config, userlist):
                os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)
        return config

    def start(self, timeout: float = 30) -> PgBouncer:
        config = self._write_config()
        kwargs: dict[str, Any] = {}
        if self._os_user is not None:
            kwargs = {"user": self._os_user.pw_uid, "group": self._os_user.pw_gid}
        self._process = subprocess.Popen(
            [self.binary, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.base,
            **kwargs,
        )
        atexit.register(self.stop)
        try:
            PostgresServer.wait_for(self._ready, timeout=timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"PgBouncer did not start:\n{self.log_tail()}") from None
        return self

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"PgBouncer exited:\n{self.log_tail()}")
        return self.is_listening()

    def is_listening(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), 0.2),
        ):
            return True
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)
        self._reservation.release()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text().splitlines()[-lines:])
        return ""

    # ----- connecting -------------------------------------------------------

    def django_settings(self, dbname: str = "postgres", **extra: Any) -> dict[str, Any]:
        """A DATABASES entry (without ENGINE) through PgBouncer, with the
        settings transaction pooling needs (docs/pooling.md)."""
        return {
            "NAME": dbname,
            "USER": self.server.superuser,
            "PASSWORD": self.server.password,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            # A server-side cursor lives in one server session; transaction
            # pooling may run the next FETCH on another.
            "DISABLE_SERVER_SIDE_CURSORS": True,
            **extra,
        }

    def admin(self, command: str) -> list[tuple]:
        """Run a command on PgBouncer's admin console (``SHOW POOLS``...)."""
        from .postgres import connect_driver

        conn = connect_driver(
            host="127.0.0.1", port=self.port, user=self.server.superuser,
            password=self.server.password, dbname="pgbouncer",
        )  # fmt: skip
        try:
            cur = conn.cursor()
            cur.execute(command)
            return cur.fetchall() if cur.description else []
        finally:
            conn.close()

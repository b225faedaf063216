from __future__ import annotations

import pytest
from django.db import connections

from orca_db import conf


@pytest.fixture(autouse=True)
def _fresh_retry_settings():
    conf.clear_cache()
    yield
    conf.clear_cache()


@pytest.fixture(autouse=True)
def _no_deferred_events():
    """Retry events deferred by one test are not written by the next."""
    from orca_db_app import receivers

    yield
    with receivers._deferred_lock:
        receivers._deferred.clear()
    receivers._away.clear()


@pytest.fixture
def events():
    """The retry events (``orca_db.signals.retry_event``) sent during the test."""
    from orca_db.signals import retry_event

    received = []

    def receiver(sender, event, **kwargs):
        received.append(event)

    retry_event.connect(receiver)
    yield received
    retry_event.disconnect(receiver)


@pytest.fixture
def kill_backend(django_db_blocker):
    """Terminate the server process behind ``alias``'s current connection,
    from another connection (a real 57P01, as a scale event sends)."""

    def kill(alias: str = "default") -> int:
        pid = connections[alias].connection.info.backend_pid
        with django_db_blocker.unblock():
            admin = admin_connection(alias)
            try:
                cur = admin.cursor()
                cur.execute("SELECT pg_terminate_backend(%s)", [pid])
                # Wait (bounded) until the backend is really gone.
                for _ in range(500):
                    cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
                    if not cur.fetchall():
                        break
                    import time

                    time.sleep(0.01)
                else:
                    raise AssertionError(f"backend {pid} still alive")
            finally:
                admin.close()
        return pid

    return kill


def admin_connection(alias: str = "default"):
    """A plain driver connection to ``alias``'s server, outside Django."""
    from orca_db.testing.postgres import connect_driver

    settings = connections[alias].settings_dict
    return connect_driver(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
        password=settings["PASSWORD"], dbname=settings["NAME"],
    )  # fmt: skip


class BackendKiller:
    """Kills a backend from another thread once it runs a given query."""

    def __init__(self, alias: str = "default"):
        self.alias = alias
        self.killed: list[int] = []
        self._killing = None

    def kill_when_running(self, pid: int, fragment: str, timeout: float = 10.0) -> None:
        from tests.faults import terminate_when_running

        where = "pid = %s AND state = 'active' AND query LIKE %s"
        killing = terminate_when_running(
            where, [pid, f"%{fragment}%"], timeout=timeout, alias=self.alias
        )
        self._killing = (pid, killing)

    def join(self) -> None:
        assert self._killing is not None
        pid, killing = self._killing
        killing.join(timeout=30)
        self.killed.append(pid)


@pytest.fixture
def backend_killer(django_db_blocker):
    with django_db_blocker.unblock():
        yield BackendKiller()


# ----- a local AWS (moto's server) for the orca_db.aws tests ------------------


@pytest.fixture(scope="session")
def moto_server():
    """moto's server, a real HTTP endpoint, for the whole session."""
    from orca_db.testing.aws import MotoServer

    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server, monkeypatch):
    """boto3 pointed at an empty moto server through the standard AWS
    variables; orca_db.aws's clients, secrets and tokens forgotten."""
    from orca_db.aws.clients import clear_clients
    from orca_db.aws.credentials import forget_credentials

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in moto_server.environ().items():
        monkeypatch.setenv(key, value)
    moto_server.reset()
    clear_clients()
    forget_credentials()
    yield moto_server
    clear_clients()
    forget_credentials()

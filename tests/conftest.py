from __future__ import annotations

import pytest
from django.db import connections

from orca_db import conf


@pytest.fixture(autouse=True)
def _fresh_retry_settings():
    conf.clear_cache()
    yield
    conf.clear_cache()


@pytest.fixture
def kill_backend(django_db_blocker):
    """Terminate the server process behind ``alias``'s current connection,
    from another connection (a real 57P01, as a scale event sends)."""

    def kill(alias: str = "default") -> int:
        pid = connections[alias].connection.info.backend_pid
        with django_db_blocker.unblock():
            from orca_db.testing.postgres import connect_driver

            settings = connections[alias].settings_dict
            admin = connect_driver(
                host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
                password=settings["PASSWORD"], dbname=settings["NAME"],
            )  # fmt: skip
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

"""The aurora backend through the Aurora Serverless simulator: connect-time
FATALs, held startups, dropped connections and scale events as Aurora
shows them, with the outcome checked on the server directly."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections, transaction

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.exceptions import OutcomeUnknown, TransactionRolledBack
from tests.conftest import admin_connection
from tests.testapp.models import Note
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ALIAS = "sim"


@pytest.fixture
def sim_db(aurora_simulator):
    """The aurora backend on the test database, through the simulator, as
    alias ``sim`` (in this thread)."""
    settings = aurora_simulator.django_settings(connections["default"].settings_dict)
    wrapper = DatabaseWrapper({**settings, "OPTIONS": {}}, alias=ALIAS)
    connections[ALIAS] = wrapper
    try:
        yield wrapper
    finally:
        wrapper.close()
        del connections[ALIAS]


def on_server(sql: str, params=None) -> list[tuple]:
    admin = admin_connection()
    try:
        cursor = admin.cursor()
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        admin.close()


def server_count(text: str) -> int:
    return on_server("SELECT count(*) FROM testapp_note WHERE text = %s", [text])[0][0]


def running_sleep(pid: int) -> bool:
    return bool(
        on_server("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event = 'PgSleep'", [pid])
    )


class InBackground:
    """Runs ``action`` in a thread; join() re-raises what it raised."""

    def __init__(self, action):
        self.errors: list[BaseException] = []

        def run():
            try:
                action()
            except BaseException as exc:
                self.errors.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        if self.errors:
            raise self.errors[0]


def drop_when_sleeping(sim, pid: int) -> InBackground:
    """Cut the connections once backend ``pid`` runs its pg_sleep."""

    def drop():
        wait_until(lambda: running_sleep(pid))
        sim.drop_connections()

    return InBackground(drop)


def test_connect_time_fatal_is_retried(aurora_simulator, sim_db, events):
    aurora_simulator.reject_startups(2)
    with sim_db.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert aurora_simulator.stats["rejected"] == 2
    [event] = events
    assert (event.phase, event.outcome, event.attempts) == ("connect", "recovered", 3)
    assert "serverless scale point" in event.message


def test_held_startup_completes_after_resume(aurora_simulator, sim_db):
    aurora_simulator.pause()
    resumed_at: list[float] = []

    def resume_once_held():
        aurora_simulator.wait_for(lambda s: s["holding"] == 1)
        resumed_at.append(time.monotonic())
        aurora_simulator.resume()

    resumer = InBackground(resume_once_held)
    with sim_db.cursor() as cursor:
        cursor.execute("SELECT 42")
        assert cursor.fetchone() == (42,)
    done_at = time.monotonic()
    resumer.join()
    assert done_at > resumed_at[0]
    assert aurora_simulator.stats["held"] == 1


def test_drop_during_autocommit_read_is_recovered(aurora_simulator, sim_db, events):
    sim_db.ensure_connection()
    dropper = drop_when_sleeping(aurora_simulator, sim_db.connection.info.backend_pid)
    with sim_db.cursor() as cursor:
        cursor.execute("SELECT 42 FROM pg_sleep(0.3)")
        assert cursor.fetchone() == (42,)
    dropper.join()
    assert aurora_simulator.stats["dropped"] == 1
    assert [(e.phase, e.outcome) for e in events] == [("execute", "recovered")]


def test_drop_during_autocommit_write_is_outcome_unknown(aurora_simulator, sim_db):
    sim_db.ensure_connection()
    pid = sim_db.connection.info.backend_pid
    dropper = drop_when_sleeping(aurora_simulator, pid)
    with pytest.raises(OutcomeUnknown), sim_db.cursor() as cursor:
        cursor.execute(
            "INSERT INTO testapp_note (text, created) SELECT %s, now() FROM pg_sleep(0.3)",
            ["dropped-write"],
        )
    dropper.join()
    # The cut backend finishes its statement (and commits it) before it
    # notices; once it is gone the row count is final.
    wait_until(lambda: not on_server("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]))
    assert server_count("dropped-write") <= 1


def test_scale_event_inside_atomic_rolls_back(aurora_simulator, sim_db, events):
    with pytest.raises(TransactionRolledBack), transaction.atomic(using=ALIAS):
        Note.objects.using(ALIAS).create(text="scaled-1")
        assert aurora_simulator.scale_event() == 1
        Note.objects.using(ALIAS).create(text="scaled-2")
    assert server_count("scaled-1") == 0 and server_count("scaled-2") == 0
    # Outside the block the alias reconnects and works.
    assert Note.objects.using(ALIAS).count() == 0
    assert [(e.phase, e.outcome) for e in events] == [("execute", "raised")]

"""An adversarial review of the SQLAlchemy plugin's hot path (the short
paths for statements, COMMIT and ROLLBACK; the pool's own check; the
session clean-up on the pool entry), from the outside: a real server, real
faults (the simulator's silence, ``pg_terminate_backend``)."""

from __future__ import annotations

import time

import pytest

from orca_db.deadlines import deadline_cap
from tests import cut_off_messages as cut
from tests import sqlalchemy_helpers

sqlalchemy = pytest.importorskip("sqlalchemy")

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)

#: Generous for a loaded 2-core machine; a silent network would hold the
#: call for the kernel's TCP timeout (minutes) without the cut.
BOUND = 8.0

table = sqlalchemy_helpers.table
engines = sqlalchemy_helpers.engines


@pytest.fixture
def sim(aurora_simulator):
    """Left silent by the tests here: un-silenced after each one."""
    yield aurora_simulator
    aurora_simulator.unsilence()


def test_silent_rollback_cut_at_a_cap_the_engine_was_made_in(sim, engines, table):
    """A Lambda handler that makes its engine on its first invocation,
    inside the cap (no statement_deadline): that engine's ROLLBACK must be
    bounded by the cap already open, as an engine made before it is."""
    with deadline_cap(3.0):
        e = engines(sim, aurora={"deadline": 30})
        with e.connect() as connection:
            connection.execute(table.insert, {"v": "a"})
            sim.silence(new_connections=False)
            started = time.monotonic()
            with pytest.raises(orca.DeadlineExceeded) as error:
                connection.rollback()
            took = time.monotonic() - started
    assert took < BOUND
    assert str(error.value.orig) == cut.ROLLBACK.format(alias=e.url.database)
    sim.unsilence()
    assert table.rows() == 0


def test_session_changed_on_a_detached_connection(engines):
    """``connection.detach()`` takes the driver connection out of the pool
    (no pool entry any more): a SET on it afterwards runs, and its session
    is followed as on any other (nothing to clean at a checkin that never
    comes)."""
    from sqlalchemy import text

    e = engines()
    with e.connect() as connection:
        connection.connection.detach()
        connection.exec_driver_sql("SET search_path TO pg_catalog, public")
        assert connection.execute(text("SHOW search_path")).scalar() == "pg_catalog, public"
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() != "pg_catalog, public"

"""Scale events through a real PgBouncer in transaction pooling mode, in
front of the test server: reads and ``retry_atomic`` survive them, and no
broken connection is handed out afterwards."""

from __future__ import annotations

import types

import pytest
from django.db import connections

from orca_db.exceptions import TransactionRolledBack
from orca_db.testing.pgbouncer import PgBouncer, find_pgbouncer
from tests.pooled import (
    ROWS,
    database_alias,
    raw_select_one,
    read_count,
    recorded_events,
    scratch_database,
    server_settings,
    terminate_backends,
    write_through_scale_event,
)

pytestmark = pytest.mark.skipif(
    find_pgbouncer() is None, reason="pgbouncer is not installed (apt-get install pgbouncer)"
)

ALIAS = "bounced"


@pytest.fixture(scope="module")
def dbname(django_db_blocker):
    with django_db_blocker.unblock(), scratch_database() as name:
        yield name


@pytest.fixture(scope="module")
def bouncer():
    server = server_settings()
    upstream = types.SimpleNamespace(
        host=server["HOST"] or "127.0.0.1",
        port=int(server["PORT"] or 5432),
        superuser=server["USER"],
        password=server["PASSWORD"],
    )
    bouncer = PgBouncer(upstream).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def bounced(bouncer, dbname, django_db_blocker):
    settings = {"ENGINE": "orca_db.backends.aurora", **bouncer.django_settings(dbname)}
    with django_db_blocker.unblock(), database_alias(ALIAS, settings):
        yield ALIAS


def test_transaction_pooling(bouncer, bounced):
    assert read_count(bounced) == ROWS
    pools = bouncer.admin("SHOW POOLS")
    modes = {row[0]: row[-1] for row in pools}
    assert "transaction" in modes.values()


def test_read_survives_scale_event(bounced, dbname):
    assert read_count(bounced) == ROWS
    assert terminate_backends(dbname) >= 1
    with recorded_events() as events:
        assert read_count(bounced) == ROWS
    # Between transactions the client holds no server connection: PgBouncer
    # finds its dead ones (server_check_delay = 0) and the client sees
    # nothing to retry.
    assert events == []


def test_transaction_lost_through_pgbouncer_is_reported(bounced, dbname):
    # Inside a transaction PgBouncer has linked a server connection to the
    # client; its death ends the client connection too, and the retry layer
    # reports the rolled-back transaction instead of replaying part of it.
    connection = connections[bounced]
    connection.set_autocommit(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        terminate_backends(dbname)
        with pytest.raises(TransactionRolledBack):
            read_count(bounced)
    finally:
        connection.close()
    assert read_count(bounced) == ROWS


def test_no_broken_connection_handed_out_after_scale_event(bouncer, bounced, dbname):
    # Several clients, so PgBouncer holds several server connections.
    wrappers = [connections[bounced]] + [
        type(connections[bounced])(connections[bounced].settings_dict, bounced) for _ in range(2)
    ]
    for wrapper in wrappers:
        wrapper.set_autocommit(False)
        raw_select_one(wrapper)  # each one holds a server connection
    for wrapper in wrappers:
        wrapper.rollback()
        wrapper.set_autocommit(True)
    assert terminate_backends(dbname) >= 1
    # Below the retry layer: PgBouncer checks its server connections
    # (server_check_delay = 0) and must never lend out a dead one.
    for _ in range(2):
        for wrapper in wrappers:
            raw_select_one(wrapper)
    for wrapper in wrappers[1:]:
        wrapper.close()


def test_retry_atomic_survives_scale_event(bounced, dbname):
    assert write_through_scale_event(bounced, dbname) == 2
    raw_select_one(connections[bounced])

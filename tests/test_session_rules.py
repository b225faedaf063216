"""Rule 1 of docs/retry-safety.md: session state is an allowlist. A
replacement connection gets back only the state the tracker followed
exactly, with PostgreSQL's own semantics; anything else that may change
session state makes the session unknown (``SessionStateLost`` at the next
reconnect); an application's ``close()`` always starts a clean session.
Real server, real faults (``pg_terminate_backend``)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from orca_db.exceptions import SessionStateLost
from tests import test_guarantee
from tests.conftest import admin_connection
from tests.test_guarantee import server_texts, tenant_texts
from tests.testapp.models import Note

tenant_schema = test_guarantee.tenant_schema

pytestmark = pytest.mark.django_db(transaction=True)


def run(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def tenant_role():
    """A role the login role may SET ROLE to."""
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute("DROP ROLE IF EXISTS orca_tenant_a")
        cur.execute("CREATE ROLE orca_tenant_a")
        cur.execute("GRANT orca_tenant_a TO CURRENT_USER")
        admin.commit()
        yield "orca_tenant_a"
        connection.close()
        cur.execute("DROP ROLE IF EXISTS orca_tenant_a")
        admin.commit()
    finally:
        admin.close()


# ----- RESET ALL keeps the role ----------------------------------------------------


def test_reset_all_keeps_the_role_after_a_reconnect(tenant_role, kill_backend):
    """PostgreSQL's RESET ALL does not reset role or session_authorization:
    the replacement connection must run as tenant_a too (on main it ran as
    the login role, row-level security bypassed)."""
    run("SET ROLE orca_tenant_a")
    run("RESET ALL")
    assert run("SELECT current_user") == [("orca_tenant_a",)]
    kill_backend()
    assert run("SELECT current_user") == [("orca_tenant_a",)]


# ----- close() is a clean start --------------------------------------------------------


def test_close_after_a_broken_job_starts_a_clean_session(tenant_schema, kill_backend):
    """A worker closes its connection after each job; a job whose
    connection had broken must not leave its search_path to the next."""
    run("SET search_path TO tenant42")
    kill_backend()
    assert connection.is_usable() is False  # the job's health check finds it broken
    connection.close()  # the worker: each job gets a fresh session
    Note.objects.create(text="job2-row")
    assert server_texts("job2-") == ["job2-row"]
    assert tenant_texts() == []


def test_a_connection_atomic_drops_keeps_the_session(tenant_schema, kill_backend):
    """Django's atomic() drops the connection when its ROLLBACK fails: not
    the application's close(), so the session comes back on the next one."""
    run("SET search_path TO tenant42")
    with pytest.raises(RuntimeError), transaction.atomic():
        Note.objects.create(text="dropped-a")
        kill_backend()
        raise RuntimeError("the job fails; atomic() rolls back on a dead connection")
    Note.objects.create(text="dropped-b")
    assert tenant_texts() == ["dropped-b"]

"""The aurora backend keeps what it knows about a connection in one typed
object (``orca_db/backends/state.py``), and its cursor class stays short:
the statement path reads the object once, and every attribute read on
Django's ``CursorWrapper`` (which has a ``__getattr__``, so none is
specialized) walks the class list."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.backends.utils import CursorWrapper

from orca_db.backends.state import ConnectionState

pytestmark = pytest.mark.django_db(transaction=True)

#: Attributes that modules outside the backend still set on the wrapper
#: (the retry core's: settings cache, sends counted around execute, the
#: cluster identity of commit resolution). Nothing of the backend's own.
_CORE_ATTRIBUTES = {"_orca_db_retry_settings", "_orca_unseen_sends", "_orca_cluster_identity"}


def test_the_backend_keeps_its_state_in_one_object(kill_backend):
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO public")
        cursor.execute("SELECT 1")
    kill_backend()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # replaced, the session restored
        cursor.callproc("pg_backend_pid")
    assert isinstance(connection.orca_state, ConnectionState)
    assert connection.orca_state.link is not None
    spread = {name for name in vars(connection) if name.startswith("_orca")} - _CORE_ATTRIBUTES
    assert spread == set()
    connection.close()


def test_the_retrying_cursor_class_adds_one_class():
    with connection.cursor() as cursor:
        mro = type(cursor).__mro__
    parent = mro[1]
    assert issubclass(parent, CursorWrapper)
    assert mro[1:] == parent.__mro__

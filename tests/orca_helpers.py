"""A scratch database on the test server, reachable as a Django alias, for
tests that migrate from empty or build a database by hand."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from django.db import connections

from orca_db.testing.postgres import connect_driver


def _admin(settings: dict):
    return connect_driver(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        dbname=settings["NAME"],
    )


@contextlib.contextmanager
def scratch_database(django_db_blocker, prefix: str = "orca_scratch") -> Iterator[str]:
    """A new empty database, as the alias this yields; dropped afterwards."""
    base = connections["default"].settings_dict
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    alias = name
    with django_db_blocker.unblock():
        admin = _admin(base)
        try:
            admin.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            admin.close()
        connections.settings[alias] = {**base, "NAME": name, "TEST": {**base.get("TEST", {})}}
        try:
            yield alias
        finally:
            with contextlib.suppress(Exception):
                connections[alias].close()
            with contextlib.suppress(AttributeError):
                del connections[alias]
            del connections.settings[alias]
            admin = _admin(base)
            try:
                admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                admin.close()

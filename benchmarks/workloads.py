"""The per-query workloads, identical for every alias: each function runs one
unit of work on ``alias``; ``STATEMENTS[name]`` is how many statements that
unit sends (a transaction's BEGIN/COMMIT not counted).

``orm_exists`` is the ORM's closest thing to ``SELECT 1``: Django compiles
``.exists()`` to ``SELECT 1 AS "a" FROM ... WHERE id = %s LIMIT 1``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from django.db import connections, transaction
from django.db.models import F

from benchmarks import common
from benchmarks.benchapp.models import Item

_counter = itertools.count()
_ids: list[int] = []


def use_ids(ids: list[int]) -> None:
    """The primary keys the fetches and updates cycle through."""
    _ids[:] = ids


def _next_id() -> int:
    return _ids[next(_counter) % len(_ids)]


def raw_select1(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def raw_pk_fetch(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT id, name, value FROM benchapp_item WHERE id = %s", [_next_id()])
        cursor.fetchone()


def raw_insert(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("INSERT INTO benchapp_item (name, value) VALUES (%s, %s)", ["new", 1])


def raw_txn10(alias: str) -> None:
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        for _ in range(5):
            pk = _next_id()
            cursor.execute("SELECT id, name, value FROM benchapp_item WHERE id = %s", [pk])
            cursor.fetchone()
            cursor.execute("UPDATE benchapp_item SET value = value + 1 WHERE id = %s", [pk])


def orm_exists(alias: str) -> None:
    Item.objects.using(alias).filter(pk=_next_id()).exists()


def orm_pk_fetch(alias: str) -> None:
    Item.objects.using(alias).get(pk=_next_id())


def orm_insert(alias: str) -> None:
    Item.objects.using(alias).create(name="new", value=1)


def orm_txn10(alias: str) -> None:
    items = Item.objects.using(alias)
    with transaction.atomic(using=alias):
        for _ in range(5):
            pk = _next_id()
            items.get(pk=pk)
            items.filter(pk=pk).update(value=F("value") + 1)


WORKLOADS: dict[str, Callable[[str], None]] = {
    "raw_select1": raw_select1,
    "raw_pk_fetch": raw_pk_fetch,
    "raw_insert": raw_insert,
    "raw_txn10": raw_txn10,
    "orm_exists": orm_exists,
    "orm_pk_fetch": orm_pk_fetch,
    "orm_insert": orm_insert,
    "orm_txn10": orm_txn10,
}


def request_select1(alias: str) -> None:
    """One request with ``CONN_MAX_AGE=0``: connect, one query, close."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    connection.close()


#: Connection set-up: measured apart (it dwarfs a query).
CONNECT_WORKLOADS: dict[str, Callable[[str], None]] = {"request_select1": request_select1}
STATEMENTS = {name: common.statements(name) for name in WORKLOADS}
#: Iterations per batch: a few ms of work on a quiet machine, so both
#: aliases of one batch meet much the same load from other processes.
BATCH = {name: 5 if name.endswith("txn10") else 50 for name in WORKLOADS}

"""The SQLAlchemy workloads, identical for every engine: each function runs one
unit of work on one engine; ``STATEMENTS[name]`` is how many statements that
unit sends (BEGIN/COMMIT/ROLLBACK not counted).

Each unit is what a request or a Lambda invocation does: it checks a
connection out of the pool and returns it (``engine.connect()``,
``engine.begin()``, a ``Session``). ``core_autocommit_select1`` runs on one
connection held for the whole run in ``AUTOCOMMIT``: the plugin's per-statement
path alone (no checkout), where an autocommit read may be replayed.

Django-free: the benchmark worker imports SQLAlchemy and the plugin only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from sqlalchemy import Integer, MetaData, String, insert, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from benchmarks import common

TABLE = "sqlabench_item"


class Base(DeclarativeBase):
    metadata = MetaData()


class Item(Base):
    __tablename__ = TABLE
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[int] = mapped_column(Integer)


items = Item.__table__
SELECT1 = text("SELECT 1")

_counter = itertools.count()
_ids: list[int] = []


def create_table(engine: Any, rows: int = 1000) -> None:
    """(Re)create the benchmark table with ``rows`` rows."""
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(items), [{"name": f"item {i}", "value": i} for i in range(rows)])
        _ids[:] = connection.scalars(select(items.c.id).order_by(items.c.id)).all()


def _next_id() -> int:
    return _ids[next(_counter) % len(_ids)]


def core_select1(engine: Any) -> None:
    with engine.connect() as connection:
        connection.execute(SELECT1).scalar()


def core_pk_fetch(engine: Any) -> None:
    with engine.connect() as connection:
        connection.execute(
            select(items.c.id, items.c.name, items.c.value).where(items.c.id == _next_id())
        ).one()


def core_insert(engine: Any) -> None:
    with engine.begin() as connection:
        connection.execute(insert(items).values(name="new", value=1))


def core_txn10(engine: Any) -> None:
    with engine.begin() as connection:
        for _ in range(5):
            pk = _next_id()
            connection.execute(
                select(items.c.id, items.c.name, items.c.value).where(items.c.id == pk)
            ).one()
            connection.execute(
                update(items).where(items.c.id == pk).values(value=items.c.value + 1)
            )


_held: dict[int, Any] = {}


def core_autocommit_select1(engine: Any) -> None:
    connection = _held.get(id(engine))
    if connection is None:
        connection = _held[id(engine)] = engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        )
    connection.execute(SELECT1).scalar()


def orm_get(engine: Any) -> None:
    with Session(engine) as session:
        session.get(Item, _next_id())


def orm_select(engine: Any) -> None:
    with Session(engine) as session:
        session.scalars(select(Item).where(Item.id == _next_id())).one()


def orm_insert(engine: Any) -> None:
    with Session(engine) as session:
        session.add(Item(name="new", value=1))
        session.commit()


def orm_txn10(engine: Any) -> None:
    with Session(engine) as session, session.begin():
        for _ in range(5):
            pk = _next_id()
            session.get(Item, pk)
            session.execute(update(Item).where(Item.id == pk).values(value=Item.value + 1))


WORKLOADS: dict[str, Callable[[Any], None]] = {
    "core_select1": core_select1,
    "core_pk_fetch": core_pk_fetch,
    "core_insert": core_insert,
    "core_txn10": core_txn10,
    "core_autocommit_select1": core_autocommit_select1,
    "orm_get": orm_get,
    "orm_select": orm_select,
    "orm_insert": orm_insert,
    "orm_txn10": orm_txn10,
}
STATEMENTS = {name: common.statements(name) for name in WORKLOADS}

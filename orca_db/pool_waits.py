"""The wait for a free connection of a pool (Django's psycopg pool,
SQLAlchemy's QueuePool under ``aurora_pool``), bounded by the operation's
deadline or the Lambda cap when that comes before the pool's own timeout."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from .deadlines import ConnectTimeout

#: Seconds a connection pool may wait for a free connection in this
#: context (:func:`pool_wait_bounded`), or ``None``.
_pool_wait: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "orca_db_pool_wait", default=None
)


def pool_wait(own: float) -> float:
    """The wait a bounded pool allows, its own timeout being ``own``."""
    wait = _pool_wait.get()
    return own if wait is None else min(own, wait)


_BOUNDED_POOLS: dict[tuple[type, str], type] = {}


def _bounded_pool_class(cls: type, attribute: str) -> type:
    """``cls`` whose ``attribute`` (the timeout its wait for a free
    connection reads) is capped by :func:`pool_wait`."""
    made = _BOUNDED_POOLS.get((cls, attribute))
    if made is None:

        def get(pool: Any) -> float:
            return pool_wait(pool.__dict__[attribute])

        def set_(pool: Any, value: float) -> None:
            pool.__dict__[attribute] = value

        made = _BOUNDED_POOLS.setdefault(
            (cls, attribute),
            type(f"Bounded{cls.__name__}", (cls,), {attribute: property(get, set_)}),
        )
    return made


@contextlib.contextmanager
def pool_wait_bounded(pool: Any, seconds: float, attribute: str = "timeout") -> Iterator[None]:
    """Within the block, ``pool`` (psycopg's, or SQLAlchemy's with
    ``attribute="_timeout"``) waits for a free connection ``seconds`` at
    most; a wait cut short by that raises :class:`ConnectTimeout`. The
    pool's class is made a subclass whose timeout reads this bound: the
    pool is shared by threads, its own attribute is left alone."""
    if pool is None or attribute not in getattr(pool, "__dict__", {}):
        yield
        return
    cls = type(pool)
    if cls not in {made for made in _BOUNDED_POOLS.values()}:
        pool.__class__ = _bounded_pool_class(cls, attribute)
    own = pool.__dict__[attribute]
    token = _pool_wait.set(max(seconds, 0.0))
    try:
        yield
    except Exception as error:
        if seconds < own and _is_pool_timeout(error):
            raise ConnectTimeout() from error
        raise
    finally:
        _pool_wait.reset(token)


def _is_pool_timeout(error: BaseException) -> bool:
    # psycopg_pool.PoolTimeout (wrapped by Django as an OperationalError),
    # SQLAlchemy's TimeoutError.
    seen = {id(error)}
    while error is not None:
        name = type(error).__name__
        module = type(error).__module__
        if name == "PoolTimeout" or (name == "TimeoutError" and module.startswith("sqlalchemy")):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
        if error is not None and id(error) in seen:
            return False
        if error is not None:
            seen.add(id(error))
    return False

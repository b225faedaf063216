"""orca-db: Django on Aurora Serverless PostgreSQL, through scale events,
pauses and cold starts, without losing or duplicating a write."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

__all__ = ["retry_atomic"]

if TYPE_CHECKING:
    from .transaction import retry_atomic


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: ``import orca_db`` runs on
    # every Lambda cold start and must not pull in django.db.
    if name == "retry_atomic":
        from .transaction import retry_atomic

        return retry_atomic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

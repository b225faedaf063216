"""The app's models: retry events (``events``).

ORCA's storage models moved to ``orca_db_app.orca.models`` (the app
``orca_db_app.orca``); importing them from here still works, with a
``DeprecationWarning``, for one release."""

from __future__ import annotations

import warnings
from typing import Any

from .events import RetryEvent

__all__ = ["RetryEvent"]

_MOVED = {
    "Collection",
    "File",
    "Granule",
    "Provider",
    "ReconcileCatalogMismatchReport",
    "ReconcileJob",
    "ReconcileOrphanReport",
    "ReconcilePhantomReport",
    "ReconcileS3Object",
    "ReconcileStatus",
    "RecoveryFile",
    "RecoveryJob",
    "RecoveryStatus",
    "SchemaVersion",
    "StorageClass",
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"orca_db_app.models.{name} moved to orca_db_app.orca.models.{name} "
        f"(add 'orca_db_app.orca' to INSTALLED_APPS).",
        DeprecationWarning,
        stacklevel=2,
    )
    from orca_db_app.orca import models

    return getattr(models, name)

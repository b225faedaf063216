"""The app's models: retry events (``events``) and ORCA's storage schema
(``orca``)."""

from .events import RetryEvent
from .orca import (
    Collection,
    File,
    Granule,
    Provider,
    ReconcileCatalogMismatchReport,
    ReconcileJob,
    ReconcileOrphanReport,
    ReconcilePhantomReport,
    ReconcileS3Object,
    ReconcileStatus,
    RecoveryFile,
    RecoveryJob,
    RecoveryStatus,
    SchemaVersion,
    StorageClass,
)

__all__ = [
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
    "RetryEvent",
    "SchemaVersion",
    "StorageClass",
]

"""ORCA's models leave ``orca_db_app`` for their own app, ``orca``
(``orca_db_app.orca``), which adopts their tables unchanged: this removes
them from ``orca_db_app``'s migration state and touches no table.
"""

from django.db import migrations

#: Models that refer to others first, so no relation outlives its target.
MOVED = [
    "ReconcileOrphanReport",
    "ReconcilePhantomReport",
    "ReconcileCatalogMismatchReport",
    "ReconcileS3Object",
    "ReconcileJob",
    "ReconcileStatus",
    "File",
    "StorageClass",
    "Granule",
    "Collection",
    "Provider",
    "RecoveryFile",
    "RecoveryJob",
    "RecoveryStatus",
    "SchemaVersion",
]


class Migration(migrations.Migration):
    dependencies = [
        ("orca_db_app", "0003_orca_lookup_data"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name) for name in MOVED]
        ),
    ]

"""ORCA's storage schema, for the migration state only.

This migration used to create ORCA's tables in every database with
``orca_db_app``; they now belong to the app ``orca_db_app.orca`` (label
``orca``), whose ``0001_initial`` creates them, or adopts the tables this
migration made on databases migrated before. Here the models stay in the
state of ``orca_db_app`` (migrations that depended on them still load) until
0004 hands them over; nothing is done to the database.
"""

from django.db import migrations

from orca_db_app.orca.migrations._orca_v5_models import create_models


class Migration(migrations.Migration):
    dependencies = [
        ("orca_db_app", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=create_models("orca_db_app")),
    ]
